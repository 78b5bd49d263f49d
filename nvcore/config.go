package nvcore

import (
	"fmt"
	"strings"
)

// Type is the kind of memory, shown in the device's type file.
type Type int

// The types the kernel knows (include/linux/nvmem-provider.h).
const (
	TypeUnknown Type = iota
	TypeEEPROM
	TypeOTP
	TypeBatteryBacked
	TypeFRAM
)

var typeNames = [...]string{"Unknown", "EEPROM", "OTP", "Battery backed", "FRAM"}
var typeWords = [...]string{"unknown", "eeprom", "otp", "battery-backed", "fram"}

// String returns the text of the kernel's type file, without the newline.
func (t Type) String() string {
	if t < 0 || int(t) >= len(typeNames) {
		return typeNames[TypeUnknown]
	}
	return typeNames[t]
}

// ParseType accepts the words of the device SPEC: eeprom, otp,
// battery-backed, fram, unknown (any case), and the kernel's own texts.
func ParseType(s string) (Type, error) {
	for i := range typeWords {
		if strings.EqualFold(s, typeWords[i]) || strings.EqualFold(s, typeNames[i]) {
			return Type(i), nil
		}
	}
	return TypeUnknown, invalidf("type %q: want one of %s", s, strings.Join(typeWords[:], ", "))
}

// Keepout is a region [Start, End) that is never handed to the provider:
// reads return Fill there, writes there are dropped and still count.
type Keepout struct {
	Start, End int64
	Fill       byte
}

// CellInfo declares a cell: Bytes bytes at Offset, or, when NBits is not
// zero, a bit field of NBits bits starting BitOffset bits into those bytes
// (Bytes must then be ceil((BitOffset+NBits)/8)).
type CellInfo struct {
	Name      string
	Offset    int64
	Bytes     int
	BitOffset int
	NBits     int

	// Layout names the layout that found the cell; empty for a cell the
	// user declared. Only cells the user declared, without Decode, can be
	// written through Cell.Write: a layout's cells are edited through the
	// layout, which keeps its checksum valid.
	Layout string
	// Decode, when set, turns the raw bytes into what a read of the cell
	// returns (the kernel's read_post_process): a MAC address stored as
	// text becomes 6 bytes. It refuses content it cannot decode with an
	// error wrapping ErrInvalid.
	Decode func(raw []byte) ([]byte, error)
	// DecodedSize is the size of a read after Decode; 0 means Bytes.
	DecodedSize int
	// Provided cells are read by the provider itself (CellReader), not
	// from the bytes at Offset; they cannot be written.
	Provided bool
	// Mode, when set, is the cell file's permission bits (a cells file's
	// mode=, or a mirrored kernel cell's own mode); see Access.
	Mode *uint32
}

// Config describes a device to register. The size comes from the provider.
type Config struct {
	// Name of the device; empty means nvmem<N> with the lowest free N.
	Name string
	Type Type
	// ReadOnly refuses writes; the force_ro switch starts at 1 and the nvmem
	// file gets no write bit.
	ReadOnly bool
	// RootOnly drops the group and other read bits from the nvmem file.
	RootOnly bool
	// WordSize and Stride default to 1.
	WordSize int
	Stride   int
	Keepouts []Keepout
	Cells    []CellInfo
	// Cache lets the kernel keep the content in its page cache, so that
	// repeated reads of a slow memory cost no provider call. It is safe
	// only while nothing but nvmemfs changes the memory, and needs word
	// size and stride 1 (cached reads are served without asking us).
	Cache bool
	// WriteProtect, when set, is asserted at registration and deasserted
	// around each provider write. If it is an io.Closer, removal closes it
	// after the provider.
	WriteProtect WriteProtect
	// Layout, when set, adds the cells it finds in the content to Cells.
	// A content it cannot parse leaves the device without those cells, and
	// Device.LayoutError says why.
	Layout Layout
	// Access sets owner, group and modes of the device's files where the
	// kernel's defaults are not wanted. Register refuses one that grants
	// what the device cannot do.
	Access Access
}

// NameMax is the most bytes a file name may have (Linux NAME_MAX): a
// device's folder and a cell's file must be names every file system takes,
// so that a copy of the tree elsewhere works.
const NameMax = 255

// CheckName checks a device name: it becomes a directory name and a word in
// a config line, so it is 1 to NameMax bytes of letters, digits and
// . _ - : +, not starting with a dot.
func CheckName(s string) error {
	if s == "" {
		return invalidf("empty device name: give one, or leave it out for nvmem<N>")
	}
	if len(s) > NameMax {
		return invalidf("device name %s is %d bytes: a name is at most %d", shortName(s), len(s), NameMax)
	}
	if s[0] == '.' {
		return invalidf("name %q must not start with a dot", s)
	}
	for _, c := range s {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("._-:+", c)
		if !ok {
			return invalidf("name %q: character %q not allowed (letters, digits and . _ - : + only)", s, c)
		}
	}
	return nil
}

// shortName quotes a name for a message, cutting a long one.
func shortName(s string) string {
	if len(s) > 40 {
		return fmt.Sprintf("%q...", s[:40])
	}
	return fmt.Sprintf("%q", s)
}

// validate checks cfg against a provider of the given size and fills in the
// defaults. Errors say what is wrong and where.
func (cfg *Config) validate(size int64) error {
	if cfg.Name != "" {
		if err := CheckName(cfg.Name); err != nil {
			return err
		}
	}
	if size <= 0 {
		return invalidf("size %d: a device needs at least one byte", size)
	}
	if cfg.WordSize == 0 {
		cfg.WordSize = 1
	}
	if cfg.Stride == 0 {
		cfg.Stride = 1
	}
	if cfg.WordSize < 0 || cfg.WordSize > 8 || cfg.WordSize&(cfg.WordSize-1) != 0 {
		return invalidf("word-size %d: want 1, 2, 4 or 8", cfg.WordSize)
	}
	if cfg.Stride < 0 || cfg.Stride > 8 || cfg.Stride&(cfg.Stride-1) != 0 {
		return invalidf("stride %d: want 1, 2, 4 or 8", cfg.Stride)
	}
	if cfg.Cache && (cfg.WordSize != 1 || cfg.Stride != 1) {
		return invalidf("cache: the page cache serves reads of any size and offset, so it needs word-size 1 and stride 1")
	}
	if cfg.Type < TypeUnknown || cfg.Type > TypeFRAM {
		return invalidf("type %d unknown", int(cfg.Type))
	}
	prevEnd := int64(0)
	for i, k := range cfg.Keepouts {
		where := fmt.Sprintf("keepout %d (%#x-%#x)", i+1, k.Start, k.End)
		switch {
		case k.Start < 0 || k.End <= k.Start:
			return invalidf("%s: end must be after start", where)
		case k.End > size:
			return invalidf("%s: ends past the device size %#x", where, size)
		case k.Start < prevEnd:
			return invalidf("%s: keepouts must be sorted and must not overlap", where)
		case k.Start%int64(cfg.Stride) != 0 || k.End%int64(cfg.Stride) != 0:
			return invalidf("%s: not aligned to the stride %d", where, cfg.Stride)
		case k.End-k.Start < int64(cfg.WordSize):
			return invalidf("%s: shorter than the word size %d", where, cfg.WordSize)
		}
		prevEnd = k.End
	}
	seen := make(map[cellKey]bool, len(cfg.Cells))
	for i, c := range cfg.Cells {
		if err := c.Validate(size, cfg.WordSize, cfg.Stride); err != nil {
			return fmt.Errorf("cell %d: %w", i+1, err)
		}
		// The cell's file is named <name>@<off>,<bit>: two cells that agree
		// on all three would hide one another.
		k := keyOf(&c)
		if seen[k] {
			return invalidf("cell %d: %q at %#x bit %d declared twice", i+1, c.Name, c.Offset, c.BitOffset)
		}
		seen[k] = true
	}
	return nil
}

// FileName is the name of the cell's file, as the kernel's sysfs gives
// it: <name>@<offset>,<bit offset>, in lowercase hex without 0x.
func (c CellInfo) FileName() string {
	return fmt.Sprintf("%s@%x,%x", c.Name, c.Offset, c.BitOffset)
}

// Validate checks the cell against a device of the given size, word size and
// stride (SPEC 4): aligned, inside the device, and a bit field that fits its
// bytes. Register calls it; a parser calls it too to point at the line.
func (c CellInfo) Validate(size int64, wordSize, stride int) error {
	where := fmt.Sprintf("%s at %#x", shortName(c.Name), c.Offset)
	if c.Name == "" || strings.ContainsAny(c.Name, "/@\x00") {
		return invalidf("cell name %q must be non-empty, without / or @", c.Name)
	}
	// The rule caps the file name, <name>@<off>,<bit>, which is what a
	// lookup and a copy see: the name gets what the suffix leaves.
	if file := c.FileName(); len(file) > NameMax {
		suffix := len(file) - len(c.Name)
		return invalidf("%s: its file name is %d bytes, over the %d of a file name: at this offset the name may have at most %d bytes", where, len(file), NameMax, NameMax-suffix)
	}
	switch {
	case c.Offset < 0:
		return invalidf("%s: negative offset", where)
	case c.Bytes <= 0:
		return invalidf("%s: needs at least one byte", where)
	case c.Offset%int64(stride) != 0:
		return invalidf("%s: offset not a multiple of the stride %d", where, stride)
	case c.Bytes%wordSize != 0:
		return invalidf("%s: %d bytes is not a multiple of the word size %d", where, c.Bytes, wordSize)
	case c.Offset > size || int64(c.Bytes) > size-c.Offset:
		return invalidf("%s: %d bytes reach past the end of the device (size %#x)", where, c.Bytes, size)
	}
	if c.NBits == 0 && c.BitOffset == 0 {
		return nil
	}
	if c.NBits <= 0 || c.BitOffset < 0 {
		return invalidf("%s: bits %d,%d: want a non-negative bit offset and at least one bit", where, c.BitOffset, c.NBits)
	}
	if want := (c.BitOffset + c.NBits + 7) / 8; c.Bytes != want {
		return invalidf("%s: a %d-bit field at bit %d spans %d bytes, not %d", where, c.NBits, c.BitOffset, want, c.Bytes)
	}
	return nil
}

// invalidError is an ErrInvalid that reads as its reason alone: a user
// told `type "flash": want one of ...` needs no "invalid argument" in
// front of it. errors.Is still finds ErrInvalid (EINVAL through the file
// system).
type invalidError struct{ reason string }

func (e *invalidError) Error() string { return e.reason }
func (e *invalidError) Unwrap() error { return ErrInvalid }

// invalidf returns an ErrInvalid that says only why.
func invalidf(format string, args ...any) error {
	return &invalidError{fmt.Sprintf(format, args...)}
}
