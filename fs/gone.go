package fs

import (
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// A descriptor of a removed sysfs file gets ENODEV from every read, also
// at and past the end of the file, and from lseek, whatever the whence;
// fstat still answers (kernfs checks the node on read and llseek, not on
// getattr).
// Through FUSE, where the kernel caches a file's size (every file of a
// cached device, and lseek anywhere), a read at or past the end and lseek
// to the end are answered from that size, without a request to us, once
// the kernel knows it: a removed file's reads there would return 0 and
// its lseek the old size.
//
// The removal therefore drops every file's cached attributes (revokeFiles),
// and a removed file's attributes are never cached again, so each of
// those calls first asks for them. The kernel asks with the descriptor
// (FUSE_GETATTR_FH) on those paths, and without it for stat and fstat:
// the first gets ENODEV, the second the attributes, as on sysfs. go-fuse's
// node API hides which of the two a GETATTR is (it hands Getattr an open
// file either way), so the nodes mark the attributes of a removed file
// (markGone) and goneAttrFS, between the kernel and go-fuse, answers.
//
// "Removed" here means revoked: from the moment the removal drops the
// kernel's caches of the files (devFiles.revoked, cellFile.revoked), not
// from the moment the device is gone. In between, the kernel still serves
// cached pages; and as go-fuse asks for FUSE_AUTO_INVAL_DATA, a cached
// read asks GETATTR first whenever the size is stale (after any write):
// an ENODEV there, then bytes from a page, would break "once ENODEV,
// always ENODEV" (DESIGN rule 6).

// goneMark, in AttrOut.Dummy (padding the kernel ignores, and cleared
// before the reply leaves), says that the node's file was revoked.
const goneMark = 0x60e60e

// markGone marks out as the attributes of a removed file when gone.
func markGone(out *fuse.AttrOut, gone bool) {
	if gone {
		out.Dummy = goneMark
	}
}

// goneAttrFS is go-fuse's node file system with GETATTR and SETATTR of a
// removed file answered as above.
type goneAttrFS struct {
	fuse.RawFileSystem
}

func (g goneAttrFS) GetAttr(cancel <-chan struct{}, in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	st := g.RawFileSystem.GetAttr(cancel, in, out)
	if st != fuse.OK || !unmarkGone(out) {
		return st
	}
	if in.Flags()&fuse.FUSE_GETATTR_FH != 0 {
		return fuse.Status(syscall.ENODEV)
	}
	return st
}

// SetAttr of a removed cell or attribute file (chmod, chown, utimes on a
// descriptor) goes on succeeding, as on kernfs, but its attributes are not
// cached either. (nvmem's answers ENODEV once its device is gone.)
func (g goneAttrFS) SetAttr(cancel <-chan struct{}, in *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status {
	st := g.RawFileSystem.SetAttr(cancel, in, out)
	if st == fuse.OK {
		unmarkGone(out)
	}
	return st
}

// Lseek is ENOSYS, which the kernel remembers for the mount: SEEK_DATA and
// SEEK_HOLE then take the kernel's path, which asks GETATTR with the
// descriptor, as SEEK_END does, so that a removed file answers ENODEV to
// them too, as kernfs does to every whence. go-fuse's own answer came from
// the attributes and succeeded. The other whences never reach us.
func (g goneAttrFS) Lseek(cancel <-chan struct{}, in *fuse.LseekIn, out *fuse.LseekOut) fuse.Status {
	return fuse.ENOSYS
}

// unmarkGone clears the mark and reports whether it was there; a marked
// reply's attributes expire at once (go-fuse gives a zero timeout the
// mount's default, so it is zeroed here, after go-fuse).
func unmarkGone(out *fuse.AttrOut) bool {
	if out.Dummy != goneMark {
		return false
	}
	out.Dummy = 0
	out.AttrValid, out.AttrValidNsec = 0, 0
	return true
}

// serve is gofs.Mount with goneAttrFS between the kernel and the nodes.
func serve(dir string, root gofs.InodeEmbedder, opts *gofs.Options) (*fuse.Server, error) {
	server, err := fuse.NewServer(goneAttrFS{gofs.NewNodeFS(root, opts)}, dir, &opts.MountOptions)
	if err != nil {
		return nil, err
	}
	go server.Serve()
	if err := server.WaitMount(); err != nil {
		// As gofs.Mount: a mount that failed ends the serve loop.
		return nil, err
	}
	return server, nil
}
