package spec

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/nvmemfs/nvmemfs/nvcore"
	"github.com/nvmemfs/nvmemfs/nvcore/layouts"
)

// TestParseMTD: mtd:DEV takes a device path, a number or a partition name
// as it is (resolved when opened), only the common options, and a U-Boot
// environment on it defaults to boolean flags (NOR media, SPEC 8).
func TestParseMTD(t *testing.T) {
	for _, dev := range []string{"/dev/mtd3", "3", "u-boot-env"} {
		s, err := Parse("mtd:"+dev+",name=env,ro", "/tmp")
		if err != nil || s.Kind != "mtd" || s.Path != dev || s.Config.Name != "env" || !s.Config.ReadOnly {
			t.Errorf("mtd:%s: %+v, %v", dev, s, err)
		}
	}
	s, err := Parse("mtd:u-boot-env,layout=u-boot-env-redundant,env-size=0x2000", "/")
	if err != nil || s.Env.Flags != layouts.EnvFlagsBoolean || s.Env.Size != 0x2000 {
		t.Errorf("env on mtd: %+v, %v", s.Env, err)
	}
	s, err = Parse("mtd:u-boot-env,layout=u-boot-env-redundant,env-flags=counter", "/")
	if err != nil || s.Env.Flags != layouts.EnvFlagsCounter {
		t.Errorf("env-flags=counter on mtd: %+v, %v", s.Env, err)
	}
	if s, err := Parse("file:x,layout=u-boot-env-redundant", "/"); err != nil || s.Env.Flags != layouts.EnvFlagsCounter {
		t.Errorf("a file's env flags changed: %+v, %v", s, err)
	}
	if _, env, err := LayoutOptions("mtd:3,layout=u-boot-env-redundant"); err != nil || env.Flags != layouts.EnvFlagsBoolean || !env.Redundant {
		t.Errorf("LayoutOptions on mtd: %+v, %v", env, err)
	}
	if _, env, err := LayoutOptions("mtd:3,layout=u-boot-env-redundant,env-flags=counter"); err != nil || env.Flags != layouts.EnvFlagsCounter {
		t.Errorf("LayoutOptions on mtd with env-flags=counter: %+v, %v", env, err)
	}
	for text, want := range map[string]string{
		"mtd:":                 "want KIND:ARGUMENT",
		"mtd:0,offset=4":       `unknown option "offset" for mtd`,
		"mtd:0,chip=24c02":     `unknown option "chip" for mtd`,
		"flash:0":              "mtd",
		"mtd:0,env-flags=both": "env-flags",
	} {
		if _, err := Parse(text, "/"); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) = %v, want an error saying %q", text, err, want)
		}
	}
}

// TestAttachMTD: attach opens the device through the mtd provider, which
// refuses what is not an MTD character device. (The provider itself is
// tested against a simulated NOR flash in backends/mtd, and against the
// kernel's mtdram by backends/mtd/testdata/qemu-mtdram.sh.)
func TestAttachMTD(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "img")
	if err := os.WriteFile(img, make([]byte, 4096), 0o644); err != nil {
		t.Fatal(err)
	}
	reg := nvcore.NewRegistry()
	defer reg.RemoveAll()
	s, err := Parse("mtd:"+img, dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Attach(reg)
	switch {
	case errors.Is(err, syscall.ENOSYS):
		// qemu-user passes no MTD ioctl to the kernel; a kernel answers
		// ENOTTY for a regular file.
		t.Logf("a regular file: %v (an emulator that does not pass MEMGETINFO through)", err)
	case !errors.Is(err, nvcore.ErrInvalid) || !strings.Contains(err.Error(), "not an MTD character device"):
		t.Errorf("a regular file: %v", err)
	}
	s, _ = Parse("mtd:"+filepath.Join(dir, "mtd9"), dir)
	if _, err := s.Attach(reg); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a missing device: %v", err)
	}
	if n := len(reg.Devices()); n != 0 {
		t.Errorf("%d devices registered", n)
	}
}
