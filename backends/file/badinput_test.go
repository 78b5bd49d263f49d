package file

import (
	"bytes"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nvmemfs/nvmemfs/nvcore"
)

// TestNotAnImage: a FIFO, a socket, a character device and a directory are
// refused at once, naming what they are. Opening a FIFO used to block in
// open(2) until a writer came.
func TestNotAnImage(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cases := []struct {
		path string
		ro   bool
		want string
	}{
		{fifo, true, "is a FIFO (named pipe), not a regular file or a block device"},
		{fifo, false, "is a FIFO (named pipe)"},
		{sock, false, "is a socket"},
		{"/dev/null", false, "is a character device"},
		{"/dev/zero", true, "is a character device"},
		{dir, true, "is a directory"},
	}
	for _, c := range cases {
		done := make(chan error, 1)
		go func() {
			p, err := Open(Options{Path: c.path, ReadOnly: c.ro})
			if err == nil {
				p.Close()
			}
			done <- err
		}()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), c.path) {
				t.Errorf("open %s (ro %v): %v, want an error naming it and saying %q", c.path, c.ro, err, c.want)
			}
		case <-time.After(5 * time.Second):
			// Unblock the open: a writer comes.
			if f, err := os.OpenFile(c.path, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
				f.Close()
			}
			t.Fatalf("open %s (ro %v) blocked", c.path, c.ro)
		}
	}
}

// TestOpenedBlocking: the descriptor is back in blocking mode after the
// non-blocking open, and reads and writes work.
func TestOpenedBlocking(t *testing.T) {
	path, data := image(t, 64)
	p, err := Open(Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	img := p.(*Image)
	flags, err := fcntlFlags(img.f)
	if err != nil {
		t.Fatal(err)
	}
	if flags&unix.O_NONBLOCK != 0 {
		t.Errorf("image descriptor flags %#o: still O_NONBLOCK", flags)
	}
	got := make([]byte, 64)
	if _, err := img.ReadAt(got, 0); err != nil || !bytes.Equal(got, data) {
		t.Errorf("read: %v", err)
	}
}

// fcntlFlags reads the descriptor's flags without f.Fd(), which would
// make it blocking.
func fcntlFlags(f *os.File) (int, error) {
	raw, err := f.SyscallConn()
	if err != nil {
		return 0, err
	}
	var flags int
	var ferr error
	if err := raw.Control(func(fd uintptr) { flags, ferr = unix.FcntlInt(fd, unix.F_GETFL, 0) }); err != nil {
		return 0, err
	}
	return flags, ferr
}

// TestWriteNeverGrows: an image truncated by someone else after the
// attach is not grown again by a write inside the window: the write
// fails, the image keeps its new size. Writes that still fit go through.
func TestWriteNeverGrows(t *testing.T) {
	path, _ := image(t, 256)
	_, d := registered(t, Options{Path: path, Offset: 16})
	if d.Size() != 240 {
		t.Fatalf("size %d, want 240", d.Size())
	}
	if err := os.Truncate(path, 64); err != nil {
		t.Fatal(err)
	}
	// Device offset 200 is image offset 216, past the new end.
	n, err := d.WriteAt([]byte{1, 2, 3, 4}, 200)
	if err == nil || n != 0 || !strings.Contains(err.Error(), "shrank") {
		t.Errorf("write past the shrunk end: %d, %v; want a refusal saying the image shrank", n, err)
	}
	if errors.Is(err, nvcore.ErrTooBig) {
		t.Errorf("a shrunk image is not the device's end (EFBIG): %v", err)
	}
	// Crossing the new end: refused too, nothing written.
	if _, err := d.WriteAt([]byte{5, 6, 7, 8}, 46); err == nil {
		t.Error("write crossing the shrunk end succeeded")
	}
	if st, err := os.Stat(path); err != nil || st.Size() != 64 {
		t.Fatalf("image after refused writes: %v, %v; want 64 bytes", st, err)
	}
	// Inside what is left: fine.
	if _, err := d.WriteAt([]byte{9, 9}, 46); err != nil {
		t.Errorf("write inside the shrunk image: %v", err)
	}
	if got := onDisk(t, path); len(got) != 64 || got[62] != 9 || got[63] != 9 {
		t.Errorf("image after a write that fits: %d bytes, tail % x", len(got), got[60:])
	}
}
