package file

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nvmemfs/nvmemfs/nvcore"
)

func image(t *testing.T, n int) (string, []byte) {
	t.Helper()
	data := make([]byte, n)
	for i := range data {
		data[i] = byte(i * 13)
	}
	path := filepath.Join(t.TempDir(), "img.bin")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path, data
}

func TestWindow(t *testing.T) {
	path, data := image(t, 1024)
	p, err := Open(Options{Path: path, Offset: 0x100, Size: 0x80})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.Size() != 0x80 {
		t.Fatalf("size %d, want 128", p.Size())
	}
	img := p.(*Image)
	got := make([]byte, 16)
	if n, err := img.ReadAt(got, 0x10); n != 16 || err != nil || !bytes.Equal(got, data[0x110:0x120]) {
		t.Errorf("read in the window: %d %v %x", n, err, got)
	}
	if _, err := img.ReadAt(got, 0x78); err == nil {
		t.Error("read crossing the window's end succeeded")
	}
	// A write through the window lands at the window's offset in the image,
	// and the image shows it at once, before any sync or close.
	if n, err := img.WriteAt([]byte("abc"), 2); n != 3 || err != nil {
		t.Fatalf("write: %d %v", n, err)
	}
	onDisk, _ := os.ReadFile(path)
	if string(onDisk[0x102:0x105]) != "abc" || !bytes.Equal(onDisk[:0x102], data[:0x102]) || !bytes.Equal(onDisk[0x105:], data[0x105:]) {
		t.Errorf("image after a window write: %x", onDisk[0x100:0x108])
	}
	if err := img.Sync(); err != nil {
		t.Errorf("sync: %v", err)
	}
}

func TestWholeAndReadOnly(t *testing.T) {
	path, data := image(t, 300)
	p, err := Open(Options{Path: path, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.Size() != 300 {
		t.Errorf("size %d", p.Size())
	}
	if _, ok := p.(io.WriterAt); ok {
		t.Error("a read-only image has a write face")
	}
	got := make([]byte, 300)
	if _, err := p.(io.ReaderAt).ReadAt(got, 0); err != nil || !bytes.Equal(got, data) {
		t.Errorf("read: %v", err)
	}
	// Read-only opens the file read-only: it works on an image the user
	// cannot write.
	os.Chmod(path, 0o444)
	if os.Getuid() != 0 {
		if _, err := Open(Options{Path: path}); err == nil {
			t.Error("read-write open of a 0444 image succeeded")
		}
	}
}

func TestBadImages(t *testing.T) {
	path, _ := image(t, 256)
	empty := filepath.Join(t.TempDir(), "empty.bin")
	os.WriteFile(empty, nil, 0o644)
	cases := []struct {
		o    Options
		want string
	}{
		{Options{Path: "/nonexistent/img.bin"}, "no such file"},
		{Options{Path: empty}, "is empty"},
		{Options{Path: path, Offset: 256}, "past its end"},
		{Options{Path: path, Offset: 200, Size: 100}, "reaches past its end"},
		{Options{Path: path, Offset: -1}, "negative"},
		{Options{Path: t.TempDir()}, "is a directory"},
		{Options{Path: "/dev/null"}, "not a regular file"},
	}
	for _, c := range cases {
		p, err := Open(c.o)
		if err == nil {
			p.Close()
			t.Errorf("%+v: opened", c.o)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want it to say %q", c.o, err, c.want)
		}
	}
}

// TestThroughCore: the provider behind a device, with the close after
// removal syncing what was written.
func TestThroughCore(t *testing.T) {
	path, data := image(t, 64)
	p, err := Open(Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	reg := nvcore.NewRegistry()
	d, err := reg.Register(nvcore.Config{Name: "img"}, p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.WriteAt([]byte{0xde, 0xad}, 10); err != nil {
		t.Fatal(err)
	}
	if err := d.Sync(); err != nil {
		t.Errorf("sync: %v", err)
	}
	if err := reg.Remove(d); err != nil {
		t.Fatalf("remove: %v", err)
	}
	got, _ := os.ReadFile(path)
	want := append([]byte(nil), data...)
	want[10], want[11] = 0xde, 0xad
	if !bytes.Equal(got, want) {
		t.Errorf("image after removal: %x", got)
	}
	if _, err := d.ReadAt(make([]byte, 4), 0); !errors.Is(err, nvcore.ErrNoDevice) {
		t.Errorf("read after removal: %v", err)
	}
}
