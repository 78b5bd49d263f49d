package fs

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nvmemfs/nvmemfs/backends/at24"
	"github.com/nvmemfs/nvmemfs/backends/at24/at24test"
	"github.com/nvmemfs/nvmemfs/nvcore"
)

// at24Attach registers an at24 provider on a simulated chip of its own bus
// (a USB bridge each) and returns the device and the simulator.
func (m *mounted) at24Attach(t *testing.T, name, chipName string, pageSize, speed int, writeCycle time.Duration) (*nvcore.Device, *at24test.Bus) {
	t.Helper()
	c, err := at24.LookupChip(chipName)
	if err != nil {
		t.Fatal(err)
	}
	bus := at24test.MustNew(at24test.Config{
		Name:       "sim-" + name,
		Size:       c.Size,
		AddrBytes:  c.AddrBytes,
		Addresses:  c.Addresses,
		PageSize:   max(c.PageSize, 1),
		WriteCycle: writeCycle,
		Speed:      speed,
	})
	p, err := at24.Open(bus, 0x50, at24.Options{Chip: chipName, PageSize: pageSize})
	if err != nil {
		t.Fatalf("open %s: %v", chipName, err)
	}
	d, err := m.reg.Register(nvcore.Config{Name: name, Type: nvcore.TypeEEPROM}, p)
	if err != nil {
		p.Close()
		t.Fatalf("register %s: %v", name, err)
	}
	return d, bus
}

// at24Transfers records the transfers on bus as its hook sees them: each
// one's word address (the offset it reads or writes; -1 for a transfer
// without one), in order. Hold makes the nth transfer wait in the hook,
// in flight, until release is called; held is closed when it gets there.
type at24Transfers struct {
	mu      sync.Mutex
	offsets []int64

	held        chan struct{}
	release     chan struct{}
	releaseOnce sync.Once
}

func at24Record(t *testing.T, bus *at24test.Bus, hold int) *at24Transfers {
	r := &at24Transfers{held: make(chan struct{}), release: make(chan struct{})}
	t.Cleanup(r.letGo)
	bus.SetHook(func(_ uint16, w, _ []byte) error {
		off := int64(-1)
		if len(w) >= 2 {
			off = int64(w[0])<<8 | int64(w[1])
		}
		r.mu.Lock()
		r.offsets = append(r.offsets, off)
		n := len(r.offsets)
		r.mu.Unlock()
		if n == hold {
			close(r.held)
			<-r.release
		}
		return nil
	})
	return r
}

func (r *at24Transfers) letGo() { r.releaseOnce.Do(func() { close(r.release) }) }

// count is the number of transfers so far; since returns the offsets of
// those after the first n.
func (r *at24Transfers) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.offsets)
}

func (r *at24Transfers) since(n int) []int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.offsets[n:])
}

// TestAt24DdCmp writes whole chips through the mount with dd, compares them
// with cmp, then writes and reads them again with plain system calls in
// dd-sized blocks.
func TestAt24DdCmp(t *testing.T) {
	dd, errDD := exec.LookPath("dd")
	cmp, errCmp := exec.LookPath("cmp")
	// Every chip size with its typical page; two of them with a write
	// cycle to wait out, the others without one (to keep the run short:
	// write-cycle polling has tests of its own).
	type tcase struct {
		chip       string
		pageSize   int
		writeCycle time.Duration
	}
	cases := []tcase{{"24c02", 8, 200 * time.Microsecond}, {"24c256", 64, 200 * time.Microsecond}}
	for _, name := range []string{"24c00", "24c01", "24c04", "24c08", "24c16", "24c32", "24c64", "24c128", "24c512", "24c1024", "24c2048"} {
		c, err := at24.LookupChip(name)
		if err != nil {
			t.Fatal(err)
		}
		cases = append(cases, tcase{name, max(c.PageSize, 1), -1})
	}
	for _, tc := range cases {
		t.Run(tc.chip, func(t *testing.T) {
			m := mountTest(t)
			d, bus := m.at24Attach(t, "ee", tc.chip, tc.pageSize, 0, tc.writeCycle)
			size := int(d.Size())
			nvmem := m.path("ee", "nvmem")
			if st, err := os.Stat(nvmem); err != nil || st.Size() != int64(size) || st.Mode().Perm() != 0o644 {
				t.Fatalf("stat: %v, %v", st, err)
			}

			if errDD == nil && errCmp == nil {
				img := filepath.Join(t.TempDir(), "img")
				data := pattern(size, 0x5a)
				if err := os.WriteFile(img, data, 0o644); err != nil {
					t.Fatal(err)
				}
				start := time.Now()
				if out, err := exec.Command(dd, "if="+img, "of="+nvmem, "bs=4096", "conv=notrunc", "status=none").CombinedOutput(); err != nil {
					t.Fatalf("dd to the chip: %v: %s", err, out)
				}
				t.Logf("dd wrote %d bytes in %v", size, time.Since(start))
				if !bytes.Equal(bus.Bytes(), data) {
					t.Fatal("chip content differs from the image after dd")
				}
				if out, err := exec.Command(cmp, img, nvmem).CombinedOutput(); err != nil {
					t.Fatalf("cmp: %v: %s", err, out)
				}
				back := filepath.Join(t.TempDir(), "back")
				if out, err := exec.Command(dd, "if="+nvmem, "of="+back, "bs=4096", "status=none").CombinedOutput(); err != nil {
					t.Fatalf("dd from the chip: %v: %s", err, out)
				}
				if got, err := os.ReadFile(back); err != nil || !bytes.Equal(got, data) {
					t.Fatalf("dd read back %d bytes, %v", len(got), err)
				}
			} else {
				t.Logf("no dd or cmp (%v, %v): system calls only", errDD, errCmp)
			}

			data := pattern(size, 0xa7)
			fd := openFile(t, nvmem, syscall.O_RDWR)
			for off := 0; off < size; off += 4096 {
				end := min(off+4096, size)
				if n, err := syscall.Pwrite(fd, data[off:end], int64(off)); err != nil || n != end-off {
					t.Fatalf("pwrite at %#x: %d, %v", off, n, err)
				}
			}
			if n, err := syscall.Pwrite(fd, []byte{1}, int64(size)); errnoOf(err) != syscall.EFBIG {
				t.Errorf("pwrite at the end: %d, %v; want EFBIG", n, err)
			}
			if !bytes.Equal(bus.Bytes(), data) {
				t.Fatal("chip content differs after pwrite")
			}
			got, err := os.ReadFile(nvmem)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("read back %d bytes, %v", len(got), err)
			}
			last := make([]byte, 4)
			if n, err := syscall.Pread(fd, last, int64(size-1)); err != nil || n != 1 || last[0] != data[size-1] {
				t.Errorf("pread of the last byte: %d, %v", n, err)
			}
			s := bus.Stats()
			t.Logf("%s: %+v", tc.chip, s)
			if s.Failed != 0 {
				t.Errorf("%d failed transfers", s.Failed)
			}
		})
	}
}

// TestAt24UnplugDuringRead: a 24c256 on a 400 kHz bus whose bridge is
// pulled out while a 32 KiB pread goes through the mount, with chunk 65 of
// 256 in flight. The reader gets ENODEV (or EIO for the chunk in flight)
// and the read goes no further: no transfer starts after the unplug (the
// chunk in flight fails, and the core removes the device by itself); a
// second chip keeps working.
func TestAt24UnplugDuringRead(t *testing.T) {
	m := mountTest(t)
	const speed = 400_000
	d, bus := m.at24Attach(t, "ee", "24c256", 64, speed, 0)
	_, other := m.at24Attach(t, "other", "24c02", 8, 0, 0)
	data := pattern(int(d.Size()), 0x11)
	bus.SetBytes(0, data)
	otherData := pattern(256, 0x22)
	other.SetBytes(0, otherData)
	fd := openFile(t, m.path("ee", "nvmem"), syscall.O_RDONLY)

	type result struct {
		n   int
		err error
	}
	done := make(chan result, 1)
	const hold = 65
	tr := at24Record(t, bus, hold)
	bus.ResetStats()
	go func() {
		n, err := syscall.Pread(fd, make([]byte, 32<<10), 0)
		done <- result{n, err}
	}()
	select {
	case <-tr.held:
	case <-time.After(10 * time.Second):
		t.Fatalf("the read did not progress: %+v", bus.Stats())
	}
	// Chunk 65 is held in the hook, before the wire: the unplug comes while
	// it is in flight, and the wire refuses it.
	bus.Unplug()
	atUnplug := tr.count()
	tr.letGo()
	var r result
	select {
	case r = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the reader hangs after the unplug")
	}
	t.Logf("the reader got %d, %v", r.n, r.err)
	if e := errnoOf(r.err); e != syscall.ENODEV && e != syscall.EIO {
		t.Errorf("pread across the unplug: %d, %v; want ENODEV or EIO", r.n, r.err)
	}
	if after := tr.since(atUnplug); len(after) > 0 {
		t.Errorf("%d transfers started after the unplug (the first at offsets %#x), want none: the read went on", len(after), after[:min(len(after), 4)])
	}

	deadline := time.Now().Add(10 * time.Second)
	for !bus.Closed() || slices.Contains(listDir(t, m.dir), "ee") {
		if time.Now().After(deadline) {
			t.Fatalf("device not removed after the unplug: closed %t, root %q", bus.Closed(), listDir(t, m.dir))
		}
		time.Sleep(2 * time.Millisecond)
	}
	if !d.Gone() {
		t.Error("the device is not gone")
	}
	if _, err := syscall.Pread(fd, make([]byte, 16), 0); errnoOf(err) != syscall.ENODEV {
		t.Errorf("pread after the removal: %v, want ENODEV", err)
	}
	if _, err := os.Stat(m.path("ee")); errnoOf(err) != syscall.ENOENT {
		t.Errorf("stat after the removal: %v, want ENOENT", err)
	}
	if n := bus.Stats().AfterClose; n != 0 {
		t.Errorf("%d transfers after the provider closed the bus", n)
	}

	if got, err := os.ReadFile(m.path("other", "nvmem")); err != nil || !bytes.Equal(got, otherData) {
		t.Errorf("the other chip: %d bytes, %v", len(got), err)
	}
	if err := os.WriteFile(m.path("other", "nvmem"), []byte("still here"), 0); err != nil {
		t.Errorf("write to the other chip: %v", err)
	}
	if got := other.Bytes()[:10]; string(got) != "still here" {
		t.Errorf("the other chip holds %q", got)
	}
}

// TestAt24DetachDuringRead: Unregister while a 32 KiB pread of a plugged
// chip goes through the mount waits for the chunk in flight only, not for
// the whole read (DESIGN rule 4): with chunk 9 of 256 held in flight, the
// removal is marked and waits; once the chunk goes on, no other transfer
// starts, Unregister returns with the bus closed, and the reader gets
// ENODEV. Counted on the bus, so no clock decides it.
func TestAt24DetachDuringRead(t *testing.T) {
	for _, speed := range []int{100_000, 400_000} {
		t.Run(fmt.Sprintf("%dkHz", speed/1000), func(t *testing.T) {
			m := mountTest(t)
			d, bus := m.at24Attach(t, "ee", "24c256", 64, speed, 0)
			fd := openFile(t, m.path("ee", "nvmem"), syscall.O_RDONLY)
			const hold = 9
			tr := at24Record(t, bus, hold)
			bus.ResetStats()
			done := make(chan error, 1)
			go func() {
				_, err := syscall.Pread(fd, make([]byte, 32<<10), 0)
				done <- err
			}()
			select {
			case <-tr.held:
			case <-time.After(10 * time.Second):
				t.Fatalf("the read did not progress: %+v", bus.Stats())
			}
			unregistered := make(chan error, 1)
			go func() { unregistered <- m.reg.Unregister("ee") }()
			for deadline := time.Now().Add(10 * time.Second); !d.Gone(); time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("the removal did not mark the device gone (a hang)")
				}
			}
			atMark := tr.count()
			select {
			case err := <-unregistered:
				t.Fatalf("Unregister returned (%v) while chunk %d was in flight", err, hold)
			default:
			}
			tr.letGo()
			select {
			case err := <-unregistered:
				if err != nil {
					t.Fatalf("unregister: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Unregister hangs after the chunk in flight ended")
			}
			if !bus.Closed() {
				t.Error("Unregister returned before the bus was closed")
			}
			if after := tr.since(atMark); len(after) > 0 {
				t.Errorf("%d transfers started after the removal began (the first at offsets %#x), want none: the read went on past the chunk in flight", len(after), after[:min(len(after), 4)])
			}
			atReturn := bus.Stats()
			select {
			case err := <-done:
				if errnoOf(err) != syscall.ENODEV {
					t.Errorf("the reader got %v, want ENODEV", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the reader hangs after the detach")
			}
			if s := bus.Stats(); s.Transfers != atReturn.Transfers || s.AfterClose != 0 {
				t.Errorf("transfers after Unregister: %+v (had %d)", s, atReturn.Transfers)
			}
			if got := atReturn.Transfers; got != hold {
				t.Errorf("%d transfers in all, want %d: the chunks before the detach and the one in flight", got, hold)
			}
		})
	}
}
