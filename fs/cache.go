package fs

import (
	"log/slog"
	"sync/atomic"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/nvmemfs/nvmemfs/nvcore"
)

// How the kernel keeps a device's files, in the three modes of a mount:
//
//   - default: every file is opened with FOPEN_DIRECT_IO, so each read and
//     write reaches us with the caller's offset and count, and nothing is
//     cached; FOPEN_NOFLUSH spares the FLUSH round trip of close(2), which
//     has nothing to report (kernfs has no flush, and our writes fail or
//     succeed in the WRITE itself).
//   - a device attached with cache: its nvmem and cell files are opened
//     with FOPEN_KEEP_CACHE, so repeated reads are served from the page
//     cache across opens.
//   - CacheAll: Open and Flush answer ENOSYS, so the kernel stops sending
//     OPEN, FLUSH and RELEASE for the whole mount and keeps every file in
//     its page cache. What open would have refused is refused by the first
//     read or write that reaches us.
//
// A write through one file of a cached device changes bytes that other
// files of it may hold in the page cache (nvmem and the cells overlap), so
// the write drops their pages through the device's notification queue
// (DESIGN rule 5) and, when that cannot hang, waits for it (see written).
// Reads pay nothing for it: the read path neither counts nor locks.

// devFiles is what a device's files share: how the kernel opens them, and
// how a write through one of them reaches the page cache of the others.
type devFiles struct {
	fs  *FS
	dev *nvcore.Device
	dir *gofs.Inode // <mnt>/<dev>

	// writes counts the writes of this device inside their handlers: a
	// write waits for its notifications only when it is alone.
	writes atomic.Int32

	// revoked is set by the removal just before it drops what the kernel
	// caches of the device's files; from then on their attributes say
	// they are gone (gone.go).
	revoked atomic.Bool
}

// open answers an open that passed its checks. content is false for an
// attribute file, which a cached device does not cache (its text changes
// without a write to it).
func (df *devFiles) open(content bool) (gofs.FileHandle, uint32, syscall.Errno) {
	if df.fs.cacheAll {
		// The kernel takes ENOSYS as "no open needed" and never asks
		// again on this mount (FUSE_NO_OPEN_SUPPORT): the open succeeds,
		// with FOPEN_KEEP_CACHE.
		return nil, 0, syscall.ENOSYS
	}
	noflush := uint32(fuse.FOPEN_NOFLUSH)
	if df.fs.flush {
		noflush = 0
	}
	if content && df.dev.Cached() {
		return nil, fuse.FOPEN_KEEP_CACHE | noflush, 0
	}
	return nil, fuse.FOPEN_DIRECT_IO | noflush, 0
}

// flush answers FLUSH, which the kernel sends only when no open told it
// not to: in CacheAll mode, ENOSYS makes it stop for the whole mount.
// Nothing is ever left to flush.
func (df *devFiles) flush() syscall.Errno {
	if df.fs.cacheAll {
		return syscall.ENOSYS
	}
	return 0
}

// checkAccess refuses, in CacheAll mode, a read or write that open would
// have refused on sysfs (the mode bits, for root too): there is no open
// to refuse it. acc is O_RDONLY for a read, O_WRONLY for a write; the
// file's mode is m's (mode and born its defaults), read only in that mode:
// every read of the other modes passes here, and needs no lock.
func (df *devFiles) checkAccess(acc uint32, m *meta, mode uint32, born time.Time) syscall.Errno {
	if !df.fs.cacheAll {
		return 0
	}
	if df.dev.Gone() {
		return syscall.ENODEV // before the mode, as sysfs's open answers
	}
	return accessCheck(acc, m.perm(mode, born))
}

// notifyContent drops the kernel's cached pages of in that hold [off,
// off+n) (all of them for n 0; none for a negative off), and its
// attributes. It runs on the device's queue only. ENOENT means the kernel
// has no such inode cached: nothing to drop; EBADF, that the mount is gone.
func notifyContent(in *gofs.Inode, off, n int64) {
	if errno := in.NotifyContent(off, n); errno != 0 && errno != syscall.ENOENT && errno != syscall.EBADF {
		slog.Warn("drop cached pages", "inode", in.StableAttr().Ino, "err", errno)
	}
}

// written is called by a handler after a write of n bytes at off of the
// memory went through self (nil for an attribute file's own write) and
// succeeded. On a cached device it drops the pages of the other files
// that hold those bytes; self's the kernel has written through already
// (a bit field reads back exactly what was written: the core refuses
// bits above the field).
//
// The write returns once the others' pages are dropped, so that no read
// returns bytes older than a write that returned — when waiting cannot
// hang: the drop waits for the locked pages of the writes and reads in
// flight, and a write may hold a page of its own file locked (one not yet
// up to date) until it returns. So the handler waits only if nothing is
// queued before its notification but drops of single other inodes (none
// of them can wait for its pages: postFirst), and no other write of the
// device is in its handler (the other writes, seeing it, do not wait, and
// so release their pages); a write that does not wait has the pages
// dropped a moment later: two writes of one device at once, or a write
// that returns while its device is being detached.
func (df *devFiles) written(self *gofs.Inode, off, n int64) {
	if !df.dev.Cached() || n <= 0 {
		return
	}
	others := df.overlapping(self, off, n)
	if len(others) > 0 {
		nvmem := df.dir.GetChild("nvmem")
		done, first := df.fs.postFirst(df.dev, self, func() {
			for _, in := range others {
				// Of nvmem only the pages that hold the bytes written:
				// a cell write must not empty the cache of a large
				// device. A cell is a page or a few: all of it.
				o, l := int64(0), int64(0)
				if in == nvmem {
					o, l = off, n
				}
				notifyContent(in, o, l)
			}
		})
		// A removal posted after the device was marked gone; a device
		// not gone now has none ahead of this notification.
		if first && df.writes.Load() == 1 && !df.dev.Gone() {
			<-done
		}
	}
}

// failed is called by a handler whose write of n bytes at off through
// self was refused. The kernel had put the bytes in self's pages: write(2)
// marks them stale when the WRITE fails, but writeback from a shared
// mapping does not, and they would be served as if the memory held them.
func (df *devFiles) failed(self *gofs.Inode, off, n int64) {
	if df.dev.Cached() && n > 0 {
		df.fs.postOnly(df.dev, self, func() { notifyContent(self, off, n) })
	}
}

// overlapping lists the inodes of the device's files, other than self,
// whose content holds bytes of [off, off+n): nvmem, and the cells the
// kernel has looked up that overlap. Every cell of a layout counts: a
// write may move its value (the layout is parsed again on the next look).
func (df *devFiles) overlapping(self *gofs.Inode, off, n int64) []*gofs.Inode {
	var list []*gofs.Inode
	if nv := df.dir.GetChild("nvmem"); nv != nil && nv != self {
		list = append(list, nv)
	}
	cells := df.dir.GetChild("cells")
	if cells == nil {
		return list
	}
	layout := df.dev.Layout() != nil
	for _, in := range cells.Children() {
		cf, ok := in.Operations().(*cellFile)
		if !ok || in == self {
			continue
		}
		c := cf.cell
		if layout || c.Offset() < off+n && off < c.Offset()+int64(c.Info().Bytes) {
			list = append(list, in)
		}
	}
	return list
}

// files lists every file inode of the device the tree holds: nvmem, the
// attributes, and the cells the kernel has looked up.
func files(dir *gofs.Inode) []*gofs.Inode {
	var list []*gofs.Inode
	for name, in := range dir.Children() {
		if name == "cells" {
			for _, c := range in.Children() {
				list = append(list, c)
			}
			continue
		}
		list = append(list, in)
	}
	return list
}

// revokeFiles, on the device's queue during its removal, makes the kernel
// ask us again about every file of the device: it drops their cached
// attributes (see gone.go), and on a cached device their pages, so that
// reads come to us and get ENODEV. A READ or GETATTR answered just before
// the removal may still be on its way into the kernel's caches: they are
// dropped once more a little later.
//
// A removed file's GETATTR gets ENODEV only from here on, not from the
// moment the device is gone: until its pages are dropped, the kernel
// answers reads from them, and a read that got ENODEV (from a GETATTR the
// read path asked) must not get bytes from a page afterwards.
func (f *FS) revokeFiles(df *devFiles) {
	d := df.dev
	df.revoked.Store(true)
	list := files(df.dir)
	pages := int64(0)
	if !d.Cached() {
		pages = -1 // the attributes only
	}
	revoke := func() {
		for _, in := range list {
			notifyContent(in, pages, 0)
		}
	}
	revoke()
	time.AfterFunc(50*time.Millisecond, func() { f.post(d, revoke) })
}

// textChanged drops, in CacheAll mode, the page of an attribute file whose
// text a write changed: the kernel cached the bytes written, which need
// not be the text the attribute shows.
func (df *devFiles) textChanged(self *gofs.Inode) {
	if df.fs.cacheAll {
		df.fs.postOnly(df.dev, self, func() { self.NotifyContent(0, 0) })
	}
}

// chmodded drops, in CacheAll mode, the pages of a file whose mode a
// setattr changed: root's reads are checked against the mode when they
// reach us (checkAccess), which cached pages would skip.
func (df *devFiles) chmodded(in *fuse.SetAttrIn, self *gofs.Inode) {
	if df.fs.cacheAll && in.Valid&fuse.FATTR_MODE != 0 {
		df.fs.postOnly(df.dev, self, func() { self.NotifyContent(0, 0) })
	}
}
