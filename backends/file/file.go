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
	flag := os.O_RDWR
	if o.ReadOnly {
		flag = os.O_RDONLY
	}
	f, err := os.OpenFile(o.Path, flag, 0)
	if err != nil {
		return nil, err
	}
	total, err := imageSize(f)
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
	return &Image{f: f, offset: o.Offset, size: size}, nil
}

// imageSize works for regular files and for block devices, whose Stat size
// is 0.
func imageSize(f *os.File) (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	switch {
	case st.Mode().IsRegular():
		return st.Size(), nil
	case st.Mode()&os.ModeDevice != 0 && st.Mode()&os.ModeCharDevice == 0:
		return f.Seek(0, io.SeekEnd)
	}
	return 0, errors.New("not a regular file or a block device")
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
	i.dirty.Store(true)
	return i.f.WriteAt(p, i.offset+off)
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
