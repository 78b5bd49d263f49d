package at24

import (
	"fmt"
	"slices"
	"strings"

	"github.com/nvmemfs/nvmemfs/nvcore"
)

// Chip describes one kind of I2C EEPROM, as the kernel's at24 driver
// (drivers/misc/eeprom/at24.c) knows it.
type Chip struct {
	// Name is the kernel's name for the chip: "24c02", "24cs64", "24mac402".
	Name string
	// Size is the number of bytes the device exposes.
	Size int
	// AddrBytes is the width of the word address sent before the data: 1
	// (8-bit) or 2 (16-bit, most significant byte first).
	AddrBytes int
	// Addresses is how many consecutive I2C addresses the chip answers. A
	// chip larger than one word address can reach answers offset off at
	// base + (off >> 8) (8-bit) or base + (off >> 16) (16-bit). The 24c00
	// ignores its address pins and claims 8 addresses for 16 bytes.
	Addresses int
	// PageSize is the write page of typical chips of this kind. It is only
	// a hint: Options.PageSize sets the page the provider uses, and
	// defaults to 1 (slow but safe), as the kernel does.
	PageSize int
	// ReadOnly marks factory-programmed areas (serial numbers, MAC
	// addresses) and memories the kernel never writes (spd).
	ReadOnly bool
	// Offset is the word address of the device's first byte: 0x80 or
	// 0x0800 for serial-number areas, 0x9a or 0x98 for an EUI-48 or EUI-64,
	// 0 for plain memories (at24_get_offset_adj in at24.c).
	Offset int
}

// bits is the number of offset bits one I2C address covers.
func (c Chip) bits() uint { return 8 * uint(c.AddrBytes) }

// chips is the table of SPEC 7 and at24.c. Serial-number and MAC variants
// are the identification area of a chip, which answers at an I2C address
// of its own (0x58 | A2A1A0 on Atmel and Microchip parts): open them at
// that address. Each claims one address.
var chips = []Chip{
	{Name: "24c00", Size: 16, AddrBytes: 1, Addresses: 8, PageSize: 1},
	{Name: "24c01", Size: 128, AddrBytes: 1, Addresses: 1, PageSize: 8},
	{Name: "24c02", Size: 256, AddrBytes: 1, Addresses: 1, PageSize: 8},
	{Name: "24c04", Size: 512, AddrBytes: 1, Addresses: 2, PageSize: 16},
	{Name: "24c08", Size: 1 << 10, AddrBytes: 1, Addresses: 4, PageSize: 16},
	{Name: "24c16", Size: 2 << 10, AddrBytes: 1, Addresses: 8, PageSize: 16},
	{Name: "24c32", Size: 4 << 10, AddrBytes: 2, Addresses: 1, PageSize: 32},
	{Name: "24c64", Size: 8 << 10, AddrBytes: 2, Addresses: 1, PageSize: 32},
	{Name: "24c128", Size: 16 << 10, AddrBytes: 2, Addresses: 1, PageSize: 64},
	{Name: "24c256", Size: 32 << 10, AddrBytes: 2, Addresses: 1, PageSize: 64},
	{Name: "24c512", Size: 64 << 10, AddrBytes: 2, Addresses: 1, PageSize: 128},
	{Name: "24c1024", Size: 128 << 10, AddrBytes: 2, Addresses: 2, PageSize: 256},
	{Name: "24c2048", Size: 256 << 10, AddrBytes: 2, Addresses: 4, PageSize: 256},

	// Serial numbers: 16 bytes; the word address must start with the bits
	// 10 (0x80) for 8-bit chips, or have 10 in bits 11 and 10 (0x0800)
	// for 16-bit ones.
	{Name: "24cs01", Size: 16, AddrBytes: 1, Addresses: 1, ReadOnly: true, Offset: 0x80},
	{Name: "24cs02", Size: 16, AddrBytes: 1, Addresses: 1, ReadOnly: true, Offset: 0x80},
	{Name: "24cs04", Size: 16, AddrBytes: 1, Addresses: 1, ReadOnly: true, Offset: 0x80},
	{Name: "24cs08", Size: 16, AddrBytes: 1, Addresses: 1, ReadOnly: true, Offset: 0x80},
	{Name: "24cs16", Size: 16, AddrBytes: 1, Addresses: 1, ReadOnly: true, Offset: 0x80},
	{Name: "24cs32", Size: 16, AddrBytes: 2, Addresses: 1, ReadOnly: true, Offset: 0x0800},
	{Name: "24cs64", Size: 16, AddrBytes: 2, Addresses: 1, ReadOnly: true, Offset: 0x0800},

	// MAC addresses: the EUI ends at 0x9f (at24.c: offset 0xa0 - size).
	{Name: "24mac402", Size: 6, AddrBytes: 1, Addresses: 1, ReadOnly: true, Offset: 0x9a},
	{Name: "24mac602", Size: 8, AddrBytes: 1, Addresses: 1, ReadOnly: true, Offset: 0x98},

	// The 24c02 of a memory module (serial presence detect), which the
	// kernel never writes.
	{Name: "spd", Size: 256, AddrBytes: 1, Addresses: 1, PageSize: 8, ReadOnly: true},
}

// ChipNames lists the names LookupChip knows, sorted.
var ChipNames = func() []string {
	names := make([]string, len(chips))
	for i, c := range chips {
		names[i] = c.Name
	}
	slices.Sort(names)
	return names
}()

// LookupChip finds a chip by its kernel name ("24c256"), in any case, with
// or without the device tree's "atmel," vendor prefix. An unknown name is
// an error wrapping nvcore.ErrInvalid that lists the known ones.
func LookupChip(name string) (Chip, error) {
	key := strings.ToLower(strings.TrimSpace(name))
	key = strings.TrimPrefix(key, "atmel,")
	for _, c := range chips {
		if c.Name == key {
			return c, nil
		}
	}
	return Chip{}, fmt.Errorf("%w: unknown EEPROM chip %q (known: %s)", nvcore.ErrInvalid, name, strings.Join(ChipNames, " "))
}
