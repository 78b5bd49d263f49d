package fs

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

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

// testMode is one way the mount can serve its files. The mount tests run
// once in each (TestMain), as rclone's vfstest runs one suite against
// every cache mode; where an assertion must differ in a mode, the test
// says which and why (mode.cached, mode.cacheAll).
type testMode struct {
	name string
	// cached: the devices the tests attach through m.attach are cached
	// where they can be (word size and stride 1, no keepouts).
	cached bool
	// cacheAll: the mount is Options.CacheAll (every device cached).
	cacheAll bool
}

var modes = []testMode{
	{name: "default"},
	{name: "cache", cached: true},
	{name: "cache-all", cached: true, cacheAll: true},
}

// mode is the mode of the run in progress.
var mode = modes[0]

// TestMain runs every test once in each mode; NVMEMFS_FS_MODES (a
// comma-separated list of names) picks some. The -timeout is shared out
// between the modes (each run of the tests arms it anew, and the go
// command kills the binary, without the stacks a hang needs, a minute
// after the whole -timeout); -failfast stops at the first mode that fails.
func TestMain(m *testing.M) {
	flag.Parse()
	want := os.Getenv("NVMEMFS_FS_MODES")
	var run []testMode
	for _, md := range modes {
		if want == "" || strings.Contains(","+want+",", ","+md.name+",") {
			run = append(run, md)
		}
	}
	total, _ := flagValue("test.timeout").(time.Duration)
	failfast, _ := flagValue("test.failfast").(bool)
	deadline := time.Now().Add(total)
	code := 0
	for i, md := range run {
		if total > 0 {
			share := time.Until(deadline) / time.Duration(len(run)-i)
			flag.Set("test.timeout", share.String())
		}
		mode = md
		fmt.Printf("=== mode %s\n", md.name)
		if c := m.Run(); c != 0 {
			fmt.Printf("=== mode %s failed\n", md.name)
			code = c
			if failfast {
				break
			}
		}
	}
	os.Exit(code)
}

// flagValue is the value of a flag the testing package defines, or nil.
func flagValue(name string) any {
	if f := flag.Lookup(name); f != nil {
		if g, ok := f.Value.(flag.Getter); ok {
			return g.Get()
		}
	}
	return nil
}

// cacheable says whether a device configured as cfg can be cached.
func cacheable(cfg nvcore.Config) bool {
	return cfg.WordSize <= 1 && cfg.Stride <= 1 && len(cfg.Keepouts) == 0
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
	f, err := Mount(dir, reg, Options{CacheAll: mode.cacheAll, OnPanic: func(v any) {
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
	if mode.cached && cacheable(cfg) {
		cfg.Cache = true
	}
	if mode.cacheAll && !cacheable(cfg) {
		// The registry refuses it (TestCacheAllRefusesUncacheable).
		t.Skipf("mode %s: a device with a word size, a stride or keepouts cannot be cached, so not attached", mode.name)
	}
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

// openOrFirstIO opens path with flags and closes it, and returns the
// open's error. In cache-all mode no open reaches nvmemfs, so what sysfs
// refuses at open is refused by the first read or write instead: the open
// must succeed, and that call's error is returned (a 1-byte read for
// O_RDONLY, a 1-byte write at 0 otherwise; use it only where a refusal is
// expected).
func openOrFirstIO(path string, flags int) error {
	fd, err := syscall.Open(path, flags|syscall.O_CLOEXEC, 0)
	if err != nil || !mode.cacheAll {
		if err == nil {
			syscall.Close(fd)
		}
		return err
	}
	defer syscall.Close(fd)
	if flags&syscall.O_ACCMODE == syscall.O_RDONLY {
		_, err = syscall.Pread(fd, make([]byte, 1), 0)
	} else {
		_, err = syscall.Pwrite(fd, []byte{0}, 0)
	}
	if err == nil {
		return fmt.Errorf("cache-all: open and first I/O both succeeded")
	}
	return err
}

// dropPageCache drops the kernel's cached pages of path, as memory
// pressure would (POSIX_FADV_DONTNEED), so that the next read reaches
// nvmemfs.
func dropPageCache(t testing.TB, path string) {
	t.Helper()
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("drop the page cache of %s: %v", path, err)
	}
	defer syscall.Close(fd)
	if err := unix.Fadvise(fd, 0, 0, unix.FADV_DONTNEED); err != nil {
		t.Fatalf("drop the page cache of %s: %v", path, err)
	}
}

// pageCached says whether the kernel keeps a file of a device attached
// through m.attach in its page cache in this mode: every file in
// cache-all, nvmem and the cells in cache.
func pageCached(path string) bool {
	if mode.cacheAll {
		return true
	}
	return mode.cached && (strings.HasSuffix(path, "/nvmem") || strings.Contains(path, "/cells/"))
}
