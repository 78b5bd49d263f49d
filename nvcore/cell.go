package nvcore

import (
	"encoding/binary"
	"fmt"
)

// Cell is a named piece of a device: whole bytes, or a bit field. Like the
// device it belongs to, a cell may be held after removal; its reads then
// fail with ErrNoDevice.
type Cell struct {
	dev  *Device
	info CellInfo
}

// Device returns the device the cell belongs to.
func (c *Cell) Device() *Device { return c.dev }

// Info returns the cell's declaration.
func (c *Cell) Info() CellInfo { return c.info }

// Name is the cell's name; two cells of one device may share it.
func (c *Cell) Name() string { return c.info.Name }

// Offset is the byte offset of the cell in the device.
func (c *Cell) Offset() int64 { return c.info.Offset }

// BitOffset is the bit offset of a bit-field cell, 0 otherwise.
func (c *Cell) BitOffset() int { return c.info.BitOffset }

// Size is the number of bytes a read of the cell returns.
func (c *Cell) Size() int { return c.info.Bytes }

// Writable reports whether Write can succeed now: the device can be written
// and its force_ro switch is off.
func (c *Cell) Writable() bool { return c.dev.writer != nil && !c.dev.ForceRO() }

// Read reads the cell from the device: the raw bytes, or for a bit field the
// field shifted down to bit 0, little-endian, in Size bytes.
func (c *Cell) Read() ([]byte, error) {
	raw := make([]byte, c.info.Bytes)
	if _, err := c.dev.ReadAt(raw, c.info.Offset); err != nil {
		return nil, fmt.Errorf("cell %s: %w", c.info.Name, err)
	}
	if c.info.NBits == 0 {
		return raw, nil
	}
	return extractBits(raw, c.info.BitOffset, c.info.NBits), nil
}

// Write replaces the whole cell with v, which must be Size bytes. A bit field
// is read, modified and written back: bits outside the field keep their
// device values, and a v with bits set above NBits is ErrInvalid.
func (c *Cell) Write(v []byte) error {
	if len(v) != c.info.Bytes {
		return fmt.Errorf("%w: cell %s: a write must cover the whole cell: %d bytes, not %d", ErrInvalid, c.info.Name, c.info.Bytes, len(v))
	}
	out := v
	if c.info.NBits != 0 {
		if hasBitsAbove(v, c.info.NBits) {
			return fmt.Errorf("%w: cell %s: value has bits set beyond its %d bits", ErrInvalid, c.info.Name, c.info.NBits)
		}
		raw := make([]byte, c.info.Bytes)
		if _, err := c.dev.ReadAt(raw, c.info.Offset); err != nil {
			return fmt.Errorf("cell %s: %w", c.info.Name, err)
		}
		out = insertBits(raw, v, c.info.BitOffset, c.info.NBits)
	}
	if _, err := c.dev.WriteAt(out, c.info.Offset); err != nil {
		return fmt.Errorf("cell %s: %w", c.info.Name, err)
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
	if c.info.Bytes != n {
		return nil, fmt.Errorf("%w: cell %s has %d bytes, not %d", ErrInvalid, c.info.Name, c.info.Bytes, n)
	}
	return c.Read()
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
