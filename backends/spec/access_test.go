package spec

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nvmemfs/nvmemfs/nvcore"
)

// TestAccessRefusals: every access option, where it would grant more than
// the device or the cell can do, or is malformed, is refused with a message
// that names the option and the reason; the device is not attached.
func TestAccessRefusals(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "img.bin"), make([]byte, 256), 0o644); err != nil {
		t.Fatal(err)
	}
	write(t, dir, "plain.cells", "serial 0 16\nflag 0x20 1 4 2\n")
	write(t, dir, "rw.cells", "serial 0 16 mode=0664\n")
	write(t, dir, "suid.cells", "serial 0 16 mode=4644\n")
	write(t, dir, "word.cells", "serial 0 16 mode=rw\n")
	root := filepath.Join(t.TempDir(), "sys")
	if err := os.CopyFS(root, os.DirFS("../sysfs/testdata/sys")); err != nil {
		t.Fatal(err)
	}
	devs := filepath.Join(root, "bus/nvmem/devices")
	// imx-ocotp0 cannot be written through the mirror (a read-only kernel
	// file); 0-00500 can, but the kernel's force_ro is set.
	os.Chmod(filepath.Join(devs, "imx-ocotp0/nvmem"), 0o444)
	os.WriteFile(filepath.Join(devs, "0-00500/force_ro"), []byte("1\n"), 0o644)
	os.Chmod(filepath.Join(devs, "0-00500/nvmem"), 0o644)
	img := "file:img.bin"
	// The same device with force_ro clear: writable, its cells still the
	// kernel's read-only ones.
	rwRoot := filepath.Join(t.TempDir(), "sys")
	if err := os.CopyFS(rwRoot, os.DirFS(root)); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(rwRoot, "bus/nvmem/devices/0-00500/force_ro"), []byte("0\n"), 0o644)

	cases := []struct{ spec, want string }{
		// Malformed: refused by Parse.
		{img + ",mode=0o644", `mode "0o644": want octal permission bits`},
		{img + ",mode=888", `mode "888": want octal permission bits`},
		{img + ",mode=-644", `want octal permission bits`},
		{img + ",mode=04644", `want octal permission bits`},
		{img + ",mode=4644", `mode 4644: only permission bits, 0000 to 0777`},
		{img + ",cells-mode=1777", `mode 1777: only permission bits`},
		{img + ",mode", `option "mode" needs a value`},
		{img + ",mode=0644,mode=0600", `option "mode" given twice`},
		{img + ",owner=no-such-user-here", `user "no-such-user-here": not a number and not known to this machine`},
		{img + ",group=no-such-group-here", `group "no-such-group-here": not a number and not known to this machine`},
		{img + ",owner=4294967295", `-1 (4294967295) means no change to chown`},
		{img + ",owner=", `empty user name`},
		{img + ",cell-mode=serial", `cell-mode=serial: want NAME:MODE`},
		{img + ",cell-mode=:0444", `want NAME:MODE`},
		{img + ",cell-mode=serial@10:0444", `cell-mode=serial@10:0444: want the cell's name without @off,bit`},
		{img + ",cell-mode=serial:0x1", `cell-mode=serial:0x1: mode "0x1": want octal`},
		{img + ",cells=plain.cells,cell-mode=serial:0444,cell-mode=serial:0400", `cell-mode for "serial" given twice`},
		{img + ",cells=suid.cells", `suid.cells:1: mode 4644: only permission bits`},
		{img + ",cells=word.cells", `word.cells:1: mode "rw": want octal permission bits`},
		// Granting writing where nothing can be written: refused at attach.
		{img + ",ro,mode=0644", `mode=0644 grants writing, but the device cannot be written (ro, or a memory opened read-only)`},
		{img + ",ro,mode=0602", `mode=0602 grants writing, but the device cannot be written`},
		{img + ",ro,cells=plain.cells,cells-mode=0644", `cells-mode=0644 grants writing, but the device cannot be written`},
		{img + ",ro,cells=plain.cells,cell-mode=serial:0600", `cell-mode=serial:0600 grants writing, but the device cannot be written`},
		{img + ",ro,cells=rw.cells", `cell 1 (serial): mode=0664 grants writing, but the device cannot be written`},
		{img + ",layout=onie-tlv,cells-mode=0644", `cells-mode=0644 grants writing, but the cells the layout onie-tlv finds are read-only`},
		{img + ",layout=u-boot-env,cells=plain.cells,cell-mode=ethaddr:0660", `cell-mode=ethaddr:0660 grants writing, but a cell "ethaddr" can only come from the layout u-boot-env, whose cells are read-only`},
		{img + ",cell-mode=serial:0444", `cell-mode=serial:0444: the device has no cell "serial" and no layout that could find one`},
		{img + ",cells=plain.cells,cell-mode=serail:0444", `the device has no cell "serail"`},
		{"sysfs:imx-ocotp0,root=" + root + ",mode=0644", `mode=0644 grants writing, but the device cannot be written (ro, or a memory opened read-only)`},
		{"sysfs:imx-ocotp0,root=" + root + ",cells-mode=0644", `cells-mode=0644 grants writing, but the device cannot be written`},
		{"sysfs:0-00500,root=" + root + ",mode=0664", `mode=0664 grants writing, but the device is read-only (ro, or force_ro set at attach)`},
		{"sysfs:0-00500,root=" + rwRoot + ",cell-mode=mac-address:0644", `cell-mode=mac-address:0644 grants writing, but cell "mac-address" is read-only`},
		{"sysfs:0-00500,root=" + rwRoot + ",cells-mode=0666", `cells-mode=0666 grants writing, but cell "boot-flags" is read-only`},
		{"sysfs:0-00500,root=" + root + ",ro,cell-mode=mac-address:0644", `cell-mode=mac-address:0644 grants writing, but the device is read-only`},
	}
	reg := nvcore.NewRegistry()
	defer reg.Close()
	for _, c := range cases {
		s, err := Parse(c.spec, dir)
		if err == nil {
			var d *nvcore.Device
			d, err = s.Attach(reg)
			if err == nil {
				reg.Remove(d)
				t.Errorf("%s: attached, want %q", c.spec, c.want)
				continue
			}
			if !errors.Is(err, nvcore.ErrInvalid) {
				t.Errorf("%s: %v is not an ErrInvalid (EINVAL)", c.spec, err)
			}
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s:\n got %v\nwant %q", c.spec, err, c.want)
		}
	}
	if n := len(reg.Devices()); n != 0 {
		t.Errorf("%d devices attached after refusals", n)
	}
}

// TestAccessApplied: what the options ask is what the device says, cell by
// cell, and without options the kernel's modes stay.
func TestAccessApplied(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "img.bin"), make([]byte, 256), 0o644); err != nil {
		t.Fatal(err)
	}
	write(t, dir, "c.cells", "serial 0 16\nmac 0x10 6 mode=0640\nboard 0x20 2\n")
	write(t, dir, "ro.cells", "serial 0 16\nmac 0x10 6 mode=0400\n")
	reg := nvcore.NewRegistry()
	defer reg.Close()
	attach := func(text string) *nvcore.Device {
		t.Helper()
		s, err := Parse(text, dir)
		if err != nil {
			t.Fatal(err)
		}
		d, err := s.Attach(reg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { reg.Remove(d) })
		return d
	}
	modes := func(d *nvcore.Device) string {
		var b strings.Builder
		for _, c := range d.Cells() {
			b.WriteString(c.Name() + ":" + nvcore.FormatMode(c.Mode()) + " ")
		}
		return strings.TrimSpace(b.String())
	}
	d := attach("file:img.bin,name=plain,cells=c.cells")
	if uid, gid := d.Owner(); d.Mode() != 0o644 || uid != -1 || gid != -1 {
		t.Errorf("no options: mode %o owner %d:%d, want the kernel's 0644 and the server's user", d.Mode(), uid, gid)
	}
	if got := modes(d); got != "serial:0644 mac:0640 board:0644" {
		t.Errorf("no options: cells %s", got)
	}
	d = attach("file:img.bin,name=acl,cells=c.cells,owner=0,group=daemon,mode=0600,cells-mode=0440,cell-mode=serial:0444,cell-mode=board:0664")
	if uid, gid := d.Owner(); d.Mode() != 0o600 || uid != 0 || gid != 1 {
		t.Errorf("options: mode %o owner %d:%d, want 0600 0:1", d.Mode(), uid, gid)
	}
	if got := modes(d); got != "serial:0444 mac:0640 board:0664" {
		t.Errorf("options: cells %s", got)
	}
	// mode= alone: the cells follow it as the kernel's follow nvmem's.
	d = attach("file:img.bin,name=rootonly,cells=c.cells,mode=0600")
	if got := modes(d); got != "serial:0600 mac:0640 board:0600" {
		t.Errorf("mode=0600: cells %s", got)
	}
	d = attach("file:img.bin,name=ro,ro,cells=ro.cells,mode=0440")
	if got := modes(d); d.Mode() != 0o440 || got != "serial:0440 mac:0400" {
		t.Errorf("ro,mode=0440: %o, cells %s", d.Mode(), got)
	}
}

// TestAccessSysfsMirror: a mirror takes the owner, group and modes of the
// kernel's files (as a udev rule may have changed them), unless the SPEC
// says otherwise.
func TestAccessSysfsMirror(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown the fake kernel files")
	}
	root := filepath.Join(t.TempDir(), "sys")
	if err := os.CopyFS(root, os.DirFS("../sysfs/testdata/sys")); err != nil {
		t.Fatal(err)
	}
	dev := filepath.Join(root, "bus/nvmem/devices/0-00500")
	os.WriteFile(filepath.Join(dev, "force_ro"), []byte("0\n"), 0o644)
	os.Chmod(filepath.Join(dev, "nvmem"), 0o640)
	os.Chown(filepath.Join(dev, "nvmem"), 0, 42)
	os.Chmod(filepath.Join(dev, "cells/serial-number@14,0"), 0o444)
	os.Chmod(filepath.Join(dev, "cells/mac-address@fa,0"), 0o440)
	reg := nvcore.NewRegistry()
	defer reg.Close()
	for _, c := range []struct{ spec, mode, cells string }{
		{"", "0640", "boot-flags:0444 serial-number:0444 mac-address:0440"},
		{",mode=0600,cells-mode=0400,cell-mode=serial-number:0444", "0600", "boot-flags:0400 serial-number:0444 mac-address:0400"},
	} {
		s, err := Parse("sysfs:0-00500,root="+root+c.spec, "")
		if err != nil {
			t.Fatal(err)
		}
		d, err := s.Attach(reg)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, cell := range d.Cells() {
			got = append(got, cell.Name()+":"+nvcore.FormatMode(cell.Mode()))
		}
		uid, gid := d.Owner()
		if nvcore.FormatMode(d.Mode()) != c.mode || uid != 0 || gid != 42 || strings.Join(got, " ") != c.cells {
			t.Errorf("sysfs%s: mode %o owner %d:%d cells %v; want %s 0:42 %s", c.spec, d.Mode(), uid, gid, got, c.mode, c.cells)
		}
		reg.Remove(d)
	}
}
