package main

// The life of a server around its mountpoint: one server a mountpoint
// however it is named, restart after the server was killed, and the
// control socket's folder.

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nvmemfs/nvmemfs/backends/fault"
)

// killServer kills the server of mnt with SIGKILL and waits until it is
// gone; its mount stays behind, dead.
func killServer(t *testing.T, mnt string) {
	t.Helper()
	pids := serverPIDs(t, mnt)
	if len(pids) != 1 {
		t.Fatalf("servers of %s: %v, want one", mnt, pids)
	}
	if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Gone means exited: a zombie, or reaped. A dying process has an empty
	// command line (its memory goes first) but holds its descriptors (its
	// socket, its lock, /dev/fuse) a moment longer.
	stat := fmt.Sprintf("/proc/%d/stat", pids[0])
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile(stat)
		if i := strings.LastIndexByte(string(b), ')'); err != nil || i >= 0 && i+2 < len(b) && b[i+2] == 'Z' {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("server %d survived SIGKILL", pids[0])
		}
		time.Sleep(5 * time.Millisecond)
	}
	// statfs always reaches the server (stat may be answered from the
	// attribute cache for a second). The leader of the server's threads
	// is a zombie before the last of them has let go of /dev/fuse: until
	// then a request may still be taken, and fail with EIO as its reader
	// dies. Wait for the connection to be gone.
	for {
		var st syscall.Statfs_t
		err := syscall.Statfs(mnt, &st)
		if errors.Is(err, syscall.ENOTCONN) || errors.Is(err, syscall.ECONNABORTED) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("statfs of the killed server's mount: %v, want ENOTCONN or ECONNABORTED", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A mountpoint named through a symlink is the same mountpoint: a second
// server is refused with nothing stacked, and commands given the link
// reach the server of the real folder.
func TestMountpointThroughSymlink(t *testing.T) {
	img := writeFile(t, t.TempDir(), "x.bin", pattern(256, 1))
	mnt := mountImages(t, "file:"+img+",name=x")
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(mnt, link); err != nil {
		t.Fatal(err)
	}
	stderr := mustFail(t, nv(t, "mount", "--demo", link))
	wantContains(t, "mount through a link to a served folder", stderr, "already serves "+mnt)
	if n := mountCount(t, mnt); n != 1 {
		t.Errorf("%d mounts on %s, want 1", n, mnt)
	}
	if got := lsJSON(t, cmdOpts{}, "-m", link); len(got) != 1 || got["x"].Name != "x" {
		t.Errorf("ls through the link: %v", got)
	}
	mustOK(t, nv(t, "unmount", link))
	if isMounted(t, mnt) {
		t.Errorf("unmount through the link left %s mounted", mnt)
	}
	if pids := waitServerGone(t, mnt, 10*time.Second); len(pids) > 0 {
		t.Errorf("unmount through the link left the server %v", pids)
	}
}

// A live mount of another server (one whose control socket this command
// cannot reach) is refused, not mounted over.
func TestMountOverLiveMountRefused(t *testing.T) {
	img := writeFile(t, t.TempDir(), "x.bin", pattern(256, 2))
	mnt := mountImages(t, "file:"+img+",name=x")
	// Hide the server's socket and lock, as if it ran as another user.
	sock := findServerSocket(t)
	lock := strings.TrimSuffix(sock, ".sock") + ".lock"
	for _, p := range []string{sock, lock} {
		if err := os.Rename(p, p+".hidden"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Rename(p+".hidden", p) })
	}
	stderr := mustFail(t, nv(t, "mount", "--demo", mnt))
	wantContains(t, "mount over a live mount", stderr, "already mounted by another nvmemfs server")
	if n := mountCount(t, mnt); n != 1 {
		t.Errorf("%d mounts on %s, want 1", n, mnt)
	}
	for _, p := range []string{sock, lock} {
		if err := os.Rename(p+".hidden", p); err != nil {
			t.Fatal(err)
		}
	}
}

// findServerSocket is the one control socket in root's folder that a test
// server made (the tests run their servers as root).
func findServerSocket(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the control socket's folder is root's only as root")
	}
	before := time.Now().Add(-time.Minute)
	entries, err := os.ReadDir("/run/nvmemfs")
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, e := range entries {
		info, err := e.Info()
		if err == nil && info.Mode()&os.ModeSocket != 0 && info.ModTime().After(before) {
			found = append(found, filepath.Join("/run/nvmemfs", e.Name()))
		}
	}
	if len(found) == 0 {
		t.Fatal("no control socket in /run/nvmemfs")
	}
	// Other tests may run servers at the same time: take the newest.
	newest := found[0]
	for _, p := range found[1:] {
		a, _ := os.Stat(p)
		b, _ := os.Stat(newest)
		if a.ModTime().After(b.ModTime()) {
			newest = p
		}
	}
	return newest
}

// kill -9 of the server leaves a dead mount (ENOTCONN). The next `mount`
// cleans it and serves, with one mount on the folder, not two; `ls` says
// the mount is dead; `unmount` cleans a dead mount too.
func TestRestartAfterKill(t *testing.T) {
	img := writeFile(t, t.TempDir(), "x.bin", pattern(256, 3))
	mnt := mountImages(t, "file:"+img+",name=x")
	killServer(t, mnt)

	stderr := mustFail(t, nv(t, "ls", "-m", mnt))
	wantContains(t, "ls on a dead mount", stderr, "the mount is dead")

	mustOK(t, nv(t, "mount", "--demo", mnt))
	if n := mountCount(t, mnt); n != 1 {
		t.Errorf("%d mounts on %s after the restart, want 1", n, mnt)
	}
	if names := readDirNames(t, mnt); len(names) != 6 {
		t.Errorf("the restarted mount lists %q, want the 6 demo devices", names)
	}

	killServer(t, mnt)
	r := mustOK(t, nv(t, "unmount", mnt))
	wantContains(t, "unmount of a dead mount", r.stderr, "the mount was dead")
	if isMounted(t, mnt) {
		t.Errorf("unmount left the dead mount on %s", mnt)
	}
	// What systemd's restart runs next works too.
	mustOK(t, runCmd(t, cmdOpts{}, "mkdir", "-p", mnt))
	mustOK(t, nv(t, "mount", "--demo", mnt))
}

// The control socket lives in a folder only the server's user may use:
// another user is told so, not left to guess.
func TestControlSocketFolder(t *testing.T) {
	img := writeFile(t, t.TempDir(), "x.bin", pattern(256, 4))
	mnt := mountImages(t, "file:"+img+",name=x")
	sock := findServerSocket(t)
	dir := filepath.Dir(sock)
	st, err := os.Lstat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o700 || !st.IsDir() || st.Sys().(*syscall.Stat_t).Uid != 0 {
		t.Errorf("%s: mode %v, uid %d; want a folder of root's, mode 0700", dir, st.Mode(), st.Sys().(*syscall.Stat_t).Uid)
	}
	r := runCmd(t, cmdOpts{}, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", nvmemfsBin, "ls", "-m", mnt)
	if r.code == 0 {
		t.Fatalf("another user listed root's mount: %v", r)
	}
	wantContains(t, "ls by another user", r.stderr, "permission denied")
}

// A provider stuck in a call keeps the shutdown waiting: SIGTERM starts
// it, the log names the device and what its removal waits for, and a
// second SIGTERM ends the server at once, with the mount detached rather
// than left dead.
func TestSecondSignalEndsAStuckShutdown(t *testing.T) {
	// A fault provider whose first read sleeps close to a minute.
	seed := uint64(0)
	for ; fault.New(fault.Options{Size: 4096, Seed: seed, DelayRate: 1, MaxDelay: time.Minute}).Delay(0) < 50*time.Second; seed++ {
	}
	logPath := filepath.Join(t.TempDir(), "server.log")
	conf := writeFile(t, t.TempDir(), "devices.conf", []byte(fmt.Sprintf("fault:4096,seed=%d,delays=1,max-delay=1m,xfer=4096,name=stuck\n", seed)))
	mnt := mountNV(t, "--config", conf, "--log", logPath)
	pids := serverPIDs(t, mnt)
	if len(pids) != 1 {
		t.Fatalf("servers %v", pids)
	}

	reader := exec.Command("dd", "if="+filepath.Join(mnt, "stuck", "nvmem"), "of=/dev/null", "bs=4096", "count=1", "status=none")
	if err := reader.Start(); err != nil {
		t.Fatal(err)
	}
	defer reader.Process.Kill()
	time.Sleep(300 * time.Millisecond) // dd's read reaches the provider

	syscall.Kill(pids[0], syscall.SIGTERM)
	deadline := time.Now().Add(15 * time.Second)
	for {
		log, _ := os.ReadFile(logPath)
		if strings.Contains(string(log), "removal is slow") && strings.Contains(string(log), "device=stuck") &&
			strings.Contains(string(log), `waiting_for="calls inside the provider to return"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line names the stuck removal:\n%s", log)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(serverPIDs(t, mnt)) != 1 {
		t.Fatal("the server ended by itself while a provider call is stuck")
	}
	syscall.Kill(pids[0], syscall.SIGTERM)
	if left := waitServerGone(t, mnt, 5*time.Second); len(left) > 0 {
		t.Fatalf("the server survived a second SIGTERM: %v", left)
	}
	if isMounted(t, mnt) {
		t.Errorf("the second SIGTERM left %s mounted", mnt)
	}
	log, _ := os.ReadFile(logPath)
	wantContains(t, "the server's log", string(log), "second signal: exiting without waiting for the removals")
	if strings.Contains(string(log), "abort the FUSE connection") {
		t.Errorf("the connection was not aborted:\n%s", log)
	}
	// The read stuck in the provider failed with the connection, at once.
	waited := make(chan error, 1)
	go func() { waited <- reader.Wait() }()
	select {
	case err := <-waited:
		if err == nil {
			t.Error("dd of the stuck device succeeded")
		}
	case <-time.After(5 * time.Second):
		t.Error("dd still waits for its read after the server ended")
	}
}

// A server out of descriptors (ulimit -n, many devices) refuses the attach
// that needs one more, with the reason, and goes on answering: several
// commands at once while the table is full, then detach and attach again.
// (Before, one failed accept ended the accept loop, and every later
// command hung.)
func TestServerOutOfDescriptors(t *testing.T) {
	requireFUSE(t)
	mnt := t.TempDir()
	t.Cleanup(func() { cleanupMount(t, mnt) })
	mustOK(t, runCmd(t, cmdOpts{}, "sh", "-c", `ulimit -n 40 && exec "$0" mount "$1"`, nvmemfsBin, mnt))
	dir := t.TempDir()
	attached := 0
	var lastErr string
	for i := range 100 {
		img := writeFile(t, dir, fmt.Sprintf("d%d.bin", i), pattern(64, byte(i)))
		r := nv(t, "attach", "-m", mnt, fmt.Sprintf("file:%s,name=d%d", img, i))
		if r.code != 0 {
			lastErr = r.stderr
			break
		}
		attached++
	}
	if attached == 0 || attached == 100 {
		t.Fatalf("attached %d devices under ulimit -n 40 (last error %q)", attached, lastErr)
	}
	wantContains(t, "the attach past the limit", lastErr, "too many open files")

	var wg sync.WaitGroup
	results := make([]result, 6)
	for i := range results {
		wg.Add(1)
		go func() { defer wg.Done(); results[i] = nv(t, "ls", "-m", mnt) }()
	}
	wg.Wait()
	for i, r := range results {
		if r.code != 0 {
			t.Errorf("ls %d with the descriptor table full: %v", i, r)
		}
	}
	mustOK(t, nv(t, "detach", "-m", mnt, "d0", "d1"))
	img := writeFile(t, dir, "again.bin", pattern(64, 99))
	mustOK(t, nv(t, "attach", "-m", mnt, "file:"+img+",name=again"))
	if got := lsJSON(t, cmdOpts{}, "-m", mnt); len(got) != attached-1 {
		t.Errorf("ls lists %d devices, want %d", len(got), attached-1)
	}
}

// A user's server keeps its control socket in /tmp/nvmemfs-UID when the
// user has no /run/user/UID. Another user who made that folder first
// does not get the socket: the server refuses the folder and says why,
// and works once the folder is gone. This also runs the whole non-root
// path: fusermount3, the socket, ls and unmount by that user.
func TestSquattedSocketFolder(t *testing.T) {
	requireFUSE(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root to act as two other users")
	}
	if _, err := exec.LookPath("fusermount3"); err != nil {
		t.Skip("no fusermount3 (package fuse3): an unprivileged user cannot mount")
	}
	if st, err := os.Stat("/dev/fuse"); err != nil || st.Mode().Perm()&0o006 != 0o006 {
		msg := "/dev/fuse is not open to other users (udev makes it 0666 on Debian; .ci/run does too)"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	const user, squatter = 65534, 65533
	if _, err := os.Stat(fmt.Sprintf("/run/user/%d", user)); err == nil {
		t.Skipf("/run/user/%d exists: the user's sockets go there", user)
	}
	_, bin, mnt := userSandbox(t, user)
	as := func(uid int, args ...string) result {
		return runCmd(t, cmdOpts{}, "setpriv", append([]string{
			fmt.Sprintf("--reuid=%d", uid), fmt.Sprintf("--regid=%d", uid), "--clear-groups", bin}, args...)...)
	}
	t.Cleanup(func() {
		if isMounted(t, mnt) {
			as(user, "unmount", mnt)
		}
		if isMounted(t, mnt) {
			runCmd(t, cmdOpts{}, "umount", "-l", mnt)
			t.Errorf("%s was left mounted", mnt)
		}
	})

	folder := fmt.Sprintf("/tmp/nvmemfs-%d", user)
	os.RemoveAll(folder)
	t.Cleanup(func() { os.RemoveAll(folder) })
	if err := os.Mkdir(folder, 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chown(folder, squatter, squatter)
	os.Chmod(folder, 0o777)

	stderr := mustFail(t, as(user, "mount", "--demo", mnt))
	wantContains(t, "mount with a squatted socket folder", stderr, folder, fmt.Sprintf("belongs to uid %d", squatter))
	if isMounted(t, mnt) {
		t.Fatal("the refused server left its mount")
	}

	os.RemoveAll(folder)
	mustOK(t, as(user, "mount", "--demo", mnt))
	st, err := os.Stat(folder)
	if err != nil || st.Mode().Perm() != 0o700 || st.Sys().(*syscall.Stat_t).Uid != user {
		t.Errorf("%s: %v, %v; want a folder of uid %d, mode 0700", folder, st.Mode(), err, user)
	}
	if r := as(user, "ls", "-m", mnt); r.code != 0 || !strings.Contains(r.stdout, "demo-eeprom") {
		t.Errorf("ls by the server's user: %v", r)
	}
	// The squatter cannot reach it, and is told so.
	r := as(squatter, "ls", "-m", mnt)
	if r.code == 0 {
		t.Errorf("another user listed the server's devices: %v", r)
	}
	mustOK(t, as(user, "unmount", mnt))
	if isMounted(t, mnt) {
		t.Error("unmount by the server's user left the mount")
	}
}

// userSandbox makes what a test needs to run nvmemfs as another user: a
// folder anyone may enter (t.TempDir's may not be), a copy of the binary
// in it, and a mountpoint in it owned by user.
func userSandbox(t *testing.T, user int) (shared, bin, mnt string) {
	t.Helper()
	shared, err := os.MkdirTemp("", "nvmemfs-user-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(shared) })
	if err := os.Chmod(shared, 0o755); err != nil {
		t.Fatal(err)
	}
	bin = filepath.Join(shared, "nvmemfs")
	data, err := os.ReadFile(nvmemfsBin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	mnt = filepath.Join(shared, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(mnt, user, user); err != nil {
		t.Fatal(err)
	}
	return shared, bin, mnt
}
