package fs

import (
	"bytes"
	"errors"
	"os"
	"syscall"
	"testing"
	"time"

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
