package wp

import (
	"errors"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpiotest"

	"github.com/nvmemfs/nvmemfs/nvcore"
	"github.com/nvmemfs/nvmemfs/nvcore/nvcoretest"
)

// watchedPin records every level driven, and what the memory saw.
type watchedPin struct {
	gpiotest.Pin
	mu      sync.Mutex
	levels  []gpio.Level
	failOut map[gpio.Level]error
}

func (p *watchedPin) Out(l gpio.Level) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.failOut[l]; err != nil {
		return err
	}
	p.levels = append(p.levels, l)
	return p.Pin.Out(l)
}

func (p *watchedPin) history() []gpio.Level {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]gpio.Level(nil), p.levels...)
}

// guardedMemory fails a write made while the line protects it, as a chip
// with WP asserted ignores writes.
type guardedMemory struct {
	*nvcoretest.Memory
	pin       *watchedPin
	protected gpio.Level
}

func (m *guardedMemory) WriteAt(p []byte, off int64) (int, error) {
	if m.pin.Read() == m.protected {
		return 0, errors.New("written while write-protected")
	}
	return m.Memory.WriteAt(p, off)
}

// TestWriteProtect follows SPEC 3: asserted at attach, deasserted around
// each provider write, asserted again after; a line that cannot be
// deasserted stops the write before the provider; one that cannot be
// asserted again fails the write.
func TestWriteProtect(t *testing.T) {
	for _, activeLow := range []bool{false, true} {
		protected := gpio.Level(!activeLow)
		pin := &watchedPin{Pin: gpiotest.Pin{N: "wp", L: !protected}}
		mem := &guardedMemory{Memory: nvcoretest.NewMemory(make([]byte, 64)), pin: pin, protected: protected}
		mem.Xfer = 16 // a 40-byte write is three provider writes
		reg := nvcore.NewRegistry()
		d, err := reg.Register(nvcore.Config{Name: "ee", WriteProtect: New(pin, activeLow)}, mem)
		if err != nil {
			t.Fatal(err)
		}
		if got := pin.history(); !slices.Equal(got, []gpio.Level{protected}) {
			t.Errorf("active-low %t: after attach the line saw %v, want it asserted", activeLow, got)
		}
		if _, err := d.WriteAt(make([]byte, 40), 8); err != nil {
			t.Fatalf("active-low %t: write: %v", activeLow, err)
		}
		want := []gpio.Level{protected}
		for range 3 {
			want = append(want, !protected, protected)
		}
		if got := pin.history(); !slices.Equal(got, want) {
			t.Errorf("active-low %t: line history %v, want %v", activeLow, got, want)
		}
		if pin.Read() != protected {
			t.Errorf("active-low %t: the line is left deasserted", activeLow)
		}

		// Deassert fails: the provider is not called.
		writes := mem.Writes()
		pin.failOut = map[gpio.Level]error{!protected: errors.New("line busy")}
		if _, err := d.WriteAt([]byte{1}, 0); !errors.Is(err, nvcore.ErrIO) || !strings.Contains(err.Error(), "deassert") {
			t.Errorf("write with a stuck line: %v, want ErrIO about deasserting", err)
		}
		if mem.Writes() != writes {
			t.Error("the provider was called though the line could not be deasserted")
		}
		// Assert fails: the write happened, and the call still fails.
		pin.failOut = map[gpio.Level]error{protected: errors.New("line busy")}
		if _, err := d.WriteAt([]byte{2}, 0); err == nil || !strings.Contains(err.Error(), "could not be asserted") {
			t.Errorf("write when the line cannot be asserted again: %v", err)
		}
		if mem.Bytes()[0] != 2 {
			t.Error("the write itself should have landed")
		}
		pin.failOut = nil
		reg.Remove(d)
	}
}

// TestWriteProtectAtAttach: a line that cannot be asserted refuses the
// device.
func TestWriteProtectAtAttach(t *testing.T) {
	pin := &watchedPin{Pin: gpiotest.Pin{N: "wp"}, failOut: map[gpio.Level]error{gpio.High: io.ErrClosedPipe}}
	mem := nvcoretest.NewMemory(make([]byte, 8))
	if _, err := nvcore.NewRegistry().Register(nvcore.Config{WriteProtect: New(pin, false)}, mem); err == nil {
		t.Fatal("registered with a line that cannot be asserted")
	}
}

func TestParseSpec(t *testing.T) {
	for in, want := range map[string]Spec{
		"gpiochip0:17":     {Chip: "gpiochip0", Line: 17},
		"2:5:active-low":   {Chip: "2", Line: 5, ActiveLow: true},
		"/dev/gpiochip1:0": {Chip: "/dev/gpiochip1", Line: 0},
	} {
		if got, err := ParseSpec(in); err != nil || got != want {
			t.Errorf("ParseSpec(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "gpiochip0", ":3", "chip:x", "chip:-1", "chip:1:active-high", "a:1:b:c"} {
		if _, err := ParseSpec(in); err == nil {
			t.Errorf("ParseSpec(%q) succeeded", in)
		}
	}
}
