package nvcore_test

import (
	"strings"
	"testing"

	"github.com/nvmemfs/nvmemfs/nvcore"
	"github.com/nvmemfs/nvmemfs/nvcore/nvcoretest"
)

func mode(m uint32) *uint32 { return &m }

// TestAccessCore: what the core refuses that no SPEC can reach (read bits
// on a device that cannot be read), and the modes of a layout's cells as
// they come and go: cell-mode by name, cells-mode for the rest, and never
// a write bit on a layout's cell, even one sharing the name of a declared
// cell whose cell-mode has one.
func TestAccessCore(t *testing.T) {
	reg := nvcore.NewRegistry()
	defer reg.Close()
	for _, c := range []struct {
		access nvcore.Access
		want   string
	}{
		{nvcore.Access{Mode: mode(0o644)}, "mode=0644 grants reading, but the device cannot be read"},
		{nvcore.Access{Mode: mode(0o200), CellsMode: mode(0o444)}, "cells-mode=0444 grants reading, but the device cannot be read"},
		{nvcore.Access{Mode: mode(0o1200)}, "mode=1200: only permission bits"},
	} {
		cfg := nvcore.Config{Access: c.access, Cells: []nvcore.CellInfo{{Name: "c", Offset: 0, Bytes: 1}}}
		_, err := reg.Register(cfg, nvcoretest.WriteOnly(nvcoretest.NewMemory(make([]byte, 16))))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.access, err, c.want)
		}
	}
	// A write-only device with modes that grant only writing attaches.
	d, err := reg.Register(nvcore.Config{Access: nvcore.Access{Mode: mode(0o220)}}, nvcoretest.WriteOnly(nvcoretest.NewMemory(make([]byte, 16))))
	if err != nil {
		t.Fatal(err)
	}
	reg.Remove(d)

	mem := nvcoretest.NewMemory(make([]byte, 16))
	if _, err := mem.WriteAt([]byte{2}, 0); err != nil { // two cells: c0, c1
		t.Fatal(err)
	}
	cfg := nvcore.Config{
		Layout: countLayout{},
		Cells:  []nvcore.CellInfo{{Name: "c2", Offset: 8, Bytes: 1}},
		Access: nvcore.Access{CellsMode: mode(0o400), CellModes: map[string]uint32{"c1": 0o444, "c2": 0o664}},
	}
	d, err = reg.Register(cfg, mem)
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Remove(d)
	modes := func() string {
		var b []string
		for _, c := range d.Cells() {
			b = append(b, c.FileName()+"="+nvcore.FormatMode(c.Mode()))
		}
		return strings.Join(b, " ")
	}
	if got, want := modes(), "c2@8,0=0664 c0@1,0=0400 c1@2,0=0444"; got != want {
		t.Errorf("cells %s, want %s", got, want)
	}
	// The content now holds four cells: c2 and c3 come, c2 the layout's
	// (read-only whatever cell-mode says), c3 with cells-mode.
	if _, err := d.WriteAt([]byte{4}, 0); err != nil {
		t.Fatal(err)
	}
	d.RefreshCells()
	if got, want := modes(), "c2@8,0=0664 c0@1,0=0400 c1@2,0=0444 c2@3,0=0444 c3@4,0=0400"; got != want {
		t.Errorf("after the edit: cells %s, want %s", got, want)
	}
	// And back to none: the declared cell stays.
	if _, err := d.WriteAt([]byte{0}, 0); err != nil {
		t.Fatal(err)
	}
	d.RefreshCells()
	if got, want := modes(), "c2@8,0=0664"; got != want {
		t.Errorf("after the second edit: cells %s, want %s", got, want)
	}
}
