package spec

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nvmemfs/nvmemfs/backends/block/looptest"
	"github.com/nvmemfs/nvmemfs/nvcore"
)

// TestParseBlock: block:DEV takes a path (relative ones from the config's
// folder) or a kernel name (a node in /dev), the window options, root=,
// and the common options; a U-Boot environment on it keeps the counter
// flags, as U-Boot's tools use on block devices.
func TestParseBlock(t *testing.T) {
	for arg, want := range map[string]string{
		"/dev/mmcblk0boot1":                "/dev/mmcblk0boot1",
		"mmcblk0boot1":                     "/dev/mmcblk0boot1",
		"/dev/disk/by-partlabel/uboot-env": "/dev/disk/by-partlabel/uboot-env",
		"links/env":                        "/etc/links/env",
	} {
		s, err := Parse("block:"+arg+",name=env,ro,offset=0x3e0000,size=0x20000,root=/sys", "/etc")
		if err != nil || s.Kind != "block" || s.Path != want || s.Offset != 0x3e0000 || s.Size != 0x20000 || s.Root != "/sys" || !s.Config.ReadOnly {
			t.Errorf("block:%s: %+v, %v", arg, s, err)
		}
	}
	if _, env, err := LayoutOptions("block:mmcblk0boot1,layout=u-boot-env-redundant"); err != nil || env.Flags != 0 || !env.Redundant {
		t.Errorf("LayoutOptions on block: %+v, %v", env, err)
	}
	for text, want := range map[string]string{
		"block:":                   "want KIND:ARGUMENT",
		"block:sda,chip=24c02":     `unknown option "chip" for block`,
		"block:sda,size=0":         "size=0",
		"block:sda,offset=-1":      "not a number",
		"blk:sda":                  "block",
		"block:sda,env-size=0x100": "env-size and env-flags go with layout=",
	} {
		if _, err := Parse(text, "/"); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) = %v, want an error saying %q", text, err, want)
		}
	}
}

// TestAttachBlock: a window of a real loop device attaches with a U-Boot
// environment in it (at an offset, as on an eMMC boot partition), its
// cells found; the device's kernel name is recorded for its udev remove
// event; what is not a block device is refused.
func TestAttachBlock(t *testing.T) {
	content := make([]byte, 1<<20)
	// A single environment of 0x1000 bytes at 0x80000: CRC, then a=1 b=2.
	env := make([]byte, 0x1000)
	copy(env[4:], "a=1\x00b=2\x00\x00")
	putCRC(env)
	copy(content[0x80000:], env)
	img := looptest.Image(t, content)
	dev := looptest.Attach(t, img)
	reg := nvcore.NewRegistry()
	defer reg.RemoveAll()
	s, err := Parse("block:"+filepath.Base(dev)+",name=env,offset=0x80000,size=0x1000,layout=u-boot-env", "/")
	if err != nil {
		t.Fatal(err)
	}
	d, err := s.Attach(reg)
	if err != nil {
		t.Fatal(err)
	}
	if s.Hardware != filepath.Base(dev) {
		t.Errorf("hardware %q, want %q", s.Hardware, filepath.Base(dev))
	}
	var names []string
	for _, c := range d.Cells() {
		names = append(names, c.Info().Name)
	}
	if strings.Join(names, " ") != "a b" {
		t.Errorf("cells %q, want a b", names)
	}
	if _, err := d.WriteAt([]byte("zz"), 0x10); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(img)
	if !bytes.Equal(got[0x80010:0x80012], []byte("zz")) || !bytes.Equal(got[:0x80000], content[:0x80000]) {
		t.Error("the write did not land in the window")
	}

	s, _ = Parse("block:"+img, "/")
	if _, err := s.Attach(reg); !errors.Is(err, nvcore.ErrInvalid) || !strings.Contains(err.Error(), "not a block device") {
		t.Errorf("a regular file: %v", err)
	}
}

// putCRC stores the CRC-32 of a single environment's data, little-endian.
func putCRC(env []byte) {
	binary.LittleEndian.PutUint32(env, crc32.ChecksumIEEE(env[4:]))
}
