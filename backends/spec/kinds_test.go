package spec

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nvmemfs/nvmemfs/backends/at24"
	"github.com/nvmemfs/nvmemfs/backends/wp"
	"github.com/nvmemfs/nvmemfs/nvcore"
	"github.com/nvmemfs/nvmemfs/nvcore/layouts"
)

// TestParseKinds: the at24 and sysfs kinds, and the layout and wp-gpio
// options every kind takes.
func TestParseKinds(t *testing.T) {
	s, err := Parse("at24:i2c-tiny-usb at bus 001 device 005:0x50,chip=24c256,pagesize=64,io-limit=32,wp-gpio=gpiochip0:17:active-low,name=board,layout=onie-tlv", "/")
	if err != nil {
		t.Fatal(err)
	}
	if s.Kind != "at24" || s.Bus != "i2c-tiny-usb at bus 001 device 005" || s.Addr != 0x50 ||
		s.AT24 != (at24.Options{Chip: "24c256", PageSize: 64, IOLimit: 32}) || s.Layout != "onie-tlv" ||
		s.WriteProtect == nil || *s.WriteProtect != (wp.Spec{Chip: "gpiochip0", Line: 17, ActiveLow: true}) {
		t.Errorf("at24 spec: %+v (wp %+v)", s, s.WriteProtect)
	}
	s, err = Parse("at24:/dev/i2c-1:80", "/")
	if err != nil || s.Bus != "/dev/i2c-1" || s.Addr != 80 {
		t.Errorf("at24 with a path and a decimal address: %+v, %v", s, err)
	}
	s, err = Parse("sysfs:0-00500,root=fake/sys,name=eeprom,layout=auto,env-size=auto", "/tmp")
	if err != nil || s.Path != "0-00500" || s.Root != "/tmp/fake/sys" || !s.Env.AutoSize || s.Layout != "auto" {
		t.Errorf("sysfs spec: %+v, %v", s, err)
	}
	s, err = Parse("file:x,layout=u-boot-env-redundant,env-size=0x2000,env-flags=boolean", "/")
	if err != nil || s.Env.Size != 0x2000 || s.Env.Flags != layouts.EnvFlagsBoolean {
		t.Errorf("env options: %+v, %v", s.Env, err)
	}

	for text, want := range map[string]string{
		"at24:1":                         "want at24:BUS:ADDR",
		"at24:1:0x80":                    "7-bit I2C address",
		"at24:1:0x50,chip=24c03":         "24c03",
		"at24:1:0x50,offset=4":           `unknown option "offset" for at24`,
		"file:x,chip=24c02":              `unknown option "chip" for file`,
		"sysfs:a/b":                      "kernel's device name",
		"sysfs:x,root=/sys,size=4":       `unknown option "size" for sysfs`,
		"file:x,layout=tlv":              `unknown layout "tlv"`,
		"file:x,env-size=4":              "env-size and env-flags go with layout=u-boot-env",
		"file:x,layout=auto,env-flags=x": "env-flags",
		"file:x,wp-gpio=17":              "want CHIP:LINE",
	} {
		if _, err := Parse(text, "/"); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) = %v, want an error saying %q", text, err, want)
		}
	}
}

// TestLayoutOptions reads only the layout options of a SPEC.
func TestLayoutOptions(t *testing.T) {
	layout, env, err := LayoutOptions("file:x.bin,name=e,layout=u-boot-env-redundant,env-size=0x4000,env-flags=boolean,cells=nowhere.cells")
	if err != nil || layout != "u-boot-env-redundant" || env != (layouts.EnvConfig{Size: 0x4000, Redundant: true, Flags: layouts.EnvFlagsBoolean}) {
		t.Errorf("LayoutOptions = %q, %+v, %v", layout, env, err)
	}
	if _, _, err := LayoutOptions("file:x,env-size=zz"); err == nil {
		t.Error("a bad env-size was accepted")
	}
}

// TestAttachSysfs: a sysfs SPEC takes the kernel's name, type, modes and
// cells, and declared cells come after the kernel's.
func TestAttachSysfs(t *testing.T) {
	root := filepath.Join(t.TempDir(), "sys")
	if err := os.CopyFS(root, os.DirFS("../sysfs/testdata/sys")); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Join(root, "bus/nvmem/devices/imx-ocotp0/nvmem"), 0o400)
	dir := t.TempDir()
	write(t, dir, "extra.cells", "lot 0x10 2\n")
	s, err := Parse("sysfs:imx-ocotp0,root="+root+",cells=extra.cells", dir)
	if err != nil {
		t.Fatal(err)
	}
	reg := nvcore.NewRegistry()
	d, err := s.Attach(reg)
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Remove(d)
	if d.Name() != "imx-ocotp0" || d.Type() != nvcore.TypeOTP || d.Mode() != 0o400 {
		t.Errorf("mirror: name %q type %v mode %o", d.Name(), d.Type(), d.Mode())
	}
	var names []string
	for _, c := range d.Cells() {
		names = append(names, c.Name())
	}
	if strings.Join(names, " ") != "unique-id lot" {
		t.Errorf("cells %q, want the kernel's then the declared", names)
	}
	// A missing kernel device is a clear error.
	s, _ = Parse("sysfs:nope,root="+root, dir)
	if _, err := s.Attach(reg); err == nil || !errors.Is(err, os.ErrNotExist) && !strings.Contains(err.Error(), "nope") {
		t.Errorf("missing kernel device: %v", err)
	}
}

// TestConfigAdapterName: a config line is one SPEC, spaces and all, so an
// I2C adapter can be named as the kernel names it.
func TestConfigAdapterName(t *testing.T) {
	dir := t.TempDir()
	conf := write(t, dir, "n.conf", "  at24:i2c-tiny-usb at bus 001 device 005:0x50,chip=24c256,name=board   # the bridge\n")
	specs, err := ReadConfigFile(conf)
	if err != nil || len(specs) != 1 || specs[0].Bus != "i2c-tiny-usb at bus 001 device 005" || specs[0].Config.Name != "board" {
		t.Fatalf("specs %+v, %v", specs, err)
	}
}
