// Package wp turns a GPIO output into the write-protect line of a memory
// (nvcore.WriteProtect): asserted, the chip ignores writes; deasserted
// around each write. An EEPROM's WP pin protects when high; boards that
// invert it say active-low.
package wp

import (
	"fmt"
	"strconv"
	"strings"

	"periph.io/x/conn/v3/gpio"

	"github.com/nvmemfs/nvmemfs/nvcore"
)

// Line is a write-protect line on a periph output pin.
type Line struct {
	pin       gpio.PinOut
	protected gpio.Level // the level that protects the memory
}

var _ nvcore.WriteProtect = (*Line)(nil)

// New uses pin as a write-protect line: high protects, unless activeLow.
func New(pin gpio.PinOut, activeLow bool) *Line {
	return &Line{pin: pin, protected: gpio.Level(!activeLow)}
}

// Protect asserts the line.
func (l *Line) Protect() error { return l.pin.Out(l.protected) }

// Unprotect deasserts the line.
func (l *Line) Unprotect() error { return l.pin.Out(!l.protected) }

// Close releases the pin.
func (l *Line) Close() error { return l.pin.Halt() }

// String names the pin.
func (l *Line) String() string { return l.pin.String() }

// Spec is a parsed wp-gpio=CHIP:LINE[:active-low] option.
type Spec struct {
	Chip      string // gpiochipN, N or /dev/gpiochipN
	Line      int
	ActiveLow bool
}

// ParseSpec reads CHIP:LINE[:active-low].
func ParseSpec(s string) (Spec, error) {
	parts := strings.Split(s, ":")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" {
		return Spec{}, fmt.Errorf("wp-gpio %q: want CHIP:LINE[:active-low], such as gpiochip0:17", s)
	}
	line, err := strconv.Atoi(parts[1])
	if err != nil || line < 0 {
		return Spec{}, fmt.Errorf("wp-gpio %q: line %q is not a line number", s, parts[1])
	}
	sp := Spec{Chip: parts[0], Line: line}
	if len(parts) == 3 {
		if parts[2] != "active-low" {
			return Spec{}, fmt.Errorf("wp-gpio %q: %q: want active-low or nothing", s, parts[2])
		}
		sp.ActiveLow = true
	}
	return sp, nil
}
