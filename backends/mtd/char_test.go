package mtd

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/nvmemfs/nvmemfs/nvcore"
)

const procSample = `dev:    size   erasesize  name
mtd0: 00040000 00010000 "u-boot"
mtd1: 00010000 00010000 "u-boot-env"
mtd2: 00010000 00010000 "u-boot-env-redund"
mtd3: 00400000 00010000 "dup"
mtd4: 00400000 00010000 "dup"
mtd5: 00040000 00010000 "mtdram test device"
`

func fakeProc(t *testing.T, content string) {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, "mtd")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	oldProc, oldDev := procMTD, devDir
	procMTD, devDir = p, "/dev"
	t.Cleanup(func() { procMTD, devDir = oldProc, oldDev })
}

func TestResolve(t *testing.T) {
	fakeProc(t, procSample)
	cases := []struct{ dev, want, err string }{
		{dev: "/dev/mtd3", want: "/dev/mtd3"},
		{dev: "/dev/mtd/by-name/env", want: "/dev/mtd/by-name/env"},
		{dev: "2", want: "/dev/mtd2"},
		{dev: "mtd7", want: "/dev/mtd7"},
		{dev: "u-boot-env", want: "/dev/mtd1"},
		{dev: "u-boot-env-redund", want: "/dev/mtd2"},
		{dev: "mtdram test device", want: "/dev/mtd5"},
		{dev: "dup", err: `2 partitions are called "dup"`},
		{dev: "nope", err: `no partition "nope"`},
		{dev: "", err: "no device"},
	}
	for _, tc := range cases {
		got, err := Resolve(tc.dev)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, nvcore.ErrInvalid) {
				t.Errorf("Resolve(%q) = %q, %v; want an error with %q", tc.dev, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("Resolve(%q) = %q, %v; want %q", tc.dev, got, err, tc.want)
		}
	}

	fakeProc(t, "dev:    size   erasesize  name\n")
	if _, err := Resolve("env"); err == nil || !strings.Contains(err.Error(), "lists none") {
		t.Errorf("no partitions: %v", err)
	}
	procMTD = filepath.Join(t.TempDir(), "absent")
	if _, err := Resolve("env"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("no /proc/mtd: %v", err)
	}
}

// TestOpenCharNotMTD: a file that is not an MTD device is refused by its
// MEMGETINFO.
func TestOpenCharNotMTD(t *testing.T) {
	p := filepath.Join(t.TempDir(), "img")
	if err := os.WriteFile(p, make([]byte, 4096), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := OpenDevice(p, Options{})
	switch {
	case errors.Is(err, syscall.ENOSYS):
		// qemu-user passes no MTD ioctl to the kernel; a kernel answers
		// ENOTTY for a regular file.
		t.Logf("a regular file: %v (an emulator that does not pass MEMGETINFO through)", err)
	case !errors.Is(err, nvcore.ErrInvalid) || !strings.Contains(err.Error(), "not an MTD character device"):
		t.Errorf("a regular file: %v", err)
	}
	if _, err := OpenDevice(filepath.Join(t.TempDir(), "absent"), Options{}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("no such file: %v", err)
	}
}

// mtdramDevice finds the kernel's mtdram device, loading the module if it
// can, or skips the test saying why. Only a device /proc/mtd calls
// "mtdram test device" is used: nothing else on the machine is written.
func mtdramDevice(t *testing.T) string {
	t.Helper()
	find := func() string {
		parts, err := readProcMTD("/proc/mtd")
		if err != nil {
			return ""
		}
		for _, p := range parts {
			if p.name == "mtdram test device" {
				return filepath.Join("/dev", p.dev)
			}
		}
		return ""
	}
	if dev := find(); dev != "" {
		return dev
	}
	const elsewhere = "; testdata/qemu-mtdram.sh runs this test in a Debian kernel under qemu"
	if os.Geteuid() != 0 {
		t.Skip("no mtdram device, and not root to load the module" + elsewhere)
	}
	if _, err := exec.LookPath("modprobe"); err != nil {
		why := "no modprobe to load it"
		if _, err := os.Stat("/proc/mtd"); err != nil {
			why = "this kernel has no MTD layer (no /proc/mtd) and there is no modprobe to load one"
		}
		t.Skip("no mtdram device: " + why + elsewhere)
	}
	out, err := exec.Command("modprobe", "mtdram", "total_size=256", "erase_size=64").CombinedOutput()
	if err != nil {
		t.Skipf("modprobe mtdram total_size=256 erase_size=64 failed (%v: %s): this kernel offers no mtdram"+elsewhere,
			err, bytes.TrimSpace(out))
	}
	t.Cleanup(func() { exec.Command("modprobe", "-r", "mtdram").Run() })
	dev := find()
	if dev == "" {
		t.Skip("mtdram loaded, but /proc/mtd lists no \"mtdram test device\"")
	}
	if _, err := os.Stat(dev); err != nil {
		t.Skipf("mtdram is %s, but: %v (no devtmpfs?)", dev, err)
	}
	return dev
}

// TestMtdram runs the provider against the kernel's mtdram through
// /dev/mtdN: geometry, an erase-needing write across blocks, a
// bit-clearing write, and what another reader of the device sees.
func TestMtdram(t *testing.T) {
	dev := mtdramDevice(t)
	p, err := OpenDevice(dev, Options{})
	if err != nil {
		t.Fatal(err)
	}
	f := p.(*Flash)
	info := f.Info()
	t.Logf("%s: %+v", dev, info)
	if info.Type != TypeRAM || info.EraseSize != 64<<10 || info.Size != 256<<10 || info.WriteSize != 1 {
		t.Errorf("geometry %+v, want MTD_RAM, 256 KiB, 64 KiB erase blocks, write size 1", info)
	}
	reg := nvcore.NewRegistry()
	t.Cleanup(func() { reg.RemoveAll() })
	d, err := reg.Register(nvcore.Config{Name: "mtdram"}, p)
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 100<<10)
	for i := range data {
		data[i] = byte(i*7 + i>>8)
	}
	off := int64(60 << 10)
	if _, err := d.WriteAt(data, off); err != nil {
		t.Fatal(err)
	}
	if _, err := d.WriteAt([]byte{0x00}, off+5); err != nil { // clears bits only
		t.Fatal(err)
	}
	data[5] = 0
	other, err := os.ReadFile(dev)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(other[off:off+int64(len(data))], data) {
		t.Error("another reader of the device sees other content")
	}
	if err := reg.Unregister("mtdram"); err != nil {
		t.Fatal(err)
	}
}
