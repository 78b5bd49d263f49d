// Package looptest sets up real loop devices for tests of block devices:
// an image file behind /dev/loopN, attached with losetup and detached when
// the test ends.
//
// Loop devices need root. Without root a test is skipped, with a message
// that says so, unless CI is set: in CI (CI=true) a missing loop facility
// fails the test, so that the tests never pass by not running.
package looptest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Require skips the test when loop devices cannot be set up here, or fails
// it in CI.
func Require(t testing.TB) {
	t.Helper()
	why := ""
	switch {
	case os.Geteuid() != 0:
		why = "loop devices need root"
	case !exists("/dev/loop-control"):
		why = "no /dev/loop-control (no loop driver)"
	default:
		if _, err := exec.LookPath("losetup"); err != nil {
			why = "no losetup (util-linux mount package)"
		}
	}
	if why == "" {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("CI must run the loop device tests: %s", why)
	}
	t.Skipf("skipped: %s (CI=true makes this a failure)", why)
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// Image writes content to a new image file in a temporary folder and
// returns its path.
func Image(t testing.TB, content []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(path, content, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// Attach attaches image to a free loop device with losetup and the given
// extra flags (-r for read-only, -b 4096 for 4096-byte sectors), and
// returns the device's path. The device is detached when the test ends
// (losetup -d; a device a test already detached is left alone).
func Attach(t testing.TB, image string, flags ...string) string {
	t.Helper()
	Require(t)
	args := append(append([]string{"--find", "--show"}, flags...), image)
	out, err := exec.Command("losetup", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("losetup %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { Detach(t, dev) })
	waitNode(t, dev)
	return dev
}

// waitNode waits for the device node: with devtmpfs it is there at once.
func waitNode(t testing.TB, dev string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !exists(dev); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("losetup made %s, but the node did not appear", dev)
		}
	}
}

// Detach detaches dev with losetup -d if it is still attached to a file.
// A device held open is detached by the kernel when its last user closes
// it (it sets auto-clear).
func Detach(t testing.TB, dev string) {
	t.Helper()
	if !Attached(dev) {
		return
	}
	out, err := exec.Command("losetup", "-d", dev).CombinedOutput()
	if err != nil && Attached(dev) {
		t.Errorf("losetup -d %s: %v\n%s", dev, err, out)
	}
}

// Attached reports whether dev has a backing file: the kernel shows
// /sys/class/block/loopN/loop/ only then.
func Attached(dev string) bool {
	return exists(filepath.Join("/sys/class/block", filepath.Base(dev), "loop", "backing_file"))
}

// FakeSysfs makes a sysfs tree that knows dev as the kernel does, at
// dev/block/MAJ:MIN, with the device's size (in 512-byte sectors, from
// the real sysfs) and, unless forceRO is "", a force_ro attribute holding
// it, as on an eMMC boot partition. It returns the tree's root and the
// force_ro path. Removing the MAJ:MIN folder is the kernel removing the
// device.
func FakeSysfs(t testing.TB, dev, forceRO string) (root, forceROPath string) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(dev, &st); err != nil {
		t.Fatal(err)
	}
	root = t.TempDir()
	rdev := uint64(st.Rdev) // uint32 on mips
	dir := filepath.Join(root, "dev", "block", fmt.Sprintf("%d:%d", unix.Major(rdev), unix.Minor(rdev)))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	size, err := os.ReadFile(filepath.Join("/sys/class/block", filepath.Base(dev), "size"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "size"), size, 0o444); err != nil {
		t.Fatal(err)
	}
	forceROPath = filepath.Join(dir, "force_ro")
	if forceRO != "" {
		if err := os.WriteFile(forceROPath, []byte(forceRO+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root, forceROPath
}
