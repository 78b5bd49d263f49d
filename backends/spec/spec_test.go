package spec

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/nvmemfs/nvmemfs/nvcore"
)

func write(t *testing.T, dir, name, text string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestParse(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "c.cells", "# comment\nserial 0x10 16\n\nflag 0x22 1 4 3 # trailing comment\n")
	s, err := Parse("file:img.bin,name=board,type=EEPROM,ro,root-only,offset=0x100,size=256,word-size=2,stride=4,keepout=0x10-0x20:0xff,keepout=64-72:0,cells=c.cells", dir)
	if err != nil {
		t.Fatal(err)
	}
	want := nvcore.Config{
		Name: "board", Type: nvcore.TypeEEPROM, ReadOnly: true, RootOnly: true, WordSize: 2, Stride: 4,
		Keepouts: []nvcore.Keepout{{Start: 0x10, End: 0x20, Fill: 0xff}, {Start: 64, End: 72, Fill: 0}},
		Cells:    []nvcore.CellInfo{{Name: "serial", Offset: 0x10, Bytes: 16}, {Name: "flag", Offset: 0x22, Bytes: 1, BitOffset: 4, NBits: 3}},
	}
	if !reflect.DeepEqual(s.Config, want) {
		t.Errorf("config:\n got %+v\nwant %+v", s.Config, want)
	}
	if s.Path != filepath.Join(dir, "img.bin") || s.Offset != 0x100 || s.Size != 256 || s.Kind != "file" {
		t.Errorf("path %q offset %d size %d kind %q", s.Path, s.Offset, s.Size, s.Kind)
	}
	if !reflect.DeepEqual(s.cellLines, []int{2, 4}) {
		t.Errorf("cell lines %v", s.cellLines)
	}
}

func TestParseErrors(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "bad.cells", "ok 0 4\nbad 0xZZ 4\n")
	write(t, dir, "short.cells", "a 0 4 1\n")
	cases := map[string]string{
		"":                             "want KIND:ARGUMENT",
		"img.bin":                      "want KIND:ARGUMENT",
		"file:":                        "want KIND:ARGUMENT",
		"usb:1":                        `unknown kind "usb"`,
		"file:x,sise=4":                `unknown option "sise"`,
		"file:x,name=a,name=b":         `option "name" given twice`,
		"file:x,ro=1":                  `option "ro" takes no value`,
		"file:x,size":                  `option "size" needs a value`,
		"file:x,size=-4":               `"-4" is not a number`,
		"file:x,offset=010x":           `"010x" is not a number`,
		"file:x,offset=0x":             `"0x" is not a number`,
		"file:x,type=flash":            `type "flash"`,
		"file:x,keepout=1-2":           "want START-END:FILL",
		"file:x,keepout=1-2:256":       "fill must be a byte",
		"file:x,,ro":                   "empty option",
		"file:x,cells=bad.cells":       "bad.cells:2: offset",
		"file:x,cells=short.cells":     "short.cells:1: want NAME OFFSET BYTES",
		"file:x,cells=missing.cells":   "no such file",
		"file:x,word-size=99999999999": "too large",
	}
	for text, want := range cases {
		_, err := Parse(text, dir)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) = %v, want an error saying %q", text, err, want)
		}
	}
}

func TestParseNumber(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "10": 10, "010": 10, "0x10": 16, "0X1f": 31, "4096": 4096} {
		if got, err := ParseNumber(in); err != nil || got != want {
			t.Errorf("ParseNumber(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "+1", "0x", "1e3", "0o7", "0b1", " 1", "ten"} {
		if _, err := ParseNumber(in); err == nil {
			t.Errorf("ParseNumber(%q) succeeded", in)
		}
	}
}

func TestConfigFile(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "img.bin", strings.Repeat("x", 64))
	good := write(t, dir, "good.conf", "# devices\nfile:img.bin,name=a\n\n  file:img.bin,name=b,ro   # second\n")
	specs, err := ReadConfigFile(good)
	if err != nil {
		t.Fatal(err)
	}
	if len(specs) != 2 || specs[0].Config.Name != "a" || specs[1].Config.Name != "b" || !specs[1].Config.ReadOnly {
		t.Fatalf("specs: %+v", specs)
	}
	if specs[0].Path != filepath.Join(dir, "img.bin") {
		t.Errorf("relative path taken from %q, want the config's folder", specs[0].Path)
	}
	bad := write(t, dir, "bad.conf", "file:img.bin\nfile:img.bin,bogus\n")
	if _, err := ReadConfigFile(bad); err == nil || !strings.Contains(err.Error(), "bad.conf:2:") || !strings.Contains(err.Error(), `unknown option "bogus"`) {
		t.Errorf("bad config: %v", err)
	}
	spaced := write(t, dir, "spaced.conf", "file:img.bin, ro\n")
	if _, err := ReadConfigFile(spaced); err == nil || !strings.Contains(err.Error(), "spaced.conf:1:") {
		t.Errorf("spaced config: %v", err)
	}
}

// TestOpenChecksCells: a cell that does not fit the device is refused at
// open, pointing at its line, and the image is not left open.
func TestOpenChecksCells(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "img.bin", strings.Repeat("x", 64))
	write(t, dir, "c.cells", "fine 0 4\nlate 62 4\n")
	s, err := Parse("file:img.bin,cells=c.cells", dir)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = s.Open()
	if err == nil || !strings.Contains(err.Error(), "c.cells:2:") || !errors.Is(err, nvcore.ErrInvalid) {
		t.Errorf("open with a cell past the end: %v", err)
	}
	reg := nvcore.NewRegistry()
	s, _ = Parse("file:img.bin,name=dev", dir)
	if _, err := s.Attach(reg); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Attach(reg); !errors.Is(err, nvcore.ErrExist) {
		t.Errorf("second attach of the same name: %v", err)
	}
	if err := reg.RemoveAll(); err != nil {
		t.Error(err)
	}
}
