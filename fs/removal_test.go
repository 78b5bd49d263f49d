package fs

import (
	"bytes"

	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/splice"

	"github.com/nvmemfs/nvmemfs/nvcore"
	"github.com/nvmemfs/nvmemfs/nvcore/nvcoretest"
)

// TestRemovalDrainsInFlightRead: a reader is inside a slow provider read
// (200 ms a call) when the device is detached. The detach returns only after
// that read has returned complete, correct bytes; then the same descriptor
// gets ENODEV, the path ENOENT, and the listing lacks the device.
func TestRemovalDrainsInFlightRead(t *testing.T) {
	m := mountTest(t)
	data := pattern(256, 0x3c)
	d, mem := m.attach(t, nvcore.Config{Name: "slow", Cells: []nvcore.CellInfo{{Name: "id", Offset: 4, Bytes: 4}}}, data)
	m.attach(t, nvcore.Config{Name: "other"}, pattern(16, 1))
	fd := openFile(t, m.path("slow", "nvmem"), syscall.O_RDONLY)
	cellFD := openFile(t, m.path("slow", "cells", "id@4,0"), syscall.O_RDONLY)

	// The first provider call signals that it is inside, then waits to be
	// released; every call then takes 200 ms, as a slow EEPROM would.
	inside := make(chan struct{})
	release := make(chan struct{})
	var first sync.Once
	mem.SetHook(func(op string, off int64, n int) error {
		first.Do(func() {
			close(inside)
			<-release
		})
		return nil
	})
	mem.SetDelay(200 * time.Millisecond)

	type result struct {
		n   int
		err error
		buf []byte
	}
	readDone := make(chan result, 1)
	go func() {
		buf := make([]byte, 128)
		n, err := syscall.Pread(fd, buf, 64)
		readDone <- result{n, err, buf}
	}()
	select {
	case <-inside:
	case <-time.After(5 * time.Second):
		t.Fatal("the read never reached the provider")
	}

	detachStart := time.Now()
	detachDone := make(chan time.Duration, 1)
	go func() {
		if err := m.reg.Unregister("slow"); err != nil {
			t.Errorf("unregister: %v", err)
		}
		detachDone <- time.Since(detachStart)
	}()
	for !d.Gone() {
		time.Sleep(time.Millisecond)
	}
	// Gone, but still draining: the path is still cached and listed, and an
	// open through it gets ENODEV; the read inside is not disturbed.
	// In cache-all mode no open reaches nvmemfs: the open succeeds, and
	// the descriptor's reads get ENODEV (checked once the read inside is
	// over: until then a read would wait for the page it is filling).
	fd2, err := syscall.Open(m.path("slow", "nvmem"), syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if mode.cacheAll && err == nil {
		defer func() {
			if _, err := syscall.Pread(fd2, make([]byte, 1), 0); errnoOf(err) != syscall.ENODEV {
				t.Errorf("cache-all: read through a descriptor opened while draining: %v, want ENODEV", err)
			}
			syscall.Close(fd2)
		}()
	} else if errnoOf(err) != syscall.ENODEV {
		syscall.Close(fd2)
		t.Errorf("open through a cached path while draining: %v, want ENODEV", err)
	}
	select {
	case <-detachDone:
		t.Fatal("detach returned while a read was inside the provider")
	case <-readDone:
		t.Fatal("read returned while the provider was blocked")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)

	var waited time.Duration
	select {
	case waited = <-detachDone:
	case <-time.After(5 * time.Second):
		t.Fatal("detach hung")
	}
	if n := mem.InsideAtClose(); n != 0 {
		t.Errorf("provider closed with %d calls inside", n)
	}
	if !mem.Closed() {
		t.Error("detach returned before the provider was closed")
	}
	if waited < 200*time.Millisecond {
		t.Errorf("detach returned after %v, before the 200 ms provider call could finish", waited)
	}
	t.Logf("detach waited %v for the in-flight read", waited)
	var r result
	select {
	case r = <-readDone:
	case <-time.After(5 * time.Second):
		t.Fatal("read hung")
	}
	// In a cached mode the kernel reads the whole page, a READ of more
	// than one provider chunk: the removal waits for the chunk inside
	// (DESIGN rule 4), and the next chunk finds the device gone.
	if mode.cached && errnoOf(r.err) == syscall.ENODEV {
		t.Logf("mode %s: the in-flight page read got ENODEV after its first chunk", mode.name)
	} else if r.err != nil || r.n != 128 || !bytes.Equal(r.buf, data[64:192]) {
		t.Fatalf("in-flight read: %d, %v; want 128 correct bytes", r.n, r.err)
	}

	if _, err := syscall.Pread(fd, make([]byte, 8), 0); errnoOf(err) != syscall.ENODEV {
		t.Errorf("pread on the old descriptor: %v, want ENODEV", err)
	}
	if _, err := syscall.Pwrite(fd, make([]byte, 8), 0); errnoOf(err) == 0 {
		t.Errorf("pwrite on the old read-only descriptor succeeded")
	}
	if _, err := syscall.Pread(cellFD, make([]byte, 8), 0); errnoOf(err) != syscall.ENODEV {
		t.Errorf("pread on an old cell descriptor: %v, want ENODEV", err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(m.path("slow"), &st); errnoOf(err) != syscall.ENOENT {
		t.Errorf("stat after detach: %v, want ENOENT", err)
	}
	if err := syscall.Stat(m.path("slow", "nvmem"), &st); errnoOf(err) != syscall.ENOENT {
		t.Errorf("stat of nvmem after detach: %v, want ENOENT", err)
	}
	entries, err := os.ReadDir(m.dir)
	if err != nil || len(entries) != 1 || entries[0].Name() != "other" {
		t.Errorf("listing after detach: %v, %v; want only other", entries, err)
	}
	if got, err := os.ReadFile(m.path("other", "nvmem")); err != nil || !bytes.Equal(got, pattern(16, 1)) {
		t.Errorf("the other device after detach: %x, %v", got, err)
	}
	if n := mem.CallsAfterClose(); n != 0 {
		t.Errorf("provider called %d times after Close", n)
	}
}

// TestOpenThroughRemovedDirectory: a descriptor on the device directory
// outlives the removal; opening nvmem relative to it fails (the kernel has
// marked the directory dead: ENOENT), and never reaches the provider.
func TestOpenThroughRemovedDirectory(t *testing.T) {
	m := mountTest(t)
	d, mem := m.attach(t, nvcore.Config{Name: "c"}, pattern(16, 0))
	dirFD := openFile(t, m.path("c"), syscall.O_RDONLY|syscall.O_DIRECTORY)
	if err := m.reg.Remove(d); err != nil {
		t.Fatal(err)
	}
	// openat relative to the open directory reaches the removed device's
	// own nodes: the kernel may still hold them.
	fd, err := syscall.Openat(dirFD, "nvmem", syscall.O_RDONLY, 0)
	if err == nil {
		syscall.Close(fd)
		t.Fatal("open of a removed device's nvmem succeeded")
	}
	if e := errnoOf(err); e != syscall.ENODEV && e != syscall.ENOENT {
		t.Errorf("open through a cached path: %v, want ENODEV or ENOENT", err)
	}
	t.Logf("open through the removed directory: %v", err)
	if mem.Reads() != 0 || mem.CallsAfterClose() != 0 {
		t.Errorf("the provider was reached: %d reads, %d after close", mem.Reads(), mem.CallsAfterClose())
	}
}

// TestStressRemoval: readers loop on real system calls while the device is
// attached and detached 200 times. No read returns wrong bytes; every
// failure is ENODEV or ENOENT; nothing hangs, leaks or calls a closed
// provider.
func TestStressRemoval(t *testing.T) {
	requireFUSE(t)
	// Warm up what keeps descriptors for good (the runtime's poller,
	// go-fuse's /dev/null), and empty go-fuse's pool of splice pipes, before
	// counting.
	t.Run("warm-up", func(t *testing.T) {
		m := mountTest(t)
		m.attach(t, nvcore.Config{Name: "w"}, pattern(16, 0))
		os.ReadFile(m.path("w", "nvmem"))
	})
	splice.ClearSplicePool()
	goroutinesBefore := settledGoroutines(runtime.NumGoroutine())
	fdsBefore := openFDs(t)

	cycles := 200
	if testing.Short() {
		cycles = 50
	}
	data := pattern(4096, 0xa5)
	cells := []nvcore.CellInfo{{Name: "serial", Offset: 100, Bytes: 12}, {Name: "flag", Offset: 7, Bytes: 1, BitOffset: 3, NBits: 2}}
	wantFlag := []byte{data[7] >> 3 & 3}

	t.Run("run", func(t *testing.T) {
		m := mountTest(t)
		var stop atomic.Bool
		var reads, enodev, enoent atomic.Int64
		var mu sync.Mutex
		var providers []*nvcoretest.Memory
		failures := make(chan string, 100)
		fail := func(format string, args ...any) {
			select {
			case failures <- fmt.Sprintf(format, args...):
			default:
			}
		}
		classify := func(what string, err error) {
			switch errnoOf(err) {
			case syscall.ENODEV:
				enodev.Add(1)
			case syscall.ENOENT:
				enoent.Add(1)
			default:
				fail("%s: unexpected error %v", what, err)
			}
		}

		var wg sync.WaitGroup
		for r := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(r), 1))
				buf := make([]byte, 512)
				held := -1 // a descriptor kept open across cycles
				defer func() {
					if held >= 0 {
						syscall.Close(held)
					}
				}()
				for !stop.Load() {
					off := rng.IntN(len(data) - len(buf))
					switch r % 4 {
					case 0, 1: // open, pread, close
						fd, err := syscall.Open(m.path("dev", "nvmem"), syscall.O_RDONLY, 0)
						if err != nil {
							classify("open", err)
							continue
						}
						n, err := syscall.Pread(fd, buf, int64(off))
						syscall.Close(fd)
						if err != nil {
							classify("pread", err)
						} else if n != len(buf) || !bytes.Equal(buf, data[off:off+n]) {
							fail("pread at %d: %d wrong bytes", off, n)
						}
					case 2: // a long-lived descriptor
						if held < 0 {
							fd, err := syscall.Open(m.path("dev", "nvmem"), syscall.O_RDONLY, 0)
							if err != nil {
								classify("open", err)
								continue
							}
							held = fd
						}
						n, err := syscall.Pread(held, buf, int64(off))
						if err != nil {
							classify("held pread", err)
							syscall.Close(held)
							held = -1
						} else if n != len(buf) || !bytes.Equal(buf, data[off:off+n]) {
							fail("held pread at %d: wrong bytes", off)
						}
					case 3: // cells
						got, err := os.ReadFile(m.path("dev", "cells", "serial@64,0"))
						if err != nil {
							classify("cell", err)
						} else if !bytes.Equal(got, data[100:112]) {
							fail("cell serial: %x", got)
						}
						got, err = os.ReadFile(m.path("dev", "cells", "flag@7,3"))
						if err != nil {
							classify("cell", err)
						} else if !bytes.Equal(got, wantFlag) {
							fail("cell flag: %x, want %x", got, wantFlag)
						}
					}
					reads.Add(1)
				}
			}()
		}

		watchdog := time.AfterFunc(90*time.Second, func() {
			panic("stress test hung:\n" + stackDump())
		})
		defer watchdog.Stop()
		start := time.Now()
		for i := range cycles {
			mem := nvcoretest.NewMemory(data)
			mem.Xfer = 256
			d, err := m.reg.Register(nvcore.Config{Name: "dev", Cells: cells}, mem)
			if err != nil {
				t.Fatalf("cycle %d: register: %v", i, err)
			}
			mu.Lock()
			providers = append(providers, mem)
			mu.Unlock()
			before := reads.Load()
			for reads.Load() < before+4 && time.Since(start) < 60*time.Second {
				time.Sleep(100 * time.Microsecond)
			}
			if err := m.reg.Remove(d); err != nil {
				t.Fatalf("cycle %d: remove: %v", i, err)
			}
		}
		stop.Store(true)
		wg.Wait()
		close(failures)
		for f := range failures {
			t.Error(f)
		}
		for i, p := range providers {
			if !p.Closed() || p.CallsAfterClose() != 0 || p.InsideAtClose() != 0 {
				t.Errorf("provider %d: closed %v, calls after close %d, inside at close %d", i, p.Closed(), p.CallsAfterClose(), p.InsideAtClose())
			}
		}
		t.Logf("%d cycles in %v: %d operations, %d ENODEV, %d ENOENT",
			cycles, time.Since(start).Round(time.Millisecond), reads.Load(), enodev.Load(), enoent.Load())
		if reads.Load() < int64(cycles) {
			t.Errorf("only %d operations in %d cycles", reads.Load(), cycles)
		}
	})

	// After the unmount in the subtest's cleanup: no goroutine or descriptor
	// left behind.
	if n := settledGoroutines(goroutinesBefore); n > goroutinesBefore {
		t.Errorf("goroutines: %d before, %d after\n%s", goroutinesBefore, n, stackDump())
	}
	splice.ClearSplicePool()
	if n := openFDs(t); n > fdsBefore {
		t.Errorf("descriptors: %d before, %d after", fdsBefore, n)
	}
}
