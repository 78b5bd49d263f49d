// Package mtdtest simulates a NOR flash behind the mtd.Chip interface, for
// testing the mtd provider without hardware, as at24test does for I2C
// EEPROMs.
//
// The simulated flash behaves as NOR does: an erase sets whole erase
// blocks to 0xFF; programming can only clear bits, so the result is the old
// content AND the new bytes; programs must cover whole write-size units
// (EINVAL otherwise) and erases whole erase blocks (EINVAL otherwise);
// erase and program take time (Config.EraseTime a block, Config.ProgramTime
// a write-size unit) during which the chip does nothing else; blocks can be
// locked, and an erase or program touching a locked block fails with EROFS
// and changes nothing, as CFI chips report it. Config.PlainWrites gives the
// kernel's mtdram instead: programs copy the bytes.
//
// Around the chip: counters (erased blocks, program operations, lock
// operations), a hook that runs before every operation (to hold one in
// flight or fail it), stuck bits that a program cannot clear (a worn cell,
// for verify failures), and power cuts.
//
// Power cuts. CutPowerAfter(n, torn) cuts the power at the n-th erase or
// program operation from then on (each Erase and each WriteAt call is one
// step). Untorn, that step completes and the power goes after it. Torn, the
// step is interrupted halfway, in this chosen and deterministic in-between
// state: a torn erase has set the first half of each of its blocks to 0xFF
// and left the second half as it was; a torn program has programmed the
// first half of its write-size units (rounded down) and not the rest. (A
// real erase or program cut short leaves bits in no predictable state,
// some of them reading differently on each read; a fixed state keeps tests
// repeatable while still being neither the old content nor the new.) The
// torn step returns ErrPowerCut. After the cut every operation fails with
// ErrPowerCut, which wraps syscall.EIO, and the content stays as the cut
// left it; Bytes shows it, and PowerOn lets the chip work again, its
// content and lock state unchanged.
package mtdtest

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nvmemfs/nvmemfs/backends/mtd"
)

// ErrPowerCut is the error of every operation after a power cut, and of the
// torn one. It wraps syscall.EIO.
var ErrPowerCut = fmt.Errorf("mtdtest: power cut: %w", syscall.EIO)

// Config describes the simulated flash.
type Config struct {
	// Name is what Info().Name says; default "mtdtest".
	Name string
	// Size in bytes, a multiple of EraseSize.
	Size int64
	// EraseSize is the erase block in bytes; default 4096.
	EraseSize int
	// WriteSize is the program unit in bytes, dividing EraseSize; default 1.
	WriteSize int
	// Type is what Info reports; default mtd.TypeNORFlash.
	Type uint8
	// Flags is what Info reports; zero means MTD_WRITEABLE |
	// MTD_BIT_WRITEABLE, as NOR flash reports.
	Flags uint32
	// EraseTime is how long erasing one block takes; ProgramTime how long
	// programming one write-size unit takes. Zero: instant.
	EraseTime, ProgramTime time.Duration
	// NoLocking makes IsLocked, Lock and Unlock fail with EOPNOTSUPP, as
	// the kernel answers for a chip without locking (mtdram).
	NoLocking bool
	// PlainWrites makes a program copy the bytes instead of ANDing them
	// in, as the kernel's mtdram does.
	PlainWrites bool
}

// Op names an operation for the hook.
type Op int

// The operations of the chip.
const (
	OpRead Op = iota
	OpErase
	OpProgram
	OpIsLocked
	OpLock
	OpUnlock
)

func (o Op) String() string {
	switch o {
	case OpRead:
		return "read"
	case OpErase:
		return "erase"
	case OpProgram:
		return "program"
	case OpIsLocked:
		return "is-locked"
	case OpLock:
		return "lock"
	case OpUnlock:
		return "unlock"
	}
	return fmt.Sprintf("op %d", int(o))
}

// Stats counts what the chip did.
type Stats struct {
	// Reads counts ReadAt calls that succeeded.
	Reads int
	// Erases counts erase blocks erased (a torn erase counts).
	Erases int
	// Programs counts WriteAt calls that programmed (a torn one counts);
	// BytesProgrammed the bytes they covered.
	Programs, BytesProgrammed int
	// LockQueries, Locks and Unlocks count IsLocked, Lock and Unlock calls
	// that succeeded.
	LockQueries, Locks, Unlocks int
	// Refused counts operations refused: misaligned, out of range, on a
	// locked block, after a power cut or after Close.
	Refused int
}

// Flash is a simulated NOR flash. It implements mtd.Chip and is safe for
// concurrent use: operations run one at a time, as on a real chip.
type Flash struct {
	cfg Config

	busy sync.Mutex // the chip: held for a whole operation, its time included

	mu      sync.Mutex // guards what follows
	mem     []byte
	stuck   map[int64]byte // bits that stay 1
	locked  []bool         // by erase block
	stats   Stats
	closed  bool
	cut     bool
	cutAt   int // steps left before the cut; 0: none planned
	cutTorn bool

	hook atomic.Pointer[func(op Op, off, length int64) error]
}

var _ mtd.Chip = (*Flash)(nil)

// New returns a flash as c describes it, erased (every byte 0xFF) and
// unlocked.
func New(c Config) (*Flash, error) {
	if c.Name == "" {
		c.Name = "mtdtest"
	}
	if c.EraseSize == 0 {
		c.EraseSize = 4096
	}
	if c.WriteSize == 0 {
		c.WriteSize = 1
	}
	if c.Type == 0 {
		c.Type = mtd.TypeNORFlash
	}
	if c.Flags == 0 {
		c.Flags = mtd.FlagWriteable | mtd.FlagBitWriteable
	}
	switch {
	case c.EraseSize < 0:
		return nil, fmt.Errorf("mtdtest: erase size %d", c.EraseSize)
	case c.WriteSize < 0 || c.EraseSize%c.WriteSize != 0:
		return nil, fmt.Errorf("mtdtest: write size %d does not divide the erase size %d", c.WriteSize, c.EraseSize)
	case c.Size <= 0 || c.Size%int64(c.EraseSize) != 0:
		return nil, fmt.Errorf("mtdtest: size %d is not a multiple of the erase size %d", c.Size, c.EraseSize)
	}
	f := &Flash{
		cfg:    c,
		mem:    make([]byte, c.Size),
		stuck:  map[int64]byte{},
		locked: make([]bool, c.Size/int64(c.EraseSize)),
	}
	for i := range f.mem {
		f.mem[i] = 0xff
	}
	return f, nil
}

// MustNew is New for tests: it panics on an invalid Config.
func MustNew(c Config) *Flash {
	f, err := New(c)
	if err != nil {
		panic(err)
	}
	return f
}

// Config returns the configuration, defaults filled in.
func (f *Flash) Config() Config { return f.cfg }

// Info returns the geometry as MEMGETINFO would.
func (f *Flash) Info() mtd.Info {
	return mtd.Info{
		Name:      f.cfg.Name,
		Type:      f.cfg.Type,
		Flags:     f.cfg.Flags,
		Size:      f.cfg.Size,
		EraseSize: f.cfg.EraseSize,
		WriteSize: f.cfg.WriteSize,
	}
}

// SetHook installs fn to run before every operation, outside the chip's
// locks; an error it returns is the operation's result, and the operation
// is not done (nor counted). nil removes the hook.
func (f *Flash) SetHook(fn func(op Op, off, length int64) error) {
	if fn == nil {
		f.hook.Store(nil)
		return
	}
	f.hook.Store(&fn)
}

// Stats returns the counters.
func (f *Flash) Stats() Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stats
}

// ResetStats zeroes the counters.
func (f *Flash) ResetStats() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stats = Stats{}
}

// Bytes returns a copy of the content, whatever the power.
func (f *Flash) Bytes() []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]byte(nil), f.mem...)
}

// Load sets the content at off to data directly, as a programmer in the
// factory would: no erase needed, nothing counted, locks ignored.
func (f *Flash) Load(off int64, data []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	copy(f.mem[off:], data)
}

// SetStuck makes the bits of mask at off stuck at 1: erasing sets them, no
// program clears them. A zero mask frees them.
func (f *Flash) SetStuck(off int64, mask byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if mask == 0 {
		delete(f.stuck, off)
		return
	}
	f.stuck[off] = mask
	f.mem[off] |= mask
}

// Locked reports whether the erase block holding off is locked.
func (f *Flash) Locked(off int64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.locked[off/int64(f.cfg.EraseSize)]
}

// CutPowerAfter plans a power cut at the n-th erase or program operation
// from now (n >= 1): after it completes, or halfway through it when torn.
// n <= 0 cancels a planned cut.
func (f *Flash) CutPowerAfter(n int, torn bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cutAt, f.cutTorn = max(n, 0), torn
}

// CutPower cuts the power now.
func (f *Flash) CutPower() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cut, f.cutAt = true, 0
}

// PowerCut reports whether the power is cut.
func (f *Flash) PowerCut() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cut
}

// PowerOn restores the power: the chip works again, with the content and
// lock state the cut left.
func (f *Flash) PowerOn() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cut, f.cutAt = false, 0
}

// begin runs the hook, takes the chip and checks that it can work. On
// success the caller holds busy and must call f.busy.Unlock.
func (f *Flash) begin(op Op, off, length int64) error {
	if h := f.hook.Load(); h != nil {
		if err := (*h)(op, off, length); err != nil {
			return err
		}
	}
	f.busy.Lock()
	f.mu.Lock()
	defer f.mu.Unlock()
	var err error
	switch {
	case f.closed:
		err = fmt.Errorf("mtdtest: %s after Close: %w", op, os.ErrClosed)
	case f.cut:
		err = ErrPowerCut
	case off < 0 || length < 0 || off > f.cfg.Size || length > f.cfg.Size-off:
		err = fmt.Errorf("mtdtest: %s of %d bytes at %#x outside the flash (%#x bytes): %w", op, length, off, f.cfg.Size, syscall.EINVAL)
	}
	if err != nil {
		f.stats.Refused++
		f.busy.Unlock()
	}
	return err
}

// refuse counts a refused operation and returns err; mu is held.
func (f *Flash) refuse(err error) error {
	f.stats.Refused++
	return err
}

// blocks returns the erase blocks of [off, off+length); mu is held.
func (f *Flash) blocks(off, length int64) (first, end int64) {
	es := int64(f.cfg.EraseSize)
	return off / es, (off + length + es - 1) / es
}

// anyLocked reports whether a block of [off, off+length) is locked; mu is
// held.
func (f *Flash) anyLocked(off, length int64) bool {
	first, end := f.blocks(off, length)
	for b := first; b < end; b++ {
		if f.locked[b] {
			return true
		}
	}
	return false
}

// step counts one erase or program towards a planned cut; mu is held. It
// reports whether the power goes with this step, and whether it is torn.
func (f *Flash) step() (cut, torn bool) {
	if f.cutAt == 0 {
		return false, false
	}
	f.cutAt--
	if f.cutAt > 0 {
		return false, false
	}
	return true, f.cutTorn
}

// ReadAt reads len(p) bytes at off.
func (f *Flash) ReadAt(p []byte, off int64) (int, error) {
	if err := f.begin(OpRead, off, int64(len(p))); err != nil {
		return 0, err
	}
	defer f.busy.Unlock()
	f.mu.Lock()
	defer f.mu.Unlock()
	copy(p, f.mem[off:])
	f.stats.Reads++
	return len(p), nil
}

// Erase sets the whole erase blocks of [off, off+length) to 0xFF, after
// EraseTime a block. Misaligned is EINVAL; a locked block is EROFS, and
// nothing is erased.
func (f *Flash) Erase(off, length int64) error {
	if err := f.begin(OpErase, off, length); err != nil {
		return err
	}
	defer f.busy.Unlock()
	es := int64(f.cfg.EraseSize)
	f.mu.Lock()
	switch {
	case off%es != 0 || length%es != 0 || length == 0:
		f.mu.Unlock()
		return f.refuseLocked(fmt.Errorf("mtdtest: erase of %#x bytes at %#x is not whole erase blocks of %#x: %w", length, off, es, syscall.EINVAL))
	case f.anyLocked(off, length):
		f.mu.Unlock()
		return f.refuseLocked(fmt.Errorf("mtdtest: erase of %#x bytes at %#x: a block is locked: %w", length, off, syscall.EROFS))
	}
	f.mu.Unlock()

	time.Sleep(time.Duration(length/es) * f.cfg.EraseTime)

	f.mu.Lock()
	defer f.mu.Unlock()
	cut, torn := f.step()
	for b := off; b < off+length; b += es {
		n := es
		if torn {
			n = es / 2
		}
		for i := b; i < b+n; i++ {
			f.mem[i] = 0xff
		}
		f.stats.Erases++
	}
	if cut {
		f.cut = true
		if torn {
			return ErrPowerCut
		}
	}
	return nil
}

// refuseLocked counts a refusal; it takes mu.
func (f *Flash) refuseLocked(err error) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.refuse(err)
}

// WriteAt programs p at off, after ProgramTime a write-size unit: each
// byte becomes the old byte AND the new one (stuck bits stay 1), or the new
// one with PlainWrites. off and len(p) must be multiples of the write size
// (EINVAL); a locked block is EROFS, and nothing is programmed.
func (f *Flash) WriteAt(p []byte, off int64) (int, error) {
	if err := f.begin(OpProgram, off, int64(len(p))); err != nil {
		return 0, err
	}
	defer f.busy.Unlock()
	ws := int64(f.cfg.WriteSize)
	f.mu.Lock()
	switch {
	case off%ws != 0 || int64(len(p))%ws != 0:
		f.mu.Unlock()
		return 0, f.refuseLocked(fmt.Errorf("mtdtest: program of %d bytes at %#x is not whole write units of %d: %w", len(p), off, ws, syscall.EINVAL))
	case f.anyLocked(off, int64(len(p))):
		f.mu.Unlock()
		return 0, f.refuseLocked(fmt.Errorf("mtdtest: program of %d bytes at %#x: a block is locked: %w", len(p), off, syscall.EROFS))
	}
	f.mu.Unlock()

	units := int64(len(p)) / ws
	time.Sleep(time.Duration(units) * f.cfg.ProgramTime)

	f.mu.Lock()
	defer f.mu.Unlock()
	cut, torn := f.step()
	n := len(p)
	if torn {
		n = int(units/2) * int(ws)
	}
	for i := 0; i < n; i++ {
		a := off + int64(i)
		if f.cfg.PlainWrites {
			f.mem[a] = p[i] | f.stuck[a]
		} else {
			f.mem[a] &= p[i] | f.stuck[a]
		}
	}
	f.stats.Programs++
	f.stats.BytesProgrammed += len(p)
	if cut {
		f.cut = true
		if torn {
			return n, ErrPowerCut
		}
	}
	return len(p), nil
}

// IsLocked reports whether a block of [off, off+length) is locked.
func (f *Flash) IsLocked(off, length int64) (bool, error) {
	if err := f.lockOp(OpIsLocked, off, length); err != nil {
		return false, err
	}
	defer f.busy.Unlock()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stats.LockQueries++
	return f.anyLocked(off, length), nil
}

// Lock locks the blocks of [off, off+length).
func (f *Flash) Lock(off, length int64) error { return f.setLock(OpLock, off, length, true) }

// Unlock unlocks the blocks of [off, off+length).
func (f *Flash) Unlock(off, length int64) error { return f.setLock(OpUnlock, off, length, false) }

func (f *Flash) setLock(op Op, off, length int64, lock bool) error {
	if err := f.lockOp(op, off, length); err != nil {
		return err
	}
	defer f.busy.Unlock()
	f.mu.Lock()
	defer f.mu.Unlock()
	first, end := f.blocks(off, length)
	for b := first; b < end; b++ {
		f.locked[b] = lock
	}
	if lock {
		f.stats.Locks++
	} else {
		f.stats.Unlocks++
	}
	return nil
}

// lockOp begins a lock operation: whole erase blocks (EINVAL otherwise),
// on a chip with locking (EOPNOTSUPP otherwise). On success the caller
// holds busy.
func (f *Flash) lockOp(op Op, off, length int64) error {
	if err := f.begin(op, off, length); err != nil {
		return err
	}
	es := int64(f.cfg.EraseSize)
	var err error
	switch {
	case f.cfg.NoLocking:
		err = fmt.Errorf("mtdtest: %s: no locking on this chip: %w", op, syscall.EOPNOTSUPP)
	case off%es != 0 || length%es != 0 || length == 0:
		err = fmt.Errorf("mtdtest: %s of %#x bytes at %#x is not whole erase blocks of %#x: %w", op, length, off, es, syscall.EINVAL)
	}
	if err != nil {
		f.busy.Unlock()
		return f.refuseLocked(err)
	}
	return nil
}

// Close marks the chip closed: later operations fail with os.ErrClosed.
func (f *Flash) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return fmt.Errorf("mtdtest: closed twice: %w", os.ErrClosed)
	}
	f.closed = true
	return nil
}

// Closed reports whether Close was called.
func (f *Flash) Closed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.closed
}
