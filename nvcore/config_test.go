package nvcore_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/nvmemfs/nvmemfs/nvcore"
	"github.com/nvmemfs/nvmemfs/nvcore/nvcoretest"
)

// TestNameLengths: one rule for device and cell names, a file name is at
// most 255 bytes (NAME_MAX). A device's folder is its name; a cell's file
// is <name>@<off>,<bit>, and that whole file name is what the rule caps.
func TestNameLengths(t *testing.T) {
	reg := nvcore.NewRegistry()
	register := func(cfg nvcore.Config) error {
		d, err := reg.Register(cfg, nvcoretest.NewMemory(make([]byte, 0x1000)))
		if err == nil {
			reg.Remove(d)
		}
		return err
	}
	for _, n := range []int{1, 255} {
		if err := register(nvcore.Config{Name: strings.Repeat("d", n)}); err != nil {
			t.Errorf("device name of %d bytes: %v", n, err)
		}
	}
	err := register(nvcore.Config{Name: strings.Repeat("d", 256)})
	if !errors.Is(err, nvcore.ErrInvalid) || !strings.Contains(err.Error(), "256 bytes") {
		t.Errorf("device name of 256 bytes: %v, want ErrInvalid saying 256 bytes", err)
	}

	for _, c := range []struct {
		name string
		off  int64
		bit  int
		ok   bool
	}{
		// "@0,0" is 4 bytes: the name may have 251.
		{strings.Repeat("c", 251), 0, 0, true},
		{strings.Repeat("c", 252), 0, 0, false},
		// "@abc,0" is 6 bytes: 249.
		{strings.Repeat("c", 249), 0xabc, 0, true},
		{strings.Repeat("c", 250), 0xabc, 0, false},
		{strings.Repeat("c", 300), 0, 0, false},
	} {
		ci := nvcore.CellInfo{Name: c.name, Offset: c.off, Bytes: 1}
		err := register(nvcore.Config{Cells: []nvcore.CellInfo{ci}})
		file := ci.FileName()
		if c.ok {
			if err != nil || len(file) > nvcore.NameMax {
				t.Errorf("cell file %d bytes: %v", len(file), err)
			}
			continue
		}
		if !errors.Is(err, nvcore.ErrInvalid) || !strings.Contains(err.Error(), "file name is") {
			t.Errorf("cell file name of %d bytes: %v, want ErrInvalid about its file name", len(file), err)
		}
		if err != nil && len(err.Error()) > 400 {
			t.Errorf("the message repeats the whole name: %d bytes", len(err.Error()))
		}
	}
}

// TestCheckName: what a SPEC's name= may hold, checked before anything is
// opened.
func TestCheckName(t *testing.T) {
	for name, want := range map[string]string{
		"":                       "empty device name",
		".hidden":                "must not start with a dot",
		"a/b":                    "not allowed",
		strings.Repeat("x", 256): "256 bytes",
	} {
		if err := nvcore.CheckName(name); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("CheckName(%.20q): %v, want %q", name, err, want)
		}
	}
	for _, name := range []string{"a", "board-eeprom_1.2:3+4", strings.Repeat("x", 255)} {
		if err := nvcore.CheckName(name); err != nil {
			t.Errorf("CheckName(%.20q): %v", name, err)
		}
	}
}
