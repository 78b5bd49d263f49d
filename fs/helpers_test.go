package fs

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nvmemfs/nvmemfs/nvcore"
	"github.com/nvmemfs/nvmemfs/nvcore/nvcoretest"
)

// requireFUSE skips without /dev/fuse, except in CI, where the FUSE tests
// must run for real.
func requireFUSE(t testing.TB) {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI needs /dev/fuse: %v", err)
		}
		t.Skipf("no /dev/fuse: %v", err)
	}
}

// mounted is a test mount of a registry.
type mounted struct {
	dir string
	reg *nvcore.Registry
	fs  *FS
}

// mountTest mounts a fresh registry on a temporary folder. Cleanup removes
// every device, unmounts, fails the test on any FUSE handler panic, and
// fails it too if the mount is still there (after unmounting it lazily).
func mountTest(t testing.TB) *mounted {
	t.Helper()
	requireFUSE(t)
	dir := t.TempDir()
	reg := nvcore.NewRegistry()
	var mu sync.Mutex
	var panics []any
	f, err := Mount(dir, reg, Options{OnPanic: func(v any) {
		mu.Lock()
		panics = append(panics, v)
		mu.Unlock()
	}})
	if err != nil {
		t.Fatalf("mount: %v", err)
	}
	t.Cleanup(func() {
		if err := reg.RemoveAll(); err != nil {
			t.Errorf("remove all: %v", err)
		}
		if err := f.Unmount(); err != nil {
			t.Errorf("unmount: %v", err)
		}
		if isMounted(dir) {
			exec.Command("umount", "-l", dir).Run()
			t.Errorf("%s still mounted after Unmount", dir)
		}
		mu.Lock()
		defer mu.Unlock()
		for _, p := range panics {
			t.Errorf("FUSE handler panicked: %v", p)
		}
	})
	return &mounted{dir: dir, reg: reg, fs: f}
}

func isMounted(dir string) bool {
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) > 1 && fields[1] == dir {
			return true
		}
	}
	return false
}

// attach registers a Memory provider holding data.
func (m *mounted) attach(t testing.TB, cfg nvcore.Config, data []byte) (*nvcore.Device, *nvcoretest.Memory) {
	t.Helper()
	mem := nvcoretest.NewMemory(data)
	d, err := m.reg.Register(cfg, mem)
	if err != nil {
		t.Fatalf("register %q: %v", cfg.Name, err)
	}
	return d, mem
}

func (m *mounted) path(parts ...string) string {
	return m.dir + "/" + strings.Join(parts, "/")
}

// pattern is len bytes that differ from their neighbours and from their
// offset, so a misplaced read shows.
func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) ^ seed
	}
	return b
}

func openFile(t *testing.T, path string, flags int) int {
	t.Helper()
	fd, err := syscall.Open(path, flags|syscall.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	return fd
}

func errnoOf(err error) syscall.Errno {
	var e syscall.Errno
	if errors.As(err, &e) {
		return e
	}
	return 0
}

// openFDs counts this process's open descriptors.
func openFDs(t *testing.T) int {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

// settledGoroutines waits up to two seconds for the goroutine count to fall
// to at most want, and returns the last count.
func settledGoroutines(want int) int {
	n := runtime.NumGoroutine()
	for deadline := time.Now().Add(2 * time.Second); n > want && time.Now().Before(deadline); n = runtime.NumGoroutine() {
		time.Sleep(20 * time.Millisecond)
	}
	return n
}

func stackDump() string {
	buf := make([]byte, 1<<20)
	return string(buf[:runtime.Stack(buf, true)])
}
