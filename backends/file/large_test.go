package file

import (
	"bytes"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/nvmemfs/nvmemfs/nvcore"
)

// Images above 2 GiB: on a 32-bit build (386, arm, mips) an int holds no
// offset past 2 GiB - 1 and a uint32 none past 4 GiB - 1, so every offset
// and size must stay an int64 from the FUSE request to pread(2). The images
// are sparse: they cost no disk, and the tests run in a second.
//
//	GOARCH=386 go test -run Large ./backends/file/
//	GOARCH=arm go test -c -o /tmp/file.arm ./backends/file/ && (cd backends/file && qemu-arm-static /tmp/file.arm -test.run Large)

const (
	gib       = int64(1) << 30
	largeSize = 3 * gib
)

// sparseImage makes a sparse image of size bytes, all zero.
func sparseImage(t *testing.T, size int64) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "large.img")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Skipf("cannot make a sparse image of %d bytes here: %v", size, err)
	}
	return path
}

// readImage reads n bytes at off straight from the image file.
func readImage(t *testing.T, path string, off int64, n int) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatalf("image read at %#x: %v", off, err)
	}
	return b
}

// largeSpots are the places where a 32-bit int or uint32 would break: the
// first and last bytes, across 2 GiB (int32 wraps), across 4 GiB - 1
// (uint32 wraps) when the device is that big, and the very end.
func largeSpots(size int64) []struct {
	name string
	off  int64
	n    int
} {
	spots := []struct {
		name string
		off  int64
		n    int
	}{
		{"start", 0, 16},
		{"across 2 GiB", math.MaxInt32 - 7, 16},
		{"at 2 GiB", math.MaxInt32 + 1, 8},
		{"last 16 bytes", size - 16, 16},
		{"last byte", size - 1, 1},
	}
	if size > math.MaxUint32+8 {
		spots = append(spots, struct {
			name string
			off  int64
			n    int
		}{"across 4 GiB - 1", math.MaxUint32 - 7, 16})
	}
	return spots
}

func marker(off int64, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(off>>uint(8*(i%8))) ^ byte(0xa5+i)
	}
	return b
}

// TestLargeImage writes and reads back at the far ends of a 3 GiB image
// through the provider, and checks that the bytes land at those offsets
// in the image file.
func TestLargeImage(t *testing.T) {
	path := sparseImage(t, largeSize)
	p, err := Open(Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	img := p.(*Image)
	if img.Size() != largeSize {
		t.Fatalf("size %#x, want %#x", img.Size(), largeSize)
	}
	for _, s := range largeSpots(largeSize) {
		want := marker(s.off, s.n)
		if n, err := img.WriteAt(want, s.off); n != s.n || err != nil {
			t.Fatalf("%s: write at %#x: %d, %v", s.name, s.off, n, err)
		}
		got := make([]byte, s.n)
		if n, err := img.ReadAt(got, s.off); n != s.n || err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: read at %#x: %d, %v, % x, want % x", s.name, s.off, n, err, got, want)
		}
		if got := readImage(t, path, s.off, s.n); !bytes.Equal(got, want) {
			t.Errorf("%s: image at %#x holds % x, want % x", s.name, s.off, got, want)
		}
	}
	// Past the end, and offsets that would wrap if added to a length.
	for _, off := range []int64{largeSize, largeSize - 1 + 2, math.MaxInt64 - 1, math.MaxInt64} {
		if _, err := img.ReadAt(make([]byte, 2), off); err == nil {
			t.Errorf("read of 2 bytes at %#x succeeded", off)
		}
		if _, err := img.WriteAt(make([]byte, 2), off); err == nil {
			t.Errorf("write of 2 bytes at %#x succeeded", off)
		}
	}
	if _, err := img.ReadAt(make([]byte, 2), largeSize-1); err == nil {
		t.Error("read crossing the end succeeded")
	}
}

// TestLargeWindow opens a window above 4 GiB of a 6 GiB image: window
// offsets and image offsets both pass 2^32.
func TestLargeWindow(t *testing.T) {
	const total = 6 * gib
	path := sparseImage(t, total)
	const start = 4*gib - 4096
	p, err := Open(Options{Path: path, Offset: start, Size: 2 * gib})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	img := p.(*Image)
	for _, off := range []int64{0, 4096 - 4, 2*gib - 8} {
		want := marker(off, 8)
		if _, err := img.WriteAt(want, off); err != nil {
			t.Fatalf("write at %#x: %v", off, err)
		}
		if got := readImage(t, path, start+off, 8); !bytes.Equal(got, want) {
			t.Errorf("window %#x is image %#x: holds % x, want % x", off, start+off, got, want)
		}
	}
	// A window reaching past the image, with sizes that overflow when
	// added to the offset, is refused.
	for _, size := range []int64{total - start + 1, math.MaxInt64, math.MaxInt64 - start + 1} {
		if p, err := Open(Options{Path: path, Offset: start, Size: size}); err == nil {
			p.Close()
			t.Errorf("window %#x+%#x of a %#x image accepted", start, size, total)
		}
	}
}

// TestLargeDevice runs the same spots through the core, as the file system
// does: Device.ReadAt and WriteAt, the sysfs semantics at the end (EOF,
// ErrTooBig), and cells at the far end, including a bit field.
func TestLargeDevice(t *testing.T) {
	path := sparseImage(t, largeSize)
	p, err := Open(Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	reg := nvcore.NewRegistry()
	cfg := nvcore.Config{
		Name: "large",
		Cells: []nvcore.CellInfo{
			{Name: "tail", Offset: largeSize - 6, Bytes: 6},
			{Name: "bits", Offset: largeSize - 1, Bytes: 1, BitOffset: 2, NBits: 4},
			{Name: "mid", Offset: math.MaxInt32 - 1, Bytes: 4},
		},
		Keepouts: []nvcore.Keepout{{Start: largeSize - 64, End: largeSize - 32, Fill: 0xee}},
	}
	d, err := reg.Register(cfg, p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := reg.RemoveAll(); err != nil {
			t.Errorf("remove: %v", err)
		}
	})
	if d.Size() != largeSize {
		t.Fatalf("device size %#x, want %#x", d.Size(), largeSize)
	}
	for _, s := range largeSpots(largeSize) {
		want := marker(s.off, s.n)
		if n, err := d.WriteAt(want, s.off); n != s.n || err != nil {
			t.Fatalf("%s: device write at %#x: %d, %v", s.name, s.off, n, err)
		}
		got := make([]byte, s.n)
		if n, err := d.ReadAt(got, s.off); n != s.n || err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: device read at %#x: %d, %v, % x", s.name, s.off, n, err, got)
		}
		got = make([]byte, s.n)
		if n, err := d.SysfsRead(got, s.off); n != s.n || err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: sysfs read at %#x: %d, %v, % x", s.name, s.off, n, err, got)
		}
		if got := readImage(t, path, s.off, s.n); !bytes.Equal(got, want) {
			t.Errorf("%s: image at %#x holds % x", s.name, s.off, got)
		}
	}

	// The end, as the kernel's sysfs file has it (SPEC 3).
	buf := make([]byte, 64)
	if n, err := d.SysfsRead(buf, largeSize-4); n != 4 || err != nil {
		t.Errorf("sysfs read crossing the end: %d, %v, want 4", n, err)
	}
	if n, err := d.SysfsRead(buf, largeSize); n != 0 || err != nil {
		t.Errorf("sysfs read at the end: %d, %v, want 0 (EOF)", n, err)
	}
	if n, err := d.SysfsWrite(buf, largeSize-4); n != 4 || err != nil {
		t.Errorf("sysfs write crossing the end: %d, %v, want 4", n, err)
	}
	if _, err := d.SysfsWrite(buf, largeSize); !errors.Is(err, nvcore.ErrTooBig) {
		t.Errorf("sysfs write at the end: %v, want ErrTooBig", err)
	}
	if n, err := d.ReadAt(buf, largeSize-8); n != 8 || err != io.EOF {
		t.Errorf("read crossing the end: %d, %v, want 8, EOF", n, err)
	}
	if _, err := d.WriteAt(buf[:1], math.MaxInt64); !errors.Is(err, nvcore.ErrTooBig) {
		t.Errorf("write at MaxInt64: %v, want ErrTooBig", err)
	}

	// The keepout 64 bytes from the end reads as its fill and is never
	// written.
	fill := make([]byte, 128)
	if _, err := d.WriteAt(bytes.Repeat([]byte{0x11}, 128), largeSize-128); err != nil {
		t.Fatal(err)
	}
	if _, err := d.ReadAt(fill, largeSize-128); err != nil {
		t.Fatal(err)
	}
	for i, b := range fill {
		off := largeSize - 128 + int64(i)
		want := byte(0x11)
		if off >= largeSize-64 && off < largeSize-32 {
			want = 0xee
		}
		if b != want {
			t.Fatalf("byte %#x reads %#02x, want %#02x", off, b, want)
		}
	}
	if got := readImage(t, path, largeSize-64, 32); !bytes.Equal(got, make([]byte, 32)) {
		t.Errorf("the keepout was written: % x", got)
	}

	// Cells at the far end.
	tail, err := d.Cell("tail")
	if err != nil {
		t.Fatal(err)
	}
	mac := []byte{0x02, 0x00, 0x5e, 0x10, 0x20, 0x30}
	if err := tail.Write(mac); err != nil {
		t.Fatalf("tail cell write: %v", err)
	}
	if v, err := tail.Read(); err != nil || !bytes.Equal(v, mac) {
		t.Errorf("tail cell: % x, %v", v, err)
	}
	bits, err := d.Cell("bits")
	if err != nil {
		t.Fatal(err)
	}
	if err := bits.Write([]byte{0x9}); err != nil {
		t.Fatalf("bit field write: %v", err)
	}
	if v, err := bits.Read(); err != nil || !bytes.Equal(v, []byte{0x9}) {
		t.Errorf("bit field: % x, %v", v, err)
	}
	// The last byte was 0x30 from the tail cell: bits 2-5 now hold 9.
	if got := readImage(t, path, largeSize-1, 1); got[0] != 0x30&^0x3c|0x9<<2 {
		t.Errorf("last byte %#02x, want %#02x", got[0], 0x30&^0x3c|0x9<<2)
	}
	mid, err := d.Cell("mid")
	if err != nil {
		t.Fatal(err)
	}
	if v, err := mid.Read(); err != nil || !bytes.Equal(v, readImage(t, path, math.MaxInt32-1, 4)) {
		t.Errorf("cell across 2 GiB: % x, %v", v, err)
	}
	if name := mid.Info().FileName(); name != "mid@7ffffffe,0" {
		t.Errorf("cell file name %q", name)
	}
}
