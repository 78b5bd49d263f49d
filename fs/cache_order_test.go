package fs

import (
	"encoding/binary"
	"os"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nvmemfs/nvmemfs/nvcore"
)

// TestCachedWriteAfterOtherDrops: one thread, nothing at once. A write of
// a bit-field cell, or of force_ro, drops pages of its own file, and used to
// leave that drop queued; the next write, of another cell, then found the
// queue busy and returned before nvmem's pages were dropped, so the read
// that followed it was older than it (about 1950 of 2000 rounds).
func TestCachedWriteAfterOtherDrops(t *testing.T) {
	if !mode.cached {
		t.Skip("nothing is cached in this mode")
	}
	m := mountTest(t)
	m.attach(t, nvcore.Config{Name: "c", Cells: []nvcore.CellInfo{
		{Name: "a", Offset: 0x10, Bytes: 4},
		{Name: "flag", Offset: 0x200, Bytes: 1, BitOffset: 2, NBits: 3},
	}}, make([]byte, 8192))
	nvmem := openFile(t, m.path("c", "nvmem"), syscall.O_RDONLY)
	a := openFile(t, m.path("c", "cells", "a@10,0"), syscall.O_WRONLY)
	flag := openFile(t, m.path("c", "cells", "flag@200,2"), syscall.O_RDWR)
	forceRO := openFile(t, m.path("c", "force_ro"), syscall.O_WRONLY)
	buf := make([]byte, 4)
	stale := 0
	const rounds = 500
	for i := uint32(1); i <= rounds; i++ {
		syscall.Pread(nvmem, buf, 0x10) // nvmem's page cached
		before, what := flag, []byte{byte(i % 8)}
		if i%2 == 0 {
			before, what = forceRO, []byte("0")
		}
		if _, err := syscall.Pwrite(before, what, 0); err != nil {
			t.Fatal(err)
		}
		binary.LittleEndian.PutUint32(buf, i)
		if _, err := syscall.Pwrite(a, buf, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := syscall.Pread(nvmem, buf, 0x10); err != nil {
			t.Fatal(err)
		}
		if binary.LittleEndian.Uint32(buf) != i {
			stale++
		}
	}
	if stale > 0 {
		t.Errorf("%d of %d reads of nvmem after a cell write had returned were older than it", stale, rounds)
	}
	// A bit field reads back what was written: the core refuses bits above
	// the field, so its own pages need no drop.
	got := make([]byte, 1)
	if _, err := syscall.Pwrite(flag, []byte{5}, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := syscall.Pread(flag, got, 0); err != nil || got[0] != 5 {
		t.Errorf("bit field after writing 5: %v, %v", got, err)
	}
	if _, err := syscall.Pwrite(flag, []byte{9}, 0); err != syscall.EINVAL {
		t.Errorf("bit field given 9 (above its 3 bits): %v, want EINVAL", err)
	}
}

// TestCachedWriteBehindChmod: with --cache-all a chmod drops the pages of
// the file it changed. While that drop waits (for a slow read of that
// file, whose page is locked), a write to another cell must still wait for
// nvmem's pages to be dropped: the chmod's drop cannot wait for the
// writer's pages.
func TestCachedWriteBehindChmod(t *testing.T) {
	if !mode.cacheAll {
		t.Skip("a chmod drops pages only with --cache-all")
	}
	m := mountTest(t)
	d, mem := m.attach(t, nvcore.Config{Name: "c", Cells: []nvcore.CellInfo{
		{Name: "a", Offset: 0x10, Bytes: 4}, {Name: "y", Offset: 0x100, Bytes: 4}}}, make([]byte, 8192))
	nvmem := openFile(t, m.path("c", "nvmem"), syscall.O_RDONLY)
	buf := make([]byte, 4)
	syscall.Pread(nvmem, buf, 0x10) // nvmem's page cached
	entered, release := make(chan struct{}), make(chan struct{})
	mem.SetHook(func(op string, off int64, n int) error {
		if op == "read" && off == 0x100 {
			close(entered)
			<-release
		}
		return nil
	})
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		os.ReadFile(m.path("c", "cells", "y@100,0"))
	}()
	<-entered // y's page is locked while its READ is held
	chmodDone := make(chan error, 1)
	go func() { chmodDone <- os.Chmod(m.path("c", "cells", "y@100,0"), 0o444) }()
	// Until the chmod's drop runs, waiting for y's page.
	deadline := time.Now().Add(10 * time.Second)
	for !m.fs.queueBusy(d) {
		if time.Now().After(deadline) {
			t.Fatal("the chmod posted no drop")
		}
		time.Sleep(time.Millisecond)
	}
	// The slow read ends on its own, as a bus transfer does; the write
	// waits behind the chmod's drop until then (nothing it waits for
	// waits for it).
	time.AfterFunc(200*time.Millisecond, func() { close(release) })
	if err := os.WriteFile(m.path("c", "cells", "a@10,0"), []byte("WXYZ"), 0); err != nil {
		t.Fatal(err)
	}
	syscall.Pread(nvmem, buf, 0x10)
	<-readDone
	if err := <-chmodDone; err != nil {
		t.Errorf("chmod: %v", err)
	}
	if string(buf) != "WXYZ" {
		t.Errorf("nvmem read after the cell write returned: %q, want WXYZ (the memory holds %q)", buf, mem.Bytes()[0x10:0x14])
	}
}

// TestRefusedMappedWrite: a write through a shared mapping reaches the
// server only at writeback, after the kernel changed the pages; when the
// device refuses it (force_ro: EPERM; with --cache-all, a read-only device
// that root opened for writing: EACCES), no later read may show bytes the
// memory never took.
func TestRefusedMappedWrite(t *testing.T) {
	if !mode.cached {
		t.Skip("an uncached file is not mapped for writing (direct I/O)")
	}
	m := mountTest(t)
	d, mem := m.attach(t, nvcore.Config{Name: "w"}, pattern(8192, 0x42))
	_, roMem := m.attach(t, nvcore.Config{Name: "ro", ReadOnly: true}, pattern(8192, 0x43))
	cases := []struct {
		name   string
		dev    string
		mem    func() []byte
		refuse func()
	}{
		{"force_ro", "w", mem.Bytes, func() { d.SetForceRO(true) }},
	}
	if mode.cacheAll {
		cases = append(cases, struct {
			name   string
			dev    string
			mem    func() []byte
			refuse func()
		}{"read-only device opened for writing", "ro", roMem.Bytes, func() {}})
	}
	for _, c := range cases {
		fd, err := syscall.Open(m.path(c.dev, "nvmem"), syscall.O_RDWR|syscall.O_CLOEXEC, 0)
		if err != nil {
			t.Errorf("%s: open: %v", c.name, err)
			continue
		}
		syscall.Pread(fd, make([]byte, 8192), 0)
		mp, err := unix.Mmap(fd, 0, 8192, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
		syscall.Close(fd)
		if err != nil {
			t.Errorf("%s: mmap: %v", c.name, err)
			continue
		}
		c.refuse()
		if err := writeMapped(mp[100:104], []byte("XXXX")); err != nil {
			t.Fatalf("%s: writing the mapping: %v", c.name, err)
		}
		msyncErr := unix.Msync(mp, unix.MS_SYNC)
		unix.Munmap(mp)
		if msyncErr == nil {
			t.Errorf("%s: msync succeeded; the write should be refused", c.name)
		}
		// The drop is posted by the refused WRITE; give it its moment.
		var got []byte
		for try := 0; try < 100; try++ {
			got, err = os.ReadFile(m.path(c.dev, "nvmem"))
			if err != nil || string(got[100:104]) != "XXXX" {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err != nil || string(got[100:104]) != string(c.mem()[100:104]) {
			t.Errorf("%s (msync: %v): a fresh read shows %q (%v), the memory holds %q", c.name, msyncErr, got[100:104], err, c.mem()[100:104])
		}
	}
}

// writeMapped writes data into a mapping through a pipe, so that the page
// fault happens inside read(2), not in a store by Go code (see readMapped).
func writeMapped(dst, data []byte) error {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		return err
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	if _, err := unix.Write(p[1], data); err != nil {
		return err
	}
	_, err := unix.Read(p[0], dst)
	return err
}
