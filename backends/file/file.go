// Package file provides nvmem devices backed by an image file, or by a
// window of one (an offset and a size), such as a flash partition dump or a
// block device.
//
// Durability: a write reaches the image with pwrite(2) before the write call
// returns, so any reader of the image sees it at once. It reaches stable
// storage when the nvmem file is fsync'ed (Sync), and when the device is
// removed (Close syncs before closing if anything was written).
package file

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/nvmemfs/nvmemfs/nvcore"
)

// Options selects the image and the window of it that becomes the device.
type Options struct {
	Path string
	// Offset is where the window starts in the image.
	Offset int64
	// Size of the window; 0 means up to the end of the image.
	Size int64
	// ReadOnly opens the image read-only; the provider then has no write face.
	ReadOnly bool
}

// Image is a read-write window of an image file.
type Image struct {
	f      *os.File
	offset int64
	size   int64
	dirty  atomic.Bool
	// regular: the image is a regular file, which a write past its end
	// would grow (a block device cannot grow).
	regular bool
}

// ReadOnlyImage is a read-only window of an image file: it has no WriteAt,
// so the core sees a provider that cannot write.
type ReadOnlyImage struct{ img *Image }

// Open opens the image and checks that the window lies inside it. It returns
// an *Image, or a *ReadOnlyImage when o.ReadOnly is set.
func Open(o Options) (nvcore.Provider, error) {
	img, err := open(o)
	if err != nil {
		return nil, err
	}
	if o.ReadOnly {
		return &ReadOnlyImage{img}, nil
	}
	return img, nil
}

func open(o Options) (*Image, error) {
	if o.Offset < 0 || o.Size < 0 {
		return nil, fmt.Errorf("image %s: offset and size must not be negative", o.Path)
	}
	f, err := OpenImage(o.Path, o.ReadOnly)
	if err != nil {
		return nil, err
	}
	total, regular, err := imageSize(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("image %s: %w", o.Path, err)
	}
	size := o.Size
	if size == 0 {
		size = total - o.Offset
	}
	switch {
	case total == 0:
		err = fmt.Errorf("image %s is empty", o.Path)
	case o.Offset >= total:
		err = fmt.Errorf("image %s: offset %#x is past its end (%#x bytes)", o.Path, o.Offset, total)
	case size > total-o.Offset: // not o.Offset+size, which a huge size overflows
		err = fmt.Errorf("image %s: window %#x+%#x reaches past its end (%#x bytes)", o.Path, o.Offset, size, total)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return &Image{f: f, offset: o.Offset, size: size, regular: regular}, nil
}

// OpenImage opens a regular file or a block device, and nothing else,
// without blocking: open(2) of a FIFO waits for a writer, and opening a
// character device may do something by itself (a watchdog starts, a tape
// rewinds). So the path's type is checked before the open, the open does
// not block (O_NONBLOCK), and the type is checked again on the descriptor,
// in case the path changed in between.
func OpenImage(path string, readOnly bool) (*os.File, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	if err := checkKind(path, st.Mode); err != nil {
		return nil, err
	}
	flag := unix.O_RDWR
	if readOnly {
		flag = unix.O_RDONLY
	}
	fd, err := unix.Open(path, flag|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	err = unix.Fstat(fd, &st)
	if err == nil {
		err = checkKind(path, st.Mode)
	}
	if err == nil {
		// Back to blocking I/O, which a regular file or a block device
		// does anyway, so that os.File never hands it to the poller.
		err = unix.SetNonblock(fd, false)
	}
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	return os.NewFile(uintptr(fd), path), nil
}

// checkKind refuses what is not a regular file or a block device, naming
// what it is.
func checkKind(path string, mode uint32) error {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG, unix.S_IFBLK:
		return nil
	}
	return fmt.Errorf("image %s is %s, not a regular file or a block device", path, KindOf(mode))
}

// KindOf names the file type of a stat mode for messages: "a directory",
// "a FIFO (named pipe)", ...
func KindOf(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return "a regular file"
	case unix.S_IFBLK:
		return "a block device"
	case unix.S_IFDIR:
		return "a directory"
	case unix.S_IFCHR:
		return "a character device"
	case unix.S_IFIFO:
		return "a FIFO (named pipe)"
	case unix.S_IFSOCK:
		return "a socket"
	case unix.S_IFLNK:
		return "a symbolic link"
	}
	return fmt.Sprintf("of file type %#o", mode&unix.S_IFMT)
}

// imageSize works for regular files and for block devices, whose Stat size
// is 0. It also says which of the two f is.
func imageSize(f *os.File) (size int64, regular bool, err error) {
	st, err := f.Stat()
	if err != nil {
		return 0, false, err
	}
	switch {
	case st.Mode().IsRegular():
		return st.Size(), true, nil
	case st.Mode()&os.ModeDevice != 0 && st.Mode()&os.ModeCharDevice == 0:
		size, err = f.Seek(0, io.SeekEnd)
		return size, false, err
	}
	return 0, false, errors.New("not a regular file or a block device")
}

// Size is the size of the window.
func (i *Image) Size() int64 { return i.size }

// ReadAt reads from the window.
func (i *Image) ReadAt(p []byte, off int64) (int, error) {
	if !i.inside(len(p), off) {
		return 0, fmt.Errorf("%w: read of %d bytes at %#x outside the window", os.ErrInvalid, len(p), off)
	}
	return i.f.ReadAt(p, i.offset+off)
}

// WriteAt writes to the window; the image sees the bytes when it returns.
func (i *Image) WriteAt(p []byte, off int64) (int, error) {
	if !i.inside(len(p), off) {
		return 0, fmt.Errorf("%w: write of %d bytes at %#x outside the window", os.ErrInvalid, len(p), off)
	}
	if i.regular {
		if err := i.checkGrowth(len(p), off); err != nil {
			return 0, err
		}
	}
	i.dirty.Store(true)
	return i.f.WriteAt(p, i.offset+off)
}

// checkGrowth refuses a write that would grow the image: the window was
// inside the image at open, but another program may have truncated the
// image since, and pwrite(2) past its end would extend it again. It costs
// one fstat(2) a write; a truncate racing with the write is not covered.
func (i *Image) checkGrowth(n int, off int64) error {
	st, err := i.f.Stat()
	if err != nil {
		return err
	}
	// No overflow: the window ended inside the image at open, so
	// i.offset+i.size <= MaxInt64, and off+n <= i.size.
	if end := i.offset + off + int64(n); end > st.Size() {
		return fmt.Errorf("image %s shrank to %#x bytes since it was attached: a write of %d bytes at %#x would grow it; detach and attach it again", i.f.Name(), st.Size(), n, i.offset+off)
	}
	return nil
}

// inside reports whether n bytes at off lie in the window. It never adds
// off and n, which a large off would overflow.
func (i *Image) inside(n int, off int64) bool {
	return off >= 0 && off <= i.size && int64(n) <= i.size-off
}

// Sync flushes the image to stable storage.
func (i *Image) Sync() error { return i.f.Sync() }

// Close syncs the image if it was written, then closes it.
func (i *Image) Close() error {
	var syncErr error
	if i.dirty.Load() {
		syncErr = i.f.Sync()
	}
	return errors.Join(syncErr, i.f.Close())
}

// Size is the size of the window.
func (r *ReadOnlyImage) Size() int64 { return r.img.Size() }

// ReadAt reads from the window.
func (r *ReadOnlyImage) ReadAt(p []byte, off int64) (int, error) { return r.img.ReadAt(p, off) }

// Close closes the image.
func (r *ReadOnlyImage) Close() error { return r.img.Close() }
