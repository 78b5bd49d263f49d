package spec

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nvmemfs/nvmemfs/nvcore"
	"github.com/nvmemfs/nvmemfs/nvcore/layouts"
)

// TestParseEnvOffsets: env-offset and env-offset2 place the copies of a
// U-Boot environment, in Parse and LayoutOptions alike; they go with the
// u-boot-env layouts only.
func TestParseEnvOffsets(t *testing.T) {
	text := "file:x.bin,layout=u-boot-env-redundant,env-size=0x2000,env-offset=0x10000,env-offset2=0"
	want := layouts.EnvConfig{Size: 0x2000, Offset: 0x10000, Offset2: 0, Offset2Set: true}
	s, err := Parse(text, "/")
	if err != nil || s.Env != want {
		t.Errorf("Parse: %+v, %v", s, err)
	}
	want.Redundant = true
	if _, env, err := LayoutOptions(text); err != nil || env != want {
		t.Errorf("LayoutOptions: %+v, %v", env, err)
	}
	if s, err := Parse("mtd:2,layout=u-boot-env,env-offset=0x40000", "/"); err != nil || s.Env.Offset != 0x40000 || s.Env.Offset2Set {
		t.Errorf("single at env-offset: %+v, %v", s, err)
	}
	for text, want := range map[string]string{
		"file:x,layout=u-boot-env,env-offset2=0x100":       "env-offset2 places the second copy: it goes with layout=u-boot-env-redundant",
		"file:x,env-offset=0x100":                          "env-offset goes with layout=u-boot-env or u-boot-env-redundant",
		"file:x,layout=auto,env-offset=0x100":              "env-offset goes with layout=u-boot-env",
		"file:x,layout=u-boot-env,env-offset=-1":           `"-1" is not a number`,
		"file:x,layout=u-boot-env-redundant,env-offset2=z": `"z" is not a number`,
		"file:x,layout=u-boot-env,env-offset":              `option "env-offset" needs a value`,
	} {
		if _, err := Parse(text, "/"); err == nil || !errors.Is(err, ErrSyntax) || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) = %v, want %q", text, err, want)
		}
	}
	if _, _, err := LayoutOptions("file:x,layout=u-boot-env-redundant,env-offset2=z"); err == nil {
		t.Error("LayoutOptions took a bad env-offset2")
	}
}

// TestAttachEnvOffsets: copies that do not fit or overlap are refused at
// attach with the config file's line and the option named, and nothing is
// registered; copies that fit attach.
func TestAttachEnvOffsets(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "img.bin", strings.Repeat("\xff", 0x400))
	lines := []string{
		"file:img.bin,layout=u-boot-env,env-size=0x100,env-offset=0x400",
		"file:img.bin,layout=u-boot-env,env-size=0x100,env-offset=0x380",
		"file:img.bin,layout=u-boot-env-redundant,env-size=0x100,env-offset=0x100,env-offset2=0x180",
		"file:img.bin,layout=u-boot-env-redundant,env-size=0x100,env-offset=0x300",
		"file:img.bin,layout=u-boot-env-redundant,env-size=0x100,env-offset2=0x400",
	}
	wants := []string{
		"u-boot-env: env-offset 0x400 is outside the device (size 0x400)",
		"u-boot-env: the copy at env-offset 0x380 with env-size 0x100 runs past the end of the device (size 0x400)",
		"u-boot-env-redundant: the copies at env-offset 0x100 and env-offset2 0x180 overlap (env-size 0x100)",
		"the copy at env-offset2 (by default right after copy 1: 0x400) with env-size 0x100 runs past the end",
		"env-offset2 0x400 is outside the device",
	}
	conf := write(t, dir, "d.conf", strings.Join(lines, "\n")+"\n")
	specs, err := ReadConfigFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range specs {
		reg := nvcore.NewRegistry()
		_, err := s.Attach(reg)
		prefix := filepath.Join(dir, "d.conf") + ":" + string(rune('1'+i)) + ": "
		if err == nil || !strings.HasPrefix(err.Error(), prefix) || !strings.Contains(err.Error(), wants[i]) || !errors.Is(err, nvcore.ErrInvalid) {
			t.Errorf("line %d: %v, want %q after %q", i+1, err, wants[i], prefix)
		}
		if n := len(reg.Devices()); n != 0 {
			t.Errorf("line %d: %d devices registered", i+1, n)
		}
	}
	attachEach(t, dir,
		"file:img.bin,layout=u-boot-env,env-size=0x100,env-offset=0x300",
		"file:img.bin,layout=u-boot-env,env-offset=0x300",
		"file:img.bin,layout=u-boot-env-redundant,env-size=0x100,env-offset=0x300,env-offset2=0",
		"file:img.bin,layout=u-boot-env-redundant,env-offset=0x100",
	)
}
