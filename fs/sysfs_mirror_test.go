package fs

import (
	"bytes"
	"errors"
	iofs "io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/nvmemfs/nvmemfs/backends/sysfs"
	"github.com/nvmemfs/nvmemfs/nvcore"
)

// The fake kernel devices of backends/sysfs/testdata/sys, with the modes
// the kernel gives their nvmem files (git keeps only the executable bit).
var fakeKernelModes = map[string]iofs.FileMode{
	"0-00500":       0o644, // EEPROM, read-write
	"imx-ocotp0":    0o400, // OTP, read-only, root-only
	"ds1307_nvram0": 0o444, // battery-backed RAM, read-only
}

// fakeKernelTree is backends/sysfs's fake sysfs tree, found from this
// package's folder, where go test runs the test binary (as every testdata
// of this module is found). A test binary started by hand from another
// folder (qemu-arm-static ./fs.test from the module root, or a binary
// copied to a board) does not find it; os.CopyFS then said only "stat .:
// no such file or directory", which looked like the emulator's fault.
const fakeKernelTree = "../backends/sysfs/testdata/sys"

// fakeKernel copies the fake sysfs tree to a temporary folder, adds
// 2-00500, a root-only read-write copy of 0-00500, gives every file the
// kernel's mode, and returns the root.
func fakeKernel(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(fakeKernelTree); err != nil {
		wd, _ := os.Getwd()
		t.Fatalf("the fake kernel tree: %v (in %s): run the test binary from the fs package's folder, as go test does", err, wd)
	}
	root := filepath.Join(t.TempDir(), "sys")
	if err := os.CopyFS(root, os.DirFS(fakeKernelTree)); err != nil {
		t.Fatal(err)
	}
	devs := filepath.Join(root, "bus", "nvmem", "devices")
	if err := os.CopyFS(filepath.Join(devs, "2-00500"), os.DirFS(filepath.Join(devs, "0-00500"))); err != nil {
		t.Fatal(err)
	}
	modes := map[string]iofs.FileMode{"2-00500": 0o600}
	for name, mode := range fakeKernelModes {
		modes[name] = mode
	}
	for name, mode := range modes {
		dir := filepath.Join(devs, name)
		chmod := func(path string, m iofs.FileMode) {
			if err := os.Chmod(path, m); err != nil && !errors.Is(err, iofs.ErrNotExist) {
				t.Fatal(err)
			}
		}
		chmod(filepath.Join(dir, "nvmem"), mode)
		chmod(filepath.Join(dir, "type"), 0o444)
		chmod(filepath.Join(dir, "force_ro"), 0o644)
		cells, _ := filepath.Glob(filepath.Join(dir, "cells", "*"))
		for _, c := range cells {
			chmod(c, 0o444&mode)
		}
	}
	return root
}

// attachMirror opens the kernel device name in the fake tree and registers
// the mirror.
func (m *mounted) attachMirror(t *testing.T, root, name string, poll time.Duration) *nvcore.Device {
	t.Helper()
	p, cfg, err := sysfs.Open(name, sysfs.Options{Root: root, PollInterval: poll})
	if err != nil {
		t.Fatalf("open %s: %v", name, err)
	}
	d, err := m.reg.Register(cfg, p)
	if err != nil {
		p.Close()
		t.Fatalf("register %s: %v", name, err)
	}
	return d
}

func kernelDir(root, name string) string {
	return filepath.Join(root, "bus", "nvmem", "devices", name)
}

// TestSysfsMirror: each kernel device mounted through its mirror shows the
// kernel's content, type, modes and cells; writes reach the kernel's file.
func TestSysfsMirror(t *testing.T) {
	m := mountTest(t)
	root := fakeKernel(t)
	cases := []struct {
		name    string
		typ     string
		mode    iofs.FileMode
		forceRO string // "" when the file must be absent
	}{
		{"0-00500", "EEPROM\n", 0o644, "0\n"},
		{"2-00500", "EEPROM\n", 0o600, "0\n"},
		{"imx-ocotp0", "OTP\n", 0o400, ""},
		// The kernel has force_ro here, but we opened its file read-only:
		// no write face, so no force_ro (SPEC 1).
		{"ds1307_nvram0", "Battery backed\n", 0o444, ""},
	}
	for _, c := range cases {
		m.attachMirror(t, root, c.name, time.Second)
	}
	if got, want := listDir(t, m.dir), []string{"0-00500", "2-00500", "ds1307_nvram0", "imx-ocotp0"}; !slices.Equal(got, want) {
		t.Errorf("root lists %q, want %q", got, want)
	}
	for _, c := range cases {
		kdir := kernelDir(root, c.name)
		kernel, err := os.ReadFile(filepath.Join(kdir, "nvmem"))
		if err != nil {
			t.Fatal(err)
		}
		if got, err := os.ReadFile(m.path(c.name, "nvmem")); err != nil || !bytes.Equal(got, kernel) {
			t.Errorf("%s: nvmem reads %d bytes, %v; want the kernel's %d", c.name, len(got), err, len(kernel))
		}
		if got, err := os.ReadFile(m.path(c.name, "type")); err != nil || string(got) != c.typ {
			t.Errorf("%s: type %q, %v; want %q", c.name, got, err, c.typ)
		}
		st, err := os.Stat(m.path(c.name, "nvmem"))
		if err != nil || st.Mode().Perm() != c.mode || st.Size() != int64(len(kernel)) {
			t.Errorf("%s: nvmem %v, %v; want mode %v size %d", c.name, st.Mode(), err, c.mode, len(kernel))
		}
		got, err := os.ReadFile(m.path(c.name, "force_ro"))
		if c.forceRO == "" && !errors.Is(err, iofs.ErrNotExist) || c.forceRO != "" && string(got) != c.forceRO {
			t.Errorf("%s: force_ro %q, %v; want %q", c.name, got, err, c.forceRO)
		}
		if c.mode&0o200 == 0 {
			if err := openOrFirstIO(m.path(c.name, "nvmem"), syscall.O_RDWR); errnoOf(err) != syscall.EACCES {
				t.Errorf("%s: open for writing: %v, want EACCES for root too", c.name, err)
			}
		}

		// cells/ lists the kernel's cells and reads what the kernel's files
		// hold, with the kernel's 0444 & mode.
		kcells, _ := os.ReadDir(filepath.Join(kdir, "cells"))
		var want []string
		for _, e := range kcells {
			want = append(want, e.Name())
		}
		if len(want) == 0 {
			if _, err := os.Stat(m.path(c.name, "cells")); !errors.Is(err, iofs.ErrNotExist) {
				t.Errorf("%s: cells/ without kernel cells: %v", c.name, err)
			}
			continue
		}
		got2 := listDir(t, m.path(c.name, "cells"))
		slices.Sort(got2)
		if !slices.Equal(got2, want) {
			t.Errorf("%s: cells/ lists %q, want the kernel's %q", c.name, got2, want)
		}
		for _, cell := range want {
			kb, err := os.ReadFile(filepath.Join(kdir, "cells", cell))
			if err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(m.path(c.name, "cells", cell))
			if err != nil || !bytes.Equal(b, kb) {
				t.Errorf("%s: cell %s reads % x, %v; want the kernel's % x", c.name, cell, b, err, kb)
			}
			st, err := os.Stat(m.path(c.name, "cells", cell))
			if err != nil || st.Mode().Perm() != 0o444&c.mode || st.Size() != int64(len(kb)) {
				t.Errorf("%s: cell %s: %v, %v; want mode %v size %d", c.name, cell, st.Mode(), err, 0o444&c.mode, len(kb))
			}
		}
	}

	// A write through the mirror lands in the kernel's file, and a write to
	// the kernel's file shows through the mirror.
	kpath := filepath.Join(kernelDir(root, "0-00500"), "nvmem")
	fd := openFile(t, m.path("0-00500", "nvmem"), syscall.O_RDWR)
	if n, err := syscall.Pwrite(fd, []byte("mirror"), 0x30); n != 6 || err != nil {
		t.Fatalf("pwrite: %d, %v", n, err)
	}
	if kb, _ := os.ReadFile(kpath); string(kb[0x30:0x36]) != "mirror" {
		t.Errorf("the kernel file holds %q after a write through the mirror", kb[0x30:0x36])
	}
	kb, _ := os.ReadFile(kpath)
	copy(kb[0x50:], "kernel")
	if err := os.WriteFile(kpath, kb, 0); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 6)
	if dev, err := m.reg.Device("0-00500"); err == nil && dev.Cached() {
		// A cached mirror does not notice a change made outside
		// nvmemfs: its pages show the old bytes until they are dropped
		// (here by hand; memory pressure, a write through nvmemfs and a
		// re-attach do it too). docs/CLI.md says so.
		if n, err := syscall.Pread(fd, buf, 0x50); n != 6 || err != nil || string(buf) == "kernel" {
			t.Errorf("cached: pread after a kernel-side write: %q, %d, %v; want the cached bytes", buf, n, err)
		}
		dropPageCache(t, m.path("0-00500", "nvmem"))
	}
	if n, err := syscall.Pread(fd, buf, 0x50); n != 6 || err != nil || string(buf) != "kernel" {
		t.Errorf("pread after a kernel-side write: %q, %d, %v", buf, n, err)
	}
}

// TestSysfsMirrorVanishes: the kernel's device goes while a descriptor of
// its mirror is open. Within a bound the device leaves the tree; the open
// descriptors get ENODEV, a fresh stat ENOENT, and nothing hangs. The other
// mirror stays.
func TestSysfsMirrorVanishes(t *testing.T) {
	m := mountTest(t)
	root := fakeKernel(t)
	m.attachMirror(t, root, "0-00500", 10*time.Millisecond)
	m.attachMirror(t, root, "imx-ocotp0", 10*time.Millisecond)
	fd := openFile(t, m.path("0-00500", "nvmem"), syscall.O_RDWR)
	cellFD := openFile(t, m.path("0-00500", "cells", "mac-address@fa,0"), syscall.O_RDONLY)
	buf := make([]byte, 16)
	if _, err := syscall.Pread(fd, buf, 0); err != nil {
		t.Fatalf("read before the removal: %v", err)
	}

	// What unbinding the driver does to sysfs.
	if err := os.RemoveAll(kernelDir(root, "0-00500")); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for slices.Contains(listDir(t, m.dir), "0-00500") {
		if time.Since(start) > 5*time.Second {
			t.Fatalf("the device is still listed 5 s after the kernel's went: %q", listDir(t, m.dir))
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("the mirror left the tree %v after the kernel device", time.Since(start).Round(time.Millisecond))

	done := make(chan struct{})
	go func() {
		defer close(done)
		if _, err := syscall.Pread(fd, buf, 0); errnoOf(err) != syscall.ENODEV {
			t.Errorf("pread on the open descriptor: %v, want ENODEV", err)
		}
		if _, err := syscall.Pwrite(fd, buf, 0); errnoOf(err) != syscall.ENODEV {
			t.Errorf("pwrite on the open descriptor: %v, want ENODEV", err)
		}
		if _, err := syscall.Pread(cellFD, buf, 0); errnoOf(err) != syscall.ENODEV {
			t.Errorf("pread on the open cell: %v, want ENODEV", err)
		}
		for _, p := range []string{m.path("0-00500"), m.path("0-00500", "nvmem"), m.path("0-00500", "cells", "mac-address@fa,0")} {
			if _, err := os.Stat(p); errnoOf(err) != syscall.ENOENT {
				t.Errorf("stat %s: %v, want ENOENT", p, err)
			}
		}
		if got, err := os.ReadFile(m.path("imx-ocotp0", "cells", "unique-id@4,0")); err != nil || len(got) != 8 {
			t.Errorf("the other mirror: %d bytes, %v", len(got), err)
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("calls on a vanished mirror hung:\n%s", stackDump())
	}
	if _, err := m.reg.Device("0-00500"); !errors.Is(err, nvcore.ErrNoDevice) {
		t.Errorf("the registry still has the device: %v", err)
	}
}
