package nvcore

import (
	"encoding/binary"
	"fmt"
	"sync/atomic"
)

// Cell is a named piece of a device: whole bytes, or a bit field. Like the
// device it belongs to, a cell may be held after removal; its reads then
// fail with ErrNoDevice.
//
// A cell is known by its name, offset and bit offset (its file name in
// cells/). When a layout re-parses the content and finds the same cell with
// another length, the same *Cell carries the new length; when the cell is
// no longer there, it is retired and its reads fail with ErrCellRetired
// (an ErrNoCell).
type Cell struct {
	dev      *Device
	info     atomic.Pointer[CellInfo]
	retired  atomic.Bool
	fileName string // of the name, offset and bit offset, which never change
}

func newCell(d *Device, ci CellInfo) *Cell {
	c := &Cell{dev: d, fileName: ci.FileName()}
	c.info.Store(&ci)
	return c
}

// FileName is the name of the cell's file (CellInfo.FileName), formatted
// once: a listing of many cells asks for every one.
func (c *Cell) FileName() string { return c.fileName }

// Device returns the device the cell belongs to.
func (c *Cell) Device() *Device { return c.dev }

// Info returns the cell's declaration.
func (c *Cell) Info() CellInfo { return *c.info.Load() }

// Name is the cell's name; two cells of one device may share it.
func (c *Cell) Name() string { return c.info.Load().Name }

// Offset is the byte offset of the cell in the device.
func (c *Cell) Offset() int64 { return c.info.Load().Offset }

// BitOffset is the bit offset of a bit-field cell, 0 otherwise.
func (c *Cell) BitOffset() int { return c.info.Load().BitOffset }

// Size is the number of bytes a read of the cell returns.
func (c *Cell) Size() int {
	ci := c.info.Load()
	if ci.DecodedSize != 0 {
		return ci.DecodedSize
	}
	return ci.Bytes
}

// Layout names the layout that found the cell, or "" for a declared cell.
func (c *Cell) Layout() string { return c.info.Load().Layout }

// Retired reports whether the cell has left its device's content.
func (c *Cell) Retired() bool { return c.retired.Load() }

// Plain reports whether the cell can be written through Write: declared by
// the user, with no decoding. A layout's cells are edited through the
// layout, which keeps its checksum valid (SPEC 4).
func (c *Cell) Plain() bool {
	ci := c.info.Load()
	return ci.Layout == "" && ci.Decode == nil && !ci.Provided
}

// Writable reports whether Write can succeed now: a plain cell of a device
// that can be written, with its force_ro switch off.
func (c *Cell) Writable() bool { return c.Plain() && c.dev.writer != nil && !c.dev.ForceRO() }

func (c *Cell) errRetired(ci *CellInfo) error {
	return fmt.Errorf("%w: %s: cell %s@%x,%x is no longer in the content", ErrCellRetired, c.dev.name, ci.Name, ci.Offset, ci.BitOffset)
}

// Read reads the cell from the device: the raw bytes, or for a bit field the
// field shifted down to bit 0, little-endian, in Size bytes; then the
// layout's decoding, if any.
func (c *Cell) Read() ([]byte, error) {
	ci := c.info.Load()
	if c.retired.Load() && !c.dev.Gone() {
		return nil, c.errRetired(ci)
	}
	if ci.Provided {
		v, err := c.dev.readProvidedCell(*ci)
		if err != nil {
			return nil, fmt.Errorf("cell %s: %w", ci.Name, err)
		}
		return v, nil
	}
	raw := make([]byte, ci.Bytes)
	if err := c.dev.readRaw(raw, ci.Offset); err != nil {
		return nil, fmt.Errorf("cell %s: %w", ci.Name, err)
	}
	if ci.NBits != 0 {
		raw = extractBits(raw, ci.BitOffset, ci.NBits)
	}
	if ci.Decode == nil {
		return raw, nil
	}
	v, err := ci.Decode(raw)
	if err != nil {
		return nil, fmt.Errorf("cell %s: %w", ci.Name, err)
	}
	return v, nil
}

// Write replaces the whole cell with v, which must be Size bytes. A bit field
// is read, modified and written back: bits outside the field keep their
// device values, and a v with bits set above NBits is ErrInvalid. Only plain
// cells can be written (ErrNotSupported otherwise).
func (c *Cell) Write(v []byte) error {
	ci := c.info.Load()
	if c.retired.Load() && !c.dev.Gone() {
		return c.errRetired(ci)
	}
	if !c.Plain() {
		return fmt.Errorf("%w: cell %s belongs to the %s layout: edit it through the layout", ErrNotSupported, ci.Name, ci.Layout)
	}
	if len(v) != ci.Bytes {
		return fmt.Errorf("%w: cell %s: a write must cover the whole cell: %d bytes, not %d", ErrInvalid, ci.Name, ci.Bytes, len(v))
	}
	out := v
	if ci.NBits != 0 {
		if hasBitsAbove(v, ci.NBits) {
			return fmt.Errorf("%w: cell %s: value has bits set beyond its %d bits", ErrInvalid, ci.Name, ci.NBits)
		}
		// Two bit fields may share a byte: their read-modify-writes take
		// turns, or one would write back the other's old bits.
		c.dev.rmwMu.Lock()
		defer c.dev.rmwMu.Unlock()
		raw := make([]byte, ci.Bytes)
		if err := c.dev.readRaw(raw, ci.Offset); err != nil {
			return fmt.Errorf("cell %s: %w", ci.Name, err)
		}
		out = insertBits(raw, v, ci.BitOffset, ci.NBits)
	}
	if _, err := c.dev.WriteAt(out, ci.Offset); err != nil {
		return fmt.Errorf("cell %s: %w", ci.Name, err)
	}
	return nil
}

// ReadU8, ReadU16, ReadU32 and ReadU64 read a cell of exactly that many bytes
// as a little-endian number, as the kernel's nvmem_cell_read_u8 and friends.
func (c *Cell) ReadU8() (uint8, error) {
	b, err := c.readN(1)
	if err != nil {
		return 0, err
	}
	return b[0], nil
}

// ReadU16 reads a 2-byte cell as a little-endian number.
func (c *Cell) ReadU16() (uint16, error) {
	b, err := c.readN(2)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint16(b), nil
}

// ReadU32 reads a 4-byte cell as a little-endian number.
func (c *Cell) ReadU32() (uint32, error) {
	b, err := c.readN(4)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(b), nil
}

// ReadU64 reads an 8-byte cell as a little-endian number.
func (c *Cell) ReadU64() (uint64, error) {
	b, err := c.readN(8)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(b), nil
}

func (c *Cell) readN(n int) ([]byte, error) {
	if size := c.Size(); size != n {
		return nil, fmt.Errorf("%w: cell %s has %d bytes, not %d", ErrInvalid, c.Name(), size, n)
	}
	v, err := c.Read()
	// A re-parse may have resized the cell between the check and the read.
	if err == nil && len(v) != n {
		return nil, fmt.Errorf("%w: cell %s has %d bytes, not %d", ErrInvalid, c.Name(), len(v), n)
	}
	return v, err
}

// bit returns bit i of b, taken as a little-endian integer.
func bit(b []byte, i int) byte { return b[i/8] >> (i % 8) & 1 }

func setBit(b []byte, i int, v byte) {
	b[i/8] = b[i/8]&^(1<<(i%8)) | v<<(i%8)
}

// extractBits returns bits [off, off+nbits) of raw, shifted down to bit 0,
// in len(raw) bytes. Cells are a few bytes long, so a bit loop is plenty.
func extractBits(raw []byte, off, nbits int) []byte {
	out := make([]byte, len(raw))
	for i := range nbits {
		setBit(out, i, bit(raw, off+i))
	}
	return out
}

// insertBits returns raw with bits [off, off+nbits) replaced by the low
// nbits of v; every other bit keeps its value.
func insertBits(raw, v []byte, off, nbits int) []byte {
	out := append([]byte(nil), raw...)
	for i := range nbits {
		setBit(out, off+i, bit(v, i))
	}
	return out
}

func hasBitsAbove(v []byte, nbits int) bool {
	for i := nbits; i < 8*len(v); i++ {
		if bit(v, i) != 0 {
			return true
		}
	}
	return false
}
