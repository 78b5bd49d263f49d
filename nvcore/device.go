package nvcore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
)

// Device is the handle to one memory. Anyone may keep a *Device for as long
// as they like: once the device is unregistered, every method that would
// reach the memory returns ErrNoDevice, and the provider behind it has been
// closed. The provider is reached only through these methods, each call in
// its own SRCU read section (DESIGN, lifetime rules 1 to 4).
type Device struct {
	name     string
	typ      Type
	size     int64
	readOnly bool // as configured, or because the provider cannot write
	rootOnly bool
	cache    bool
	wordSize int
	stride   int
	keepouts []Keepout
	mode     uint32
	access   Access
	xfer     int    // largest read in one read section
	xferW    int    // largest write in one read section
	medium   string // the provider's MediumID at registration
	reg      *Registry

	// The cells: those declared, then those the layout found. cellsMu
	// guards the slice (replaced, never changed in place); refreshMu keeps
	// parses one at a time. Lock order: Registry.eventMu, then cellsMu.
	declared  []CellInfo
	layout    Layout
	refreshMu sync.Mutex
	cellsMu   sync.Mutex
	cells     []*Cell
	byFile    map[string]*Cell // cells by file name, rebuilt with cells
	layoutErr error
	// stale is set by every write: the content the layout parsed may have
	// changed, and the next RefreshCells parses again.
	stale atomic.Bool

	srcu       *SRCU
	gone       atomic.Bool
	removed    chan struct{} // closed once a removal has closed the provider and published
	unplugging atomic.Bool   // a removal for vanished hardware has started
	forceRO    atomic.Bool

	// wp guards the memory's write-protect line; wpMu keeps the
	// deassert-write-assert sequences of concurrent writers apart.
	wp   WriteProtect
	wpMu sync.Mutex
	// rmwMu keeps bit-field writes (read, modify, write) apart.
	rmwMu sync.Mutex
	// exclusive: the provider serves one call at a time (Exclusive), and
	// callers queue on turn outside their read sections.
	exclusive bool
	turn      sync.Mutex

	// The provider and its optional faces. Read only inside a read section
	// after checking gone; never written after registration.
	provider   Provider
	reader     io.ReaderAt
	writer     io.WriterAt
	syncer     Syncer
	cellReader CellReader
}

func newDevice(name string, cfg Config, p Provider, size int64) *Device {
	d := &Device{
		name:     name,
		typ:      cfg.Type,
		size:     size,
		rootOnly: cfg.RootOnly,
		cache:    cfg.Cache,
		wordSize: cfg.WordSize,
		stride:   cfg.Stride,
		keepouts: append([]Keepout(nil), cfg.Keepouts...),
		srcu:     NewSRCU(),
		removed:  make(chan struct{}),
		provider: p,
		xfer:     defaultTransferSize,
	}
	d.reader, _ = p.(io.ReaderAt)
	d.writer, _ = p.(io.WriterAt)
	d.syncer, _ = p.(Syncer)
	d.cellReader, _ = p.(CellReader)
	if ts, ok := p.(TransferSizer); ok && ts.TransferSize() > 0 {
		d.xfer = ts.TransferSize()
	}
	d.xferW = d.xfer
	if ts, ok := p.(WriteTransferSizer); ok && ts.WriteTransferSize() > 0 {
		d.xferW = ts.WriteTransferSize()
	}
	if mi, ok := p.(MediumIdentifier); ok {
		d.medium = mi.MediumID()
	}
	d.readOnly = cfg.ReadOnly || d.writer == nil
	d.forceRO.Store(d.readOnly)
	d.mode = fileMode(d.rootOnly, d.readOnly, d.reader != nil, d.writer != nil)
	d.access = cfg.Access.clone()
	if m := d.access.Mode; m != nil {
		d.mode = *m // checked at Register: grants nothing the device cannot do
	}
	_, d.exclusive = p.(Exclusive)
	d.wp = cfg.WriteProtect
	d.declared = append([]CellInfo(nil), cfg.Cells...)
	d.layout = cfg.Layout
	cells := make([]*Cell, 0, len(d.declared))
	for _, ci := range d.declared {
		cells = append(cells, newCell(d, ci))
	}
	d.setCellsLocked(cells)
	return d
}

// checkCacheKeepouts refuses the page cache for a writable device with
// keepouts. A write there is skipped and still counts as written (SPEC 3),
// but the kernel has already put the written bytes in its cached pages,
// where they would be read back although the memory never held them; a
// cached read must only ever show what the device holds. A device that
// cannot write never diverges, so it may have both.
func checkCacheKeepouts(cfg Config, canWrite bool) error {
	if cfg.Cache && canWrite && len(cfg.Keepouts) > 0 {
		return fmt.Errorf("%w: cache and keepouts: a write into a keepout is skipped, and the page cache would keep the bytes the memory never took: drop one of them", ErrInvalid)
	}
	return nil
}

// setCellsLocked replaces the cell list and its index by file name (the
// first cell of a file name wins, as in Cell). cellsMu is held, or the
// device is not yet published.
func (d *Device) setCellsLocked(cells []*Cell) {
	byFile := make(map[string]*Cell, len(cells))
	for _, c := range cells {
		if _, dup := byFile[c.fileName]; !dup {
			byFile[c.fileName] = c
		}
	}
	d.cells, d.byFile = cells, byFile
}

// fileMode computes the permission bits of the nvmem file as the kernel's
// nvmem_bin_attr_get_umode does (SPEC 2). It is fixed at registration.
func fileMode(rootOnly, readOnly, canRead, canWrite bool) uint32 {
	mode := uint32(0o400)
	if !rootOnly {
		mode |= 0o044
	}
	if !readOnly {
		mode |= 0o200
	}
	if !canWrite {
		mode &^= 0o222
	}
	if !canRead {
		mode &^= 0o444
	}
	return mode
}

// Name is the device's name, unique in its registry.
func (d *Device) Name() string { return d.name }

// Type is the kind of memory.
func (d *Device) Type() Type { return d.typ }

// Size is the size in bytes.
func (d *Device) Size() int64 { return d.size }

// WordSize is the unit of every transfer, in bytes.
func (d *Device) WordSize() int { return d.wordSize }

// Stride is the alignment of every offset, in bytes.
func (d *Device) Stride() int { return d.stride }

// Keepouts returns the regions the provider never sees.
func (d *Device) Keepouts() []Keepout { return append([]Keepout(nil), d.keepouts...) }

// Mode is the permission bits of the device's nvmem file: as configured
// (Config.Access), else as the kernel's (SPEC 2): 0644,
// 0444, 0600, 0400, or less when the provider cannot read or write.
func (d *Device) Mode() uint32 { return d.mode }

// Cached reports whether the kernel may keep the content in its page
// cache (Config.Cache).
func (d *Device) Cached() bool { return d.cache }

// CanRead reports whether the provider has a read callback.
func (d *Device) CanRead() bool { return d.reader != nil }

// CanWrite reports whether the provider has a write callback. A device that
// cannot write has no force_ro switch.
func (d *Device) CanWrite() bool { return d.writer != nil }

// ForceRO reports the force_ro switch: while true, writes fail with
// ErrReadOnly. It starts true for a read-only device.
func (d *Device) ForceRO() bool { return d.forceRO.Load() }

// SetForceRO sets the force_ro switch. It never changes Mode.
func (d *Device) SetForceRO(v bool) { d.forceRO.Store(v) }

// Gone reports whether the device has been unregistered (or is being, or
// its hardware was reported gone).
func (d *Device) Gone() bool { return d.gone.Load() || d.unplugging.Load() }

// MediumID names the medium the provider opened (MediumIdentifier), as it
// said at registration, or "" when it cannot tell. It answers gone or not,
// without reaching the provider.
func (d *Device) MediumID() string { return d.medium }

// CheckHardware reports whether the device is still there: not gone, and,
// where the provider can tell (GoneChecker), its hardware still the one it
// opened. Hardware found gone starts the device's removal, as a call that
// found it gone does; Remove then waits for it. The question is asked
// inside a read section, so a removal under way waits for it.
func (d *Device) CheckHardware() bool {
	err := d.call(func() error {
		if gc, ok := d.provider.(GoneChecker); ok && gc.HardwareGone() {
			// ENODEV: call starts the removal.
			return fmt.Errorf("%s: the provider reports its hardware replaced or gone: %w", d.name, syscall.ENODEV)
		}
		return nil
	})
	return err == nil
}

// Cells returns the device's cells: the declared ones in declaration
// order, then the layout's in content order. It does not parse: after a
// write, call RefreshCells first to see what the content holds now.
func (d *Device) Cells() []*Cell {
	d.cellsMu.Lock()
	defer d.cellsMu.Unlock()
	return append([]*Cell(nil), d.cells...)
}

// NumCells is len(Cells()), without the copy.
func (d *Device) NumCells() int {
	d.cellsMu.Lock()
	defer d.cellsMu.Unlock()
	return len(d.cells)
}

// CellByFileName finds a cell by its file name (name@offset,bit), in
// constant time: a file system looks up every cell of a listing by name.
// It does not parse, as Cells does not. It returns nil if there is none.
func (d *Device) CellByFileName(fileName string) *Cell {
	d.cellsMu.Lock()
	defer d.cellsMu.Unlock()
	return d.byFile[fileName]
}

// Cell finds a cell by name among Cells; the first wins when names repeat.
func (d *Device) Cell(name string) (*Cell, error) {
	for _, c := range d.Cells() {
		if c.Name() == name {
			return c, nil
		}
	}
	return nil, fmt.Errorf("%w: device %s has no cell %q", ErrNoCell, d.name, name)
}

// Layout returns the device's layout, or nil.
func (d *Device) Layout() Layout { return d.layout }

// LayoutError says why the layout found no cells in the content at its
// last parse (a bad CRC, a missing header), or is nil.
func (d *Device) LayoutError() error {
	d.cellsMu.Lock()
	defer d.cellsMu.Unlock()
	return d.layoutErr
}

func (d *Device) errGone() error { return fmt.Errorf("%s: %w", d.name, ErrNoDevice) }

// ReadAt reads len(p) bytes at off, following io.ReaderAt: fewer bytes only
// at the end of the device, with io.EOF. off must be a multiple of the
// stride and len(p) of the word size (ErrInvalid).
func (d *Device) ReadAt(p []byte, off int64) (int, error) {
	if d.gone.Load() {
		return 0, d.errGone()
	}
	if off < 0 || off%int64(d.stride) != 0 || len(p)%d.wordSize != 0 {
		return 0, fmt.Errorf("%w: %s: read of %d bytes at %#x: offset must be a multiple of %d, length of %d",
			ErrInvalid, d.name, len(p), off, d.stride, d.wordSize)
	}
	if d.reader == nil {
		return 0, fmt.Errorf("%w: %s: read", ErrNotSupported, d.name)
	}
	if off >= d.size {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), d.size-off))
	n -= n % d.wordSize
	if err := d.read(p[:n], off); err != nil {
		return 0, err
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// WriteAt writes p at off. A write that starts past the end is ErrTooBig;
// one that would cross the end writes what fits and returns ErrTooBig.
func (d *Device) WriteAt(p []byte, off int64) (int, error) {
	if d.gone.Load() {
		return 0, d.errGone()
	}
	if off < 0 || off%int64(d.stride) != 0 || len(p)%d.wordSize != 0 {
		return 0, fmt.Errorf("%w: %s: write of %d bytes at %#x: offset must be a multiple of %d, length of %d",
			ErrInvalid, d.name, len(p), off, d.stride, d.wordSize)
	}
	if d.writer == nil {
		return 0, fmt.Errorf("%w: %s: write", ErrNotSupported, d.name)
	}
	if d.forceRO.Load() {
		return 0, fmt.Errorf("%w: %s", ErrReadOnly, d.name)
	}
	if off >= d.size {
		return 0, fmt.Errorf("%w: %s: write at %#x, size %#x", ErrTooBig, d.name, off, d.size)
	}
	n := int(min(int64(len(p)), d.size-off))
	n -= n % d.wordSize
	if err := d.write(p[:n], off); err != nil {
		return 0, err
	}
	if n < len(p) {
		return n, fmt.Errorf("%w: %s: write of %d bytes at %#x, size %#x", ErrTooBig, d.name, len(p), off, d.size)
	}
	return n, nil
}

// SysfsRead reads the way the kernel's sysfs nvmem file does (SPEC 3): a
// read at or past the end is 0 bytes, a read crossing the end is cut short,
// and the count is rounded down to the word size. Errors fail the whole call.
func (d *Device) SysfsRead(p []byte, off int64) (int, error) {
	count := int64(len(p))
	if count == 0 {
		return 0, nil
	}
	if d.gone.Load() {
		return 0, d.errGone()
	}
	if off < 0 {
		return 0, fmt.Errorf("%w: negative offset", ErrInvalid)
	}
	if off >= d.size {
		return 0, nil
	}
	count = min(count, d.size-off)
	if err := d.checkAlign(off, count); err != nil {
		return 0, err
	}
	count -= count % int64(d.wordSize)
	if d.reader == nil {
		return 0, fmt.Errorf("%w: %s cannot be read", ErrReadOnly, d.name)
	}
	if err := d.read(p[:count], off); err != nil {
		return 0, err
	}
	return int(count), nil
}

// SysfsWrite writes the way the kernel's sysfs nvmem file does (SPEC 3): a
// write at or past the end is ErrTooBig, one crossing the end is cut short,
// the count is rounded down to the word size, and a read-only device (or
// force_ro) is ErrReadOnly.
func (d *Device) SysfsWrite(p []byte, off int64) (int, error) {
	if d.gone.Load() {
		return 0, d.errGone()
	}
	if off < 0 {
		return 0, fmt.Errorf("%w: negative offset", ErrInvalid)
	}
	if off >= d.size {
		return 0, fmt.Errorf("%w: %s: write at %#x, size %#x", ErrTooBig, d.name, off, d.size)
	}
	count := min(int64(len(p)), d.size-off)
	if count == 0 {
		return 0, nil
	}
	if err := d.checkAlign(off, count); err != nil {
		return 0, err
	}
	count -= count % int64(d.wordSize)
	if d.writer == nil || d.forceRO.Load() {
		return 0, fmt.Errorf("%w: %s", ErrReadOnly, d.name)
	}
	if err := d.write(p[:count], off); err != nil {
		return 0, err
	}
	return int(count), nil
}

func (d *Device) checkAlign(off, count int64) error {
	if off%int64(d.stride) != 0 {
		return fmt.Errorf("%w: %s: offset %#x is not a multiple of the stride %d", ErrInvalid, d.name, off, d.stride)
	}
	if count < int64(d.wordSize) {
		return fmt.Errorf("%w: %s: %d bytes is less than the word size %d", ErrInvalid, d.name, count, d.wordSize)
	}
	return nil
}

// ReadU8 reads one byte at off.
func (d *Device) ReadU8(off int64) (uint8, error) {
	var b [1]byte
	err := d.readExact(b[:], off)
	return b[0], err
}

// ReadU16 reads a little-endian 16-bit value at off.
func (d *Device) ReadU16(off int64) (uint16, error) {
	var b [2]byte
	err := d.readExact(b[:], off)
	return binary.LittleEndian.Uint16(b[:]), err
}

// ReadU32 reads a little-endian 32-bit value at off.
func (d *Device) ReadU32(off int64) (uint32, error) {
	var b [4]byte
	err := d.readExact(b[:], off)
	return binary.LittleEndian.Uint32(b[:]), err
}

// ReadU64 reads a little-endian 64-bit value at off.
func (d *Device) ReadU64(off int64) (uint64, error) {
	var b [8]byte
	err := d.readExact(b[:], off)
	return binary.LittleEndian.Uint64(b[:]), err
}

func (d *Device) readExact(p []byte, off int64) error {
	n, err := d.ReadAt(p, off)
	if err == io.EOF || (err == nil && n < len(p)) {
		return fmt.Errorf("%w: %s: %d bytes at %#x reach past the end", ErrInvalid, d.name, len(p), off)
	}
	return err
}

// Sync makes the writes that have returned durable, if the provider buffers
// them; otherwise it does nothing.
func (d *Device) Sync() error {
	if d.syncer == nil {
		if d.gone.Load() {
			return d.errGone()
		}
		return nil
	}
	return d.call(func() error { return d.syncer.Sync() })
}

// readRaw reads len(p) bytes at off for the core's own use (cells, layout
// parsers): inside the device, but free of the stride and word-size rules
// of ReadAt, as the kernel's nvmem_device_read is.
func (d *Device) readRaw(p []byte, off int64) error {
	if d.gone.Load() {
		return d.errGone()
	}
	if off < 0 || off > d.size || int64(len(p)) > d.size-off {
		return fmt.Errorf("%w: %s: %d bytes at %#x reach past the end (size %#x)", ErrInvalid, d.name, len(p), off, d.size)
	}
	if d.reader == nil {
		return fmt.Errorf("%w: %s: read", ErrNotSupported, d.name)
	}
	return d.read(p, off)
}

// read fills p from off, serving keepouts from their fill value and the rest
// from the provider. The caller has checked bounds and alignment.
func (d *Device) read(p []byte, off int64) error {
	return d.walk(len(p), off, func(start, end int64, k *Keepout) error {
		seg := p[start-off : end-off]
		if k != nil {
			for i := range seg {
				seg[i] = k.Fill
			}
			return nil
		}
		return d.transfer(seg, start, d.xfer, d.readChunk)
	})
}

// write sends p to off, skipping keepouts silently. Whatever the outcome,
// the content may have changed: the layout's cells are marked stale.
func (d *Device) write(p []byte, off int64) error {
	defer d.stale.Store(true)
	return d.walk(len(p), off, func(start, end int64, k *Keepout) error {
		if k != nil {
			return nil
		}
		return d.transfer(p[start-off:end-off], start, d.xferW, d.writeChunk)
	})
}

// walk cuts [off, off+n) at keepout edges and calls fn for each piece, with
// the keepout that covers it or nil.
func (d *Device) walk(n int, off int64, fn func(start, end int64, k *Keepout) error) error {
	end := off + int64(n)
	for off < end {
		var next *Keepout
		for i := range d.keepouts {
			if d.keepouts[i].End > off {
				next = &d.keepouts[i]
				break
			}
		}
		switch {
		case next == nil || next.Start >= end:
			return fn(off, end, nil)
		case next.Start <= off:
			stop := min(next.End, end)
			if err := fn(off, stop, next); err != nil {
				return err
			}
			off = stop
		default:
			if err := fn(off, next.Start, nil); err != nil {
				return err
			}
			off = next.Start
		}
	}
	return nil
}

// transfer cuts p into chunks of size bytes, aligned to multiples of size
// (an EEPROM page, a transfer block), each in its own read section, so that
// removal never waits for more than one chunk.
func (d *Device) transfer(p []byte, off int64, size int, chunk func([]byte, int64) error) error {
	for len(p) > 0 {
		n := min(len(p), size-int(off%int64(size)))
		if err := chunk(p[:n], off); err != nil {
			return err
		}
		p, off = p[n:], off+int64(n)
	}
	return nil
}

func (d *Device) readChunk(p []byte, off int64) error {
	return d.call(func() error {
		n, err := d.reader.ReadAt(p, off)
		if n == len(p) {
			return nil
		}
		if err == nil || err == io.EOF {
			return fmt.Errorf("%w: %s: provider read %d of %d bytes at %#x", ErrIO, d.name, n, len(p), off)
		}
		return fmt.Errorf("%s: read at %#x: %w", d.name, off, err)
	})
}

func (d *Device) writeChunk(p []byte, off int64) error {
	return d.call(func() error {
		if d.wp == nil {
			return d.writeProvider(p, off)
		}
		return d.writeUnprotected(p, off)
	})
}

// writeUnprotected deasserts the write-protect line around one provider
// write (SPEC 3). Writers take turns: one must not assert the line again
// while another's write is under way.
func (d *Device) writeUnprotected(p []byte, off int64) (err error) {
	d.wpMu.Lock()
	defer d.wpMu.Unlock()
	if err := d.wp.Unprotect(); err != nil {
		return fmt.Errorf("%w: %s: cannot deassert the write-protect line: %v", ErrIO, d.name, err)
	}
	defer func() {
		if perr := d.wp.Protect(); perr != nil && err == nil {
			err = fmt.Errorf("%w: %s: written, but the write-protect line could not be asserted again: %v", ErrIO, d.name, perr)
		}
	}()
	return d.writeProvider(p, off)
}

func (d *Device) writeProvider(p []byte, off int64) error {
	n, err := d.writer.WriteAt(p, off)
	if n == len(p) && err == nil {
		return nil
	}
	if err == nil {
		return fmt.Errorf("%w: %s: provider wrote %d of %d bytes at %#x", ErrIO, d.name, n, len(p), off)
	}
	return fmt.Errorf("%s: write at %#x: %w", d.name, off, err)
}

// readProvidedCell asks the provider for a cell it reads itself.
func (d *Device) readProvidedCell(ci CellInfo) ([]byte, error) {
	if d.cellReader == nil {
		return nil, fmt.Errorf("%w: %s: the provider reads no cells", ErrNotSupported, d.name)
	}
	var v []byte
	err := d.call(func() error {
		var err error
		v, err = d.cellReader.ReadCell(ci)
		return err
	})
	return v, err
}

// call runs fn, which reaches the provider, inside a read section, unless the
// device is gone. A panic in the provider becomes ErrIO instead of leaving
// the section open forever (which would hang removal). An error saying the
// hardware is gone starts the device's removal (DESIGN rule 7).
func (d *Device) call(fn func() error) (err error) {
	if d.exclusive {
		d.turn.Lock()
		defer d.turn.Unlock()
	}
	tok := d.srcu.Lock()
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %s: %v", ErrProviderPanic, d.name, r)
			slog.Error("provider panic", "device", d.name, "panic", r, "stack", string(debug.Stack()))
		}
		d.srcu.Unlock(tok)
		if err != nil && hardwareGone(err) {
			d.hardwareGone(err)
		}
	}()
	// Once a call has reported the hardware gone, the next ones fail at
	// once, before the removal it started has marked the device gone: a
	// retry (the page cache retries a failed read) must not reach a bus
	// that has just lost its chip.
	if d.gone.Load() || d.unplugging.Load() {
		return d.errGone()
	}
	return fn()
}

// hardwareGone tells the errors of hardware that went away (a USB bridge
// unplugged, a kernel device unbound) from those of hardware that merely
// failed. ENXIO is a NAK on many I2C adapters: providers that see NAKs in
// normal use (an EEPROM in its write cycle) retry them and never return it.
func hardwareGone(err error) bool {
	return errors.Is(err, syscall.ENODEV) || errors.Is(err, syscall.ENXIO) || errors.Is(err, syscall.ESHUTDOWN)
}

// hardwareGone removes the device on a goroutine of its own: the caller is
// inside a provider call path, where waiting for a grace period could wait
// for itself.
func (d *Device) hardwareGone(cause error) {
	if d.gone.Load() || d.reg == nil || !d.unplugging.CompareAndSwap(false, true) {
		return
	}
	slog.Warn("hardware gone: removing the device", "device", d.name, "cause", cause)
	go func() {
		if err := d.reg.Remove(d); err != nil && !errors.Is(err, ErrNoDevice) {
			slog.Error("hardware gone: removal failed", "device", d.name, "err", err)
		}
	}()
}
