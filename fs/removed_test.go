package fs

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/nvmemfs/nvmemfs/nvcore"
)

// afterRemoval runs, on a descriptor whose file was removed, the calls a
// program holding it may make, and says what each returned: the read at
// the start, at the end of the file and past it, the size from fstat,
// lseek to the end, to data and to a hole, and the read past the end
// again once fstat has run
// (fstat may leave the size cached, and a cached size answers a read past
// the end without asking the file system).
func afterRemoval(fd int, size int64) string {
	var out []string
	note := func(what string, err error) {
		if e := errnoOf(err); e != 0 {
			out = append(out, what+"="+nameOf(e))
		} else if err != nil {
			out = append(out, what+"="+err.Error())
		} else {
			out = append(out, what+"=ok")
		}
	}
	buf := make([]byte, 8)
	read := func(what string, off int64) {
		n, err := syscall.Pread(fd, buf, off)
		if err == nil && n == 0 {
			out = append(out, what+"=EOF")
			return
		}
		note(what, err)
	}
	read("pread@0", 0)
	read("pread@end", size)
	read("pread@past", size+4096)
	var st syscall.Stat_t
	note("fstat", syscall.Fstat(fd, &st))
	read("pread@past-after-fstat", size+4096)
	_, err := syscall.Seek(fd, 0, 2)
	note("lseek-end", err)
	_, err = syscall.Seek(fd, 0, 3) // SEEK_DATA
	note("lseek-data", err)
	_, err = syscall.Seek(fd, 0, 4) // SEEK_HOLE
	note("lseek-hole", err)
	return strings.Join(out, " ")
}

func nameOf(e syscall.Errno) string {
	for _, n := range []struct {
		e    syscall.Errno
		name string
	}{{syscall.ENODEV, "ENODEV"}, {syscall.ENOENT, "ENOENT"}, {syscall.EIO, "EIO"}, {syscall.EACCES, "EACCES"}} {
		if n.e == e {
			return n.name
		}
	}
	return fmt.Sprintf("errno %d", int(e))
}

var kernfsRemoved struct {
	once sync.Once
	got  string
	err  error
}

// kernfsAfterRemoval measures afterRemoval on the kernel's own sysfs: it
// opens an attribute of a network device it creates (an ifb), reads it,
// deletes the device and runs the calls. sysfs's nvmem files are kernfs
// files as this one is, and kernfs answers a removed file the same way
// whatever its kind (kernfs_get_active fails).
func kernfsAfterRemoval(t *testing.T) string {
	t.Helper()
	k := &kernfsRemoved
	k.once.Do(func() {
		name := fmt.Sprintf("nvrm%d", os.Getpid()%1000000)
		if out, err := exec.Command("ip", "link", "add", name, "type", "ifb").CombinedOutput(); err != nil {
			k.err = fmt.Errorf("ip link add %s type ifb: %v: %s", name, err, strings.TrimSpace(string(out)))
			return
		}
		fd, err := syscall.Open("/sys/class/net/"+name+"/mtu", syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err != nil {
			exec.Command("ip", "link", "del", name).Run()
			k.err = err
			return
		}
		defer syscall.Close(fd)
		buf := make([]byte, 64)
		n, err := syscall.Pread(fd, buf, 0)
		if err != nil || n == 0 {
			exec.Command("ip", "link", "del", name).Run()
			k.err = fmt.Errorf("read of the ifb's mtu: %d bytes, %v", n, err)
			return
		}
		if out, err := exec.Command("ip", "link", "del", name).CombinedOutput(); err != nil {
			k.err = fmt.Errorf("ip link del %s: %v: %s", name, err, strings.TrimSpace(string(out)))
			return
		}
		k.got = afterRemoval(fd, int64(n))
	})
	if k.err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI compares with the kernel's sysfs: %v", k.err)
		}
		t.Skipf("no sysfs file to remove here: %v", k.err)
	}
	return k.got
}

// TestRemovedFileAnswersAsSysfs: a descriptor held across a removal gets,
// on every call that reaches the file, what a descriptor of a removed
// sysfs file gets on this machine's kernel: ENODEV for reads anywhere,
// at the end and past it too, and for lseek to the end, to data and to a
// hole; fstat still answers. In the cached modes the read past the end is
// the hard case: the kernel answers it from the size it caches, unless the
// size is asked again (the read asks it with the descriptor, and nvmemfs
// says ENODEV).
func TestRemovedFileAnswersAsSysfs(t *testing.T) {
	want := kernfsAfterRemoval(t)
	t.Logf("sysfs: %s", want)
	m := mountTest(t)
	data := pattern(256, 0x5a)
	m.attach(t, nvcore.Config{Name: "gone", Cells: []nvcore.CellInfo{{Name: "id", Offset: 16, Bytes: 6}}}, data)
	files := []struct {
		path string
		size int64
	}{
		{m.path("gone", "nvmem"), 256},
		{m.path("gone", "cells", "id@10,0"), 6},
		{m.path("gone", "type"), int64(len("Unknown\n"))},
	}
	fds := make([]int, len(files))
	for i, f := range files {
		fds[i] = openFile(t, f.path, syscall.O_RDONLY)
		defer syscall.Close(fds[i])
		// Fill the page cache where the mode caches, and the size.
		buf := make([]byte, 512)
		if n, err := syscall.Pread(fds[i], buf, 0); err != nil || int64(n) != f.size {
			t.Fatalf("%s: read %d bytes, %v; want %d", f.path, n, err, f.size)
		}
		if n, err := syscall.Pread(fds[i], buf, f.size); err != nil || n != 0 {
			t.Fatalf("%s: read at the end: %d bytes, %v; want 0", f.path, n, err)
		}
		// While there, lseek to data and to a hole answer as for any
		// file without holes (the kernel's, since nvmemfs answers
		// LSEEK with ENOSYS).
		if off, err := syscall.Seek(fds[i], 0, 3); err != nil || off != 0 {
			t.Errorf("%s: SEEK_DATA from 0: %d, %v; want 0", f.path, off, err)
		}
		if off, err := syscall.Seek(fds[i], 0, 4); err != nil || off != f.size {
			t.Errorf("%s: SEEK_HOLE from 0: %d, %v; want %d", f.path, off, err, f.size)
		}
		if _, err := syscall.Seek(fds[i], f.size, 3); err != syscall.ENXIO {
			t.Errorf("%s: SEEK_DATA from the end: %v; want ENXIO", f.path, err)
		}
	}
	if err := m.reg.Unregister("gone"); err != nil {
		t.Fatal(err)
	}
	for i, f := range files {
		if got := afterRemoval(fds[i], f.size); got != want {
			t.Errorf("%s after removal:\n got  %s\n want %s (sysfs)", strings.TrimPrefix(f.path, m.dir+"/"), got, want)
		}
	}
}

// TestRemovedBeforeMode: a descriptor whose file's mode a chmod took away
// gets, once the device is removed, ENODEV and not EACCES, for reads and
// for writes: on sysfs the removal is what open and every call find first
// (kernfs_get_active fails before any check of the mode). Before the
// removal, with --cache-all (no open, so each call checks the mode), the
// call is EACCES for root too; in the other modes the descriptor's open
// was checked, and the call goes through.
func TestRemovedBeforeMode(t *testing.T) {
	m := mountTest(t)
	data := pattern(64, 0x11)
	m.attach(t, nvcore.Config{Name: "dev"}, data)
	path := m.path("dev", "nvmem")
	fd := openFile(t, path, syscall.O_RDWR)
	defer syscall.Close(fd)
	buf := make([]byte, 8)
	for _, step := range []struct {
		mode uint32
		call string
	}{{0o200, "read"}, {0o400, "write"}} {
		if err := syscall.Fchmod(fd, step.mode); err != nil {
			t.Fatalf("fchmod %o: %v", step.mode, err)
		}
		var err error
		if step.call == "read" {
			_, err = syscall.Pread(fd, buf, 0)
		} else {
			_, err = syscall.Pwrite(fd, data[:8], 0)
		}
		want := syscall.Errno(0)
		if mode.cacheAll {
			want = syscall.EACCES
		}
		if errnoOf(err) != want {
			t.Errorf("%s after chmod %o, device present: %v, want errno %d", step.call, step.mode, err, want)
		}
	}
	if err := syscall.Fchmod(fd, 0); err != nil {
		t.Fatal(err)
	}
	if err := m.reg.Unregister("dev"); err != nil {
		t.Fatal(err)
	}
	if _, err := syscall.Pread(fd, buf, 0); errnoOf(err) != syscall.ENODEV {
		t.Errorf("read, mode 0, device removed: %v, want ENODEV", err)
	}
	if _, err := syscall.Pwrite(fd, data[:8], 0); errnoOf(err) != syscall.ENODEV {
		t.Errorf("write, mode 0, device removed: %v, want ENODEV", err)
	}
}
