package fs

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/nvmemfs/nvmemfs/nvcore"
)

// A layout's cells follow the content: a write to nvmem may add, remove or
// resize them. So cells/ is not a fixed list of children: it asks the core
// on every lookup and listing (which re-parses if a write made the content
// stale), and the device's notification queue drops the kernel's cached
// names of cells that left (DESIGN rule 5: never from the handler that
// found out).

// cellInos numbers cell files from cellInoBase up: go-fuse numbers its own
// inodes from 1<<63 up, and the root is 1, so these collide with neither.
var cellInos atomic.Uint64

const cellInoBase = 1 << 62

// rootDir is the mount's root: one folder a device.
type rootDir struct {
	dirNode
}

var _ gofs.NodeLookuper = (*rootDir)(nil)

// Lookup finds a device's folder, unless the device is going: its removal
// is dropping the name from the kernel's cache, which must not get it
// back from a lookup.
func (n *rootDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	child := n.GetChild(name)
	if child == nil {
		return nil, syscall.ENOENT
	}
	dir, ok := child.Operations().(*deviceDir)
	if !ok || dir.dev.Gone() {
		return nil, syscall.ENOENT
	}
	var a fuse.AttrOut
	dir.Getattr(ctx, nil, &a)
	out.Attr = a.Attr
	return child, 0
}

// deviceDir is <mnt>/<dev>: nvmem, type and force_ro always, and cells/
// while the device has cells.
type deviceDir struct {
	dirNode
	dev   *nvcore.Device
	files *devFiles
}

var (
	_ gofs.NodeLookuper  = (*deviceDir)(nil)
	_ gofs.NodeReaddirer = (*deviceDir)(nil)
)

// hasCells refreshes the layout's cells if a write made them stale.
func hasCells(d *nvcore.Device) bool {
	d.RefreshCells()
	return d.NumCells() > 0
}

func (n *deviceDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	// A lookup racing the removal must not give the kernel fresh entries
	// of a device that is going.
	if n.dev.Gone() {
		return nil, syscall.ENOENT
	}
	child := n.GetChild(name)
	if child == nil || name == "cells" && !hasCells(n.dev) {
		return nil, syscall.ENOENT
	}
	if ga, ok := child.Operations().(gofs.NodeGetattrer); ok {
		var a fuse.AttrOut
		ga.Getattr(ctx, nil, &a)
		out.Attr = a.Attr
	}
	return child, 0
}

func (n *deviceDir) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	if n.dev.Gone() {
		return nil, syscall.ENODEV
	}
	var list []fuse.DirEntry
	for name, child := range n.Children() {
		if name == "cells" && !hasCells(n.dev) {
			continue
		}
		list = append(list, fuse.DirEntry{Name: name, Mode: child.Mode(), Ino: child.StableAttr().Ino})
	}
	slices.SortFunc(list, func(a, b fuse.DirEntry) int { return strings.Compare(a.Name, b.Name) })
	return gofs.NewListDirStream(list), 0
}

// cellsDir is <mnt>/<dev>/cells.
type cellsDir struct {
	dirNode
	dev   *nvcore.Device
	files *devFiles

	mu    sync.Mutex
	cells map[*nvcore.Cell]*cellEntry
}

// cellEntry is what a cell file keeps for the cell's life, while the
// kernel may forget its inode and look it up again: its inode number, and
// what chmod, chown, utimes and setxattr made of it.
type cellEntry struct {
	ino  uint64
	meta *meta
}

var (
	_ gofs.NodeLookuper  = (*cellsDir)(nil)
	_ gofs.NodeReaddirer = (*cellsDir)(nil)
)

func newCellsDir(d *nvcore.Device, born time.Time, files *devFiles) *cellsDir {
	return &cellsDir{dirNode: dirNode{meta: meta{own: deviceOwner(d)}, born: born}, dev: d, files: files, cells: map[*nvcore.Cell]*cellEntry{}}
}

// refresh brings the device's cells up to what the content holds now.
func (n *cellsDir) refresh() syscall.Errno {
	if err := n.dev.RefreshCells(); errors.Is(err, nvcore.ErrNoDevice) || n.dev.Gone() {
		return syscall.ENODEV
	}
	return 0
}

func (n *cellsDir) entry(c *nvcore.Cell) *cellEntry {
	n.mu.Lock()
	defer n.mu.Unlock()
	e, ok := n.cells[c]
	if !ok {
		e = &cellEntry{ino: cellInoBase + cellInos.Add(1), meta: &meta{own: n.own}}
		n.cells[c] = e
	}
	return e
}

func (n *cellsDir) ino(c *nvcore.Cell) uint64 { return n.entry(c).ino }

// forget drops a retired cell's number and attributes.
func (n *cellsDir) forget(c *nvcore.Cell) {
	n.mu.Lock()
	delete(n.cells, c)
	n.mu.Unlock()
}

func (n *cellsDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if errno := n.refresh(); errno != 0 {
		return nil, syscall.ENOENT // a fresh lookup under a removed device
	}
	// One map lookup, not a scan: `ls -l` of n cells looks up each of
	// them, and a scan made that quadratic (100k cells: minutes).
	c := n.dev.CellByFileName(name)
	if c == nil {
		return nil, syscall.ENOENT
	}
	e := n.entry(c)
	f := &cellFile{meta: e.meta, cell: c, mode: c.Mode(), born: n.born, files: n.files}
	fileAttr(&out.Attr, e.meta, f.mode, int64(c.Size()), n.born)
	return n.NewInode(ctx, f, gofs.StableAttr{Mode: syscall.S_IFREG, Ino: e.ino}), 0
}

func (n *cellsDir) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	if errno := n.refresh(); errno != 0 {
		return nil, errno
	}
	cells := n.dev.Cells()
	list := make([]fuse.DirEntry, 0, len(cells))
	for _, c := range cells {
		list = append(list, fuse.DirEntry{Name: c.FileName(), Mode: syscall.S_IFREG, Ino: n.ino(c)})
	}
	return gofs.NewListDirStream(list), 0
}

// cellLeft drops the kernel's cached name of a retired cell, and cells/
// itself once the device has no cells. It runs in an event callback,
// perhaps inside a FUSE handler of cells/, so the work is posted to the
// device's queue.
func (f *FS) cellLeft(d *nvcore.Device, c *nvcore.Cell) {
	f.post(d, func() {
		devIn := f.deviceInode(d)
		if devIn == nil {
			return // the whole device left; its removal dropped everything
		}
		cellsIn := devIn.GetChild("cells")
		if cellsIn == nil {
			return
		}
		cellsIn.Operations().(*cellsDir).forget(c)
		// A descriptor still open on the cell must get ENODEV, not the
		// pages or the size the kernel cached (see gone.go).
		if in := cellsIn.GetChild(c.FileName()); in != nil {
			if cf, ok := in.Operations().(*cellFile); ok && cf.cell == c {
				cf.revoked.Store(true)
				pages := int64(0)
				if !d.Cached() {
					pages = -1 // the attributes only
				}
				notifyContent(in, pages, 0)
			}
		}
		// ENOENT: the kernel had not cached the name. Nothing to drop.
		cellsIn.NotifyEntry(c.FileName())
		if d.NumCells() == 0 {
			devIn.NotifyEntry("cells")
		}
	})
}
