package fs

import (
	"context"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// The tree's names are the devices' and the core's, never the caller's: as
// on sysfs, nothing can be created, removed, renamed or linked. Each answer
// is the errno sysfs gives on this kernel (TestNamespaceLikeSysfs runs the
// same calls on a sysfs folder beside ours). Without these handlers go-fuse
// would answer unlink and rmdir with success and drop the name from its
// tree (a file gone until its device is attached again).

var (
	_ gofs.NodeUnlinker  = (*dirNode)(nil)
	_ gofs.NodeRmdirer   = (*dirNode)(nil)
	_ gofs.NodeCreater   = (*dirNode)(nil)
	_ gofs.NodeMkdirer   = (*dirNode)(nil)
	_ gofs.NodeMknoder   = (*dirNode)(nil)
	_ gofs.NodeRenamer   = (*dirNode)(nil)
	_ gofs.NodeLinker    = (*dirNode)(nil)
	_ gofs.NodeSymlinker = (*dirNode)(nil)
	_ gofs.NodeFsyncer   = (*dirNode)(nil)
)

// Unlink is EPERM: kernfs has no unlink.
func (d *dirNode) Unlink(ctx context.Context, name string) syscall.Errno { return syscall.EPERM }

// Rmdir is EPERM (kernfs_iop_rmdir without syscall ops).
func (d *dirNode) Rmdir(ctx context.Context, name string) syscall.Errno { return syscall.EPERM }

// Create is EACCES: the VFS's answer for a folder without create, which
// kernfs is.
func (d *dirNode) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	return nil, nil, 0, syscall.EACCES
}

// Mkdir is EPERM (kernfs_iop_mkdir without syscall ops).
func (d *dirNode) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EPERM
}

// Mknod is EACCES for a regular file (mknod(2) creates those through
// create) and EPERM for anything else (no mknod), as on sysfs. FUSE sends
// MKNOD for both.
func (d *dirNode) Mknod(ctx context.Context, name string, mode, dev uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if mode&syscall.S_IFMT == syscall.S_IFREG || mode&syscall.S_IFMT == 0 {
		return nil, syscall.EACCES
	}
	return nil, syscall.EPERM
}

// Rename is EPERM; with flags (RENAME_NOREPLACE, RENAME_EXCHANGE) EINVAL,
// as kernfs_iop_rename checks the flags first.
func (d *dirNode) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	if flags != 0 {
		return syscall.EINVAL
	}
	return syscall.EPERM
}

// Link is EPERM: kernfs has no link.
func (d *dirNode) Link(ctx context.Context, target gofs.InodeEmbedder, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EPERM
}

// Symlink is EPERM: kernfs has no symlink for callers.
func (d *dirNode) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EPERM
}

// Fsync of a folder is EINVAL: kernfs folders have no fsync, and the VFS
// says EINVAL.
func (d *dirNode) Fsync(ctx context.Context, f gofs.FileHandle, flags uint32) syscall.Errno {
	return syscall.EINVAL
}
