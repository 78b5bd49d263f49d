package mtd

import (
	"bytes"
	"encoding/binary"
	"runtime"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

const ptrSize = unsafe.Sizeof(uintptr(0))

// TestLayout checks the structures against what gcc 12 gives for the
// kernel's own header (linux-libc-dev 6.1, <mtd/mtd-abi.h>), offsetof and
// sizeof of each member, compiled with -m64 and with -m32 (the -m32 build
// borrowed the x86-64 <asm/...> headers, which for ioctl.h and types.h are
// the asm-generic ones i386 uses; multilib's libc is missing, so it was
// compiled to assembly, not linked). Both give the same numbers: no member
// is a pointer or wider than 4 bytes but the __u64 padding at 24, which is
// 8-aligned anyway, so ARM EABI and MIPS o32 (8-byte __u64 alignment) and
// i386 (4-byte) agree; that part is reasoned, not compiled.
func TestLayout(t *testing.T) {
	var m mtdInfoUser
	var e eraseInfoUser
	tests := []struct {
		name      string
		got, want uintptr
	}{
		{"sizeof(struct mtd_info_user)", unsafe.Sizeof(m), 32},
		{"mtd_info_user.type", unsafe.Offsetof(m.typ), 0},
		{"mtd_info_user.flags", unsafe.Offsetof(m.flags), 4},
		{"mtd_info_user.size", unsafe.Offsetof(m.size), 8},
		{"mtd_info_user.erasesize", unsafe.Offsetof(m.erasesize), 12},
		{"mtd_info_user.writesize", unsafe.Offsetof(m.writesize), 16},
		{"mtd_info_user.oobsize", unsafe.Offsetof(m.oobsize), 20},
		{"mtd_info_user.padding", unsafe.Offsetof(m.padding), 24},
		{"sizeof(struct erase_info_user)", unsafe.Sizeof(e), 8},
		{"erase_info_user.start", unsafe.Offsetof(e.start), 0},
		{"erase_info_user.length", unsafe.Offsetof(e.length), 4},
		// golang.org/x/sys/unix's own generated types, for this port.
		{"sizeof(unix.MtdInfo)", unsafe.Sizeof(m), unsafe.Sizeof(unix.MtdInfo{})},
		{"sizeof(unix.EraseInfo)", unsafe.Sizeof(e), unsafe.Sizeof(unix.EraseInfo{})},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("%s = %d, want %d (pointer size %d)", tc.name, tc.got, tc.want, ptrSize)
		}
	}
}

// TestIoctlNumbers checks the request numbers two ways: against the values
// gcc computed from <mtd/mtd-abi.h> (the asm-generic encoding as x86 and
// ARM use it, and the MIPS/PowerPC encoding obtained by defining
// _IOC_SIZEBITS 13, _IOC_DIRBITS 3, _IOC_NONE 1, _IOC_READ 2, _IOC_WRITE 4
// before <asm-generic/ioctl.h>, as arch/mips/include/uapi/asm/ioctl.h
// does), and against golang.org/x/sys/unix's constants, generated from
// each architecture's own headers.
func TestIoctlNumbers(t *testing.T) {
	type nums struct{ getInfo, erase, lock, unlock, isLocked uint32 }
	generic := nums{0x80204d01, 0x40084d02, 0x40084d05, 0x40084d06, 0x80084d17}
	mips := nums{0x40204d01, 0x80084d02, 0x80084d05, 0x80084d06, 0x40084d17}
	want := generic
	switch runtime.GOARCH {
	case "mips", "mipsle", "mips64", "mips64le", "ppc64", "ppc64le":
		want = mips
	}
	got := nums{uint32(memGetInfo), uint32(memErase), uint32(memLock), uint32(memUnlock), uint32(memIsLocked)}
	if got != want {
		t.Errorf("%s: ioctl numbers %#x, gcc gives %#x", runtime.GOARCH, got, want)
	}
	xsys := nums{unix.MEMGETINFO, unix.MEMERASE, unix.MEMLOCK, unix.MEMUNLOCK, unix.MEMISLOCKED}
	if got != xsys {
		t.Errorf("%s: ioctl numbers %#x, golang.org/x/sys/unix has %#x", runtime.GOARCH, got, xsys)
	}
}

// TestConstants checks the MTD types and flags against <mtd/mtd-abi.h>
// and golang.org/x/sys/unix.
func TestConstants(t *testing.T) {
	tests := []struct {
		name      string
		got, want uint32
	}{
		{"MTD_ABSENT", TypeAbsent, unix.MTD_ABSENT},
		{"MTD_RAM", TypeRAM, unix.MTD_RAM},
		{"MTD_ROM", TypeROM, unix.MTD_ROM},
		{"MTD_NORFLASH", TypeNORFlash, unix.MTD_NORFLASH},
		{"MTD_NANDFLASH", TypeNANDFlash, unix.MTD_NANDFLASH},
		{"MTD_DATAFLASH", TypeDataFlash, unix.MTD_DATAFLASH},
		{"MTD_UBIVOLUME", TypeUBIVolume, unix.MTD_UBIVOLUME},
		{"MTD_MLCNANDFLASH", TypeMLCNANDFlash, unix.MTD_MLCNANDFLASH},
		{"MTD_WRITEABLE", FlagWriteable, unix.MTD_WRITEABLE},
		{"MTD_BIT_WRITEABLE", FlagBitWriteable, unix.MTD_BIT_WRITEABLE},
		{"MTD_NO_ERASE", FlagNoErase, unix.MTD_NO_ERASE},
		{"MTD_POWERUP_LOCK", FlagPowerUpLock, unix.MTD_POWERUP_LOCK},
		// The values gcc printed from the header (SPEC 8 lists them too).
		{"MTD_RAM (header)", TypeRAM, 1},
		{"MTD_NORFLASH (header)", TypeNORFlash, 3},
		{"MTD_NANDFLASH (header)", TypeNANDFlash, 4},
		{"MTD_MLCNANDFLASH (header)", TypeMLCNANDFlash, 8},
		{"MTD_WRITEABLE (header)", FlagWriteable, 0x400},
		{"MTD_BIT_WRITEABLE (header)", FlagBitWriteable, 0x800},
		{"MTD_NO_ERASE (header)", FlagNoErase, 0x1000},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("%s = %#x, want %#x", tc.name, tc.got, tc.want)
		}
	}
}

// TestInfoBytes fills an mtd_info_user as the kernel writes it (mtdram's
// answer: type MTD_RAM, flags 0x1c00, 256 KiB, 64 KiB erase blocks, write
// size 1) in this target's byte order, and reads it back.
func TestInfoBytes(t *testing.T) {
	raw := make([]byte, 32)
	raw[0] = 1
	raw[1], raw[2], raw[3] = 0xaa, 0xbb, 0xcc // padding: must be ignored
	binary.NativeEndian.PutUint32(raw[4:], 0x1c00)
	binary.NativeEndian.PutUint32(raw[8:], 256<<10)
	binary.NativeEndian.PutUint32(raw[12:], 64<<10)
	binary.NativeEndian.PutUint32(raw[16:], 1)
	binary.NativeEndian.PutUint32(raw[20:], 0)
	var m mtdInfoUser
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&m)), unsafe.Sizeof(m)), raw)
	got := m.info("/dev/mtd0")
	want := Info{Name: "/dev/mtd0", Type: TypeRAM, Flags: 0x1c00, Size: 256 << 10, EraseSize: 64 << 10, WriteSize: 1}
	if got != want {
		t.Errorf("info = %+v, want %+v", got, want)
	}

	c := &Char{info: Info{Name: "x"}}
	a, err := c.eraseArg("MEMERASE", 0x10000, 0x20000)
	if err != nil {
		t.Fatal(err)
	}
	wantArg := binary.NativeEndian.AppendUint32(binary.NativeEndian.AppendUint32(nil, 0x10000), 0x20000)
	if gotArg := unsafe.Slice((*byte)(unsafe.Pointer(&a)), unsafe.Sizeof(a)); !bytes.Equal(gotArg, wantArg) {
		t.Errorf("erase_info_user = % x, want % x", gotArg, wantArg)
	}
	if _, err := c.eraseArg("MEMERASE", 1<<32-0x10000, 0x20000); err == nil {
		t.Error("an erase past 4 GiB was accepted")
	}
}
