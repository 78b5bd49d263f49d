package fs

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nvmemfs/nvmemfs/nvcore"
	"github.com/nvmemfs/nvmemfs/nvcore/nvcoretest"
)

// The real sysfs objects the battery compares with. lo exists on every
// Linux machine; address is a read-only attribute (as type is), ifalias a
// writable one (as force_ro is; it is only opened, never written), power a
// folder with no say over its names (as cells/ is).
const (
	sysROFile = "/sys/class/net/lo/address"
	sysRWFile = "/sys/class/net/lo/ifalias"
	sysDir    = "/sys/class/net/lo"
	sysSubdir = "/sys/class/net/lo/power"
)

// requireSysfs skips unless /sys is a live sysfs with lo's attributes, and
// we are root: the mount's files are the server's user's, sysfs's root's,
// so only as root do both answer the same caller the same way.
func requireSysfs(t *testing.T) {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs("/sys", &st); err != nil || st.Type != unix.SYSFS_MAGIC {
		t.Skipf("/sys is not a sysfs: %v", err)
	}
	for _, p := range []string{sysROFile, sysRWFile, sysSubdir} {
		if _, err := os.Stat(p); err != nil {
			t.Skipf("no %s: %v", p, err)
		}
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: sysfs's files are root's, the mount's the server's user's")
	}
}

func realPath(t *testing.T, p string) string {
	t.Helper()
	r, err := filepath.EvalSymlinks(p)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// opsTree mounts one writable device with a plain cell, and returns it.
func opsTree(t *testing.T, cfg nvcore.Config) (*mounted, *nvcore.Device, *nvcoretest.Memory) {
	t.Helper()
	m := mountTest(t)
	if cfg.Name == "" {
		cfg.Name = "x"
	}
	cfg.Cells = append(cfg.Cells, nvcore.CellInfo{Name: "id", Offset: 4, Bytes: 4})
	d, mem := m.attach(t, cfg, pattern(256, 0x33))
	return m, d, mem
}

// errnoName prints an errno as its constant's name, 0 for success.
func errnoName(err error) string {
	if err == nil {
		return "0"
	}
	if e := errnoOf(err); e != 0 {
		return unix.ErrnoName(e)
	}
	return err.Error()
}

// pathOp is one call on a file or folder; dir is a folder beside it.
type pathOp struct {
	name string
	do   func(path, dir string) error
}

func openClose(path string, flags int) error {
	fd, err := unix.Open(path, flags|unix.O_CLOEXEC, 0o644)
	if err == nil {
		unix.Close(fd)
	}
	return err
}

// onFD opens path and runs fn on the descriptor.
func onFD(path string, flags int, fn func(fd int) error) error {
	fd, err := unix.Open(path, flags|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	defer unix.Close(fd)
	return fn(fd)
}

// Calls on a file. None changes what a sysfs file holds: each is refused,
// or sets what is already there (truncate is ignored by kernfs, as by us);
// new names are made in dir, never over one.
var fileOps = []pathOp{
	{"unlink", func(p, _ string) error { return unix.Unlink(p) }},
	{"rmdir of a file", func(p, _ string) error { return unix.Rmdir(p) }},
	{"rename to a new name", func(p, dir string) error { return unix.Rename(p, dir+"/nvmemfs-test-new") }},
	{"rename onto itself", func(p, _ string) error { return unix.Rename(p, p) }},
	{"renameat2 RENAME_NOREPLACE", func(p, dir string) error {
		return unix.Renameat2(unix.AT_FDCWD, p, unix.AT_FDCWD, dir+"/nvmemfs-test-new", unix.RENAME_NOREPLACE)
	}},
	{"link", func(p, dir string) error { return unix.Link(p, dir+"/nvmemfs-test-new") }},
	{"symlink over it", func(p, _ string) error { return unix.Symlink("x", p) }},
	{"mkdir over it", func(p, _ string) error { return unix.Mkdir(p, 0o755) }},
	{"mknod fifo over it", func(p, _ string) error { return unix.Mknod(p, unix.S_IFIFO|0o644, 0) }},
	{"open O_CREAT|O_EXCL of it", func(p, _ string) error { return openClose(p, unix.O_CREAT|unix.O_EXCL|unix.O_RDONLY) }},
	{"open O_CREAT of it", func(p, _ string) error { return openClose(p, unix.O_CREAT|unix.O_RDONLY) }},
	{"open O_DIRECTORY", func(p, _ string) error { return openClose(p, unix.O_RDONLY|unix.O_DIRECTORY) }},
	{"readlink", func(p, _ string) error { _, err := unix.Readlink(p, make([]byte, 64)); return err }},
	{"getxattr user.*", func(p, _ string) error { _, err := unix.Getxattr(p, "user.nvmemfs", make([]byte, 64)); return err }},
	{"getxattr trusted.*", func(p, _ string) error { _, err := unix.Getxattr(p, "trusted.nvmemfs", make([]byte, 64)); return err }},
	{"getxattr security.*", func(p, _ string) error { _, err := unix.Getxattr(p, "security.nvmemfs", make([]byte, 64)); return err }},
	{"getxattr system.*", func(p, _ string) error { _, err := unix.Getxattr(p, "system.nvmemfs", make([]byte, 64)); return err }},
	{"getxattr of no namespace", func(p, _ string) error { _, err := unix.Getxattr(p, "nvmemfs.x", make([]byte, 64)); return err }},
	{"listxattr", func(p, _ string) error {
		n, err := unix.Listxattr(p, make([]byte, 256))
		if err == nil && n != 0 {
			return fmt.Errorf("%d bytes of names", n)
		}
		return err
	}},
	{"setxattr user.*", func(p, _ string) error { return unix.Setxattr(p, "user.nvmemfs", []byte("v"), 0) }},
	{"setxattr of no namespace", func(p, _ string) error { return unix.Setxattr(p, "nvmemfs.x", []byte("v"), 0) }},
	{"removexattr user.*", func(p, _ string) error { return unix.Removexattr(p, "user.nvmemfs") }},
	{"removexattr trusted.* absent", func(p, _ string) error { return unix.Removexattr(p, "trusted.nvmemfs") }},
	{"setxattr trusted.* XATTR_REPLACE absent", func(p, _ string) error {
		return unix.Setxattr(p, "trusted.nvmemfs", []byte("v"), unix.XATTR_REPLACE)
	}},
	// Set, read back, list, refuse to create twice, remove: the whole
	// round is one result, and leaves nothing behind.
	{"trusted.* and security.* round", func(p, _ string) error {
		for _, name := range []string{"trusted.nvmemfs-test", "security.nvmemfs-test"} {
			if err := unix.Setxattr(p, name, []byte("v1"), 0); err != nil {
				return fmt.Errorf("set %s: %w", name, err)
			}
			buf := make([]byte, 16)
			n, err := unix.Getxattr(p, name, buf)
			if err != nil || string(buf[:n]) != "v1" {
				unix.Removexattr(p, name)
				return fmt.Errorf("get %s: %q, %w", name, buf[:max(n, 0)], err)
			}
			if _, err := unix.Getxattr(p, name, buf[:1]); errnoOf(err) != unix.ERANGE {
				unix.Removexattr(p, name)
				return fmt.Errorf("get %s into 1 byte: %v, want ERANGE", name, err)
			}
			n, err = unix.Listxattr(p, buf[:0])
			if err != nil || n != len(name)+1 {
				unix.Removexattr(p, name)
				return fmt.Errorf("list size: %d, %w", n, err)
			}
			if err := unix.Setxattr(p, name, []byte("v2"), unix.XATTR_CREATE); errnoOf(err) != unix.EEXIST {
				unix.Removexattr(p, name)
				return fmt.Errorf("create %s again: %v, want EEXIST", name, err)
			}
			if err := unix.Removexattr(p, name); err != nil {
				return fmt.Errorf("remove %s: %w", name, err)
			}
		}
		return nil
	}},
	{"chmod to its mode", func(p, _ string) error {
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			return err
		}
		return unix.Chmod(p, st.Mode&0o7777)
	}},
	{"chown to its owner", func(p, _ string) error {
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			return err
		}
		return unix.Chown(p, int(st.Uid), int(st.Gid))
	}},
	{"utimes to its times", func(p, _ string) error {
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			return err
		}
		return unix.UtimesNano(p, []unix.Timespec{st.Atim, st.Mtim})
	}},
	{"truncate", func(p, _ string) error { return unix.Truncate(p, 0) }},
	{"fsync", func(p, _ string) error { return onFD(p, unix.O_RDONLY, unix.Fsync) }},
	{"fdatasync", func(p, _ string) error { return onFD(p, unix.O_RDONLY, unix.Fdatasync) }},
	{"fallocate on a read-only descriptor", func(p, _ string) error {
		return onFD(p, unix.O_RDONLY, func(fd int) error { return unix.Fallocate(fd, 0, 0, 1) })
	}},
	{"mmap MAP_SHARED", func(p, _ string) error {
		return onFD(p, unix.O_RDONLY, func(fd int) error {
			b, err := unix.Mmap(fd, 0, 4096, unix.PROT_READ, unix.MAP_SHARED)
			if err == nil {
				unix.Munmap(b)
			}
			return err
		})
	}},
	{"flock", func(p, _ string) error {
		return onFD(p, unix.O_RDONLY, func(fd int) error { return unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB) })
	}},
	{"access R_OK", func(p, _ string) error { return unix.Access(p, unix.R_OK) }},
}

// Calls on a folder.
var dirOps = []pathOp{
	{"rmdir", func(p, _ string) error { return unix.Rmdir(p) }},
	{"unlink of a folder", func(p, _ string) error { return unix.Unlink(p) }},
	{"create", func(p, _ string) error { return openClose(p+"/nvmemfs-test-new", unix.O_CREAT|unix.O_WRONLY) }},
	{"create read-only", func(p, _ string) error { return openClose(p+"/nvmemfs-test-new", unix.O_CREAT|unix.O_RDONLY) }},
	{"creat O_EXCL", func(p, _ string) error {
		return openClose(p+"/nvmemfs-test-new", unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY)
	}},
	{"O_TMPFILE", func(p, _ string) error { return openClose(p, unix.O_TMPFILE|unix.O_RDWR) }},
	{"mkdir", func(p, _ string) error { return unix.Mkdir(p+"/nvmemfs-test-new", 0o755) }},
	{"mkdir over itself", func(p, _ string) error { return unix.Mkdir(p, 0o755) }},
	{"mknod regular", func(p, _ string) error { return unix.Mknod(p+"/nvmemfs-test-new", unix.S_IFREG|0o644, 0) }},
	{"mknod fifo", func(p, _ string) error { return unix.Mknod(p+"/nvmemfs-test-new", unix.S_IFIFO|0o644, 0) }},
	{"mknod socket", func(p, _ string) error { return unix.Mknod(p+"/nvmemfs-test-new", unix.S_IFSOCK|0o644, 0) }},
	{"symlink", func(p, _ string) error { return unix.Symlink("target", p+"/nvmemfs-test-new") }},
	{"rename of an absent name", func(p, _ string) error {
		return unix.Rename(p+"/nvmemfs-test-absent", p+"/nvmemfs-test-new")
	}},
	{"unlink of an absent name", func(p, _ string) error { return unix.Unlink(p + "/nvmemfs-test-absent") }},
	{"getxattr user.*", func(p, _ string) error { _, err := unix.Getxattr(p, "user.nvmemfs", make([]byte, 64)); return err }},
	{"getxattr trusted.*", func(p, _ string) error { _, err := unix.Getxattr(p, "trusted.nvmemfs", make([]byte, 64)); return err }},
	{"getxattr system.*", func(p, _ string) error { _, err := unix.Getxattr(p, "system.nvmemfs", make([]byte, 64)); return err }},
	{"listxattr", func(p, _ string) error { _, err := unix.Listxattr(p, make([]byte, 256)); return err }},
	{"setxattr user.*", func(p, _ string) error { return unix.Setxattr(p, "user.nvmemfs", []byte("v"), 0) }},
	{"chmod to its mode", func(p, _ string) error {
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			return err
		}
		return unix.Chmod(p, st.Mode&0o7777)
	}},
	{"utimes to its times", func(p, _ string) error {
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			return err
		}
		return unix.UtimesNano(p, []unix.Timespec{st.Atim, st.Mtim})
	}},
	{"fsync", func(p, _ string) error { return onFD(p, unix.O_RDONLY|unix.O_DIRECTORY, unix.Fsync) }},
	{"open for writing", func(p, _ string) error { return openClose(p, unix.O_WRONLY) }},
}

// TestNamespaceLikeSysfs is the battery: every namespace and metadata call
// above, on each kind of file and folder of the mount, and on a sysfs
// object of this machine, answering the same errno. No errno is written
// down here: sysfs says what it is, on the running kernel.
func TestNamespaceLikeSysfs(t *testing.T) {
	requireSysfs(t)
	m, d, _ := opsTree(t, nvcore.Config{})

	// Each of ours beside the sysfs object that plays its part.
	sysDir := realPath(t, sysDir) // a symlink into /sys/devices
	files := []struct{ ours, sys string }{
		{m.path("x", "type"), sysROFile},
		{m.path("x", "force_ro"), sysRWFile},
		// sysfs of this machine has no nvmem device: nvmem is a binary
		// attribute, which kernfs answers as any attribute for these
		// calls (mmap aside, TestMmap).
		{m.path("x", "nvmem"), sysRWFile},
		// Nor nvmem cells: a cell file is a read-only binary attribute.
		{m.path("x", "cells", "id@4,0"), sysROFile},
	}
	dirs := []struct{ ours, sys string }{
		{m.dir, "/sys"},
		{m.path("x"), sysDir},
		{m.path("x", "cells"), sysSubdir},
	}
	for _, f := range files {
		for _, op := range fileOps {
			want := op.do(f.sys, sysDir)
			got := op.do(f.ours, m.path("x"))
			if op.name == "mmap MAP_SHARED" && pageCached(f.ours) {
				// The page cache backs a cached file: it maps.
				want = nil
			}
			if errnoName(got) != errnoName(want) {
				t.Errorf("%s on %s: %s; sysfs (%s): %s", op.name, f.ours[len(m.dir):], errnoName(got), f.sys, errnoName(want))
			}
		}
	}
	for _, dd := range dirs {
		for _, op := range dirOps {
			want := op.do(dd.sys, dd.sys)
			got := op.do(dd.ours, dd.ours)
			if errnoName(got) != errnoName(want) {
				t.Errorf("%s on %s/: %s; sysfs (%s): %s", op.name, dd.ours[len(m.dir):], errnoName(got), dd.sys, errnoName(want))
			}
		}
	}

	// Nothing was removed, renamed or added, here or in the registry.
	if got, want := listDir(t, m.path("x")), []string{"cells", "force_ro", "nvmem", "type"}; !slices.Equal(got, want) {
		t.Errorf("device folder after the battery: %v, want %v", got, want)
	}
	if got := listDir(t, m.path("x", "cells")); !slices.Equal(got, []string{"id@4,0"}) {
		t.Errorf("cells/ after the battery: %v", got)
	}
	if got := listDir(t, m.dir); !slices.Equal(got, []string{"x"}) {
		t.Errorf("root after the battery: %v", got)
	}
	if got, err := m.reg.Device("x"); err != nil || got != d {
		t.Errorf("registry after the battery: %v, %v", got, err)
	}
}

// TestRemoveRefused (issue 10, item 1): rm, rmdir and what fio does with a
// --size past the device's (unlink nvmem) are EPERM, as on sysfs, and the
// names stay: in the listing, for stat, and for a fresh open.
func TestRemoveRefused(t *testing.T) {
	m, _, _ := opsTree(t, nvcore.Config{})
	for _, c := range []struct {
		what string
		err  error
	}{
		{"unlink nvmem", unix.Unlink(m.path("x", "nvmem"))},
		{"unlink a cell", unix.Unlink(m.path("x", "cells", "id@4,0"))},
		{"rmdir cells", unix.Rmdir(m.path("x", "cells"))},
		{"rmdir the device", unix.Rmdir(m.path("x"))},
	} {
		if errnoOf(c.err) != syscall.EPERM {
			t.Errorf("%s: %v, want EPERM", c.what, c.err)
		}
	}
	if out, err := exec.Command("rm", "-f", m.path("x", "nvmem")).CombinedOutput(); err == nil {
		t.Errorf("rm -f nvmem exited 0 (%s)", out)
	}
	for _, p := range []string{m.path("x"), m.path("x", "nvmem"), m.path("x", "cells"), m.path("x", "cells", "id@4,0")} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("after the removals: %v", err)
		}
	}
	if got, err := os.ReadFile(m.path("x", "nvmem")); err != nil || !bytes.Equal(got, pattern(256, 0x33)) {
		t.Errorf("read nvmem after the removals: %d bytes, %v", len(got), err)
	}
	if got := listDir(t, m.dir); !slices.Equal(got, []string{"x"}) {
		t.Errorf("root after the removals: %v", got)
	}
}

// TestMetadataSticks (item 2): chmod, chown and utimes change what stat
// says, as on sysfs, and the changed mode is the one open checks (kernfs
// checks i_mode; root too, for the write bit). The sysfs side is checked
// on a real attribute, and put back.
func TestMetadataSticks(t *testing.T) {
	requireSysfs(t)
	m, _, _ := opsTree(t, nvcore.Config{})
	stat := func(p string) unix.Stat_t {
		t.Helper()
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			t.Fatal(err)
		}
		return st
	}
	// A change to each, then back, on sysfs and on ours.
	check := func(ours, sys string) {
		t.Helper()
		for _, p := range []string{sys, ours} {
			orig := stat(p)
			t.Cleanup(func() {
				unix.Chmod(p, orig.Mode&0o7777)
				unix.Chown(p, int(orig.Uid), int(orig.Gid))
				unix.UtimesNano(p, []unix.Timespec{orig.Atim, orig.Mtim})
			})
			if err := unix.Chmod(p, 0o400); err != nil {
				t.Errorf("chmod %s: %v", p, err)
			}
			if err := unix.Chown(p, 1, 2); err != nil {
				t.Errorf("chown %s: %v", p, err)
			}
			when := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
			if err := unix.UtimesNano(p, []unix.Timespec{unix.NsecToTimespec(when.UnixNano()), unix.NsecToTimespec(when.UnixNano())}); err != nil {
				t.Errorf("utimes %s: %v", p, err)
			}
			st := stat(p)
			if st.Mode&0o7777 != 0o400 || st.Uid != 1 || st.Gid != 2 || int64(st.Mtim.Sec) != when.Unix() || int64(st.Atim.Sec) != when.Unix() {
				t.Errorf("%s after chmod 0400, chown 1:2, utimes 2001: mode %o, owner %d:%d, atime %d, mtime %d",
					p, st.Mode&0o7777, st.Uid, st.Gid, st.Atim.Sec, st.Mtim.Sec)
			}
			if err := unix.Chmod(p, 0); err != nil {
				t.Errorf("chmod 0 %s: %v", p, err)
			}
			if st := stat(p); st.Mode&0o7777 != 0 {
				t.Errorf("%s after chmod 0: mode %o", p, st.Mode&0o7777)
			}
			if err := unix.Chmod(p, orig.Mode&0o7777); err != nil {
				t.Fatal(err)
			}
			if err := unix.Chown(p, int(orig.Uid), int(orig.Gid)); err != nil {
				t.Fatal(err)
			}
		}
	}
	check(m.path("x", "force_ro"), sysRWFile)
	check(m.path("x", "cells", "id@4,0"), sysROFile)
	check(m.path("x", "cells"), sysSubdir)

	// What open says at mode 0, for root: kernfs checks the mode's read
	// and write bits itself on a file, and nothing more on a folder.
	for _, c := range []struct{ ours, sys string }{
		{m.path("x", "force_ro"), sysRWFile},
		{m.path("x", "nvmem"), sysRWFile},
		{m.path("x", "cells"), sysSubdir},
	} {
		for _, flags := range []int{unix.O_RDONLY, unix.O_WRONLY, unix.O_RDWR} {
			var errs [2]string
			for i, p := range []string{c.sys, c.ours} {
				orig := stat(p)
				if err := unix.Chmod(p, 0); err != nil {
					t.Fatal(err)
				}
				errs[i] = errnoName(openClose(p, flags))
				if err := unix.Chmod(p, orig.Mode&0o7777); err != nil {
					t.Fatal(err)
				}
			}
			if errs[0] != errs[1] {
				t.Errorf("open (flags %#x) of %s at mode 0: %s; sysfs (%s): %s", flags, c.ours[len(m.dir):], errs[1], c.sys, errs[0])
			}
		}
	}

	// The mode chmod gives is the one open checks: nvmem made 0444 refuses
	// a writer, and 0644 takes one again.
	nv := m.path("x", "nvmem")
	if err := unix.Chmod(nv, 0o444); err != nil {
		t.Fatal(err)
	}
	if err := openClose(nv, unix.O_WRONLY); errnoOf(err) != unix.EACCES {
		t.Errorf("open nvmem for writing at 0444: %v, want EACCES", err)
	}
	if err := unix.Chmod(nv, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := openClose(nv, unix.O_WRONLY); err != nil {
		t.Errorf("open nvmem for writing at 0644 again: %v", err)
	}
	// type has nothing to store: given a write bit by chmod it opens for
	// writing (the device's sysfs ops have a store), and a write fails;
	// sysfs's address the same way.
	var writes [2]string
	for i, p := range []string{sysROFile, m.path("x", "type")} {
		orig := stat(p)
		if err := unix.Chmod(p, 0o644); err != nil {
			t.Fatal(err)
		}
		writes[i] = errnoName(onFD(p, unix.O_WRONLY, func(fd int) error { _, err := unix.Write(fd, []byte("1")); return err }))
		unix.Chmod(p, orig.Mode&0o7777)
	}
	if writes[0] != writes[1] || writes[1] == "0" {
		t.Errorf("write into type after chmod 0644: %s; sysfs (%s): %s", writes[1], sysROFile, writes[0])
	}
	// A cell file has no write at all in the kernel (a read-only binary
	// attribute): a layout's cell refuses a writer whatever its mode.
	data := make([]byte, 16)
	data[0] = 1
	m.attach(t, nvcore.Config{Name: "lay", Layout: countLayout{}}, data)
	lay := m.path("lay", "cells", "c0@1,0")
	if err := unix.Chmod(lay, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := openOrFirstIO(lay, unix.O_WRONLY); errnoOf(err) != unix.EACCES {
		t.Errorf("open a layout's cell for writing after chmod 0644: %v, want EACCES", err)
	}
	// A cell's attributes outlive the kernel's inode: drop the caches and
	// look it up afresh.
	cell := m.path("x", "cells", "id@4,0")
	if err := unix.Chmod(cell, 0o440); err != nil {
		t.Fatal(err)
	}
	os.WriteFile("/proc/sys/vm/drop_caches", []byte("2"), 0)
	if st := stat(cell); st.Mode&0o7777 != 0o440 {
		t.Errorf("cell after chmod 0440 and a cache drop: %o", st.Mode&0o7777)
	}
}

// TestFsyncAttributes (item 3): fsync of type, force_ro and a cell file
// succeeds, as kernfs's noop_fsync, so `dd conv=fsync` into force_ro
// works; fsync of a folder is EINVAL there and here (the battery).
func TestFsyncAttributes(t *testing.T) {
	m, d, mem := opsTree(t, nvcore.Config{})
	for _, name := range []string{"type", "force_ro", "cells/id@4,0", "nvmem"} {
		for _, flags := range []int{unix.O_RDONLY, unix.O_WRONLY} {
			if name == "type" && flags == unix.O_WRONLY {
				continue
			}
			if err := onFD(m.path("x", name), flags, unix.Fsync); err != nil {
				t.Errorf("fsync %s (flags %#x): %v", name, flags, err)
			}
		}
	}
	syncs := mem.Syncs()
	if err := onFD(m.path("x", "cells", "id@4,0"), unix.O_WRONLY, unix.Fsync); err != nil || mem.Syncs() != syncs+1 {
		t.Errorf("fsync of a cell: %v, %d provider syncs, want 1", err, mem.Syncs()-syncs)
	}
	cmd := exec.Command("dd", "of="+m.path("x", "force_ro"), "conv=fsync,notrunc", "status=none")
	cmd.Stdin = bytes.NewReader([]byte("1"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("dd conv=fsync into force_ro: %v: %s", err, out)
	}
	if !d.ForceRO() {
		t.Errorf("force_ro not set by dd")
	}
}

// TestMmap (item 4). sysfs refuses both mappings of a file without mmap
// (ENODEV). FUSE lets a server refuse only MAP_SHARED, and only of a
// direct-I/O file: the kernel maps MAP_PRIVATE of any file through the
// page cache (fuse_file_mmap), and every mapping of a cached one, with no
// request to the server that could refuse it. So: MAP_SHARED of an
// uncached device's files is ENODEV, as sysfs; MAP_PRIVATE maps the bytes
// the device holds (docs/CLI.md says why); a cached device maps both.
func TestMmap(t *testing.T) {
	requireSysfs(t)
	m, _, _ := opsTree(t, nvcore.Config{})
	m.attach(t, nvcore.Config{Name: "c", Cache: true}, pattern(8192, 0x44))
	mmap := func(p string, flags int) ([]byte, error) {
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, err
		}
		defer unix.Close(fd)
		b, err := unix.Mmap(fd, 0, 4096, unix.PROT_READ, flags)
		if err != nil {
			return nil, err
		}
		defer unix.Munmap(b)
		return readMapped(b[:256])
	}
	_, sysShared := mmap(sysROFile, unix.MAP_SHARED)
	_, sysPrivate := mmap(sysROFile, unix.MAP_PRIVATE)
	if errnoOf(sysShared) != unix.ENODEV || errnoOf(sysPrivate) != unix.ENODEV {
		t.Logf("sysfs mmap: shared %v, private %v (expected ENODEV for both)", sysShared, sysPrivate)
	}
	for _, name := range []string{"nvmem", "type", "force_ro", "cells/id@4,0"} {
		want := sysShared
		if pageCached(m.path("x", name)) {
			want = nil // the page cache backs a cached file: it maps
		}
		if _, err := mmap(m.path("x", name), unix.MAP_SHARED); errnoName(err) != errnoName(want) {
			t.Errorf("MAP_SHARED of %s: %s, want %s (sysfs %s)", name, errnoName(err), errnoName(want), errnoName(sysShared))
		}
	}
	// The mappings that succeed are faulted in through the page cache, by
	// readMapped: a fault from a plain load here would deadlock with this
	// process's own server (see readMapped).
	if got, err := mmap(m.path("x", "nvmem"), unix.MAP_PRIVATE); err != nil || !bytes.Equal(got, pattern(256, 0x33)) {
		t.Errorf("MAP_PRIVATE of an uncached nvmem: %v; want the device's bytes (FUSE maps it; sysfs: %v)", err, sysPrivate)
	}
	for _, flags := range []int{unix.MAP_SHARED, unix.MAP_PRIVATE} {
		if got, err := mmap(m.path("c", "nvmem"), flags); err != nil || !bytes.Equal(got, pattern(8192, 0x44)[:256]) {
			t.Errorf("mmap (flags %#x) of a cached nvmem: %v; want the device's bytes", flags, err)
		}
	}
}

// TestRetiredCellENODEV (item 5): a layout cell that left the content, read
// or opened through what the kernel still holds, is ENODEV, as a removed
// kernfs file; a fresh lookup is ENOENT.
func TestRetiredCellENODEV(t *testing.T) {
	m := mountTest(t)
	data := make([]byte, 16)
	data[0] = 2
	m.attach(t, nvcore.Config{Name: "lay", Layout: countLayout{}}, data)
	p := m.path("lay", "cells", "c1@2,0")
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := os.WriteFile(m.path("lay", "nvmem"), []byte{1}, 0); err != nil {
		t.Fatal(err)
	}
	listDir(t, m.path("lay", "cells")) // re-parses: c1 leaves
	if _, err := f.ReadAt(make([]byte, 2), 0); errnoOf(err) != syscall.ENODEV {
		t.Errorf("read of a retired cell through an earlier descriptor: %v, want ENODEV", err)
	}
	// The name may still be cached for a moment: an open through it is
	// ENODEV, and once dropped, ENOENT.
	if err := openOrFirstIO(p, unix.O_RDONLY); errnoOf(err) != syscall.ENODEV && errnoOf(err) != syscall.ENOENT {
		t.Errorf("open of a retired cell: %v, want ENODEV or ENOENT", err)
	}
}

// TestCacheKeepouts (item 6): the page cache keeps what a write put in it,
// but a write into a keepout never reaches the memory: a writable cached
// device with keepouts would read back bytes the memory never held. It is
// refused at attach; a read-only one is served, with the fill.
func TestCacheKeepouts(t *testing.T) {
	m := mountTest(t)
	keep := []nvcore.Keepout{{Start: 16, End: 32, Fill: 0xee}}
	_, err := m.reg.Register(nvcore.Config{Name: "ck", Cache: true, Keepouts: keep}, nvcoretest.NewMemory(make([]byte, 4096)))
	if err == nil {
		// What it would do: with the page cached, write ABCD into the
		// keepout and read it back.
		fd := openFile(t, m.path("ck", "nvmem"), syscall.O_RDWR)
		syscall.Pread(fd, make([]byte, 4096), 0)
		syscall.Pwrite(fd, []byte("ABCD"), 16)
		got := make([]byte, 4)
		syscall.Pread(fd, got, 16)
		t.Fatalf("a writable cached device with keepouts was attached; a write into the keepout reads back %q, the device holds %x", got, []byte{0xee, 0xee, 0xee, 0xee})
	}
	mem := nvcoretest.NewMemory(pattern(4096, 7))
	if _, err := m.reg.Register(nvcore.Config{Name: "ro", Cache: true, Keepouts: keep}, nvcoretest.ReadOnly(mem)); err != nil {
		t.Fatalf("a read-only cached device with keepouts: %v", err)
	}
	got, err := os.ReadFile(m.path("ro", "nvmem"))
	if err != nil || !bytes.Equal(got[16:32], bytes.Repeat([]byte{0xee}, 16)) || !bytes.Equal(got[:16], pattern(4096, 7)[:16]) {
		t.Errorf("read-only cached device with a keepout: %v, %x", err, got[:40])
	}
}

// TestProviderErrnoMapped (item 7): a provider's ENOSYS is EIO to the
// caller: passed through, FUSE would take it for "no fsync here" and
// answer every later fsync of the mount 0 without asking us.
func TestProviderErrnoMapped(t *testing.T) {
	m, _, mem := opsTree(t, nvcore.Config{})
	fd := openFile(t, m.path("x", "nvmem"), syscall.O_RDWR)
	mem.SetHook(func(string, int64, int) error { return syscall.ENOSYS })
	if err := syscall.Fsync(fd); errnoOf(err) != syscall.EIO {
		t.Errorf("fsync, provider ENOSYS: %v, want EIO", err)
	}
	if _, err := syscall.Pread(fd, make([]byte, 4), 0); errnoOf(err) != syscall.EIO {
		t.Errorf("read, provider ENOSYS: %v, want EIO", err)
	}
	if _, err := syscall.Pwrite(fd, make([]byte, 4), 0); errnoOf(err) != syscall.EIO {
		t.Errorf("write, provider ENOSYS: %v, want EIO", err)
	}
	mem.SetHook(nil)
	syncs := mem.Syncs()
	if err := syscall.Fsync(fd); err != nil || mem.Syncs() != syncs+1 {
		t.Errorf("fsync after the provider's ENOSYS: %v, %d provider syncs, want 1 (the kernel stopped asking)", err, mem.Syncs()-syncs)
	}
}

// TestProviderErrnoTable: which provider errnos a caller sees as they are.
func TestProviderErrnoTable(t *testing.T) {
	for _, c := range []struct {
		in, want syscall.Errno
	}{
		{syscall.EIO, syscall.EIO},
		{syscall.ETIMEDOUT, syscall.ETIMEDOUT},
		{syscall.EREMOTEIO, syscall.EREMOTEIO},
		{syscall.EBUSY, syscall.EBUSY},
		{syscall.ENODEV, syscall.ENODEV},
		{syscall.ENXIO, syscall.ENODEV},
		{syscall.ESHUTDOWN, syscall.ENODEV},
		{syscall.ENOSYS, syscall.EIO},
		{512, syscall.EIO}, // ERESTARTSYS: no valid FUSE reply
		{4095, syscall.EIO},
	} {
		if got := toErrno(fmt.Errorf("provider: %w", c.in)); got != c.want {
			t.Errorf("provider errno %d (%v): %v, want %v", int(c.in), c.in, got, c.want)
		}
	}
}

// readMapped copies a mapped range out through a pipe, so that the page
// fault happens inside write(2) (the kernel's copy from the mapping), not
// in a load by Go code. A fault waits for this very process's FUSE server
// to answer the READ; a goroutine faulting in user mode cannot be stopped
// by the Go runtime, so a garbage collection that starts meanwhile waits
// for it for ever, while the server goroutine holding the READ waits for
// the collection (go-fuse's fs package documents this deadlock). Seen here
// as one hang in a few hundred runs. Other processes' mappings, and a
// server that maps nothing of its own, are not exposed: nvmemfs never
// maps its files.
func readMapped(b []byte) ([]byte, error) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		return nil, err
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	n, err := unix.Write(p[1], b) // b is at most a page: the pipe takes it whole
	if err != nil {
		return nil, err
	}
	got := make([]byte, n)
	m, err := unix.Read(p[0], got)
	if err != nil {
		return nil, err
	}
	return got[:m], nil
}
