package control

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nvmemfs/nvmemfs/nvcore"
)

func TestParseMountinfo(t *testing.T) {
	const info = `22 1 0:21 / /proc rw,nosuid shared:12 - proc proc rw
90 30 0:45 / /tmp/a\040b rw,nosuid,nodev,relatime shared:50 - fuse.nvmemfs nvmemfs rw,user_id=1000,group_id=1000,default_permissions
91 90 0:46 / /tmp/a\040b rw,nosuid,nodev,relatime - fuse.nvmemfs nvmemfs rw,user_id=0,group_id=0
92 30 0:47 / /tmp/other rw - tmpfs tmpfs rw
93 30 0:48 / /tmp/short rw
`
	got, err := parseMountinfo(strings.NewReader(info), "/tmp/a b")
	if err != nil {
		t.Fatal(err)
	}
	want := []Mount{{"/tmp/a b", FSType, 1000, "0:45"}, {"/tmp/a b", FSType, 0, "0:46"}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if got, _ := parseMountinfo(strings.NewReader(info), "/tmp/other"); len(got) != 1 || got[0].FSType != "tmpfs" || got[0].UserID != -1 {
		t.Errorf("/tmp/other: %v", got)
	}
	if got, _ := parseMountinfo(strings.NewReader(info), "/tmp/short"); len(got) != 0 {
		t.Errorf("a line without its separator was taken: %v", got)
	}
	for in, want := range map[string]string{`a\040b`: "a b", `\134x`: `\x`, `tab\011`: "tab\t", `end\04`: `end\04`, `plain`: "plain"} {
		if got := unescapeMountinfo(in); got != want {
			t.Errorf("unescape %q = %q, want %q", in, got, want)
		}
	}
}

func TestResolveFollowsSymlinks(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real")
	if err := os.Mkdir(real, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink("real", link); err != nil {
		t.Fatal(err)
	}
	a, err := Resolve(link)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Resolve(real + "/")
	if err != nil {
		t.Fatal(err)
	}
	if a != b || socketBase(a) != socketBase(b) {
		t.Errorf("the link resolves to %q, the folder to %q: two identities for one mountpoint", a, b)
	}
}

// useRuntimeBase points the socket folders at a fresh temporary tree.
func useRuntimeBase(t *testing.T) string {
	base := publicTempDir(t)
	for _, d := range []string{"run", "tmp"} {
		if err := os.Mkdir(filepath.Join(base, d), 0o1777); err != nil {
			t.Fatal(err)
		}
	}
	old := runtimeBase
	runtimeBase = base
	t.Cleanup(func() { runtimeBase = old })
	return base
}

func startServer(t *testing.T, mnt string) *Server {
	t.Helper()
	reg := nvcore.NewRegistry()
	s := NewServer(reg, func() error { return nil })
	if err := s.Listen(mnt); err != nil {
		t.Fatal(err)
	}
	s.Serve()
	t.Cleanup(s.Close)
	return s
}

// A folder someone else made first, or one others may write to, is
// refused with the reason, not used.
func TestRuntimeDirSquatted(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to make a folder of another user")
	}
	base := useRuntimeBase(t)
	dir := filepath.Join(base, "run", "nvmemfs")
	mnt := t.TempDir()
	reg := nvcore.NewRegistry()

	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	err := NewServer(reg, nil).Listen(mnt)
	if err == nil || !strings.Contains(err.Error(), "belongs to uid 65534") {
		t.Errorf("a folder of uid 65534: %v", err)
	}

	if err := os.Chown(dir, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	err = NewServer(reg, nil).Listen(mnt)
	if err == nil || !strings.Contains(err.Error(), "others may write there") {
		t.Errorf("a folder of mode 0777: %v", err)
	}

	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(t.TempDir(), dir); err != nil {
		t.Fatal(err)
	}
	err = NewServer(reg, nil).Listen(mnt)
	if err == nil || !strings.Contains(err.Error(), "not a folder") {
		t.Errorf("a symlink: %v", err)
	}
}

// One server a mountpoint: the second is refused while the first lives,
// and welcome once it let go; a socket file left by a killed server is no
// obstacle.
func TestOneServerAMountpoint(t *testing.T) {
	useRuntimeBase(t)
	mnt := t.TempDir()
	first := startServer(t, mnt)
	err := NewServer(nvcore.NewRegistry(), nil).Listen(mnt)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("(pid %d) already serves", os.Getpid())) {
		t.Fatalf("second server: %v", err)
	}
	first.Close()
	second := startServer(t, mnt)
	if resp, err := Call(mnt, Request{Op: "ls"}); err != nil || len(resp.Errors) > 0 {
		t.Errorf("ls: %v %v", resp, err)
	}
	// Killed (the lock goes with the process; the socket file stays).
	second.lock.Close()
	second.ln.SetUnlinkOnClose(false)
	second.Close()
	startServer(t, mnt)
	if _, err := Call(mnt, Request{Op: "ls"}); err != nil {
		t.Errorf("ls after a killed server's socket was left: %v", err)
	}
}

// Running out of descriptors must not end the accept loop: once they are
// back, requests are answered again.
func TestAcceptSurvivesEMFILE(t *testing.T) {
	useRuntimeBase(t)
	mnt := t.TempDir()
	startServer(t, mnt)
	// The server's log says when its accept failed.
	var logged lockedBuffer
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&logged, nil)))
	t.Cleanup(func() { slog.SetDefault(prev) })
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	// As `ulimit -n 64`: the test fills the table up to it, then connects
	// with what is left.
	low := lim
	low.Cur = 64
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	defer syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	var fill []int
	for {
		fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			if !errors.Is(err, unix.EMFILE) {
				t.Fatal(err)
			}
			break
		}
		fill = append(fill, fd)
	}
	// Free one: the client's socket takes it, the server's accept has none.
	// Another thread of this process (the runtime, a server goroutine) may
	// take the freed descriptor first; then free the next one and dial
	// again, a few times.
	sock, _ := findSocket(mnt)
	var conn *net.UnixConn
	var dialErr error
	for try := 0; try < 4 && len(fill) > 0; try++ {
		unix.Close(fill[len(fill)-1])
		fill = fill[:len(fill)-1]
		conn, dialErr = net.DialUnix("unix", nil, &net.UnixAddr{Name: sock, Net: "unix"})
		if !errors.Is(dialErr, unix.EMFILE) {
			break
		}
	}
	time.Sleep(50 * time.Millisecond) // the server's accept fails with EMFILE meanwhile
	for _, fd := range fill {
		unix.Close(fd)
	}
	if dialErr != nil {
		t.Fatalf("dial with one descriptor free: %v", dialErr)
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	json.NewEncoder(conn).Encode(Request{Op: "ls"})
	var resp Response
	if err := json.NewDecoder(conn).Decode(&resp); err != nil {
		t.Errorf("the connection made while the server had no descriptor: %v", err)
	}
	conn.Close()
	if _, err := Call(mnt, Request{Op: "ls"}); err != nil {
		t.Errorf("ls after running out of descriptors: %v", err)
	}
	if !strings.Contains(logged.String(), "too many open files") {
		t.Errorf("the server's accept never ran out of descriptors; its log:\n%s", logged.String())
	}
}

// lockedBuffer is a bytes.Buffer that a log handler and the test share.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// A request larger than the bound is refused with a reason; the server
// goes on.
func TestRequestTooLarge(t *testing.T) {
	useRuntimeBase(t)
	mnt := t.TempDir()
	startServer(t, mnt)
	big := Request{Op: "attach", Args: []string{strings.Repeat("x", maxRequest)}}
	resp, err := Call(mnt, big)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Errors) != 1 || !strings.Contains(resp.Errors[0], "bad request") {
		t.Errorf("errors %q", resp.Errors)
	}
	if _, err := Call(mnt, Request{Op: "ls"}); err != nil {
		t.Errorf("ls after: %v", err)
	}
}

// A user the server does not serve reads "permission denied", not a broken
// pipe, however much it sends.
func TestRefusedPeerReadsWhy(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to act as another user")
	}
	useRuntimeBase(t)
	mnt := t.TempDir()
	s := startServer(t, mnt)
	s.uid = 12345 // as if run by another user: root is still served
	sock, err := findSocket(mnt)
	if err != nil {
		t.Fatal(err)
	}
	// The folder is root's, mode 0700: hand the refused user a path in.
	if err := os.Chmod(filepath.Dir(sock), 0o711); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(sock, 0o777); err != nil {
		t.Fatal(err)
	}
	out, err := asUser(t, 65534, sock, 30)
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 30 {
		t.Fatalf("want 30 answers, got %q", out)
	}
	for i, line := range lines {
		if !strings.HasPrefix(line, "permission denied: only root and uid 12345") {
			t.Errorf("request %d: %q", i, line)
		}
	}
}

// asUser connects to sock n times as uid (in a child process: the
// credentials a socket carries are the process's), each time with a
// request 20000 bytes longer than the last (up to 580 kB, more than a socket buffer holds), and returns the replies, one a
// line.
func asUser(t *testing.T, uid int, sock string, n int) (string, error) {
	t.Helper()
	cmd := execHelper(t, "TestHelperClient", sock, fmt.Sprint(n))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestHelperClient is the child process of asUser.
func TestHelperClient(t *testing.T) {
	sock, count := os.Getenv(helperArg0), os.Getenv(helperArg1)
	if sock == "" {
		t.Skip("a helper process of TestRefusedPeerReadsWhy")
	}
	var n int
	fmt.Sscan(count, &n)
	for i := range n {
		conn, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: sock, Net: "unix"})
		if err != nil {
			fmt.Println("dial:", err)
			os.Exit(1)
		}
		writeErr := json.NewEncoder(conn).Encode(Request{Op: "ls", Args: []string{strings.Repeat("y", i*20000)}})
		var resp Response
		if err := json.NewDecoder(conn).Decode(&resp); err != nil {
			fmt.Println("read:", err, "write:", writeErr)
			os.Exit(1)
		}
		conn.Close()
		fmt.Println(strings.Join(resp.Errors, "; "))
	}
	os.Exit(0)
}

const helperArg0, helperArg1 = "NVMEMFS_CONTROL_HELPER_SOCK", "NVMEMFS_CONTROL_HELPER_PAD"

// execHelper runs one test of this binary as a child process, from a copy
// another user may execute (the go command's build folder is root's alone).
func execHelper(t *testing.T, test string, args ...string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	dir := publicTempDir(t)
	copyPath := filepath.Join(dir, "control.test")
	if err := os.WriteFile(copyPath, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(copyPath, "-test.run=^"+test+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperArg0+"="+args[0], helperArg1+"="+args[1])
	return cmd
}

// publicTempDir is a temporary folder that other users may enter, unlike
// t.TempDir's.
func publicTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "nvmemfs-control-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// udev's unbind and rebind of one device: an asynchronous detach and attach
// of x a moment apart take effect in that order, every time.
func TestAsyncDetachAttachInOrder(t *testing.T) {
	useRuntimeBase(t)
	mnt := t.TempDir()
	s := startServer(t, mnt)
	img := filepath.Join(t.TempDir(), "x.bin")
	if err := os.WriteFile(img, make([]byte, 64), 0o644); err != nil {
		t.Fatal(err)
	}
	attach := Request{Op: "attach", Args: []string{"file:" + img + ",name=x"}, Async: true}
	if _, err := Call(mnt, Request{Op: "attach", Args: attach.Args}); err != nil {
		t.Fatal(err)
	}
	for round := range 200 {
		for _, req := range []Request{{Op: "detach", Args: []string{"x"}, Async: true, IgnoreMissing: true}, attach} {
			if resp, err := Call(mnt, req); err != nil || len(resp.Errors) > 0 {
				t.Fatalf("round %d: %s: %v %v", round, req.Op, resp, err)
			}
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			s.async.mu.Lock()
			n := len(s.async.pending)
			s.async.mu.Unlock()
			if n == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("round %d: %d asynchronous requests still pending", round, n)
			}
			time.Sleep(time.Millisecond)
		}
		if _, err := s.reg.Device("x"); err != nil {
			t.Fatalf("round %d: after detach then attach, x is missing: %v", round, err)
		}
	}
}

// Jobs on different keys run at once; jobs sharing a key run in order.
func TestOrderedJobs(t *testing.T) {
	var q orderedJobs
	q.cond = sync.NewCond(&q.mu)
	release := make(chan struct{})
	var order []string
	var mu sync.Mutex
	record := func(s string) { mu.Lock(); order = append(order, s); mu.Unlock() }
	aStarted, bDone, a2Done := make(chan struct{}), make(chan struct{}), make(chan struct{})
	q.run([]string{"name:a"}, func() { close(aStarted); <-release; record("a1") })
	<-aStarted
	q.run([]string{"name:a", "hw:i2c-1"}, func() { record("a2"); close(a2Done) })
	q.run([]string{"name:b"}, func() { record("b"); close(bDone) })
	if !waitClosed(bDone, 5*time.Second) {
		t.Fatal("a job on b waited for a job on a")
	}
	if waitClosed(a2Done, 50*time.Millisecond) {
		t.Fatal("the second job on a ran before the first finished")
	}
	close(release)
	if !waitClosed(a2Done, 5*time.Second) {
		t.Fatal("the second job on a never ran")
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(order, " ") != "b a1 a2" {
		t.Errorf("order %v", order)
	}
}

func waitClosed(ch <-chan struct{}, d time.Duration) bool {
	select {
	case <-ch:
		return true
	case <-time.After(d):
		return false
	}
}

func TestConnectionID(t *testing.T) {
	for dev, want := range map[string]string{"0:45": "45", "0:1234567": "1234567", "8:1": "8388609"} {
		if got, err := connectionID(dev); err != nil || got != want {
			t.Errorf("connectionID(%q) = %q, %v; want %q", dev, got, err, want)
		}
	}
	for _, bad := range []string{"", "45", "a:b", "0:"} {
		if _, err := connectionID(bad); err == nil {
			t.Errorf("connectionID(%q): no error", bad)
		}
	}
}
