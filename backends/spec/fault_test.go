package spec

import (
	"bytes"
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nvmemfs/nvmemfs/backends/fault"
	"github.com/nvmemfs/nvmemfs/nvcore"
)

// TestParseFault: the fault kind, its options and the common ones.
func TestParseFault(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "f.cells", "serial 0x10 8\nflag 0x20 1 2 3\n")
	s, err := Parse("fault:0x1000,seed=42,errors=0.01,delays=.5,max-delay=15ms,shorts=0.002,panics=1e-3,xfer=128,name=soak,type=eeprom,cells=f.cells", dir)
	if err != nil {
		t.Fatal(err)
	}
	want := fault.Options{Size: 4096, Seed: 42, ErrorRate: 0.01, DelayRate: 0.5, MaxDelay: 15 * time.Millisecond,
		ShortRate: 0.002, PanicRate: 0.001, TransferSize: 128}
	if s.Kind != "fault" || s.Fault != want || s.Config.Name != "soak" || s.Config.Type != nvcore.TypeEEPROM || len(s.Config.Cells) != 2 {
		t.Errorf("spec %+v\nfault %+v, want %+v", s, s.Fault, want)
	}
	s, err = Parse("fault:16", dir)
	if err != nil || s.Fault != (fault.Options{Size: 16}) {
		t.Errorf("fault:16 = %+v, %v", s, err)
	}

	for text, want := range map[string]string{
		"fault:0":                   "want fault:SIZE",
		"fault:4k":                  "want fault:SIZE",
		"fault:16,errors=2":         `"2" is not a rate`,
		"fault:16,shorts=-0.1":      `"-0.1" is not a rate`,
		"fault:16,panics=NaN":       `"NaN" is not a rate`,
		"fault:16,delays=x":         `"x" is not a rate`,
		"fault:16,max-delay=5":      "missing unit",
		"fault:16,max-delay=-1ms":   "want 0 to 1m",
		"fault:16,max-delay=2h":     "want 0 to 1m",
		"fault:16,seed=-1":          `"-1" is not a number`,
		"fault:16,xfer=1k":          `"1k" is not a number`,
		"fault:16,errors":           `option "errors" needs a value`,
		"fault:16,offset=4":         `unknown option "offset" for fault`,
		"fault:16,seed=1,seed=2":    `option "seed" given twice`,
		"file:x,panics=0.1":         `unknown option "panics" for file`,
		"at24:1:0x50,errors=0.1":    `unknown option "errors" for at24`,
		"nope:1":                    "known: file, at24, sysfs, fault",
		"fault:16,xfer=99999999999": "too large",
	} {
		if _, err := Parse(text, dir); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) = %v, want an error saying %q", text, err, want)
		}
	}
}

// TestAttachFault: a fault device reads its computed content, is
// read-only, fails as configured, and checks its cells against its size.
func TestAttachFault(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "ok.cells", "id 0 8\n")
	write(t, dir, "past.cells", "id 0 8\nfar 0xfc 8\n")
	reg := nvcore.NewRegistry()

	s, err := Parse("fault:256,seed=9,xfer=32,name=good,cells=ok.cells", dir)
	if err != nil {
		t.Fatal(err)
	}
	d, err := s.Attach(reg)
	if err != nil {
		t.Fatal(err)
	}
	if d.Size() != 256 || d.CanWrite() || d.Mode() != 0o444 {
		t.Errorf("size %d, can write %v, mode %o; want 256, false, 0444", d.Size(), d.CanWrite(), d.Mode())
	}
	b := make([]byte, 256)
	if n, err := d.SysfsRead(b, 0); n != 256 || err != nil || !bytes.Equal(b, fault.Truth(9, 0, 256)) {
		t.Errorf("read: %d, %v; want the truth of seed 9", n, err)
	}
	c, err := d.Cell("id")
	if err != nil {
		t.Fatal(err)
	}
	if v, err := c.Read(); err != nil || !bytes.Equal(v, fault.Truth(9, 0, 8)) {
		t.Errorf("cell id: %x, %v", v, err)
	}
	if err := reg.Remove(d); err != nil {
		t.Fatal(err)
	}

	s, err = Parse("fault:256,errors=1,name=bad", dir)
	if err != nil {
		t.Fatal(err)
	}
	if d, err = s.Attach(reg); err != nil {
		t.Fatal(err)
	}
	if _, err := d.SysfsRead(b, 0); !errors.Is(err, syscall.EIO) {
		t.Errorf("read with errors=1: %v, want EIO", err)
	}
	reg.Remove(d)

	s, err = Parse("fault:256,cells=past.cells", dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Attach(reg); err == nil || !strings.Contains(err.Error(), "past.cells:2") {
		t.Errorf("a cell past the end: %v, want the cells file's line 2", err)
	}
}
