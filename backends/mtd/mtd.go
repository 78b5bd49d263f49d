// Package mtd provides nvmem devices on NOR flash reached through the
// kernel's MTD layer (/dev/mtdN), the way U-Boot's fw_setenv and
// libubootenv reach a boot environment kept in flash.
//
// The flash is reached through Chip, a small interface with two
// implementations: Char, the kernel's MTD character device driven with
// pread, pwrite and the MEM* ioctls, and the simulated NOR flash of package
// mtdtest.
//
// Media. The geometry comes from MEMGETINFO. NOR flash (MTD_NORFLASH) is
// served read-write. MTD_RAM (the kernel's mtdram test module) is treated
// as NOR (SPEC 8): its writes are plain copies, which the erase-aware
// writes below handle as well. MTD_ROM, and a device whose flags lack
// MTD_WRITEABLE, are served read-only. NAND (MTD_NANDFLASH,
// MTD_MLCNANDFLASH) is refused with an error wrapping
// nvcore.ErrNotSupported: writing NAND needs bad-block skipping, ECC
// handling and pages written once between erases, none of which this
// package does yet. UBI volumes (use the UBI volume's own device) and
// DataFlash are refused too. MTD_NO_ERASE is ignored: a NOR-like memory
// that needs no erase still accepts one.
//
// Writes are erase-block aware. For each erase block a write touches, the
// provider reads the block, merges the new bytes, and compares: an
// unchanged block costs nothing; a block whose new content only clears bits
// (new & old == new) is programmed without an erase; any other block is
// erased (MEMERASE) and programmed. A block is programmed in one
// operation of whole write-size units, from the first unit that differs
// from what the flash holds (after an erase: the first that is not all
// 0xFF) to the last; the units between that do not differ are programmed
// with what they hold, which changes nothing. The
// block is then read back and compared with what was meant; a difference
// fails the write with an error wrapping nvcore.ErrIO (EIO), and nothing
// else is touched: no retry, no other block.
//
// Locks. A block that MEMISLOCKED reports locked is unlocked (MEMUNLOCK)
// for its write and locked again (MEMLOCK) after it, as U-Boot's env tools
// do. A block that cannot be unlocked fails the write, with an error
// wrapping nvcore.ErrReadOnly, before anything is erased; one that cannot
// be locked again after a good write fails it with an error wrapping
// nvcore.ErrIO that says the data was written. A flash without locking
// (MEMISLOCKED fails with EOPNOTSUPP or ENOTTY) has no locked blocks.
// Locking on SPI NOR covers ranges from one end of the chip: locking one
// block again in the middle of it may be refused, and is then reported.
//
// Removal. The read and write transfer sizes are the erase size, so the
// nvmem core cuts long I/O into erase-block-aligned chunks, each in a read
// section of its own: a detach waits for one erase-block cycle (read,
// erase, program, verify) at most. The provider is Exclusive: one transfer
// reaches the flash at a time. Errors wrapping ENODEV or ESHUTDOWN (the
// device went away) are passed on as they are, so the core removes the
// device.
package mtd

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"
	"syscall"

	"github.com/nvmemfs/nvmemfs/nvcore"
)

// MTD types, the type field of struct mtd_info_user
// (include/uapi/mtd/mtd-abi.h).
const (
	TypeAbsent       = 0      // MTD_ABSENT
	TypeRAM          = 1      // MTD_RAM
	TypeROM          = 2      // MTD_ROM
	TypeNORFlash     = 3      // MTD_NORFLASH
	TypeNANDFlash    = 4      // MTD_NANDFLASH
	TypeDataFlash    = 6      // MTD_DATAFLASH
	TypeUBIVolume    = 7      // MTD_UBIVOLUME
	TypeMLCNANDFlash = 8      // MTD_MLCNANDFLASH
	FlagWriteable    = 0x400  // MTD_WRITEABLE: the device can be written
	FlagBitWriteable = 0x800  // MTD_BIT_WRITEABLE: single bits can be flipped
	FlagNoErase      = 0x1000 // MTD_NO_ERASE: no erase necessary
	FlagPowerUpLock  = 0x2000 // MTD_POWERUP_LOCK: always locked after reset
)

// maxEraseSize bounds a reported erase size: the provider keeps two
// buffers of one erase block.
const maxEraseSize = 64 << 20

// TypeName names an MTD type as mtd-utils' mtdinfo does.
func TypeName(t uint8) string {
	switch t {
	case TypeAbsent:
		return "absent"
	case TypeRAM:
		return "ram"
	case TypeROM:
		return "rom"
	case TypeNORFlash:
		return "nor"
	case TypeNANDFlash:
		return "nand"
	case TypeDataFlash:
		return "dataflash"
	case TypeUBIVolume:
		return "ubi"
	case TypeMLCNANDFlash:
		return "mlc-nand"
	}
	return fmt.Sprintf("type %d", t)
}

// Info is the geometry of a flash, as MEMGETINFO reports it.
type Info struct {
	// Name is used in messages: the device path, or the simulator's name.
	Name      string
	Type      uint8  // TypeNORFlash, TypeRAM, ...
	Flags     uint32 // FlagWriteable, ...
	Size      int64  // bytes
	EraseSize int    // bytes in an erase block
	WriteSize int    // the smallest unit a program writes: 1 on NOR
	OOBSize   int    // out-of-band bytes a page (NAND)
}

// Chip is a flash as the provider reaches it. Offsets and lengths of Erase,
// IsLocked, Lock and Unlock are whole erase blocks; those of WriteAt are
// whole write-size units. Calls come one at a time.
type Chip interface {
	// Info returns the geometry. It does not change.
	Info() Info
	// ReadAt reads len(p) bytes at off, as io.ReaderAt.
	ReadAt(p []byte, off int64) (int, error)
	// Erase sets length bytes at off to 0xFF.
	Erase(off, length int64) error
	// WriteAt programs p at off. On NOR, programming can only clear bits:
	// the result is the old content AND p.
	WriteAt(p []byte, off int64) (int, error)
	// IsLocked reports whether any of the blocks in [off, off+length) is
	// locked. A chip without locking returns an error wrapping
	// syscall.EOPNOTSUPP or syscall.ENOTTY.
	IsLocked(off, length int64) (bool, error)
	// Lock and Unlock change the lock state of the blocks in
	// [off, off+length).
	Lock(off, length int64) error
	Unlock(off, length int64) error
	// Close releases the chip.
	Close() error
}

// Options tune the provider.
type Options struct {
	// ReadOnly gives a provider without WriteAt.
	ReadOnly bool
}

// Flash is a writable NOR flash. It owns its chip: Close closes it.
type Flash struct {
	chip Chip
	info Info
	es   int // erase size
	ws   int // write size

	// mu keeps one erase-block cycle at a time on the chip; old and buf
	// are guarded by it.
	mu       sync.Mutex
	old, buf []byte

	closeOnce sync.Once
	closeErr  error
}

// ReadOnlyFlash is a flash served read-only: it has no WriteAt, so the
// core sees a provider that cannot write. It owns its chip.
type ReadOnlyFlash struct{ f *Flash }

var (
	_ nvcore.Provider           = (*Flash)(nil)
	_ nvcore.TransferSizer      = (*Flash)(nil)
	_ nvcore.WriteTransferSizer = (*Flash)(nil)
	_ nvcore.Exclusive          = (*Flash)(nil)
	_ io.WriterAt               = (*Flash)(nil)
	_ nvcore.Provider           = (*ReadOnlyFlash)(nil)
	_ nvcore.TransferSizer      = (*ReadOnlyFlash)(nil)
	_ nvcore.Exclusive          = (*ReadOnlyFlash)(nil)
)

// Open returns a provider for chip: a *Flash, or a *ReadOnlyFlash when
// o.ReadOnly is set or the chip cannot be written (MTD_ROM, no
// MTD_WRITEABLE). It refuses NAND, UBI volumes, DataFlash and geometry
// that makes no sense. On success the provider owns chip and closes it in
// Close; on error the caller still owns chip.
func Open(chip Chip, o Options) (nvcore.Provider, error) {
	if chip == nil {
		return nil, fmt.Errorf("%w: mtd: no chip", nvcore.ErrInvalid)
	}
	info := chip.Info()
	name := info.Name
	if name == "" {
		name = "mtd"
	}
	info.Name = name
	readOnly := o.ReadOnly || info.Flags&FlagWriteable == 0
	switch info.Type {
	case TypeNORFlash, TypeRAM:
	case TypeROM:
		readOnly = true
	case TypeNANDFlash, TypeMLCNANDFlash:
		return nil, fmt.Errorf("%w: %s is %s flash: NAND needs bad-block skipping and ECC handling, which nvmemfs does not do yet; only NOR flash (and mtdram, as NOR) is served",
			nvcore.ErrNotSupported, name, TypeName(info.Type))
	case TypeUBIVolume:
		return nil, fmt.Errorf("%w: %s is a UBI volume emulated as MTD: not supported, only NOR flash (and mtdram, as NOR) is served",
			nvcore.ErrNotSupported, name)
	case TypeDataFlash:
		return nil, fmt.Errorf("%w: %s is DataFlash: not supported yet, only NOR flash (and mtdram, as NOR) is served",
			nvcore.ErrNotSupported, name)
	default:
		return nil, fmt.Errorf("%w: %s: unknown MTD type %d", nvcore.ErrNotSupported, name, info.Type)
	}
	invalid := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", nvcore.ErrInvalid, name, fmt.Sprintf(format, args...))
	}
	switch {
	case info.Size <= 0:
		return nil, invalid("size %d", info.Size)
	case info.EraseSize <= 0 || info.EraseSize > maxEraseSize:
		return nil, invalid("erase size %d", info.EraseSize)
	case info.Size%int64(info.EraseSize) != 0:
		return nil, invalid("size %#x is not a multiple of the erase size %#x", info.Size, info.EraseSize)
	case info.WriteSize <= 0 || info.EraseSize%info.WriteSize != 0:
		return nil, invalid("write size %d does not divide the erase size %d", info.WriteSize, info.EraseSize)
	}
	f := &Flash{chip: chip, info: info, es: info.EraseSize, ws: info.WriteSize}
	if readOnly {
		return &ReadOnlyFlash{f}, nil
	}
	f.old = make([]byte, f.es)
	f.buf = make([]byte, f.es)
	return f, nil
}

// Info returns the geometry.
func (f *Flash) Info() Info { return f.info }

// Size is the size of the flash in bytes.
func (f *Flash) Size() int64 { return f.info.Size }

// TransferSize is the erase size: the core cuts reads into aligned chunks
// of one erase block, each in its own read section.
func (f *Flash) TransferSize() int { return f.es }

// WriteTransferSize is the erase size: the core cuts writes into
// erase-block-aligned chunks, so a removal waits for one erase-block cycle
// at most.
func (f *Flash) WriteTransferSize() int { return f.es }

// Exclusive tells the core that one transfer at a time reaches the flash.
func (f *Flash) Exclusive() {}

func (f *Flash) checkRange(op string, n int, off int64) error {
	if off < 0 || off > f.info.Size || int64(n) > f.info.Size-off {
		return fmt.Errorf("%w: %s: %s of %d bytes at %#x outside the flash (%#x bytes)", nvcore.ErrInvalid, f.info.Name, op, n, off, f.info.Size)
	}
	return nil
}

// ReadAt reads len(p) bytes at off.
func (f *Flash) ReadAt(p []byte, off int64) (int, error) {
	if err := f.checkRange("read", len(p), off); err != nil {
		return 0, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.readFull(p, off); err != nil {
		return 0, err
	}
	return len(p), nil
}

// readFull fills p from off or fails.
func (f *Flash) readFull(p []byte, off int64) error {
	n, err := f.chip.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		return fmt.Errorf("%w: %s: read %d of %d bytes at %#x", nvcore.ErrIO, f.info.Name, n, len(p), off)
	}
	return fmt.Errorf("%s: read of %d bytes at %#x: %w", f.info.Name, len(p), off, err)
}

// WriteAt writes p at off, one erase-block cycle for each block it touches
// (see the package documentation). It returns the bytes of the blocks
// written before the first failure.
func (f *Flash) WriteAt(p []byte, off int64) (int, error) {
	if err := f.checkRange("write", len(p), off); err != nil {
		return 0, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	done := 0
	for done < len(p) {
		pos := off + int64(done)
		start := pos - pos%int64(f.es)
		at := int(pos - start)
		n := min(len(p)-done, f.es-at)
		if err := f.writeBlock(start, at, p[done:done+n]); err != nil {
			return done, err
		}
		done += n
	}
	return done, nil
}

// writeBlock writes data at offset at into the erase block that starts at
// start: read, merge, erase if a bit must rise, program, verify.
func (f *Flash) writeBlock(start int64, at int, data []byte) (err error) {
	old, want := f.old, f.buf
	if err := f.readFull(old, start); err != nil {
		return fmt.Errorf("reading the erase block before writing it: %w", err)
	}
	copy(want, old)
	copy(want[at:], data)
	if bytes.Equal(want, old) {
		return nil
	}
	erase := false
	for i := range want {
		if want[i]&^old[i] != 0 {
			erase = true
			break
		}
	}

	locked, err := f.isLocked(start)
	if err != nil {
		return err
	}
	if locked {
		if err := f.chip.Unlock(start, int64(f.es)); err != nil {
			return fmt.Errorf("%w: %s: the erase block at %#x is locked and could not be unlocked: %w", nvcore.ErrReadOnly, f.info.Name, start, err)
		}
		defer func() {
			if lerr := f.chip.Lock(start, int64(f.es)); lerr != nil && err == nil {
				err = fmt.Errorf("%w: %s: the erase block at %#x was written, but could not be locked again: %w", nvcore.ErrIO, f.info.Name, start, lerr)
			}
		}()
	}

	if erase {
		if err := f.chip.Erase(start, int64(f.es)); err != nil {
			return fmt.Errorf("%s: erase of the block at %#x: %w", f.info.Name, start, err)
		}
	}
	// Program the span of write-size units from the first to the last that
	// differs from what the flash now holds (the old content, or 0xFF after
	// an erase), in one operation. The units between them that do not
	// differ are programmed with what they hold, which changes nothing.
	first, last := -1, -1
	for u := 0; u < f.es; u += f.ws {
		unit := want[u : u+f.ws]
		var dirty bool
		if erase {
			dirty = !allFF(unit)
		} else {
			dirty = !bytes.Equal(unit, old[u:u+f.ws])
		}
		if dirty {
			if first < 0 {
				first = u
			}
			last = u + f.ws
		}
	}
	if first >= 0 {
		if err := f.program(want[first:last], start+int64(first)); err != nil {
			return err
		}
	}

	// Verify: the block must hold what was meant, all of it.
	if err := f.readFull(old, start); err != nil {
		return fmt.Errorf("reading the erase block back after writing it: %w", err)
	}
	if i := mismatch(old, want); i >= 0 {
		return fmt.Errorf("%w: %s: the erase block at %#x does not read back as written: byte %#x is %#02x, want %#02x",
			nvcore.ErrIO, f.info.Name, start, start+int64(i), old[i], want[i])
	}
	return nil
}

func (f *Flash) program(p []byte, off int64) error {
	n, err := f.chip.WriteAt(p, off)
	if err != nil {
		return fmt.Errorf("%s: program of %d bytes at %#x: %w", f.info.Name, len(p), off, err)
	}
	if n != len(p) {
		return fmt.Errorf("%w: %s: programmed %d of %d bytes at %#x", nvcore.ErrIO, f.info.Name, n, len(p), off)
	}
	return nil
}

// isLocked asks whether the block at start is locked; a chip without
// locking has no locked blocks.
func (f *Flash) isLocked(start int64) (bool, error) {
	locked, err := f.chip.IsLocked(start, int64(f.es))
	if err == nil {
		return locked, nil
	}
	if errors.Is(err, syscall.EOPNOTSUPP) || errors.Is(err, syscall.ENOTTY) {
		return false, nil
	}
	return false, fmt.Errorf("%s: lock state of the erase block at %#x: %w", f.info.Name, start, err)
}

func allFF(b []byte) bool {
	for _, c := range b {
		if c != 0xff {
			return false
		}
	}
	return true
}

// mismatch returns the first index where a and b differ, or -1.
func mismatch(a, b []byte) int {
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}

// Close closes the chip. Later calls return the first call's result.
func (f *Flash) Close() error {
	f.closeOnce.Do(func() { f.closeErr = f.chip.Close() })
	return f.closeErr
}

// Info returns the geometry.
func (r *ReadOnlyFlash) Info() Info { return r.f.info }

// Size is the size of the flash in bytes.
func (r *ReadOnlyFlash) Size() int64 { return r.f.Size() }

// TransferSize is the erase size, as for Flash.
func (r *ReadOnlyFlash) TransferSize() int { return r.f.TransferSize() }

// ReadAt reads as Flash.ReadAt does.
func (r *ReadOnlyFlash) ReadAt(p []byte, off int64) (int, error) { return r.f.ReadAt(p, off) }

// Exclusive: as Flash's.
func (r *ReadOnlyFlash) Exclusive() {}

// Close closes the chip.
func (r *ReadOnlyFlash) Close() error { return r.f.Close() }
