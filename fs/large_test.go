package fs

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"github.com/nvmemfs/nvmemfs/backends/file"
	"github.com/nvmemfs/nvmemfs/nvcore"
)

// Devices above 2 GiB through a real mount, for 32-bit builds (386, arm,
// mips), where an int holds no offset past 2 GiB - 1 and a uint32 none
// past 4 GiB - 1. The images are sparse files: no disk, a second to run.
//
//	GOARCH=386 go test -run Large ./fs/
//	GOARCH=arm go test -c -o /tmp/fs.arm ./fs/ && (cd fs && qemu-arm-static /tmp/fs.arm -test.run Large -test.v)
//
// The test process (32-bit there) is both the FUSE server and a client
// (pread, pwrite); dd is the host's own program, a second client.

const gib = int64(1) << 30

// largeImage makes a sparse image of size bytes and attaches it as name.
func (m *mounted) largeImage(t *testing.T, name string, size int64, cells ...nvcore.CellInfo) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), name+".img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	err = f.Truncate(size)
	f.Close()
	if err != nil {
		t.Skipf("cannot make a sparse image of %d bytes here: %v", size, err)
	}
	p, err := file.Open(file.Options{Path: img})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.reg.Register(nvcore.Config{Name: name, Cells: cells}, p); err != nil {
		p.Close()
		t.Fatalf("register %s: %v", name, err)
	}
	return img
}

// fileAt reads n bytes at off of a plain file.
func fileAt(t *testing.T, path string, off int64, n int) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatalf("%s: read at %#x: %v", path, off, err)
	}
	return b
}

func TestLargeDeviceThroughMount(t *testing.T) {
	for _, size := range []int64{3 * gib, 4*gib + 1<<20} {
		t.Run(fmt.Sprintf("%d MiB", size>>20), func(t *testing.T) {
			testLargeDevice(t, size)
		})
	}
}

func testLargeDevice(t *testing.T, size int64) {
	m := mountTest(t)
	tail := nvcore.CellInfo{Name: "tail", Offset: size - 6, Bytes: 6}
	img := m.largeImage(t, "big", size, tail)
	nvmem := m.path("big", "nvmem")

	st, err := os.Stat(nvmem)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() != size {
		t.Fatalf("stat: size %#x, want %#x", st.Size(), size)
	}

	// pread and pwrite from this process. On a 32-bit build Go opens with
	// O_LARGEFILE, as every program reading a file this big must.
	fd := openFile(t, nvmem, syscall.O_RDWR)
	spots := []struct {
		name string
		off  int64
		n    int
	}{
		{"across 2 GiB", math.MaxInt32 - 7, 16},
		{"at 2 GiB", math.MaxInt32 + 1, 8},
		{"last 4 KiB", size - 4096, 4096},
		{"last byte", size - 1, 1},
	}
	if size > math.MaxUint32+8 {
		spots = append(spots, struct {
			name string
			off  int64
			n    int
		}{"across 4 GiB - 1", math.MaxUint32 - 7, 16})
	}
	for i, s := range spots {
		want := pattern(s.n, byte(0x31+i))
		if n, err := syscall.Pwrite(fd, want, s.off); n != s.n || err != nil {
			t.Fatalf("%s: pwrite at %#x: %d, %v", s.name, s.off, n, err)
		}
		got := make([]byte, s.n)
		if n, err := syscall.Pread(fd, got, s.off); n != s.n || err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: pread at %#x: %d, %v", s.name, s.off, n, err)
		}
		if got := fileAt(t, img, s.off, s.n); !bytes.Equal(got, want) {
			t.Errorf("%s: the image at %#x does not hold what was written", s.name, s.off)
		}
	}

	// The end (SPEC 3): reads there are EOF, writes EFBIG, a write across
	// it is cut short.
	buf := make([]byte, 64)
	if n, err := syscall.Pread(fd, buf, size); n != 0 || err != nil {
		t.Errorf("pread at the end: %d, %v, want 0", n, err)
	}
	if n, err := syscall.Pread(fd, buf, size-10); n != 10 || err != nil {
		t.Errorf("pread across the end: %d, %v, want 10", n, err)
	}
	if _, err := syscall.Pwrite(fd, buf, size); errnoOf(err) != syscall.EFBIG {
		t.Errorf("pwrite at the end: %v, want EFBIG", err)
	}
	if n, err := syscall.Pwrite(fd, pattern(64, 0x77), size-10); n != 10 || err != nil {
		t.Errorf("pwrite across the end: %d, %v, want 10", n, err)
	}
	if got := fileAt(t, img, size-10, 10); !bytes.Equal(got, pattern(10, 0x77)) {
		t.Errorf("the image's last bytes are % x", got)
	}

	// A cell file whose name carries an offset above 2 GiB.
	cellPath := m.path("big", "cells", tail.FileName())
	if v, err := os.ReadFile(cellPath); err != nil || !bytes.Equal(v, fileAt(t, img, size-6, 6)) {
		t.Errorf("%s: % x, %v", cellPath, v, err)
	}

	// dd, with skip and seek in blocks past 2 GiB (and 4 GiB).
	dd, err := exec.LookPath("dd")
	if err != nil {
		t.Skipf("no dd: %v", err)
	}
	run := func(args ...string) []byte {
		t.Helper()
		out, err := exec.Command(dd, append(args, "status=none")...).Output()
		if err != nil {
			var stderr []byte
			if ee, ok := err.(*exec.ExitError); ok {
				stderr = ee.Stderr
			}
			t.Fatalf("dd %q: %v: %s", args, err, stderr)
		}
		return out
	}
	blocks := size / 4096
	src := filepath.Join(t.TempDir(), "src")
	data := pattern(8192, 0x42)
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	// Two blocks from each: across 2 GiB, across 4 GiB, the last two.
	starts := []int64{1<<31/4096 - 1, blocks - 2}
	if size > 1<<32+4096 {
		starts = append(starts, 1<<32/4096-1)
	}
	for _, block := range starts {
		run("if="+src, "of="+nvmem, "bs=4096", "seek="+strconv.FormatInt(block, 10), "conv=notrunc")
		if got := fileAt(t, img, block*4096, 8192); !bytes.Equal(got, data) {
			t.Errorf("dd seek=%d: the image does not hold the blocks", block)
		}
		if got := run("if="+nvmem, "bs=4096", "skip="+strconv.FormatInt(block, 10), "count=2"); !bytes.Equal(got, data) {
			t.Errorf("dd skip=%d: %d bytes, not the blocks written", block, len(got))
		}
	}
	// Byte-sized: the last three bytes, and nothing after them.
	if got := run("if="+nvmem, "bs=1", "skip="+strconv.FormatInt(size-3, 10)); !bytes.Equal(got, data[8189:]) {
		t.Errorf("dd of the last 3 bytes: % x, want % x", got, data[8189:])
	}
}
