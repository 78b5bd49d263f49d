package gpiocdev

import (
	"errors"
	"os"
	"strings"
	"testing"

	"periph.io/x/conn/v3/gpio"
)

func TestChipPath(t *testing.T) {
	for in, want := range map[string]string{
		"0": "/dev/gpiochip0", "gpiochip3": "/dev/gpiochip3", "/dev/gpiochip1": "/dev/gpiochip1",
	} {
		if got := chipPath(in); got != want {
			t.Errorf("chipPath(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestOpenErrors: a missing chip and a file that is no GPIO chip are
// refused with the reason. Driving a real line needs a gpiochip (the qemu
// integration test has gpio-sim).
func TestOpenErrors(t *testing.T) {
	if _, err := Open("/nonexistent/gpiochip9", 1, gpio.High); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing chip: %v", err)
	}
	notChip := t.TempDir() + "/gpiochip0"
	os.WriteFile(notChip, nil, 0o600)
	if _, err := Open(notChip, 1, gpio.High); err == nil || !strings.Contains(err.Error(), "request as output") {
		t.Errorf("a plain file as a chip: %v", err)
	}
	if _, err := Open("0", -1, gpio.High); err == nil {
		t.Error("a negative line offset was accepted")
	}
}
