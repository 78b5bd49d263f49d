package file

// Tests of what the package comment promises about durability:
//
//   - a write reaches the image with pwrite(2) before the write call
//     returns, so any reader of the image sees it at once;
//   - it reaches stable storage when the device is synced (fsync), and when
//     the device is removed (Close syncs first if anything was written).
//
// Stable storage itself cannot be observed from a test (that would take a
// power cut), so the tests check the two halves that can be: the bytes are
// in the image, seen through a descriptor of its own, and fsync(2) is really
// called on the image's descriptor. The second is observed without a hook:
// /dev/null takes pwrite(2) but fails fsync(2) with EINVAL, so an Image
// whose descriptor is /dev/null writes as an image does and turns every
// fsync into an error the caller can see.

import (
	"bytes"
	"errors"
	"os"
	"syscall"
	"testing"

	"github.com/nvmemfs/nvmemfs/nvcore"
)

// registered opens o as a device of a fresh registry. The device is removed
// when the test ends, unless the test removed it first.
func registered(t *testing.T, o Options) (*nvcore.Registry, *nvcore.Device) {
	t.Helper()
	p, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	return registerProvider(t, p)
}

func registerProvider(t *testing.T, p nvcore.Provider) (*nvcore.Registry, *nvcore.Device) {
	t.Helper()
	reg := nvcore.NewRegistry()
	d, err := reg.Register(nvcore.Config{Name: "img"}, p)
	if err != nil {
		p.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := reg.Remove(d); err != nil && !errors.Is(err, nvcore.ErrNoDevice) {
			t.Errorf("remove: %v", err)
		}
	})
	return reg, d
}

// onDisk reads the image through a descriptor of its own.
func onDisk(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// nullImage returns a read-write Image of size bytes whose descriptor is
// /dev/null: writes succeed (and are dropped), and every fsync(2) fails with
// EINVAL, which is how the tests see that one was made. Open refuses
// character devices, so the Image is built here.
func nullImage(t *testing.T, size int64) *Image {
	t.Helper()
	f, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		t.Skip(err)
	}
	if err := f.Sync(); !errors.Is(err, syscall.EINVAL) {
		f.Close()
		t.Skipf("fsync on %s gives %v here, not EINVAL: cannot observe fsync", os.DevNull, err)
	}
	return &Image{f: f, size: size}
}

// TestWriteVisibleAtOnce: a write through the device is in the image when
// the write call returns, before any sync or close, through both the
// io.WriterAt face and the sysfs-style write the nvmem file uses.
func TestWriteVisibleAtOnce(t *testing.T) {
	writes := []struct {
		name  string
		write func(d *nvcore.Device, p []byte, off int64) (int, error)
	}{
		{"WriteAt", (*nvcore.Device).WriteAt},
		{"SysfsWrite", (*nvcore.Device).SysfsWrite},
	}
	for _, w := range writes {
		t.Run(w.name, func(t *testing.T) {
			path, data := image(t, 256)
			_, d := registered(t, Options{Path: path})
			want := append([]byte(nil), data...)
			for i, off := range []int64{0, 0x7f, 0xfc} {
				p := []byte{0xa0 + byte(i), 0xb0, 0xc0, 0xd0}
				if n, err := w.write(d, p, off); n != len(p) || err != nil {
					t.Fatalf("write at %#x: %d, %v", off, n, err)
				}
				copy(want[off:], p)
				if got := onDisk(t, path); !bytes.Equal(got, want) {
					t.Fatalf("image right after the write at %#x: % x, want % x", off, got[off:off+4], p)
				}
			}
		})
	}
}

// TestSyncReachesFsync: Device.Sync on a file device returns nil with the
// content on the file, and it is a real fsync(2) on the image's descriptor.
func TestSyncReachesFsync(t *testing.T) {
	t.Run("image", func(t *testing.T) {
		path, data := image(t, 128)
		_, d := registered(t, Options{Path: path})
		if _, err := d.WriteAt([]byte("durable"), 0x40); err != nil {
			t.Fatal(err)
		}
		if err := d.Sync(); err != nil {
			t.Fatalf("sync: %v", err)
		}
		want := append([]byte(nil), data...)
		copy(want[0x40:], "durable")
		if got := onDisk(t, path); !bytes.Equal(got, want) {
			t.Errorf("image after sync: % x", got[0x40:0x47])
		}
	})
	t.Run("fsync observed", func(t *testing.T) {
		img := nullImage(t, 16)
		if err := img.Sync(); !errors.Is(err, syscall.EINVAL) {
			t.Errorf("Image.Sync on /dev/null: %v, want the EINVAL of fsync(2)", err)
		}
		_, d := registerProvider(t, img)
		if err := d.Sync(); !errors.Is(err, syscall.EINVAL) {
			t.Errorf("Device.Sync: %v, want the EINVAL of fsync(2): the sync did not reach the image", err)
		}
	})
	t.Run("read-only", func(t *testing.T) {
		// Nothing can be written, so there is nothing to make durable:
		// the provider has no Sync and Device.Sync does nothing.
		path, _ := image(t, 16)
		_, d := registered(t, Options{Path: path, ReadOnly: true})
		if err := d.Sync(); err != nil {
			t.Errorf("sync of a read-only image: %v", err)
		}
	})
}

// TestCloseSyncs: removing the device closes the image, syncing it first
// if anything was written, and the content is in the image afterwards.
func TestCloseSyncs(t *testing.T) {
	t.Run("content", func(t *testing.T) {
		path, data := image(t, 128)
		reg, d := registered(t, Options{Path: path})
		if _, err := d.WriteAt([]byte{1, 2, 3}, 100); err != nil {
			t.Fatal(err)
		}
		if err := reg.Unregister("img"); err != nil {
			t.Fatalf("unregister: %v", err)
		}
		want := append([]byte(nil), data...)
		copy(want[100:], []byte{1, 2, 3})
		if got := onDisk(t, path); !bytes.Equal(got, want) {
			t.Errorf("image after unregister: % x", got[100:103])
		}
		if err := d.Sync(); !errors.Is(err, nvcore.ErrNoDevice) {
			t.Errorf("sync after unregister: %v, want ErrNoDevice", err)
		}
	})
	// With /dev/null for a descriptor, Close fails exactly when it fsyncs.
	tests := []struct {
		name      string
		written   bool
		wantFsync bool
	}{
		{"written", true, true},
		{"never written", false, false},
	}
	for _, tt := range tests {
		t.Run("fsync observed/"+tt.name, func(t *testing.T) {
			reg, d := registerProvider(t, nullImage(t, 16))
			if tt.written {
				if _, err := d.WriteAt([]byte{1, 2}, 4); err != nil {
					t.Fatal(err)
				}
			}
			err := reg.Unregister("img")
			if got := errors.Is(err, syscall.EINVAL); got != tt.wantFsync {
				t.Errorf("unregister: %v; fsync made: %v, want %v", err, got, tt.wantFsync)
			}
		})
	}
}

// TestWindowWritesStayInside: a device on a window (offset=, size=) of an
// image writes only the window's bytes of the image, even when a write
// covers the whole window or tries to cross its end.
func TestWindowWritesStayInside(t *testing.T) {
	const off, size = 0x100, 0x80
	path, data := image(t, 1024)
	_, d := registered(t, Options{Path: path, Offset: off, Size: size})
	if d.Size() != size {
		t.Fatalf("device size %#x, want %#x", d.Size(), size)
	}
	want := append([]byte(nil), data...)
	check := func(what string) {
		t.Helper()
		got := onDisk(t, path)
		if !bytes.Equal(got[:off], data[:off]) || !bytes.Equal(got[off+size:], data[off+size:]) {
			t.Errorf("%s: the image changed outside the window [%#x, %#x)", what, off, off+size)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: window in the image is % x, want % x", what, got[off:off+size], want[off:off+size])
		}
	}

	whole := bytes.Repeat([]byte{0xee}, size)
	if n, err := d.WriteAt(whole, 0); n != size || err != nil {
		t.Fatalf("write of the whole window: %d, %v", n, err)
	}
	copy(want[off:], whole)
	check("whole window")

	// Crossing the end: WriteAt writes what fits and says ErrTooBig.
	n, err := d.WriteAt(bytes.Repeat([]byte{0x11}, 16), size-4)
	if n != 4 || !errors.Is(err, nvcore.ErrTooBig) {
		t.Errorf("write crossing the end: %d, %v; want 4, ErrTooBig", n, err)
	}
	copy(want[off+size-4:off+size], []byte{0x11, 0x11, 0x11, 0x11})
	check("write crossing the end")

	// The sysfs-style write is cut short at the end.
	if n, err := d.SysfsWrite(bytes.Repeat([]byte{0x22}, 16), size-2); n != 2 || err != nil {
		t.Errorf("sysfs write crossing the end: %d, %v; want 2, nil", n, err)
	}
	copy(want[off+size-2:off+size], []byte{0x22, 0x22})
	check("sysfs write crossing the end")

	// At the end: nothing is written.
	if _, err := d.WriteAt([]byte{0x33}, size); !errors.Is(err, nvcore.ErrTooBig) {
		t.Errorf("write at the end: %v, want ErrTooBig", err)
	}
	check("write at the end")

	// And the provider itself refuses what lies outside, should a caller
	// other than the core reach it.
	p, err := Open(Options{Path: path, Offset: off, Size: size})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := p.(*Image).WriteAt([]byte{0x44, 0x44}, size-1); err == nil {
		t.Error("provider write crossing the window's end succeeded")
	}
	if _, err := p.(*Image).WriteAt([]byte{0x44}, -1); err == nil {
		t.Error("provider write before the window succeeded")
	}
	check("provider writes outside the window")
}
