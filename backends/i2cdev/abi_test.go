package i2cdev

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"syscall"
	"testing"
	"unsafe"
)

const ptrSize = unsafe.Sizeof(uintptr(0))

// rawBytes is the memory of *p as the kernel will copy it in.
func rawBytes[T any](p *T) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(p)), unsafe.Sizeof(*p))
}

// ptrBytes encodes a pointer as the kernel reads it on this target.
func ptrBytes(p unsafe.Pointer) []byte {
	b := make([]byte, ptrSize)
	if ptrSize == 8 {
		binary.NativeEndian.PutUint64(b, uint64(uintptr(p)))
	} else {
		binary.NativeEndian.PutUint32(b, uint32(uintptr(p)))
	}
	return b
}

func u16(v uint16) []byte { return binary.NativeEndian.AppendUint16(nil, v) }
func u32(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// TestLayout checks the structures against the C layouts of
// include/uapi/linux/i2c.h and i2c-dev.h for this target's pointer size.
func TestLayout(t *testing.T) {
	var m i2cMsg
	var rd rdwrIoctlData
	var sm smbusIoctlData
	var d smbusData
	round := func(n uintptr) uintptr { return (n + ptrSize - 1) / ptrSize * ptrSize }
	tests := []struct {
		name      string
		got, want uintptr
	}{
		{"i2c_msg.addr", unsafe.Offsetof(m.addr), 0},
		{"i2c_msg.flags", unsafe.Offsetof(m.flags), 2},
		{"i2c_msg.len", unsafe.Offsetof(m.len), 4},
		{"i2c_msg.buf", unsafe.Offsetof(m.buf), 8},         // 6 rounded up to 4 or 8
		{"sizeof(i2c_msg)", unsafe.Sizeof(m), 8 + ptrSize}, // 12 or 16
		{"i2c_rdwr_ioctl_data.msgs", unsafe.Offsetof(rd.msgs), 0},
		{"i2c_rdwr_ioctl_data.nmsgs", unsafe.Offsetof(rd.nmsgs), ptrSize},
		{"sizeof(i2c_rdwr_ioctl_data)", unsafe.Sizeof(rd), round(ptrSize + 4)}, // 8 or 16
		{"i2c_smbus_ioctl_data.read_write", unsafe.Offsetof(sm.readWrite), 0},
		{"i2c_smbus_ioctl_data.command", unsafe.Offsetof(sm.command), 1},
		{"i2c_smbus_ioctl_data.size", unsafe.Offsetof(sm.size), 4},
		{"i2c_smbus_ioctl_data.data", unsafe.Offsetof(sm.data), 8},
		{"sizeof(i2c_smbus_ioctl_data)", unsafe.Sizeof(sm), 8 + ptrSize}, // 12 or 16
		{"sizeof(union i2c_smbus_data)", unsafe.Sizeof(d), 34},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("%s = %d, want %d (pointer size %d)", tc.name, tc.got, tc.want, ptrSize)
		}
	}
	// Values the kernel headers fix.
	consts := []struct {
		name      string
		got, want uint64
	}{
		{"I2C_SLAVE", ioctlSlave, 0x0703},
		{"I2C_FUNCS", ioctlFuncs, 0x0705},
		{"I2C_RDWR", ioctlRdwr, 0x0707},
		{"I2C_SMBUS", ioctlSMBus, 0x0720},
		{"I2C_M_RD", msgRead, 1},
		{"I2C_FUNC_I2C", FuncI2C, 1},
		{"I2C_FUNC_SMBUS_QUICK", FuncSMBusQuick, 0x10000},
		{"I2C_FUNC_SMBUS_WRITE_BYTE", FuncSMBusWriteByte, 0x40000},
		{"I2C_FUNC_SMBUS_READ_BYTE_DATA", FuncSMBusReadByteData, 0x80000},
		{"I2C_FUNC_SMBUS_WRITE_BYTE_DATA", FuncSMBusWriteByteData, 0x100000},
		{"I2C_FUNC_SMBUS_READ_I2C_BLOCK", FuncSMBusReadI2CBlock, 0x4000000},
		{"I2C_FUNC_SMBUS_WRITE_I2C_BLOCK", FuncSMBusWriteI2CBlock, 0x8000000},
		{"I2C_SMBUS_QUICK", smbusQuick, 0},
		{"I2C_SMBUS_BYTE", smbusByte, 1},
		{"I2C_SMBUS_BYTE_DATA", smbusByteData, 2},
		{"I2C_SMBUS_I2C_BLOCK_DATA", smbusI2CBlockData, 8},
		{"I2C_SMBUS_READ", smbusRead, 1},
		{"I2C_SMBUS_WRITE", smbusWrite, 0},
	}
	for _, c := range consts {
		if c.got != c.want {
			t.Errorf("%s = %#x, want %#x", c.name, c.got, c.want)
		}
	}
}

// TestLayoutAsC compares the layouts with what gcc gives for the kernel's
// own headers (linux-libc-dev 6.1), compiled for x86-64 and with -m32 for
// i386, offsetof and sizeof of each member: a table per pointer size, so a
// 32-bit build (386, arm, mips) is checked against the 32-bit column. ARM
// EABI and MIPS o32 give the same numbers as i386 (reasoned from their
// ABIs, not compiled here: no member is wider than a pointer, so each sits
// at its natural alignment on all three). On a 64-bit kernel, i2c-dev's
// compat ioctl reads exactly this 32-bit layout (struct i2c_msg32). I2C_FUNCS fills an unsigned long, which is
// Go's uint on every Linux port (4 bytes on 32-bit: reading it into a
// uint64 would put the mask in the high half on big-endian MIPS).
func TestLayoutAsC(t *testing.T) {
	type layout struct {
		msgBuf, msgSize, rdwrNmsgs, rdwrSize, smbusData, smbusSize, ulong uintptr
	}
	c := map[uintptr]layout{
		8: {msgBuf: 8, msgSize: 16, rdwrNmsgs: 8, rdwrSize: 16, smbusData: 8, smbusSize: 16, ulong: 8},
		4: {msgBuf: 8, msgSize: 12, rdwrNmsgs: 4, rdwrSize: 8, smbusData: 8, smbusSize: 12, ulong: 4},
	}[ptrSize]
	var m i2cMsg
	var rd rdwrIoctlData
	var sm smbusIoctlData
	got := layout{
		msgBuf: unsafe.Offsetof(m.buf), msgSize: unsafe.Sizeof(m),
		rdwrNmsgs: unsafe.Offsetof(rd.nmsgs), rdwrSize: unsafe.Sizeof(rd),
		smbusData: unsafe.Offsetof(sm.data), smbusSize: unsafe.Sizeof(sm),
		ulong: unsafe.Sizeof(uint(0)),
	}
	if got != c {
		t.Errorf("pointer size %d: layout %+v, gcc gives %+v", ptrSize, got, c)
	}
}

// msgBytes is the expected memory of one struct i2c_msg.
func msgBytes(addr, flags uint16, buf []byte) []byte {
	// addr, flags, len, two bytes of padding, then buf at 8 on 32-bit
	// and 64-bit targets alike.
	return cat(u16(addr), u16(flags), u16(uint16(len(buf))), []byte{0, 0}, ptrBytes(bufPtr(buf)))
}

func TestBuildMsgs(t *testing.T) {
	w := []byte{0x00, 0x10}
	w1 := []byte{0x42}
	r := make([]byte, 16)
	big := make([]byte, MaxMsgLen+1)
	full := make([]byte, MaxMsgLen)
	type want struct {
		flags uint16
		buf   []byte
	}
	tests := []struct {
		name    string
		addr    uint16
		w, r    []byte
		want    []want
		wantErr string
	}{
		{name: "write then read", addr: 0x50, w: w, r: r, want: []want{{0, w}, {msgRead, r}}},
		{name: "write only", addr: 0x50, w: w1, want: []want{{0, w1}}},
		{name: "read only", addr: 0x57, r: r, want: []want{{msgRead, r}}},
		{name: "empty r is no read", addr: 0x50, w: w1, r: []byte{}, want: []want{{0, w1}}},
		{name: "probe is one empty write", addr: 0x50, want: []want{{0, nil}}},
		{name: "largest message", addr: 0x50, r: full, want: []want{{msgRead, full}}},
		{name: "10-bit address refused", addr: 0x80, w: w1, wantErr: "not a 7-bit address"},
		{name: "too long write", addr: 0x50, w: big, wantErr: "at most 8192"},
		{name: "too long read", addr: 0x50, w: w, r: big, wantErr: "at most 8192"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			msgs, err := buildMsgs(tc.addr, tc.w, tc.r)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, syscall.EINVAL) {
					t.Fatalf("err = %v, want EINVAL with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(msgs) != len(tc.want) {
				t.Fatalf("%d messages, want %d", len(msgs), len(tc.want))
			}
			var wantMem []byte
			for _, m := range tc.want {
				wantMem = append(wantMem, msgBytes(tc.addr, m.flags, m.buf)...)
			}
			gotMem := unsafe.Slice((*byte)(unsafe.Pointer(&msgs[0])), uintptr(len(msgs))*unsafe.Sizeof(msgs[0]))
			if !bytes.Equal(gotMem, wantMem) {
				t.Errorf("i2c_msg array:\n got % x\nwant % x", gotMem, wantMem)
			}

			arg := rdwrArg(msgs)
			wantArg := cat(ptrBytes(unsafe.Pointer(&msgs[0])), u32(uint32(len(msgs))))
			for uintptr(len(wantArg)) < unsafe.Sizeof(arg) {
				wantArg = append(wantArg, 0) // trailing padding on 64-bit
			}
			if got := rawBytes(&arg); !bytes.Equal(got, wantArg) {
				t.Errorf("i2c_rdwr_ioctl_data:\n got % x\nwant % x", got, wantArg)
			}
		})
	}
}

// Funcs masks of real adapters.
const (
	// i2c-stub's default (drivers/i2c/i2c-stub.c, STUB_FUNC_DEFAULT).
	funcsStub = FuncSMBusQuick | FuncSMBusByte | FuncSMBusByteData |
		FuncSMBusReadWordData | FuncSMBusWriteWordData | FuncSMBusI2CBlock
	// An SMBus controller with byte transactions only.
	funcsByteOnly = FuncSMBusQuick | FuncSMBusByte | FuncSMBusByteData
	// One with I2C block reads but no I2C block writes (as some PC
	// controllers).
	funcsReadBlock = FuncSMBusQuick | FuncSMBusByte | FuncSMBusByteData | FuncSMBusReadI2CBlock
)

func TestPlanSMBus(t *testing.T) {
	seq := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(0xa0 + i)
		}
		return b
	}
	tests := []struct {
		name      string
		funcs     uint64
		w         []byte
		rlen      int
		rw        uint8
		size      uint32
		command   uint8
		data      []byte // the start of union i2c_smbus_data passed in; nil: data is NULL
		desc      string
		wantError string
	}{
		{name: "read block", funcs: funcsStub, w: []byte{0x10}, rlen: 16,
			rw: smbusRead, size: smbusI2CBlockData, command: 0x10, data: []byte{16}, desc: "SMBus read I2C block data (command 0x10, 16 bytes)"},
		{name: "read 32", funcs: funcsStub, w: []byte{0xe0}, rlen: 32,
			rw: smbusRead, size: smbusI2CBlockData, command: 0xe0, data: []byte{32}},
		{name: "read 1 as block", funcs: funcsStub, w: []byte{0x00}, rlen: 1,
			rw: smbusRead, size: smbusI2CBlockData, command: 0x00, data: []byte{1}},
		{name: "read 1 as byte data", funcs: funcsByteOnly, w: []byte{0x07}, rlen: 1,
			rw: smbusRead, size: smbusByteData, command: 0x07, data: []byte{0}, desc: "SMBus read byte data (command 0x07)"},
		{name: "write block", funcs: funcsStub, w: append([]byte{0x20}, seq(8)...),
			rw: smbusWrite, size: smbusI2CBlockData, command: 0x20, data: append([]byte{8}, seq(8)...), desc: "SMBus write I2C block data (command 0x20, 8 bytes)"},
		{name: "write 32", funcs: funcsStub, w: append([]byte{0x20}, seq(32)...),
			rw: smbusWrite, size: smbusI2CBlockData, command: 0x20, data: append([]byte{32}, seq(32)...)},
		{name: "write 1 as block", funcs: funcsStub, w: []byte{0x20, 0x5a},
			rw: smbusWrite, size: smbusI2CBlockData, command: 0x20, data: []byte{1, 0x5a}},
		{name: "write 1 as byte data", funcs: funcsReadBlock, w: []byte{0x21, 0x5a},
			rw: smbusWrite, size: smbusByteData, command: 0x21, data: []byte{0x5a, 0}, desc: "SMBus write byte data (command 0x21)"},
		{name: "command alone is write byte", funcs: funcsStub, w: []byte{0x30},
			rw: smbusWrite, size: smbusByte, command: 0x30, desc: "SMBus write byte 0x30"},
		{name: "nothing is quick write", funcs: funcsStub,
			rw: smbusWrite, size: smbusQuick, desc: "SMBus quick write"},

		{name: "read block missing", funcs: funcsByteOnly, w: []byte{0x10}, rlen: 2, wantError: "lacks I2C_FUNC_SMBUS_READ_I2C_BLOCK"},
		{name: "write block missing", funcs: funcsReadBlock, w: []byte{0x10, 1, 2}, wantError: "lacks I2C_FUNC_SMBUS_WRITE_I2C_BLOCK"},
		{name: "write byte missing", funcs: FuncSMBusI2CBlock, w: []byte{0x10}, wantError: "lacks I2C_FUNC_SMBUS_WRITE_BYTE"},
		{name: "quick missing", funcs: FuncSMBusI2CBlock, wantError: "lacks I2C_FUNC_SMBUS_QUICK"},
		{name: "read 33", funcs: funcsStub, w: []byte{0x10}, rlen: 33, wantError: "at most 32 bytes"},
		{name: "write 33", funcs: funcsStub, w: append([]byte{0x10}, seq(33)...), wantError: "at most 32 data bytes"},
		{name: "16-bit address read", funcs: funcsStub, w: []byte{0x01, 0x00}, rlen: 16, wantError: "plain I2C adapter"},
		{name: "current-address read", funcs: funcsStub, rlen: 4, wantError: "current-address read"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := make([]byte, tc.rlen)
			x, err := planSMBus(tc.funcs, tc.w, r)
			if tc.wantError != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantError) {
					t.Fatalf("err = %v, want one with %q", err, tc.wantError)
				}
				if !errors.Is(err, syscall.EOPNOTSUPP) || !errors.Is(err, errors.ErrUnsupported) {
					t.Errorf("err = %v: does not match EOPNOTSUPP and errors.ErrUnsupported", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			arg := x.arg()
			want := cat([]byte{tc.rw, tc.command, 0, 0}, u32(tc.size))
			if tc.data != nil {
				want = append(want, ptrBytes(unsafe.Pointer(&x.data))...)
				if !bytes.HasPrefix(x.data[:], tc.data) {
					t.Errorf("data = % x, want it to start % x", x.data[:len(tc.data)+1], tc.data)
				}
			} else {
				want = append(want, ptrBytes(nil)...)
			}
			if got := rawBytes(&arg); !bytes.Equal(got, want) {
				t.Errorf("i2c_smbus_ioctl_data:\n got % x\nwant % x", got, want)
			}
			if x.readLen != tc.rlen {
				t.Errorf("readLen = %d, want %d", x.readLen, tc.rlen)
			}
			if tc.desc != "" && x.String() != tc.desc {
				t.Errorf("String() = %q, want %q", x.String(), tc.desc)
			}
		})
	}
}

func TestSMBusResult(t *testing.T) {
	r := make([]byte, 4)
	x, err := planSMBus(funcsStub, []byte{0}, r)
	if err != nil {
		t.Fatal(err)
	}
	copy(x.data[:], []byte{4, 1, 2, 3, 4, 5})
	if err := x.result(r); err != nil || !bytes.Equal(r, []byte{1, 2, 3, 4}) {
		t.Errorf("result: %v, r = % x", err, r)
	}
	x.data[0] = 3 // the adapter says it read less
	if err := x.result(r); !errors.Is(err, syscall.EPROTO) {
		t.Errorf("short block: err = %v, want EPROTO", err)
	}

	r1 := make([]byte, 1)
	x, err = planSMBus(funcsByteOnly, []byte{9}, r1)
	if err != nil {
		t.Fatal(err)
	}
	x.data[0] = 0x77
	if err := x.result(r1); err != nil || r1[0] != 0x77 {
		t.Errorf("byte data result: %v, r = % x", err, r1)
	}
}
