package fs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nvmemfs/nvmemfs/backends/at24"
	"github.com/nvmemfs/nvmemfs/backends/at24/at24test"
	"github.com/nvmemfs/nvmemfs/backends/file"
	"github.com/nvmemfs/nvmemfs/nvcore"
	"github.com/nvmemfs/nvmemfs/nvcore/nvcoretest"
)

// TestCacheMode: a device attached with Cache serves repeated reads from
// the page cache (no provider call), sees writes through nvmem at once and
// writes through a cell soon after, and a descriptor holding cached pages
// gets ENODEV once the device is removed.
func TestCacheMode(t *testing.T) {
	m := mountTest(t)
	data := pattern(8192, 0x42)
	d, mem := m.attach(t, nvcore.Config{Name: "cached", Cache: true, Cells: []nvcore.CellInfo{{Name: "id", Offset: 16, Bytes: 4}}}, data)
	fd := openFile(t, m.path("cached", "nvmem"), syscall.O_RDWR)

	buf := make([]byte, 8192)
	if n, err := syscall.Pread(fd, buf, 0); err != nil || n != 8192 || !bytes.Equal(buf, data) {
		t.Fatalf("first read: %d, %v", n, err)
	}
	reads := mem.Reads()
	for range 10 {
		if n, err := syscall.Pread(fd, buf, 0); err != nil || n != 8192 || !bytes.Equal(buf, data) {
			t.Fatalf("cached read: %d, %v", n, err)
		}
	}
	if got := mem.Reads() - reads; got != 0 {
		t.Errorf("10 repeated reads of a cached device made %d provider reads, want 0", got)
	}
	// Another descriptor keeps the cache (FOPEN_KEEP_CACHE).
	if got, err := os.ReadFile(m.path("cached", "nvmem")); err != nil || !bytes.Equal(got, data) || mem.Reads() != reads {
		t.Errorf("read through a new descriptor: %v, %d provider reads", err, mem.Reads()-reads)
	}

	// A write through nvmem is written through: cache and memory agree.
	if _, err := syscall.Pwrite(fd, []byte("hello"), 100); err != nil {
		t.Fatal(err)
	}
	syscall.Pread(fd, buf, 0)
	if string(buf[100:105]) != "hello" || string(mem.Bytes()[100:105]) != "hello" {
		t.Errorf("after a write: cache %q, memory %q", buf[100:105], mem.Bytes()[100:105])
	}

	// A write through a cell changes bytes the cache holds: dropped soon.
	if err := os.WriteFile(m.path("cached", "cells", "id@10,0"), []byte("WXYZ"), 0); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		syscall.Pread(fd, buf, 0)
		if string(buf[16:20]) == "WXYZ" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the nvmem cache still shows %q after a cell write", buf[16:20])
		}
		time.Sleep(5 * time.Millisecond)
	}

	// Removal: the descriptor with cached pages gets ENODEV at once.
	if err := m.reg.Remove(d); err != nil {
		t.Fatal(err)
	}
	if _, err := syscall.Pread(fd, buf, 0); errnoOf(err) != syscall.ENODEV {
		t.Errorf("read of cached pages after removal: %v, want ENODEV", err)
	}
	if n := mem.CallsAfterClose(); n != 0 {
		t.Errorf("%d provider calls after close", n)
	}
}

// TestCacheNeedsByteAccess: the page cache reads any size at any offset,
// so a device with a word size or stride refuses it.
func TestCacheNeedsByteAccess(t *testing.T) {
	reg := nvcore.NewRegistry()
	_, err := reg.Register(nvcore.Config{Cache: true, WordSize: 4, Stride: 4}, nvcoretest.NewMemory(make([]byte, 64)))
	if !errors.Is(err, nvcore.ErrInvalid) {
		t.Errorf("cache with word size 4: %v, want ErrInvalid", err)
	}
}

// TestCachedCellAt24: a cell of a simulated 24c256 at 100 kHz attached
// with cache. The first cat of the cell costs bus transfers, the next ones
// none; a write through nvmem over the cell's bytes makes the next cat
// fetch again (and show the new bytes), a write elsewhere does not; a
// write through the cell drops nvmem's pages. In every mode: the device
// asks for cache itself.
func TestCachedCellAt24(t *testing.T) {
	cat, err := exec.LookPath("cat")
	if err != nil {
		t.Skip("no cat")
	}
	m := mountTest(t)
	c, _ := at24.LookupChip("24c256")
	bus := at24test.MustNew(at24test.Config{Name: "sim-ee", Size: c.Size, AddrBytes: c.AddrBytes, Addresses: c.Addresses, PageSize: c.PageSize, Speed: 100_000})
	p, err := at24.Open(bus, 0x50, at24.Options{Chip: "24c256", PageSize: c.PageSize})
	if err != nil {
		t.Fatal(err)
	}
	bus.SetBytes(0x100, []byte("SN-000042"))
	if _, err := m.reg.Register(nvcore.Config{Name: "ee", Type: nvcore.TypeEEPROM, Cache: true,
		Cells: []nvcore.CellInfo{{Name: "serial-number", Offset: 0x100, Bytes: 9}}}, p); err != nil {
		p.Close()
		t.Fatal(err)
	}
	cell := m.path("ee", "cells", "serial-number@100,0")
	catCell := func(want string) int {
		t.Helper()
		before := bus.Stats().Transfers
		out, err := exec.Command(cat, cell).Output()
		if err != nil || string(out) != want {
			t.Fatalf("cat %s: %q, %v; want %q", cell, out, err, want)
		}
		return bus.Stats().Transfers - before
	}
	if n := catCell("SN-000042"); n == 0 {
		t.Errorf("first cat: no bus transfer")
	} else {
		t.Logf("first cat: %d bus transfers", n)
	}
	for i := range 3 {
		if n := catCell("SN-000042"); n != 0 {
			t.Errorf("cat %d of a cached cell: %d bus transfers, want 0", i+2, n)
		}
	}

	// A write elsewhere leaves the cell's pages alone.
	fd := openFile(t, m.path("ee", "nvmem"), syscall.O_RDWR)
	if _, err := syscall.Pwrite(fd, []byte("elsewhere"), 0x2000); err != nil {
		t.Fatal(err)
	}
	if n := catCell("SN-000042"); n != 0 {
		t.Errorf("cat after a write to other bytes: %d bus transfers, want 0", n)
	}
	// A write over the cell's bytes: the next cat fetches them.
	if _, err := syscall.Pwrite(fd, []byte("SN-777"), 0x100); err != nil {
		t.Fatal(err)
	}
	if n := catCell("SN-777042"); n == 0 {
		t.Errorf("cat after a write over the cell: no bus transfer, so not fetched again")
	}
	if n := catCell("SN-777042"); n != 0 {
		t.Errorf("cat after the fetch: %d bus transfers, want 0", n)
	}
	// A write through the cell: nvmem's page holding it is dropped, and
	// only that one.
	buf := make([]byte, 9)
	syscall.Pread(fd, buf, 0x100)
	far := make([]byte, 4096)
	syscall.Pread(fd, far, 0x4000)
	if err := os.WriteFile(cell, []byte("SN-123456"), 0); err != nil {
		t.Fatal(err)
	}
	before := bus.Stats().Transfers
	if _, err := syscall.Pread(fd, far, 0x4000); err != nil || bus.Stats().Transfers != before {
		t.Errorf("nvmem far from the cell after a write through the cell: %v, %d bus transfers, want 0", err, bus.Stats().Transfers-before)
	}
	if _, err := syscall.Pread(fd, buf, 0x100); err != nil || string(buf) != "SN-123456" {
		t.Errorf("nvmem after a write through the cell: %q, %v", buf, err)
	}
	if string(bus.Bytes()[0x100:0x109]) != "SN-123456" {
		t.Errorf("the chip holds %q", bus.Bytes()[0x100:0x109])
	}
}

// TestCacheExternalChanges: a cached device does not notice content
// changed outside nvmemfs, for each provider whose content can change so
// (docs/CLI.md): a file image written by another program, an I2C chip
// written by another bus master. (The sysfs mirror: TestSysfsMirror.)
// The pages stay until something drops them (here POSIX_FADV_DONTNEED, as
// memory pressure would); then the new bytes show.
func TestCacheExternalChanges(t *testing.T) {
	m := mountTest(t)
	img := filepath.Join(t.TempDir(), "img")
	if err := os.WriteFile(img, pattern(4096, 5), 0o644); err != nil {
		t.Fatal(err)
	}
	fp, err := file.Open(file.Options{Path: img})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.reg.Register(nvcore.Config{Name: "img", Cache: true}, fp); err != nil {
		fp.Close()
		t.Fatal(err)
	}
	c, _ := at24.LookupChip("24c02")
	bus := at24test.MustNew(at24test.Config{Name: "sim-x", Size: c.Size, AddrBytes: c.AddrBytes, Addresses: c.Addresses, PageSize: c.PageSize})
	ap, err := at24.Open(bus, 0x50, at24.Options{Chip: "24c02"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.reg.Register(nvcore.Config{Name: "chip", Cache: true}, ap); err != nil {
		ap.Close()
		t.Fatal(err)
	}
	for _, tc := range []struct {
		dev    string
		change func()
	}{
		{"img", func() {
			f, err := os.OpenFile(img, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.WriteAt([]byte("outside"), 16)
			f.Close()
		}},
		{"chip", func() { bus.SetBytes(16, []byte("outside")) }},
	} {
		p := m.path(tc.dev, "nvmem")
		before, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		tc.change()
		if got, _ := os.ReadFile(p); !bytes.Equal(got, before) {
			t.Errorf("%s: a change outside nvmemfs showed at once; the docs say it is not noticed", tc.dev)
		}
		dropPageCache(t, p)
		if got, _ := os.ReadFile(p); string(got[16:23]) != "outside" {
			t.Errorf("%s: after the pages were dropped: %q, want the new bytes", tc.dev, got[16:23])
		}
	}
}

// TestCachedReadersAcrossDetach: readers hold descriptors on the cached
// pages of nvmem and of cells and read in a loop while a writer writes a
// counter through nvmem and through a cell, and the device is detached.
// Every read returns a counter no older than the last write that returned
// before the read began, or ENODEV; once the detach has returned, every
// read and write through the old descriptors is ENODEV and a fresh lookup
// ENOENT. A write that returns once the detach has begun does not count:
// it does not wait for the other files' pages (the removal's notifications
// are ahead of it, and would wait for its own file), and until the
// removal drops them a read may show the bytes before it (docs/CLI.md).
// NVMEMFS_CACHE_STRESS=N runs N rounds (default 10).
func TestCachedReadersAcrossDetach(t *testing.T) {
	rounds := 10
	if v, err := strconv.Atoi(os.Getenv("NVMEMFS_CACHE_STRESS")); err == nil && v > 0 {
		rounds = v
	}
	m := mountTest(t)
	for round := range rounds {
		name := fmt.Sprintf("s%d", round%4)
		d, _ := m.attach(t, nvcore.Config{Name: name, Cells: []nvcore.CellInfo{
			{Name: "counter", Offset: 0x100, Bytes: 4}, {Name: "wide", Offset: 0xf0, Bytes: 64}}}, make([]byte, 8192))
		nvmem := openFile(t, m.path(name, "nvmem"), syscall.O_RDWR)
		cellPath := m.path(name, "cells", "counter@100,0")
		cell := openFile(t, cellPath, syscall.O_RDWR)
		wide := openFile(t, m.path(name, "cells", "wide@f0,0"), syscall.O_RDONLY)

		var returned atomic.Uint32 // the last counter whose write returned before the detach began
		var detaching atomic.Bool
		var stop atomic.Bool
		var wg sync.WaitGroup
		errs := make(chan string, 16)
		report := func(s string) {
			select {
			case errs <- s:
			default:
			}
		}
		read := func(what string, fd int, off int64, at int) {
			defer wg.Done()
			buf := make([]byte, at+4)
			gone := false
			for !stop.Load() {
				floor := returned.Load()
				n, err := syscall.Pread(fd, buf, off)
				switch {
				case errnoOf(err) == syscall.ENODEV:
					gone = true
				case err != nil || n != len(buf):
					report(fmt.Sprintf("read of %s: %d, %v", what, n, err))
					return
				case gone:
					report(fmt.Sprintf("read of %s: bytes after ENODEV", what))
					return
				default:
					if v := binary.LittleEndian.Uint32(buf[at:]); v < floor {
						report(fmt.Sprintf("read of %s: counter %d, older than the write of %d that returned before it", what, v, floor))
						return
					}
				}
			}
		}
		wg.Add(3)
		go read("nvmem", nvmem, 0x100, 0)
		go read("the cell written", cell, 0, 0)
		go read("an overlapping cell", wide, 0, 0x10)
		// Fresh opens too, of nvmem and the cell by path, as cat does.
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				p := cellPath
				if i%2 == 0 {
					p = m.path(name, "nvmem")
				}
				if _, err := os.ReadFile(p); err != nil && errnoOf(err) != syscall.ENOENT && errnoOf(err) != syscall.ENODEV {
					report(fmt.Sprintf("read %s: %v", p, err))
					return
				}
			}
		}()
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := make([]byte, 4)
			for v := uint32(1); !stop.Load(); v++ {
				binary.LittleEndian.PutUint32(b, v)
				var err error
				if v%2 == 0 {
					_, err = syscall.Pwrite(nvmem, b, 0x100)
				} else {
					_, err = syscall.Pwrite(cell, b, 0)
				}
				if err != nil {
					if errnoOf(err) != syscall.ENODEV {
						report(fmt.Sprintf("write %d: %v", v, err))
					}
					return
				}
				if !detaching.Load() {
					returned.Store(v)
				}
			}
		}()
		time.Sleep(time.Duration(5+round%20) * time.Millisecond)
		detaching.Store(true)
		if err := m.reg.Remove(d); err != nil {
			t.Fatal(err)
		}
		for _, fd := range []int{nvmem, cell, wide} {
			if _, err := syscall.Pread(fd, make([]byte, 4), 0); errnoOf(err) != syscall.ENODEV {
				t.Errorf("round %d: read after the detach returned: %v, want ENODEV", round, err)
			}
		}
		if _, err := syscall.Pwrite(nvmem, []byte{1}, 0x100); errnoOf(err) != syscall.ENODEV {
			t.Errorf("round %d: write after the detach returned: %v, want ENODEV", round, err)
		}
		if _, err := os.Stat(cellPath); errnoOf(err) != syscall.ENOENT {
			t.Errorf("round %d: lookup after the detach: %v, want ENOENT", round, err)
		}
		stop.Store(true)
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: readers or writer stuck after the detach\n%s", round, stackDump())
		}
		close(errs)
		for e := range errs {
			t.Errorf("round %d (mode %s): %s", round, mode.name, e)
		}
		if t.Failed() {
			return
		}
	}
}

// TestCloseReportsNothing: close(2) returns 0 whatever the writes before it
// did, in every mode: a write's error is that write's (kernfs has no
// flush; nvmemfs opens with FOPEN_NOFLUSH, or with --cache-all answers the
// one FLUSH with ENOSYS, which the kernel turns into success).
func TestCloseReportsNothing(t *testing.T) {
	m := mountTest(t)
	m.attach(t, nvcore.Config{Name: "c", Cells: []nvcore.CellInfo{{Name: "id", Offset: 4, Bytes: 4}}}, pattern(64, 1))
	for _, tc := range []struct {
		path  string
		data  []byte
		off   int64
		errno syscall.Errno
	}{
		{m.path("c", "nvmem"), []byte("ok"), 0, 0},
		{m.path("c", "nvmem"), []byte("x"), 64, syscall.EFBIG},
		{m.path("c", "cells", "id@4,0"), []byte("abcd"), 0, 0},
		{m.path("c", "cells", "id@4,0"), []byte("ab"), 0, syscall.EINVAL},
		{m.path("c", "force_ro"), []byte("maybe"), 0, syscall.EINVAL},
		{m.path("c", "force_ro"), []byte("0"), 0, 0},
	} {
		fd, err := syscall.Open(tc.path, syscall.O_WRONLY|syscall.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		_, err = syscall.Pwrite(fd, tc.data, tc.off)
		if errnoOf(err) != tc.errno {
			t.Errorf("write %q at %d to %s: %v, want errno %d", tc.data, tc.off, tc.path, err, tc.errno)
		}
		if err := syscall.Close(fd); err != nil {
			t.Errorf("close of %s after a write (%v): %v, want 0", tc.path, tc.errno, err)
		}
	}
}

// TestCacheAllRefusesUncacheable: a CacheAll mount caches every device, so
// it refuses, with the reason, one the page cache would serve wrongly; and
// it refuses to mount a registry holding a device attached without cache.
func TestCacheAllRefusesUncacheable(t *testing.T) {
	requireFUSE(t)
	reg := nvcore.NewRegistry()
	if _, err := reg.Register(nvcore.Config{Name: "plain"}, nvcoretest.NewMemory(make([]byte, 64))); err != nil {
		t.Fatal(err)
	}
	if f, err := Mount(t.TempDir(), reg, Options{CacheAll: true}); err == nil {
		f.Unmount()
		t.Fatal("CacheAll mounted a registry with an uncached device")
	} else if !errors.Is(err, nvcore.ErrInvalid) || !strings.Contains(err.Error(), "plain was attached without cache") {
		t.Errorf("refused: %v; want ErrInvalid naming plain", err)
	}
	// The refusal changed nothing: the registry still takes an uncached
	// device.
	if d, err := reg.Register(nvcore.Config{Name: "plain2"}, nvcoretest.NewMemory(make([]byte, 64))); err != nil || d.Cached() {
		t.Errorf("after the refused mount: %v, cached %v; want an uncached device", err, d != nil && d.Cached())
	}
	reg.RemoveAll()

	reg = nvcore.NewRegistry()
	dir := t.TempDir()
	f, err := Mount(dir, reg, Options{CacheAll: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		reg.RemoveAll()
		f.Unmount()
	})
	for _, cfg := range []nvcore.Config{
		{Name: "words", WordSize: 4, Stride: 4},
		{Name: "keepouts", Keepouts: []nvcore.Keepout{{Start: 8, End: 16, Fill: 0xff}}},
	} {
		_, err := reg.Register(cfg, nvcoretest.NewMemory(make([]byte, 64)))
		if !errors.Is(err, nvcore.ErrInvalid) || !strings.Contains(err.Error(), "every device of this mount is cached") {
			t.Errorf("%s: %v, want ErrInvalid saying every device is cached", cfg.Name, err)
		}
	}
	d, err := reg.Register(nvcore.Config{Name: "ok"}, nvcoretest.NewMemory(make([]byte, 64)))
	if err != nil || !d.Cached() {
		t.Fatalf("a plain device under CacheAll: %v, cached %v", err, d != nil && d.Cached())
	}
	if _, err := os.Stat(filepath.Join(dir, "ok", "nvmem")); err != nil {
		t.Error(err)
	}
}
