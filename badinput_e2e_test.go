package main

// Bad input gets a clear error and changes nothing (issue 10, items 9 to
// 15), against the real binary: what the user types, what the user reads,
// and that nothing was attached, grown or mounted.

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// wantNoDevices fails the test if the mount lists any device.
func wantNoDevices(t *testing.T, mnt, what string) {
	t.Helper()
	if devs := lsJSON(t, cmdOpts{}, "-m", mnt); len(devs) != 0 {
		t.Errorf("%s: refused devices are listed: %+v", what, devs)
	}
}

// imageSize is the size of the file at path.
func imageSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// Item 9: a window whose size overflows offset+size is refused, and no
// write through the mount ever grows the image: not past the device's end
// (EFBIG), and not past the end of an image someone truncated since the
// attach (EIO, the image keeps its size).
func TestBadInputWindow(t *testing.T) {
	requireFUSE(t)
	dir := t.TempDir()
	img := writeFile(t, dir, "img256.bin", pattern(256, 9))
	mnt := mountNV(t)

	stderr := mustFail(t, nv(t, "attach", "-m", mnt, "file:"+img+",offset=1,size=0x7fffffffffffffff"))
	wantContains(t, "attach of a window of 2^63-1 bytes", stderr, img, "window 0x1+0x7fffffffffffffff reaches past its end (0x100 bytes)")
	wantNoDevices(t, mnt, "window overflow")

	mustOK(t, nv(t, "attach", "-m", mnt, "file:"+img+",offset=1,name=w"))
	if got := lsJSON(t, cmdOpts{}, "-m", mnt)["w"].Size; got != 255 {
		t.Fatalf("window size %d, want 255", got)
	}
	nvm := filepath.Join(mnt, "w", "nvmem")
	r := runCmd(t, cmdOpts{}, "dd", "if=/dev/zero", "of="+nvm, "bs=1", "count=1", "seek=1G", "conv=notrunc", "status=none")
	wantContains(t, "dd seek=1G", mustFail(t, r), "File too large")
	f, err := os.OpenFile(nvm, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, off := range []int64{255, 1 << 30, 1<<63 - 2} {
		if _, err := f.WriteAt([]byte{1}, off); !errors.Is(err, syscall.EFBIG) {
			t.Errorf("write at %#x: %v, want EFBIG", off, err)
		}
	}
	if n := imageSize(t, img); n != 256 {
		t.Fatalf("the image is %d bytes after writes past the end, want 256", n)
	}

	// Someone truncates the image under the mount: a write inside the
	// window but past the image's new end fails, and the image stays
	// as it was cut.
	if err := os.Truncate(img, 16); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{1, 2}, 200); !errors.Is(err, syscall.EIO) {
		t.Errorf("write past the end of a truncated image: %v, want EIO", err)
	}
	if n := imageSize(t, img); n != 16 {
		t.Errorf("a write grew the truncated image to %d bytes", n)
	}
	if _, err := f.WriteAt([]byte{7}, 14); err != nil {
		t.Errorf("write inside the truncated image: %v", err)
	}
	if got := readFile(t, img); len(got) != 16 || got[15] != 7 {
		t.Errorf("image after a write that fits: %d bytes, % x", len(got), got)
	}
}

// Item 10: a FIFO, or a character device, is refused at once; the server
// never blocks in open(2) and goes on answering.
func TestBadInputNotAnImage(t *testing.T) {
	requireFUSE(t)
	dir := t.TempDir()
	fifo := filepath.Join(dir, "f")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	mnt := mountNV(t)
	// Runs before the unmount: a server stuck in open(2) on the FIFO
	// (the bug) gets its writer and lets go.
	t.Cleanup(func() {
		if w, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			w.Close()
		}
	})

	for _, tc := range []struct{ spec, want string }{
		{"file:" + fifo + ",ro", fifo + " is a FIFO (named pipe), not a regular file or a block device"},
		{"file:" + fifo, "is a FIFO (named pipe)"},
		{"file:/dev/zero,ro", "/dev/zero is a character device, not a regular file or a block device"},
		{"file:" + dir, "is a directory"},
	} {
		stderr := mustFail(t, nv(t, "attach", "-m", mnt, tc.spec))
		wantContains(t, "attach "+tc.spec, stderr, tc.want)
	}
	wantNoDevices(t, mnt, "not an image")
	mustOK(t, nv(t, "attach", "-m", mnt, "file:"+writeFile(t, dir, "ok.bin", pattern(64, 1))+",name=ok"))

	stderr := mountFails(t, t.TempDir(), "--device", "file:"+fifo+",ro")
	wantContains(t, "mount --device with a FIFO", stderr, "is a FIFO (named pipe)")
}

// Item 11: an env-size the device cannot hold is refused at attach, as
// other option errors are, not attached with the reason left for ls.
func TestBadInputEnvSize(t *testing.T) {
	requireFUSE(t)
	dir := t.TempDir()
	img := writeFile(t, dir, "env.bin", pattern(256, 3))
	mnt := mountNV(t)
	for _, tc := range []struct{ opts, want string }{
		{"layout=u-boot-env,env-size=0x1000", "u-boot-env: env-size 0x1000 is larger than the device (size 0x100)"},
		{"layout=u-boot-env-redundant,env-size=0x81", "u-boot-env-redundant: env-size 0x81: two copies of it do not fit the device (size 0x100); a copy is at most half of it"},
		{"layout=auto,env-size=0x200", "env-size 0x200 is larger than the device"},
		{"layout=u-boot-env,env-size=0", "env-size=0"},
	} {
		sp := "file:" + img + ",name=env," + tc.opts
		stderr := mustFail(t, nv(t, "attach", "-m", mnt, sp))
		wantContains(t, "attach "+sp, stderr, tc.want)
	}
	wantNoDevices(t, mnt, "env-size")
	// What fits attaches.
	mustOK(t, nv(t, "attach", "-m", mnt, "file:"+img+",name=env,layout=u-boot-env-redundant,env-size=0x80"))

	conf := writeFile(t, dir, "env.conf", []byte("file:env.bin,name=a\nfile:env.bin,name=b,layout=u-boot-env,env-size=0x1000\n"))
	stderr := mountFails(t, t.TempDir(), "--config", conf)
	wantContains(t, "mount --config with a large env-size", stderr, conf+":2: ", "env-size 0x1000 is larger than the device")
}

// Item 12: an explicit 0 for stride or word-size, and an empty name=, are
// refused; nothing becomes nvmem0.
func TestBadInputZeros(t *testing.T) {
	requireFUSE(t)
	dir := t.TempDir()
	img := writeFile(t, dir, "img.bin", pattern(256, 5))
	mnt := mountNV(t)
	for _, tc := range []struct{ opts, want string }{
		{"stride=0", "stride=0: want 1, 2, 4 or 8"},
		{"word-size=0", "word-size=0: want 1, 2, 4 or 8"},
		{"word-size=3", "word-size=3: want 1, 2, 4 or 8"},
		{"name=", "empty device name"},
		{"size=0", "size=0: a window needs at least one byte"},
	} {
		sp := "file:" + img + "," + tc.opts
		stderr := mustFail(t, nv(t, "attach", "-m", mnt, sp))
		wantContains(t, "attach "+sp, stderr, tc.want)
	}
	wantNoDevices(t, mnt, "zeros")
	if _, err := os.Stat(filepath.Join(mnt, "nvmem0")); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("stat nvmem0: %v, want ENOENT", err)
	}
	conf := writeFile(t, dir, "zero.conf", []byte("file:img.bin,name=a\nfile:img.bin,name=,stride=0\n"))
	stderr := mountFails(t, t.TempDir(), "--config", conf)
	wantContains(t, "mount --config with name=", stderr, conf+":2:", "empty device name")
}

// Item 13: the errors docs/CLI.md promises with a file and a line: a cell
// declared twice in a cells file, and a config line whose image is missing.
func TestBadInputFileAndLine(t *testing.T) {
	requireFUSE(t)
	dir := t.TempDir()
	img := writeFile(t, dir, "img.bin", pattern(256, 6))
	cells := writeFile(t, dir, "dup.cells", []byte("# NAME OFFSET BYTES\nserial 0 4\nmac 4 6\nserial 0x0 4\n"))

	mnt := mountNV(t)
	stderr := mustFail(t, nv(t, "attach", "-m", mnt, "file:"+img+",name=d,cells="+cells))
	wantContains(t, "attach with a cell declared twice", stderr, cells+`:4: cell "serial" at 0x0 bit 0 declared twice, first on line 2`)
	wantNoDevices(t, mnt, "cell declared twice")

	conf := writeFile(t, dir, "dup.conf", []byte("file:img.bin,name=d,cells=dup.cells\n"))
	stderr = mountFails(t, t.TempDir(), "--config", conf)
	wantContains(t, "mount --config with a cell declared twice", stderr, conf+":1:", cells+":4:", "declared twice")

	missing := writeFile(t, dir, "missing.conf", []byte("# devices\nfile:img.bin,name=one\n\nfile:missing.bin,name=two\n"))
	stderr = mountFails(t, t.TempDir(), "--config", missing)
	wantContains(t, "mount --config with a missing image", stderr,
		missing+":4: open "+filepath.Join(dir, "missing.bin")+": no such file or directory")
}

// Item 14: a name is a file name, at most 255 bytes: a device's name, and a
// cell's whole file name <name>@<off>,<bit>. A cell whose file fits can be
// copied to another file system.
func TestBadInputNameLength(t *testing.T) {
	requireFUSE(t)
	dir := t.TempDir()
	img := writeFile(t, dir, "img.bin", pattern(0x200, 7))
	long := strings.Repeat("c", 250) // "@100,0": 256 bytes
	cells := writeFile(t, dir, "long.cells", []byte("fine 0 4\n"+long+" 0x100 4\n"))
	mnt := mountNV(t)
	stderr := mustFail(t, nv(t, "attach", "-m", mnt, "file:"+img+",name=l,cells="+cells))
	wantContains(t, "attach with a cell file name of 256 bytes", stderr, cells+":2:", "its file name is 256 bytes, over the 255 of a file name: at this offset the name may have at most 249 bytes")

	stderr = mustFail(t, nv(t, "attach", "-m", mnt, "file:"+img+",name="+strings.Repeat("d", 256)))
	wantContains(t, "attach with a device name of 256 bytes", stderr, "is 256 bytes: a name is at most 255")
	wantNoDevices(t, mnt, "long names")

	// At the limit: 249 bytes + "@100,0" is 255, and cp takes it.
	fits := writeFile(t, dir, "fits.cells", []byte(long[:249]+" 0x100 4\n"))
	name := strings.Repeat("d", 255)
	mustOK(t, nv(t, "attach", "-m", mnt, "file:"+img+",name="+name+",cells="+fits))
	cell := filepath.Join(mnt, name, "cells", long[:249]+"@100,0")
	if len(filepath.Base(cell)) != 255 {
		t.Fatalf("cell file name of %d bytes", len(filepath.Base(cell)))
	}
	mustOK(t, runCmd(t, cmdOpts{}, "cp", cell, t.TempDir()))
}

// Item 15: a background mount by a user who may not open /dev/fuse says so,
// where it said only "fusermount exited with code 256". The test makes
// /dev/fuse 0600 in a mount name space of its own (a fresh node bound over
// it), so the machine's /dev/fuse is never touched.
func TestBadInputFuseDevice(t *testing.T) {
	requireFUSE(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root to act as another user in a mount name space")
	}
	for _, tool := range []string{"unshare", "setpriv", "mknod", "mount", "fusermount3"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("no %s", tool)
		}
	}
	var st unix.Stat_t
	if err := unix.Stat("/dev/fuse", &st); err != nil {
		t.Fatal(err)
	}
	const user = 65534
	shared, bin, mnt := userSandbox(t, user)
	devDir := filepath.Join(shared, "dev")
	if err := os.Mkdir(devDir, 0o755); err != nil {
		t.Fatal(err)
	}
	// In the name space: a 0600 /dev/fuse of root's, and a /run of its own
	// so that the user's control socket goes to /run/user/UID/nvmemfs and
	// meets no other test's /tmp/nvmemfs-UID. Should the mount succeed
	// after all, the user unmounts it before the name space ends.
	script := fmt.Sprintf(`set -e
mount -t tmpfs -o mode=0755 tmpfs "$1"
mknod -m 0600 "$1/fuse" c %d %d
mount --bind "$1/fuse" /dev/fuse
mount -t tmpfs -o mode=0755 tmpfs /run
mkdir -p /run/user/%[3]d
chown %[3]d:%[3]d /run/user/%[3]d
chmod 0700 /run/user/%[3]d
set +e
setpriv --reuid=%[3]d --regid=%[3]d --clear-groups "$2" mount --demo "$3"
rc=$?
if [ $rc = 0 ]; then setpriv --reuid=%[3]d --regid=%[3]d --clear-groups "$2" unmount "$3" >/dev/null 2>&1; fi
exit $rc
`, unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev)), user)
	r := runCmd(t, cmdOpts{}, "unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", devDir, bin, mnt)
	stderr := mustFail(t, r)
	wantContains(t, "mount by a user who may not open /dev/fuse", stderr,
		"mount "+mnt+": cannot open /dev/fuse: permission denied")
	if strings.Contains(stderr, "fusermount exited") {
		t.Errorf("the reason is still only fusermount's exit code: %q", stderr)
	}
	if isMounted(t, mnt) {
		runCmd(t, cmdOpts{}, "umount", "-l", mnt)
		t.Errorf("%s was left mounted", mnt)
	}
}
