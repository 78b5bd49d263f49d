package fs

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/nvmemfs/nvmemfs/nvcore"
)

// Every node serves its reads and writes without a file handle: the device
// is checked on each call, so a descriptor opened before removal gets ENODEV
// (DESIGN rule 6). Files are opened with FOPEN_DIRECT_IO so that each read
// and write reaches us with the caller's own offset and count (the SPEC 3
// table depends on them) and nothing is served from a stale page cache;
// only the nvmem and cell files of a device attached with cache, and every
// file of a CacheAll mount, are not (cache.go).

// accessCheck refuses an open whose access mode the file's mode bits do not
// grant, for root too, as kernfs does (default_permissions lets root past).
func accessCheck(flags, mode uint32) syscall.Errno {
	acc := flags & syscall.O_ACCMODE
	if acc != syscall.O_RDONLY && mode&0o222 == 0 {
		return syscall.EACCES
	}
	if acc != syscall.O_WRONLY && mode&0o444 == 0 {
		return syscall.EACCES
	}
	return 0
}

// fileAttr fills a file's attributes: its size, and from m its mode
// (default mode), owner and times (default t).
func fileAttr(out *fuse.Attr, m *meta, mode uint32, size int64, t time.Time) {
	out.Mode = syscall.S_IFREG
	out.Nlink = 1
	out.Size = uint64(size)
	out.Blksize = 4096
	out.Blocks = (uint64(size) + 511) / 512
	m.fill(out, mode, t)
}

// nvmemFile is <dev>/nvmem: the whole memory, with the sysfs semantics.
type nvmemFile struct {
	gofs.Inode
	meta
	dev   *nvcore.Device
	files *devFiles
	born  time.Time
}

var (
	_ gofs.NodeOpener    = (*nvmemFile)(nil)
	_ gofs.NodeFlusher   = (*nvmemFile)(nil)
	_ gofs.NodeReader    = (*nvmemFile)(nil)
	_ gofs.NodeWriter    = (*nvmemFile)(nil)
	_ gofs.NodeGetattrer = (*nvmemFile)(nil)
	_ gofs.NodeSetattrer = (*nvmemFile)(nil)
	_ gofs.NodeFsyncer   = (*nvmemFile)(nil)
)

func (n *nvmemFile) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if n.dev.Gone() {
		return nil, 0, syscall.ENODEV
	}
	if e := accessCheck(flags, n.perm(n.dev.Mode(), n.born)); e != 0 {
		return nil, 0, e
	}
	// O_TRUNC is ignored: the memory has a fixed size (SPEC 3). On a
	// cached device, the page cache serves repeated reads; it is written
	// through on writes to this file, and dropped after writes through the
	// cells and on removal.
	return n.files.open(true)
}

func (n *nvmemFile) Flush(ctx context.Context, _ gofs.FileHandle) syscall.Errno {
	return n.files.flush()
}

func (n *nvmemFile) Read(ctx context.Context, _ gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if e := n.files.checkAccess(syscall.O_RDONLY, &n.meta, n.dev.Mode(), n.born); e != 0 {
		return nil, e
	}
	c, err := n.dev.SysfsRead(dest, off)
	if err != nil {
		return nil, toErrno(err)
	}
	return fuse.ReadResultData(dest[:c]), 0
}

func (n *nvmemFile) Write(ctx context.Context, _ gofs.FileHandle, data []byte, off int64) (done uint32, errno syscall.Errno) {
	defer func() {
		if errno != 0 {
			n.files.failed(n.EmbeddedInode(), off+int64(done), int64(len(data))-int64(done))
		}
	}()
	if e := n.files.checkAccess(syscall.O_WRONLY, &n.meta, n.dev.Mode(), n.born); e != 0 {
		return 0, e
	}
	n.files.writes.Add(1)
	defer n.files.writes.Add(-1)
	c, err := n.dev.SysfsWrite(data, off)
	if c > 0 {
		n.files.written(n.EmbeddedInode(), off, int64(c))
	}
	return uint32(c), toErrno(err)
}

func (n *nvmemFile) Getattr(ctx context.Context, _ gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	fileAttr(&out.Attr, &n.meta, n.dev.Mode(), n.dev.Size(), n.born)
	markGone(out, n.files.revoked.Load())
	return 0
}

// Setattr takes chmod, chown and utimes as kernfs does; truncation of a
// fixed-size memory is ignored, as sysfs ignores it.
func (n *nvmemFile) Setattr(ctx context.Context, _ gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if n.dev.Gone() {
		return syscall.ENODEV
	}
	if e := ownershipRefused(ctx, in); e != 0 {
		return e
	}
	n.setattr(in, n.dev.Mode(), n.born)
	n.files.chmodded(in, n.EmbeddedInode())
	return n.Getattr(ctx, nil, out)
}

func (n *nvmemFile) Fsync(ctx context.Context, _ gofs.FileHandle, flags uint32) syscall.Errno {
	return toErrno(n.dev.Sync())
}

// attrFile is a small text attribute: type (read-only) or force_ro.
type attrFile struct {
	gofs.Inode
	meta
	dev   *nvcore.Device
	files *devFiles
	mode  uint32
	show  func(*nvcore.Device) string
	store func(*nvcore.Device, []byte) error // nil for a read-only attribute
	born  time.Time
}

var (
	_ gofs.NodeOpener    = (*attrFile)(nil)
	_ gofs.NodeFlusher   = (*attrFile)(nil)
	_ gofs.NodeReader    = (*attrFile)(nil)
	_ gofs.NodeWriter    = (*attrFile)(nil)
	_ gofs.NodeGetattrer = (*attrFile)(nil)
	_ gofs.NodeSetattrer = (*attrFile)(nil)
	_ gofs.NodeFsyncer   = (*attrFile)(nil)
)

func (a *attrFile) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if a.dev.Gone() {
		return nil, 0, syscall.ENODEV
	}
	if e := accessCheck(flags, a.perm(a.mode, a.born)); e != 0 {
		return nil, 0, e
	}
	return a.files.open(false)
}

func (a *attrFile) Flush(ctx context.Context, _ gofs.FileHandle) syscall.Errno {
	return a.files.flush()
}

func (a *attrFile) Read(ctx context.Context, _ gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if a.dev.Gone() {
		return nil, syscall.ENODEV
	}
	if e := a.files.checkAccess(syscall.O_RDONLY, &a.meta, a.mode, a.born); e != 0 {
		return nil, e
	}
	text := a.show(a.dev)
	if off >= int64(len(text)) {
		return fuse.ReadResultData(nil), 0
	}
	return fuse.ReadResultData([]byte(text[off:])), 0
}

func (a *attrFile) Write(ctx context.Context, _ gofs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	if a.dev.Gone() {
		return 0, syscall.ENODEV
	}
	if e := a.files.checkAccess(syscall.O_WRONLY, &a.meta, a.mode, a.born); e != 0 {
		return 0, e
	}
	// An attribute without a store opens for writing once chmod gave it a
	// write bit (the device's sysfs ops have a store), and then each write
	// is EIO, as dev_attr_store answers.
	if a.store == nil {
		return 0, syscall.EIO
	}
	if err := a.store(a.dev, data); err != nil {
		return 0, toErrno(err)
	}
	// The kernel put the written text in the cached page; the file reads
	// as the attribute shows it ("on" reads "1\n").
	a.files.textChanged(a.EmbeddedInode())
	return uint32(len(data)), 0
}

func (a *attrFile) Getattr(ctx context.Context, _ gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	fileAttr(&out.Attr, &a.meta, a.mode, int64(len(a.show(a.dev))), a.born)
	markGone(out, a.files.revoked.Load())
	return 0
}

func (a *attrFile) Setattr(ctx context.Context, _ gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if e := ownershipRefused(ctx, in); e != 0 {
		return e
	}
	a.setattr(in, a.mode, a.born)
	a.files.chmodded(in, a.EmbeddedInode())
	return a.Getattr(ctx, nil, out)
}

// Fsync succeeds and does nothing, as kernfs's noop_fsync: an attribute
// holds nothing to flush. (Without it, FUSE answers EOPNOTSUPP, and
// `dd conv=fsync` into force_ro fails.)
func (a *attrFile) Fsync(ctx context.Context, _ gofs.FileHandle, flags uint32) syscall.Errno {
	return 0
}

func showType(d *nvcore.Device) string { return d.Type().String() + "\n" }

func showForceRO(d *nvcore.Device) string {
	if d.ForceRO() {
		return "1\n"
	}
	return "0\n"
}

func storeForceRO(d *nvcore.Device, data []byte) error {
	v, err := ParseBool(string(data))
	if err != nil {
		return err
	}
	d.SetForceRO(v)
	return nil
}

// ParseBool reads a boolean the way the kernel's kstrtobool does: the first
// character y, Y, t, T or 1 is true, n, N, f, F or 0 is false, "on" and
// "off" in any case are true and false; the rest of the text is ignored.
// Anything else is ErrInvalid.
func ParseBool(s string) (bool, error) {
	if s != "" {
		switch s[0] {
		case 'y', 'Y', 't', 'T', '1':
			return true, nil
		case 'n', 'N', 'f', 'F', '0':
			return false, nil
		case 'o', 'O':
			if len(s) > 1 {
				switch s[1] {
				case 'n', 'N':
					return true, nil
				case 'f', 'F':
					return false, nil
				}
			}
		}
	}
	return false, fmt.Errorf("%w: %q is not a boolean (1/0, y/n, t/f, on/off)", nvcore.ErrInvalid, strings.TrimSpace(s))
}

// cellFile is cells/<name>@<off>,<bit>: every read re-reads the cell.
type cellFile struct {
	gofs.Inode
	*meta // kept by cells/ for the cell's life, as the inode number
	cell  *nvcore.Cell
	mode  uint32
	born  time.Time
	files *devFiles
	// revoked is set once the cell has left the content and the kernel
	// was told to drop what it caches of the file (cellLeft).
	revoked atomic.Bool
}

var (
	_ gofs.NodeOpener    = (*cellFile)(nil)
	_ gofs.NodeFlusher   = (*cellFile)(nil)
	_ gofs.NodeReader    = (*cellFile)(nil)
	_ gofs.NodeWriter    = (*cellFile)(nil)
	_ gofs.NodeGetattrer = (*cellFile)(nil)
	_ gofs.NodeSetattrer = (*cellFile)(nil)
	_ gofs.NodeFsyncer   = (*cellFile)(nil)
)

// Open of a cell that left the content is ENODEV, as kernfs answers for a
// removed node whose name was still cached.
func (c *cellFile) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if c.cell.Device().Gone() || c.cell.Retired() {
		return nil, 0, syscall.ENODEV
	}
	if e := accessCheck(flags, c.perm(c.mode, c.born)); e != 0 {
		return nil, 0, e
	}
	// The kernel's cell files have no write at all; ours only for plain
	// cells, whatever chmod made of the mode.
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY && !c.cell.Plain() {
		return nil, 0, syscall.EACCES
	}
	return c.files.open(true)
}

func (c *cellFile) Flush(ctx context.Context, _ gofs.FileHandle) syscall.Errno {
	return c.files.flush()
}

func (c *cellFile) Read(ctx context.Context, _ gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if e := c.files.checkAccess(syscall.O_RDONLY, c.meta, c.mode, c.born); e != 0 {
		return nil, e
	}
	v, err := c.cell.Read()
	if err != nil {
		return nil, toErrno(err)
	}
	if off >= int64(len(v)) {
		return fuse.ReadResultData(nil), 0
	}
	// No more than asked: the kernel refuses a longer reply to a direct
	// I/O read, and the reader would get EIO.
	v = v[off:]
	return fuse.ReadResultData(v[:min(len(v), len(dest))]), 0
}

// Write replaces the whole cell: the write must start at 0 and cover it.
func (c *cellFile) Write(ctx context.Context, _ gofs.FileHandle, data []byte, off int64) (done uint32, errno syscall.Errno) {
	defer func() {
		if errno != 0 {
			c.files.failed(&c.Inode, off, int64(len(data)))
		}
	}()
	if c.cell.Device().Gone() {
		return 0, syscall.ENODEV
	}
	if e := c.files.checkAccess(syscall.O_WRONLY, c.meta, c.mode, c.born); e != 0 {
		return 0, e
	}
	if c.files.fs.cacheAll && !c.cell.Plain() {
		return 0, syscall.EACCES // what open answers in the other modes
	}
	if off != 0 {
		return 0, syscall.EINVAL
	}
	c.files.writes.Add(1)
	defer c.files.writes.Add(-1)
	if err := c.cell.Write(data); err != nil {
		return 0, toErrno(err)
	}
	// The kernel wrote the bytes given into the cell's own pages, which
	// is what the cell reads back.
	info := c.cell.Info()
	c.files.written(&c.Inode, info.Offset, int64(info.Bytes))
	return uint32(len(data)), 0
}

func (c *cellFile) Getattr(ctx context.Context, _ gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	fileAttr(&out.Attr, c.meta, c.mode, int64(c.cell.Size()), c.born)
	markGone(out, c.files.revoked.Load() || c.revoked.Load())
	return 0
}

func (c *cellFile) Setattr(ctx context.Context, _ gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if e := ownershipRefused(ctx, in); e != 0 {
		return e
	}
	c.setattr(in, c.mode, c.born)
	c.files.chmodded(in, &c.Inode)
	return c.Getattr(ctx, nil, out)
}

// Fsync succeeds, as kernfs's noop_fsync does; like fsync of nvmem, it
// first makes the writes durable if the provider buffers them.
func (c *cellFile) Fsync(ctx context.Context, _ gofs.FileHandle, flags uint32) syscall.Errno {
	return toErrno(c.cell.Device().Sync())
}

// dirNode is a plain directory whose children are added by the tree code.
type dirNode struct {
	gofs.Inode
	meta
	born time.Time
}

var (
	_ gofs.NodeGetattrer = (*dirNode)(nil)
	_ gofs.NodeSetattrer = (*dirNode)(nil)
)

func (d *dirNode) Getattr(ctx context.Context, _ gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = syscall.S_IFDIR
	out.Nlink = 2
	d.fill(&out.Attr, 0o755, d.born)
	return 0
}

// Setattr takes chmod, chown and utimes, as kernfs does for folders too.
func (d *dirNode) Setattr(ctx context.Context, _ gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if e := ownershipRefused(ctx, in); e != 0 {
		return e
	}
	d.setattr(in, 0o755, d.born)
	return d.Getattr(ctx, nil, out)
}
