package sysfs

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nvmemfs/nvmemfs/nvcore"
)

// kernelModes are the modes the kernel gives the nvmem files of the fake
// devices in testdata/sys: git keeps only the executable bit, so fakeSys
// sets them after copying the tree.
var kernelModes = map[string]fs.FileMode{
	"0-00500":       0o644, // an EEPROM: read-write, world-readable
	"imx-ocotp0":    0o400, // OTP fuses: read-only, root-only
	"ds1307_nvram0": 0o444, // RTC RAM, read-only by configuration
}

// fakeSys copies testdata/sys to a temporary folder, gives its files the
// kernel's modes, and returns its root.
func fakeSys(t *testing.T) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "sys")
	if err := os.CopyFS(root, os.DirFS("testdata/sys")); err != nil {
		t.Fatal(err)
	}
	for name, mode := range kernelModes {
		setKernelModes(t, deviceDir(root, name), mode)
	}
	return root
}

func deviceDir(root, name string) string {
	return filepath.Join(root, "bus", "nvmem", "devices", name)
}

// setKernelModes gives a fake device's files the modes the kernel gives
// them: nvmem gets mode, type 0444, force_ro 0644, each cell 0444 & mode.
func setKernelModes(t *testing.T, dir string, mode fs.FileMode) {
	t.Helper()
	chmod := func(path string, m fs.FileMode) {
		if err := os.Chmod(path, m); err != nil && !errors.Is(err, fs.ErrNotExist) {
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

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	// The file may be read-only, as the kernel makes it.
	os.Chmod(path, 0o644)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustOpen(t *testing.T, root, name string, poll time.Duration) (nvcore.Provider, nvcore.Config) {
	t.Helper()
	p, cfg, err := Open(name, Options{Root: root, PollInterval: poll})
	if err != nil {
		t.Fatalf("open %s: %v", name, err)
	}
	return p, cfg
}

// mirrorOf reaches the shared state behind either provider type.
func mirrorOf(t *testing.T, p nvcore.Provider) *mirror {
	t.Helper()
	switch p := p.(type) {
	case *Mirror:
		return p.m
	case *ReadOnlyMirror:
		return p.m
	}
	t.Fatalf("provider %T is not a mirror", p)
	return nil
}

func cellNames(cells []nvcore.CellInfo) []string {
	var names []string
	for _, c := range cells {
		names = append(names, c.FileName())
	}
	return names
}

func TestList(t *testing.T) {
	root := fakeSys(t)
	got, err := List(Options{Root: root})
	want := []string{"0-00500", "ds1307_nvram0", "imx-ocotp0"}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("List = %q, %v; want %q", got, err, want)
	}

	// A sysfs without the nvmem bus: a kernel without nvmem, no devices.
	empty := t.TempDir()
	if got, err := List(Options{Root: empty}); err != nil || len(got) != 0 {
		t.Errorf("List without bus/nvmem = %q, %v; want none", got, err)
	}
	// A root that is not there is a mistake, not an empty list.
	if _, err := List(Options{Root: filepath.Join(empty, "nosuch")}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("List of a missing root: %v, want ErrNotExist", err)
	}
}

// TestConfig: each fake device's config carries the kernel's name, type,
// modes and cells, and registers with the kernel's mode.
func TestConfig(t *testing.T) {
	root := fakeSys(t)
	cases := []struct {
		name               string
		typ                nvcore.Type
		readOnly, rootOnly bool
		writer             bool
		size               int64
		mode               uint32
		cells              []nvcore.CellInfo
	}{
		{"0-00500", nvcore.TypeEEPROM, false, false, true, 256, 0o644, []nvcore.CellInfo{
			{Name: "boot-flags", Offset: 0x10, Bytes: 1, BitOffset: 4, NBits: 4, Layout: "kernel", Provided: true},
			{Name: "serial-number", Offset: 0x14, Bytes: 16, Layout: "kernel", Provided: true},
			{Name: "mac-address", Offset: 0xfa, Bytes: 6, Layout: "kernel", Provided: true},
		}},
		{"imx-ocotp0", nvcore.TypeOTP, true, true, false, 128, 0o400, []nvcore.CellInfo{
			{Name: "unique-id", Offset: 4, Bytes: 8, Layout: "kernel", Provided: true},
		}},
		{"ds1307_nvram0", nvcore.TypeBatteryBacked, true, false, false, 56, 0o444, nil},
	}
	reg := nvcore.NewRegistry()
	t.Cleanup(func() { reg.RemoveAll() })
	for _, c := range cases {
		p, cfg := mustOpen(t, root, c.name, 0)
		if cfg.Name != c.name || cfg.Type != c.typ || cfg.ReadOnly != c.readOnly || cfg.RootOnly != c.rootOnly {
			t.Errorf("%s: config name %q type %v read-only %t root-only %t; want %q %v %t %t",
				c.name, cfg.Name, cfg.Type, cfg.ReadOnly, cfg.RootOnly, c.name, c.typ, c.readOnly, c.rootOnly)
		}
		if _, ok := p.(io.WriterAt); ok != c.writer {
			t.Errorf("%s: provider %T has WriteAt %t, want %t", c.name, p, ok, c.writer)
		}
		if p.Size() != c.size {
			t.Errorf("%s: size %d, want %d", c.name, p.Size(), c.size)
		}
		if !slices.EqualFunc(cfg.Cells, c.cells, func(a, b nvcore.CellInfo) bool {
			return a.Name == b.Name && a.Offset == b.Offset && a.Bytes == b.Bytes && a.BitOffset == b.BitOffset &&
				a.NBits == b.NBits && a.Layout == b.Layout && a.Provided == b.Provided
		}) {
			t.Errorf("%s: cells %+v, want %+v", c.name, cfg.Cells, c.cells)
		}
		if s := p.(interface{ Skipped() []error }).Skipped(); len(s) != 0 {
			t.Errorf("%s: skipped %v", c.name, s)
		}
		d, err := reg.Register(cfg, p)
		if err != nil {
			t.Fatalf("%s: register: %v", c.name, err)
		}
		if d.Mode() != c.mode {
			t.Errorf("%s: registered mode %04o, want the kernel's %04o", c.name, d.Mode(), c.mode)
		}
	}
}

// TestModes: the kernel file's mode and force_ro decide read-only and
// root-only, once, at attach.
func TestModes(t *testing.T) {
	cases := []struct {
		name     string
		perm     fs.FileMode
		forceRO  string // "" removes the file
		writer   bool   // the provider has WriteAt
		mode     uint32 // of the registered device
		forceOn  bool   // its force_ro switch
		canWrite bool
	}{
		{"eeprom", 0o644, "0\n", true, 0o644, false, true},
		{"root-only eeprom", 0o600, "0\n", true, 0o600, false, true},
		// The kernel's force_ro is 1 now: read-only, as the kernel would
		// make a device registered read-only; still writable by library
		// callers who clear our force_ro (the kernel's must be 0 too).
		{"force_ro 1", 0o644, "1\n", true, 0o444, true, true},
		{"no force_ro file", 0o644, "", true, 0o644, false, true},
		// No write bit: not even root writes through us, as kernfs refuses.
		{"read-only", 0o444, "0\n", false, 0o444, true, false},
		{"read-only root-only", 0o400, "", false, 0o400, true, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := fakeSys(t)
			dir := deviceDir(root, "0-00500")
			if c.forceRO == "" {
				os.Remove(filepath.Join(dir, "force_ro"))
			} else {
				writeFile(t, filepath.Join(dir, "force_ro"), []byte(c.forceRO))
			}
			setKernelModes(t, dir, c.perm)
			p, cfg := mustOpen(t, root, "0-00500", 0)
			if _, ok := p.(io.WriterAt); ok != c.writer {
				t.Errorf("provider %T has WriteAt %t, want %t", p, ok, c.writer)
			}
			reg := nvcore.NewRegistry()
			d, err := reg.Register(cfg, p)
			if err != nil {
				t.Fatal(err)
			}
			defer reg.RemoveAll()
			if d.Mode() != c.mode || d.ForceRO() != c.forceOn || d.CanWrite() != c.canWrite {
				t.Errorf("mode %04o force_ro %t can write %t; want %04o %t %t",
					d.Mode(), d.ForceRO(), d.CanWrite(), c.mode, c.forceOn, c.canWrite)
			}
			if st, _ := os.Stat(filepath.Join(dir, "nvmem")); st.Mode().Perm() != c.perm {
				t.Errorf("the kernel file's mode changed to %v", st.Mode())
			}
		})
	}
}

// TestAttributes: a missing or unknown type, and a force_ro that says
// neither 0 nor 1.
func TestAttributes(t *testing.T) {
	root := fakeSys(t)
	dir := deviceDir(root, "0-00500")

	os.Remove(filepath.Join(dir, "type"))
	_, cfg := mustOpen(t, root, "0-00500", 0)
	if cfg.Type != nvcore.TypeUnknown {
		t.Errorf("no type file: %v, want Unknown", cfg.Type)
	}

	writeFile(t, filepath.Join(dir, "type"), []byte("Flash\n"))
	writeFile(t, filepath.Join(dir, "force_ro"), []byte("maybe\n"))
	p, cfg := mustOpen(t, root, "0-00500", 0)
	if cfg.Type != nvcore.TypeUnknown || !cfg.ReadOnly {
		t.Errorf("type %v read-only %t; want Unknown and read-only", cfg.Type, cfg.ReadOnly)
	}
	skipped := p.(*Mirror).Skipped()
	if len(skipped) != 2 || !strings.Contains(skipped[0].Error(), "Flash") || !strings.Contains(skipped[1].Error(), "maybe") {
		t.Errorf("skipped %v; want the type and force_ro", skipped)
	}
}

// TestReadWriteThrough: reads and writes reach the kernel's file, directly
// and through the core.
func TestReadWriteThrough(t *testing.T) {
	root := fakeSys(t)
	path := filepath.Join(deviceDir(root, "0-00500"), "nvmem")
	kernel := readFile(t, path)
	p, cfg := mustOpen(t, root, "0-00500", 0)
	w := p.(*Mirror)

	got := make([]byte, len(kernel))
	if n, err := w.ReadAt(got, 0); n != len(got) || err != nil || !bytes.Equal(got, kernel) {
		t.Fatalf("ReadAt: %d, %v; equal %t", n, err, bytes.Equal(got, kernel))
	}
	if n, err := w.WriteAt([]byte("hello"), 0x40); n != 5 || err != nil {
		t.Fatalf("WriteAt: %d, %v", n, err)
	}
	if b := readFile(t, path); string(b[0x40:0x45]) != "hello" {
		t.Errorf("the kernel file holds %q after WriteAt", b[0x40:0x45])
	}

	reg := nvcore.NewRegistry()
	d, err := reg.Register(cfg, p)
	if err != nil {
		t.Fatal(err)
	}
	defer reg.RemoveAll()
	if _, err := d.WriteAt([]byte{1, 2, 3}, 0x80); err != nil {
		t.Fatal(err)
	}
	if b := readFile(t, path); !bytes.Equal(b[0x80:0x83], []byte{1, 2, 3}) {
		t.Errorf("the kernel file holds % x after Device.WriteAt", b[0x80:0x83])
	}
	// Someone else writes the kernel's memory: we see it at once.
	b := readFile(t, path)
	copy(b[0xc0:], "kernel")
	writeFile(t, path, b)
	got = make([]byte, 6)
	if _, err := d.ReadAt(got, 0xc0); err != nil || string(got) != "kernel" {
		t.Errorf("Device.ReadAt: %q, %v", got, err)
	}

	// A read-only mirror has no write face at all.
	ro, _ := mustOpen(t, root, "ds1307_nvram0", 0)
	defer ro.Close()
	if _, ok := ro.(io.WriterAt); ok {
		t.Errorf("read-only mirror %T has WriteAt", ro)
	}
}

// TestReadCell: a cell reads the kernel's cell file, not the bytes at its
// offset: the kernel applies bit fields and post-processing.
func TestReadCell(t *testing.T) {
	root := fakeSys(t)
	dir := deviceDir(root, "0-00500")
	// The kernel decodes this one: its file differs from the raw bytes.
	writeFile(t, filepath.Join(dir, "cells", "serial-number@14,0"), []byte("decoded-by-linux"))
	p, cfg := mustOpen(t, root, "0-00500", 0)
	reg := nvcore.NewRegistry()
	d, err := reg.Register(cfg, p)
	if err != nil {
		t.Fatal(err)
	}
	defer reg.RemoveAll()

	want := map[string][]byte{
		"boot-flags":    {0x0a},
		"serial-number": []byte("decoded-by-linux"),
		"mac-address":   {0x00, 0x04, 0xa3, 0x12, 0x34, 0x56},
	}
	for name, w := range want {
		c, err := d.Cell(name)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := c.Read(); err != nil || !bytes.Equal(got, w) {
			t.Errorf("cell %s: % x, %v; want % x", name, got, err, w)
		}
		if c.Size() != len(w) {
			t.Errorf("cell %s: size %d, want the file's %d", name, c.Size(), len(w))
		}
		if c.Writable() {
			t.Errorf("cell %s: writable; the kernel's cells are not", name)
		}
	}

	m := p.(*Mirror)
	// A cell file that went while the device stays: that error, not ENODEV.
	_, err = m.ReadCell(nvcore.CellInfo{Name: "nosuch", Offset: 1})
	if !errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENODEV) {
		t.Errorf("missing cell file: %v, want ENOENT", err)
	}
	for _, bad := range []string{"../nvmem", ".", ".."} {
		if _, err := m.ReadCell(nvcore.CellInfo{Name: bad}); !errors.Is(err, nvcore.ErrInvalid) {
			t.Errorf("cell %q: %v, want ErrInvalid", bad, err)
		}
	}
}

func TestParseCellFileName(t *testing.T) {
	good := []struct {
		in   string
		name string
		off  int64
		bit  int
	}{
		{"mac-address@fa,0", "mac-address", 0xfa, 0},
		{"product-name@d,0", "product-name", 0xd, 0},
		{"flags@10,7", "flags", 0x10, 7},
		{"a@b@1f,0", "a@b", 0x1f, 0},
		{"x@0,0", "x", 0, 0},
		{"big@7fffffff,0", "big", 0x7fffffff, 0},
	}
	for _, c := range good {
		name, off, bit, err := ParseCellFileName(c.in)
		if err != nil || name != c.name || off != c.off || bit != c.bit {
			t.Errorf("%q: %q %#x %d %v; want %q %#x %d", c.in, name, off, bit, err, c.name, c.off, c.bit)
		}
	}
	for _, in := range []string{"", "plain", "@4,0", "x@", "x@4", "x@4,", "x@,0", "x@0x4,0", "x@A,0",
		"x@04,0", "x@4,00", "x@4,zz", "x@-4,0", "x@+4,0", "x@4,0,1", "x@4 ,0", "x@8000000000000000,0"} {
		if _, _, _, err := ParseCellFileName(in); !errors.Is(err, nvcore.ErrInvalid) {
			t.Errorf("%q: %v, want ErrInvalid", in, err)
		}
	}
}

// TestBadTrees: what is wrong is said clearly; a bad cell file costs that
// cell only.
func TestBadTrees(t *testing.T) {
	root := fakeSys(t)

	_, _, err := Open("1-00570", Options{Root: root})
	if !errors.Is(err, nvcore.ErrNoDevice) || !strings.Contains(err.Error(), "1-00570") ||
		!strings.Contains(err.Error(), "0-00500, ds1307_nvram0, imx-ocotp0") {
		t.Errorf("missing device: %v; want ErrNoDevice naming it and the known ones", err)
	}
	for _, name := range []string{"", ".", "..", "../../..", "a/b"} {
		if _, _, err := Open(name, Options{Root: root}); !errors.Is(err, nvcore.ErrInvalid) {
			t.Errorf("name %q: %v, want ErrInvalid", name, err)
		}
	}

	notNvmem := deviceDir(root, "subsystem")
	if err := os.MkdirAll(notNvmem, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Open("subsystem", Options{Root: root}); !errors.Is(err, nvcore.ErrNoDevice) || !strings.Contains(err.Error(), "no nvmem file") {
		t.Errorf("no nvmem file: %v", err)
	}
	writeFile(t, filepath.Join(notNvmem, "nvmem"), nil)
	if _, _, err := Open("subsystem", Options{Root: root}); !errors.Is(err, nvcore.ErrInvalid) || !strings.Contains(err.Error(), "size 0") {
		t.Errorf("empty nvmem file: %v", err)
	}
	writeFile(t, filepath.Join(notNvmem, "nvmem"), []byte{1})
	os.Chmod(filepath.Join(notNvmem, "nvmem"), 0o200)
	if _, _, err := Open("subsystem", Options{Root: root}); !errors.Is(err, nvcore.ErrNotSupported) {
		t.Errorf("write-only nvmem file: %v, want ErrNotSupported", err)
	}

	cells := filepath.Join(deviceDir(root, "0-00500"), "cells")
	bad := map[string][]byte{
		"bogus":         {1},
		"x@0x10,0":      {1},
		"y@10":          {1},
		"@4,0":          {1},
		"Z@A,0":         {1},
		"w@010,0":       {1},
		"past-end@fe,0": {1, 2, 3}, // reaches past the 256 bytes
		"empty@0,0":     {},        // no bytes
		"wide@0,8":      {1},       // a bit offset beyond its one byte
	}
	for name, data := range bad {
		writeFile(t, filepath.Join(cells, name), data)
	}
	if err := os.Mkdir(filepath.Join(cells, "dir@1,0"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(cells, "ok@20,0"), []byte{0xaa, 0xbb}) // the control: kept
	p, cfg := mustOpen(t, root, "0-00500", 0)
	defer p.Close()
	want := []string{"boot-flags@10,4", "serial-number@14,0", "ok@20,0", "mac-address@fa,0"}
	if got := cellNames(cfg.Cells); !slices.Equal(got, want) {
		t.Errorf("cells %q, want %q", got, want)
	}
	skipped := p.(*Mirror).Skipped()
	if len(skipped) != len(bad)+1 {
		t.Errorf("%d skipped, want %d: %v", len(skipped), len(bad)+1, skipped)
	}
	for _, e := range skipped {
		if !strings.HasPrefix(e.Error(), "cells/") {
			t.Errorf("skipped %v does not name its file", e)
		}
	}
	// The core takes what is left.
	reg := nvcore.NewRegistry()
	if _, err := reg.Register(cfg, p); err != nil {
		t.Errorf("register: %v", err)
	}
}

// TestSymlinkedDevice: in the real sysfs, bus/nvmem/devices/NAME is a
// symbolic link into /sys/devices; removing the device leaves it dangling.
func TestSymlinkedDevice(t *testing.T) {
	root := filepath.Join(t.TempDir(), "sys")
	real := filepath.Join(root, "devices", "platform", "soc", "30a40000.i2c", "i2c-2", "2-0050", "2-00500")
	writeFile(t, filepath.Join(real, "nvmem"), bytes.Repeat([]byte{0xff}, 32))
	writeFile(t, filepath.Join(real, "type"), []byte("EEPROM\n"))
	link := deviceDir(root, "2-00500")
	os.MkdirAll(filepath.Dir(link), 0o755)
	if err := os.Symlink("../../../devices/platform/soc/30a40000.i2c/i2c-2/2-0050/2-00500", link); err != nil {
		t.Fatal(err)
	}
	if names, err := List(Options{Root: root}); err != nil || !slices.Equal(names, []string{"2-00500"}) {
		t.Errorf("List = %q, %v", names, err)
	}
	p, cfg := mustOpen(t, root, "2-00500", 5*time.Millisecond)
	if cfg.Type != nvcore.TypeEEPROM || p.Size() != 32 {
		t.Errorf("type %v size %d", cfg.Type, p.Size())
	}
	var calls atomic.Int32
	called := make(chan struct{})
	p.(nvcore.GoneNotifier).NotifyGone(func() {
		if calls.Add(1) == 1 {
			close(called)
		}
	})
	if err := os.RemoveAll(filepath.Join(root, "devices", "platform", "soc", "30a40000.i2c", "i2c-2", "2-0050")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-called:
	case <-time.After(5 * time.Second):
		t.Fatal("a dangling link was not taken for a gone device")
	}
	if err := p.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
}

// waitGone waits for ch to close.
func waitGone(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: gone was not called within 5 s", what)
	}
}

// TestPollerGone: removing the kernel's device directory, its nvmem file,
// or replacing the device with another of the same name, calls gone once,
// and the poller returns.
func TestPollerGone(t *testing.T) {
	cases := []struct {
		name   string
		remove func(dir string) error
	}{
		{"device dir", os.RemoveAll},
		{"nvmem file", func(dir string) error { return os.Remove(filepath.Join(dir, "nvmem")) }},
		{"device replaced", func(dir string) error {
			b, err := os.ReadFile(filepath.Join(dir, "nvmem"))
			if err != nil {
				return err
			}
			if err := os.Remove(filepath.Join(dir, "nvmem")); err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(dir, "nvmem"), b, 0o644)
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := fakeSys(t)
			p, _ := mustOpen(t, root, "0-00500", 5*time.Millisecond)
			m := mirrorOf(t, p)
			var calls atomic.Int32
			called := make(chan struct{})
			p.(nvcore.GoneNotifier).NotifyGone(func() {
				if calls.Add(1) == 1 {
					close(called)
				}
			})
			// Present: no call over many intervals.
			time.Sleep(50 * time.Millisecond)
			if n := calls.Load(); n != 0 {
				t.Fatalf("gone called %d times while the device is there", n)
			}
			if err := c.remove(deviceDir(root, "0-00500")); err != nil {
				t.Fatal(err)
			}
			waitGone(t, called, c.name)
			select {
			case <-m.watcher.Done():
			case <-time.After(5 * time.Second):
				t.Fatal("the poller did not return after calling gone")
			}
			time.Sleep(30 * time.Millisecond)
			if n := calls.Load(); n != 1 {
				t.Errorf("gone called %d times, want 1", n)
			}
			if err := p.Close(); err != nil {
				t.Errorf("close: %v", err)
			}
		})
	}
}

// settledGoroutines waits up to two seconds for the goroutine count to fall
// to at most want, and returns the last count.
func settledGoroutines(want int) int {
	n := runtime.NumGoroutine()
	for deadline := time.Now().Add(2 * time.Second); n > want && time.Now().Before(deadline); n = runtime.NumGoroutine() {
		time.Sleep(10 * time.Millisecond)
	}
	return n
}

// TestCloseStopsPoller: Close stops and waits for the poller, which never
// calls gone after that; no goroutine is left behind.
func TestCloseStopsPoller(t *testing.T) {
	root := fakeSys(t)
	before := runtime.NumGoroutine()
	var calls atomic.Int32
	for range 20 {
		p, _ := mustOpen(t, root, "0-00500", time.Millisecond)
		p.(nvcore.GoneNotifier).NotifyGone(func() { calls.Add(1) })
		p.(nvcore.GoneNotifier).NotifyGone(func() { t.Error("a second NotifyGone started a poller") })
		time.Sleep(2 * time.Millisecond)
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		select {
		case <-mirrorOf(t, p).watcher.Done():
		default:
			t.Fatal("Close returned with the poller running")
		}
		if err := p.Close(); !errors.Is(err, os.ErrClosed) {
			t.Errorf("second Close: %v, want ErrClosed", err)
		}
		// NotifyGone after Close starts nothing.
		p.(nvcore.GoneNotifier).NotifyGone(func() { t.Error("gone after Close") })
	}
	if n := settledGoroutines(before); n > before {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines after Close, %d before:\n%s", n, before, buf[:runtime.Stack(buf, true)])
	}
	os.RemoveAll(deviceDir(root, "0-00500"))
	time.Sleep(20 * time.Millisecond)
	if n := calls.Load(); n != 0 {
		t.Errorf("gone called %d times after Close", n)
	}
}

// TestCloseWakesPoller: Close ends a poller that is waiting for its next
// tick without waiting for the tick. The interval is a day: a Close that
// waited for it would never return within the test, and the bound below
// only turns that hang into a failure (nothing here is timed).
func TestCloseWakesPoller(t *testing.T) {
	const interval = 24 * time.Hour
	p, _ := mustOpen(t, fakeSys(t), "0-00500", interval)
	p.(nvcore.GoneNotifier).NotifyGone(func() { t.Error("gone called while the device is there") })
	closed := make(chan error, 1)
	go func() { closed <- p.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute):
		t.Fatalf("Close has not returned after a minute: it waits for the poller's next tick (%v)", interval)
	}
	select {
	case <-mirrorOf(t, p).watcher.Done():
	default:
		t.Fatal("Close returned with the poller running")
	}
}

// kernel plays a kernel file that fails every call with errno.
type kernel struct{ errno syscall.Errno }

func (k kernel) ReadAt(p []byte, off int64) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: "nvmem", Err: k.errno}
}

func (k kernel) WriteAt(p []byte, off int64) (int, error) {
	return 0, &fs.PathError{Op: "write", Path: "nvmem", Err: k.errno}
}

// TestKernelErrors: ENODEV (kernfs's answer on a descriptor of a removed
// file) makes the core remove the device; ENXIO from a driver whose device
// is still there reaches the caller without removing it; EPERM and EACCES
// pass through.
func TestKernelErrors(t *testing.T) {
	t.Run("ENODEV", func(t *testing.T) {
		root := fakeSys(t)
		p, cfg := mustOpen(t, root, "0-00500", time.Hour)
		m := mirrorOf(t, p)
		m.io = kernel{syscall.ENODEV}
		if _, err := p.(io.ReaderAt).ReadAt(make([]byte, 4), 0); !errors.Is(err, syscall.ENODEV) {
			t.Errorf("ReadAt: %v, want ENODEV", err)
		}
		if _, err := p.(io.WriterAt).WriteAt(make([]byte, 4), 0); !errors.Is(err, syscall.ENODEV) {
			t.Errorf("WriteAt: %v, want ENODEV", err)
		}
		reg := nvcore.NewRegistry()
		d, err := reg.Register(cfg, p)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := d.ReadAt(make([]byte, 4), 0); !errors.Is(err, syscall.ENODEV) && !errors.Is(err, nvcore.ErrNoDevice) {
			t.Errorf("Device.ReadAt: %v", err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			m.mu.Lock()
			closed := m.closed
			m.mu.Unlock()
			if _, err := reg.Device("0-00500"); errors.Is(err, nvcore.ErrNoDevice) && closed {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the core did not remove a device whose kernel file says ENODEV")
			}
			time.Sleep(5 * time.Millisecond)
		}
	})

	t.Run("ENXIO, device present", func(t *testing.T) {
		root := fakeSys(t)
		p, cfg := mustOpen(t, root, "0-00500", time.Hour)
		mirrorOf(t, p).io = kernel{syscall.ENXIO}
		reg := nvcore.NewRegistry()
		defer reg.RemoveAll()
		d, err := reg.Register(cfg, p)
		if err != nil {
			t.Fatal(err)
		}
		_, err = d.ReadAt(make([]byte, 4), 0)
		var errno syscall.Errno
		if errors.Is(err, syscall.ENXIO) || !errors.As(err, &errno) || errno != syscall.ENXIO {
			t.Errorf("ReadAt: %v (errno %v); want ENXIO for the caller, not for errors.Is", err, errno)
		}
		time.Sleep(50 * time.Millisecond)
		if _, err := reg.Device("0-00500"); err != nil {
			t.Errorf("a bus error removed the device: %v", err)
		}
	})

	t.Run("ENXIO, device gone", func(t *testing.T) {
		root := fakeSys(t)
		p, _ := mustOpen(t, root, "0-00500", time.Hour)
		defer p.Close()
		mirrorOf(t, p).io = kernel{syscall.ENXIO}
		os.RemoveAll(deviceDir(root, "0-00500"))
		if _, err := p.(io.ReaderAt).ReadAt(make([]byte, 4), 0); !errors.Is(err, syscall.ENODEV) {
			t.Errorf("ReadAt: %v, want ENODEV", err)
		}
	})

	t.Run("EPERM and EACCES", func(t *testing.T) {
		for _, errno := range []syscall.Errno{syscall.EPERM, syscall.EACCES, syscall.ETIMEDOUT} {
			root := fakeSys(t)
			p, cfg := mustOpen(t, root, "0-00500", time.Hour)
			mirrorOf(t, p).io = kernel{errno}
			reg := nvcore.NewRegistry()
			d, err := reg.Register(cfg, p)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := d.WriteAt([]byte{1}, 0); !errors.Is(err, errno) {
				t.Errorf("Device.WriteAt: %v, want %v", err, errno)
			}
			if _, err := reg.Device("0-00500"); err != nil {
				t.Errorf("%v removed the device: %v", errno, err)
			}
			reg.RemoveAll()
		}
	})

	t.Run("cell of a gone device", func(t *testing.T) {
		root := fakeSys(t)
		p, cfg := mustOpen(t, root, "0-00500", time.Hour)
		defer p.Close()
		os.RemoveAll(deviceDir(root, "0-00500"))
		if _, err := p.(nvcore.CellReader).ReadCell(cfg.Cells[0]); !errors.Is(err, syscall.ENODEV) {
			t.Errorf("ReadCell: %v, want ENODEV", err)
		}
	})
}
