package nvcore

import (
	"errors"
	"fmt"
	"io"
	"syscall"
)

// Layout finds cells in a device's content, as the kernel's nvmem layouts
// do (SPEC 5): a TlvInfo EEPROM, a U-Boot environment, an sl28 VPD block.
// The parsers live in nvcore/layouts; the core only calls them.
//
// The core parses when the device is registered and again, lazily, after a
// write has changed the content: the next look at the cells (Cells, Cell, a
// listing of cells/) re-parses and publishes CELL_REMOVE and CELL_ADD for
// what changed.
type Layout interface {
	// Name is the layout's name in a SPEC (layout=NAME).
	Name() string
	// Cells parses the content, size bytes read through r, and returns the
	// cells it describes, or an error that says why it cannot (for instance
	// "onie-tlv: CRC mismatch: stored 0x..., computed 0x..."). Every cell
	// must lie inside the device. Cells must not keep r.
	Cells(r io.ReaderAt, size int64) ([]CellInfo, error)
}

// layoutReader lets a layout read the device through the core: every chunk
// in its own read section, keepouts applied, free of stride and word size.
type layoutReader struct{ d *Device }

func (r layoutReader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("%w: negative offset", ErrInvalid)
	}
	if off >= r.d.size {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), r.d.size-off))
	if err := r.d.readRaw(p[:n], off); err != nil {
		return 0, err
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// parseLayout runs the layout over the content. It returns the cells that
// fit the device, and an error saying why the content did not parse, or
// which cells were left out.
func (d *Device) parseLayout() ([]CellInfo, error) {
	infos, err := d.layout.Cells(layoutReader{d}, d.size)
	if err != nil {
		if d.gone.Load() {
			return nil, d.errGone()
		}
		return nil, err
	}
	var kept []CellInfo
	var problems []error
	for _, ci := range infos {
		if ci.Layout == "" {
			ci.Layout = d.layout.Name()
		}
		// Layout cells are read with readRaw: only the bounds matter.
		if err := ci.Validate(d.size, 1, 1); err != nil {
			problems = append(problems, fmt.Errorf("%s: cell left out: %w", d.layout.Name(), err))
			continue
		}
		kept = append(kept, ci)
	}
	return kept, errors.Join(problems...)
}

// ioFailure tells an error of reading the memory (an errno, a short or
// failed transfer) from one of its content (a bad CRC, a missing header).
func ioFailure(err error) bool {
	var errno syscall.Errno
	return errors.As(err, &errno) || errors.Is(err, ErrIO) || errors.Is(err, ErrNotSupported)
}

// cellKey is what tells cells apart: their file name in cells/.
type cellKey struct {
	name      string
	off       int64
	bitOffset int
}

func keyOf(ci *CellInfo) cellKey { return cellKey{ci.Name, ci.Offset, ci.BitOffset} }

// mergeCells builds the cell list for a fresh parse: the declared cells as
// they are, then one cell for each parsed info, reusing the *Cell of the same
// key from old so that an open cell file follows its cell. It returns the
// cells added and those no longer present.
func (d *Device) mergeCells(old []*Cell, infos []CellInfo) (next, added, removed []*Cell) {
	next = append(next, old[:len(d.declared)]...)
	taken := make(map[cellKey]bool, len(old)+len(infos))
	for _, c := range next {
		taken[keyOf(c.info.Load())] = true
	}
	prev := make(map[cellKey]*Cell, len(old)-len(d.declared))
	for _, c := range old[len(d.declared):] {
		prev[keyOf(c.info.Load())] = c
	}
	for _, ci := range infos {
		k := keyOf(&ci)
		if taken[k] {
			continue // a declared cell, or a second cell of one file name
		}
		taken[k] = true
		if c, ok := prev[k]; ok {
			c.info.Store(&ci)
			next = append(next, c)
			delete(prev, k)
			continue
		}
		c := newCell(d, ci)
		next = append(next, c)
		added = append(added, c)
	}
	for _, c := range old[len(d.declared):] {
		if prev[keyOf(c.info.Load())] == c {
			removed = append(removed, c)
		}
	}
	return next, added, removed
}

// initLayout parses the content once, before the device is published.
func (d *Device) initLayout() {
	if d.layout == nil {
		return
	}
	infos, err := d.parseLayout()
	next, _, _ := d.mergeCells(d.cells, infos)
	d.setCellsLocked(next)
	d.layoutErr = err
}

// RefreshCells parses the content again if a write may have changed it
// since the last parse, and publishes CELL_REMOVE for the cells that left
// and CELL_ADD for those that came. A cell that stays keeps its *Cell, with
// its new length if that changed; a cell that left is retired.
//
// Event subscribers must not call it: events are published under the lock
// they run in.
func (d *Device) RefreshCells() error {
	if d.layout == nil {
		return nil
	}
	d.refreshMu.Lock()
	defer d.refreshMu.Unlock()
	if !d.stale.Swap(false) {
		return nil
	}
	infos, parseErr := d.parseLayout()
	if errors.Is(parseErr, ErrNoDevice) {
		return parseErr
	}
	if infos == nil && ioFailure(parseErr) {
		// The memory could not be read (a bus timeout): that says nothing
		// of the content. Keep the cells, say why, and try again next time.
		d.stale.Store(true)
		d.cellsMu.Lock()
		d.layoutErr = parseErr
		d.cellsMu.Unlock()
		return nil
	}

	d.reg.eventMu.Lock()
	defer d.reg.eventMu.Unlock()
	if d.gone.Load() {
		return d.errGone()
	}
	d.cellsMu.Lock()
	next, added, removed := d.mergeCells(d.cells, infos)
	d.setCellsLocked(next)
	d.layoutErr = parseErr
	d.cellsMu.Unlock()
	for _, c := range removed {
		c.retired.Store(true)
		d.reg.publishLocked(Event{Kind: CellRemove, Device: d, Cell: c})
	}
	for _, c := range added {
		d.reg.publishLocked(Event{Kind: CellAdd, Device: d, Cell: c})
	}
	return nil
}
