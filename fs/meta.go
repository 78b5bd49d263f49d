package fs

import (
	"context"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/nvmemfs/nvmemfs/nvcore"
)

// meta is what chmod, chown, utimes and setxattr change on a node. kernfs
// keeps these for every node, in memory, for the node's life: root may
// chmod, chown and touch a sysfs file and stat shows it, and kernfs checks
// the changed mode on open. So do we. A zero meta takes its defaults (the
// mode computed at attach, the server's user, the time of the mount) on
// first use, so nodes need no constructor.
type meta struct {
	mu                  sync.Mutex
	own                 *owner // nil: the server's user and group
	set                 bool
	mode                uint32 // permission bits only
	uid, gid            uint32
	atime, mtime, ctime time.Time
	xattrs              map[string][]byte // trusted.* and security.*
}

// owner is who a device's files and folders belong to until a chown: the
// owner and group the device was attached with (-1 where none was given,
// for the server's own).
type owner struct{ uid, gid int }

func deviceOwner(d *nvcore.Device) *owner {
	uid, gid := d.Owner()
	return &owner{uid, gid}
}

func (m *meta) initLocked(mode uint32, born time.Time) {
	if m.set {
		return
	}
	m.set = true
	m.mode = mode & 0o7777
	m.uid, m.gid = uint32(os.Getuid()), uint32(os.Getgid())
	if m.own != nil && m.own.uid >= 0 {
		m.uid = uint32(m.own.uid)
	}
	if m.own != nil && m.own.gid >= 0 {
		m.gid = uint32(m.own.gid)
	}
	m.atime, m.mtime, m.ctime = born, born, born
}

// perm is the node's permission bits now; mode is its default.
func (m *meta) perm(mode uint32, born time.Time) uint32 {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.initLocked(mode, born)
	return m.mode
}

// fill sets the permission bits, owner and times of out.
func (m *meta) fill(out *fuse.Attr, mode uint32, born time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.initLocked(mode, born)
	out.Mode = out.Mode&^0o7777 | m.mode
	out.Uid, out.Gid = m.uid, m.gid
	out.SetTimes(&m.atime, &m.mtime, &m.ctime)
}

// setattr applies chmod, chown and utimes as kernfs does (kernfs_setattr);
// a size is ignored: the nodes have a fixed size (SPEC 3). The kernel has
// checked the caller's right to each change (default_permissions).
// ownershipRefused refuses a chmod, chown or chgrp by anyone but root and
// the server's user. On sysfs only root may, because root owns every file;
// here owner= may give a file to another user, whom the kernel then lets
// chmod it, and a chmod would undo the modes the SPEC gave (a write bit
// on a nvmem that mode= made read-only for that user).
func ownershipRefused(ctx context.Context, in *fuse.SetAttrIn) syscall.Errno {
	if in.Valid&(fuse.FATTR_MODE|fuse.FATTR_UID|fuse.FATTR_GID) == 0 {
		return 0
	}
	if caller, ok := fuse.FromContext(ctx); ok && caller.Uid != 0 && int(caller.Uid) != os.Geteuid() {
		return syscall.EPERM
	}
	return 0
}

func (m *meta) setattr(in *fuse.SetAttrIn, mode uint32, born time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.initLocked(mode, born)
	now := time.Now()
	changed := false
	if v, ok := in.GetMode(); ok {
		m.mode, changed = v&0o7777, true
	}
	if v, ok := in.GetUID(); ok {
		m.uid, changed = v, true
	}
	if v, ok := in.GetGID(); ok {
		m.gid, changed = v, true
	}
	if v, ok := in.GetATime(); ok {
		m.atime, changed = v, true
	}
	if v, ok := in.GetMTime(); ok {
		m.mtime, changed = v, true
	}
	if changed {
		m.ctime = now
	}
}

// kernfs stores trusted.* and security.* attributes in memory; it reads
// user.* as absent but refuses to set or remove it (sysfs has no
// KERNFS_ROOT_SUPPORT_USER_XATTR); any other namespace is EOPNOTSUPP.
func xattrStored(name string) bool {
	return strings.HasPrefix(name, "trusted.") || strings.HasPrefix(name, "security.")
}

// Getxattr answers as kernfs: a stored value, ENODATA for a name of a
// namespace it knows, EOPNOTSUPP for the others.
func (m *meta) Getxattr(ctx context.Context, name string, dest []byte) (uint32, syscall.Errno) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.xattrs[name]
	switch {
	case ok && len(dest) < len(v):
		return uint32(len(v)), syscall.ERANGE
	case ok:
		return uint32(copy(dest, v)), 0
	case xattrStored(name) || strings.HasPrefix(name, "user."):
		return 0, syscall.ENODATA
	}
	return 0, syscall.EOPNOTSUPP
}

// Setxattr stores trusted.* and security.* attributes, honouring
// XATTR_CREATE and XATTR_REPLACE.
func (m *meta) Setxattr(ctx context.Context, name string, data []byte, flags uint32) syscall.Errno {
	if !xattrStored(name) {
		return syscall.EOPNOTSUPP
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.xattrs[name]
	switch {
	case ok && flags&xattrCreate != 0:
		return syscall.EEXIST
	case !ok && flags&xattrReplace != 0:
		return syscall.ENODATA
	}
	if m.xattrs == nil {
		m.xattrs = map[string][]byte{}
	}
	m.xattrs[name] = append([]byte(nil), data...)
	return 0
}

// Removexattr removes a stored attribute.
func (m *meta) Removexattr(ctx context.Context, name string) syscall.Errno {
	if !xattrStored(name) {
		return syscall.EOPNOTSUPP
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.xattrs[name]; !ok {
		return syscall.ENODATA
	}
	delete(m.xattrs, name)
	return 0
}

// Listxattr lists the stored names, each ending in a NUL.
func (m *meta) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	m.mu.Lock()
	names := make([]string, 0, len(m.xattrs))
	for name := range m.xattrs {
		names = append(names, name)
	}
	m.mu.Unlock()
	slices.Sort(names)
	var b []byte
	for _, name := range names {
		b = append(append(b, name...), 0)
	}
	if len(dest) < len(b) {
		return uint32(len(b)), syscall.ERANGE
	}
	return uint32(copy(dest, b)), 0
}

// The flags of setxattr(2).
const (
	xattrCreate  = 1
	xattrReplace = 2
)
