package block

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nvmemfs/nvmemfs/backends/block/looptest"
	"github.com/nvmemfs/nvmemfs/nvcore"
)

func pattern(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 3))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// openDevice opens dev writable and closes it when the test ends.
func openDevice(t *testing.T, o Options) *Device {
	t.Helper()
	p, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	d, ok := p.(*Device)
	if !ok {
		p.Close()
		t.Fatalf("Open(%+v) gave a %T, want a writable *Device", o, p)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func readForceRO(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// setHook sets the hook that runs with force_ro lifted, for this test.
func setHook(t *testing.T, fn func()) {
	testHookLifted = fn
	t.Cleanup(func() { testHookLifted = nil })
}

// TestGeometry: size, logical block size and the kernel's view agree with
// the real sysfs of this machine, for 512- and 4096-byte sectors.
func TestGeometry(t *testing.T) {
	for _, bs := range []int{512, 4096} {
		t.Run(fmt.Sprint(bs), func(t *testing.T) {
			img := looptest.Image(t, pattern(1, 1<<20))
			dev := looptest.Attach(t, img, "--sector-size", fmt.Sprint(bs))
			d := openDevice(t, Options{Path: dev})
			if d.Size() != 1<<20 || d.BlockSize() != bs {
				t.Errorf("size %d, block size %d; want %d, %d", d.Size(), d.BlockSize(), 1<<20, bs)
			}
			sys := filepath.Join("/sys/class/block", filepath.Base(dev))
			lbs, _ := os.ReadFile(filepath.Join(sys, "queue/logical_block_size"))
			sectors, _ := os.ReadFile(filepath.Join(sys, "size"))
			if got := strings.TrimSpace(string(lbs)); got != fmt.Sprint(d.BlockSize()) {
				t.Errorf("sysfs logical_block_size %s, BLKSSZGET %d", got, d.BlockSize())
			}
			if got := strings.TrimSpace(string(sectors)); got != fmt.Sprint(d.Size()/512) {
				t.Errorf("sysfs size %s sectors, BLKGETSIZE64 %d bytes", got, d.Size())
			}
			if d.ForceRO() != "" {
				t.Errorf("a loop device has no force_ro, got %s", d.ForceRO())
			}
		})
	}
}

// TestPartialLastBlock: a device that ends inside a logical block (4096-byte
// sectors over 64 KiB + 512 bytes; the kernel reports the odd size) is
// served up to its last whole block, where every read and write works;
// the kernel refuses I/O on the part.
func TestPartialLastBlock(t *testing.T) {
	content := pattern(7, 64<<10+512)
	dev := looptest.Attach(t, looptest.Image(t, content), "--sector-size", "4096")
	d := openDevice(t, Options{Path: dev})
	if d.Size() != 64<<10 {
		t.Fatalf("size %d, want %d (the whole 4096-byte blocks)", d.Size(), 64<<10)
	}
	got := make([]byte, 10)
	if n, err := d.ReadAt(got, d.Size()-10); err != nil || n != 10 || !bytes.Equal(got, content[d.Size()-10:d.Size()]) {
		t.Errorf("read of the last 10 bytes: %d, %v", n, err)
	}
	if n, err := d.WriteAt([]byte("END"), d.Size()-3); err != nil || n != 3 {
		t.Errorf("write of the last 3 bytes: %d, %v", n, err)
	}
}

// TestUnalignedWrites: writes of any length at any offset, through the
// core, land exactly there (the rest of each touched block kept), as the
// image behind the loop device shows; reads at any offset return the
// image's bytes. For 512- and 4096-byte sectors, and for a window.
func TestUnalignedWrites(t *testing.T) {
	for _, c := range []struct {
		bs           int
		offset, size int64
	}{{512, 0, 0}, {4096, 0, 0}, {512, 0x3e00 + 7, 0x2000}, {4096, 0x1001, 0x5000}} {
		t.Run(fmt.Sprintf("bs%d-window%#x+%#x", c.bs, c.offset, c.size), func(t *testing.T) {
			const total = 256 << 10
			want := pattern(2, total)
			img := looptest.Image(t, want)
			dev := looptest.Attach(t, img, "--sector-size", fmt.Sprint(c.bs))
			p := openDevice(t, Options{Path: dev, Offset: c.offset, Size: c.size})
			reg := nvcore.NewRegistry()
			t.Cleanup(func() { reg.RemoveAll() })
			d, err := reg.Register(nvcore.Config{Name: "blk"}, p)
			if err != nil {
				t.Fatal(err)
			}
			size := d.Size()
			r := rand.New(rand.NewPCG(9, 9))
			writes := []struct{ off, n int64 }{{0, 1}, {1, 1}, {511, 2}, {size - 1, 1}, {100, 70000}, {4095, 4098}, {0, size}}
			for range 20 {
				off := r.Int64N(size)
				writes = append(writes, struct{ off, n int64 }{off, 1 + r.Int64N(min(size-off, 150000))})
			}
			for i, w := range writes {
				w.n = min(w.n, size-w.off)
				data := pattern(uint64(100+i), int(w.n))
				if n, err := d.WriteAt(data, w.off); err != nil || n != len(data) {
					t.Fatalf("write %d bytes at %#x: %d, %v", w.n, w.off, n, err)
				}
				copy(want[c.offset+w.off:], data)
			}
			got, err := os.ReadFile(img)
			if err != nil {
				t.Fatal(err)
			}
			if i := firstDiff(got, want); i >= 0 {
				t.Fatalf("the image differs from what was written at byte %#x", i)
			}
			for i := range 20 {
				off := r.Int64N(size)
				n := 1 + r.Int64N(min(size-off, 200000))
				buf := make([]byte, n)
				if _, err := d.ReadAt(buf, off); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(buf, want[c.offset+off:c.offset+off+n]) {
					t.Fatalf("read %d: %d bytes at %#x differ from the image", i, n, off)
				}
			}
		})
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	if len(a) != len(b) {
		return min(len(a), len(b))
	}
	return -1
}

// TestNotABlockDevice: a regular file, a character device, a directory
// and a missing path are refused with a clear error (ErrInvalid, EINVAL);
// a link to a loop device is followed.
func TestNotABlockDevice(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "image.bin")
	os.WriteFile(file, make([]byte, 4096), 0o644)
	for _, c := range []struct{ path, want string }{
		{file, "is a regular file (use file:"},
		{"/dev/null", "is a character device"},
		{dir, "is a directory"},
	} {
		_, err := Open(Options{Path: c.path})
		if !errors.Is(err, nvcore.ErrInvalid) || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "not a block device") {
			t.Errorf("Open(%s): %v, want ErrInvalid saying %q", c.path, err, c.want)
		}
	}
	if _, err := Open(Options{Path: filepath.Join(dir, "missing")}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open of a missing path: %v, want ENOENT", err)
	}
	if _, err := Open(Options{}); !errors.Is(err, nvcore.ErrInvalid) {
		t.Errorf("Open of no path: %v", err)
	}

	dev := looptest.Attach(t, looptest.Image(t, make([]byte, 64<<10)))
	link := filepath.Join(dir, "by-name-u-boot-env")
	if err := os.Symlink(dev, link); err != nil {
		t.Fatal(err)
	}
	d := openDevice(t, Options{Path: link})
	if d.Path() != dev {
		t.Errorf("the link resolved to %s, want %s", d.Path(), dev)
	}
	for _, o := range []Options{{Path: dev, Offset: 64 << 10}, {Path: dev, Offset: 1, Size: 64 << 10}, {Path: dev, Offset: -1}} {
		if _, err := Open(o); !errors.Is(err, nvcore.ErrInvalid) {
			t.Errorf("Open(%+v): %v, want ErrInvalid", o, err)
		}
	}
}

// TestReadOnlyLoop: a loop device set up with losetup -r is served
// read-only, saying why; with ro asked for, the same. The core then has no
// writer (EOPNOTSUPP to library callers, EACCES at open through FUSE).
func TestReadOnlyLoop(t *testing.T) {
	content := pattern(3, 64<<10)
	dev := looptest.Attach(t, looptest.Image(t, content), "-r")
	p, err := Open(Options{Path: dev})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ro, ok := p.(*ReadOnlyDevice)
	if !ok {
		t.Fatalf("Open of a read-only loop gave a %T", p)
	}
	if !strings.Contains(ro.Reason(), "read-only (BLKROGET") {
		t.Errorf("reason %q", ro.Reason())
	}
	buf := make([]byte, 1000)
	if _, err := ro.ReadAt(buf, 3); err != nil || !bytes.Equal(buf, content[3:1003]) {
		t.Errorf("read: %v", err)
	}
	reg := nvcore.NewRegistry()
	defer reg.RemoveAll()
	d, err := reg.Register(nvcore.Config{Name: "ro"}, p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.WriteAt([]byte{1}, 0); !errors.Is(err, nvcore.ErrNotSupported) && !errors.Is(err, nvcore.ErrReadOnly) {
		t.Errorf("write through the core: %v", err)
	}
}

// TestKernelRefusesWrite: a device the kernel makes read-only after it
// was opened (blockdev --setro) fails the write with ErrReadOnly (EPERM),
// the kernel's own EPERM inside, and nothing changes.
func TestKernelRefusesWrite(t *testing.T) {
	content := pattern(4, 64<<10)
	img := looptest.Image(t, content)
	dev := looptest.Attach(t, img)
	d := openDevice(t, Options{Path: dev})
	blockdev(t, "--setro", dev)
	defer blockdev(t, "--setrw", dev)
	_, err := d.WriteAt([]byte("xyz"), 10)
	if !errors.Is(err, nvcore.ErrReadOnly) || !errors.Is(err, syscall.EPERM) {
		t.Errorf("write to a device set read-only: %v, want ErrReadOnly wrapping EPERM", err)
	}
	if got, _ := os.ReadFile(img); !bytes.Equal(got, content) {
		t.Error("the image changed")
	}
}

func blockdev(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("blockdev", args...).CombinedOutput(); err != nil {
		t.Fatalf("blockdev %v: %v\n%s", args, err, out)
	}
}

// TestForceRO: an eMMC boot partition's force_ro (here a fake sysfs tree
// beside a real loop device) is lifted around each write and restored
// after it: when it succeeds, when the kernel refuses it, when the
// restore fails (then Close restores it), when the device is removed in
// the middle, and when a detach comes during a long write. A force_ro of 0
// is left alone.
func TestForceRO(t *testing.T) {
	t.Run("lifted and restored", func(t *testing.T) {
		dev := looptest.Attach(t, looptest.Image(t, make([]byte, 64<<10)))
		root, fro := looptest.FakeSysfs(t, dev, "1")
		d := openDevice(t, Options{Path: dev, SysfsRoot: root})
		if d.ForceRO() != fro {
			t.Fatalf("force_ro %q, want %q", d.ForceRO(), fro)
		}
		var during []string
		setHook(t, func() { during = append(during, readForceRO(t, fro)) })
		for i := range 3 {
			if _, err := d.WriteAt([]byte("abc"), int64(100*i)); err != nil {
				t.Fatal(err)
			}
			if got := readForceRO(t, fro); got != "1" {
				t.Errorf("force_ro after write %d: %s, want 1", i, got)
			}
		}
		if strings.Join(during, ",") != "0,0,0" {
			t.Errorf("force_ro during the writes: %v, want 0 each time", during)
		}
		// Reads leave it alone.
		during = nil
		d.ReadAt(make([]byte, 10), 0)
		if len(during) != 0 || readForceRO(t, fro) != "1" {
			t.Errorf("a read touched force_ro")
		}
	})

	t.Run("zero left alone", func(t *testing.T) {
		dev := looptest.Attach(t, looptest.Image(t, make([]byte, 64<<10)))
		root, fro := looptest.FakeSysfs(t, dev, "0")
		d := openDevice(t, Options{Path: dev, SysfsRoot: root})
		var during string
		setHook(t, func() { during = readForceRO(t, fro) })
		if _, err := d.WriteAt([]byte("abc"), 0); err != nil {
			t.Fatal(err)
		}
		if during != "0" || readForceRO(t, fro) != "0" {
			t.Errorf("force_ro 0: %s during, %s after", during, readForceRO(t, fro))
		}
	})

	t.Run("restored when the write fails", func(t *testing.T) {
		// The kernel holds the loop read-only, and force_ro says 1: an
		// eMMC boot partition as attached. The fake force_ro does not
		// reach the kernel, so the write fails, as it would if the card
		// refused it.
		content := pattern(5, 64<<10)
		img := looptest.Image(t, content)
		dev := looptest.Attach(t, img)
		blockdev(t, "--setro", dev)
		defer blockdev(t, "--setrw", dev)
		root, fro := looptest.FakeSysfs(t, dev, "1")
		d := openDevice(t, Options{Path: dev, SysfsRoot: root})
		var during string
		setHook(t, func() { during = readForceRO(t, fro) })
		_, err := d.WriteAt([]byte("abc"), 5)
		if !errors.Is(err, nvcore.ErrReadOnly) || !errors.Is(err, syscall.EPERM) {
			t.Errorf("write: %v, want ErrReadOnly wrapping EPERM", err)
		}
		if during != "0" || readForceRO(t, fro) != "1" {
			t.Errorf("force_ro %s during the failed write, %s after it; want 0, 1", during, readForceRO(t, fro))
		}
		if got, _ := os.ReadFile(img); !bytes.Equal(got, content) {
			t.Error("the image changed")
		}
	})

	t.Run("cannot be lifted", func(t *testing.T) {
		// force_ro on a read-only mount: writing it fails, as it does
		// for a user who is not root (EACCES there, EROFS here).
		content := pattern(6, 64<<10)
		img := looptest.Image(t, content)
		dev := looptest.Attach(t, img)
		root, fro := looptest.FakeSysfs(t, dev, "1")
		d := openDevice(t, Options{Path: dev, SysfsRoot: root})
		dir := filepath.Dir(fro)
		if err := unix.Mount(dir, dir, "", unix.MS_BIND, ""); err != nil {
			t.Fatalf("bind mount: %v", err)
		}
		t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
		if err := unix.Mount("", dir, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, ""); err != nil {
			t.Fatalf("remount read-only: %v", err)
		}
		_, err := d.WriteAt([]byte("abc"), 0)
		if !errors.Is(err, nvcore.ErrReadOnly) || !errors.Is(err, syscall.EROFS) || !strings.Contains(err.Error(), "write-protected by the kernel") {
			t.Errorf("write: %v, want ErrReadOnly saying the protection could not be lifted", err)
		}
		if got, _ := os.ReadFile(img); !bytes.Equal(got, content) {
			t.Error("the image changed")
		}
		if got := readForceRO(t, fro); got != "1" {
			t.Errorf("force_ro %s", got)
		}
	})

	t.Run("restored by Close when the restore failed", func(t *testing.T) {
		dev := looptest.Attach(t, looptest.Image(t, make([]byte, 64<<10)))
		root, fro := looptest.FakeSysfs(t, dev, "1")
		p, err := Open(Options{Path: dev, SysfsRoot: root})
		if err != nil {
			t.Fatal(err)
		}
		d := p.(*Device)
		// force_ro becomes a directory for the write: writing 1 back fails.
		setHook(t, func() {
			os.Remove(fro)
			os.Mkdir(fro, 0o755)
		})
		_, err = d.WriteAt([]byte("abc"), 0)
		if !errors.Is(err, nvcore.ErrIO) || errors.Is(err, nvcore.ErrReadOnly) || !strings.Contains(err.Error(), "3 bytes were written, but the write protection could not be restored") {
			t.Errorf("write: %v", err)
		}
		os.Remove(fro)
		os.WriteFile(fro, []byte("0\n"), 0o644)
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		if got := readForceRO(t, fro); got != "1" {
			t.Errorf("force_ro after Close: %s, want 1", got)
		}
	})

	t.Run("device removed during the write", func(t *testing.T) {
		dev := looptest.Attach(t, looptest.Image(t, make([]byte, 64<<10)))
		root, fro := looptest.FakeSysfs(t, dev, "1")
		p := openDevice(t, Options{Path: dev, SysfsRoot: root, PollInterval: 10 * time.Millisecond})
		reg := nvcore.NewRegistry()
		defer reg.RemoveAll()
		d, err := reg.Register(nvcore.Config{Name: "boot1"}, p)
		if err != nil {
			t.Fatal(err)
		}
		// The kernel removes the disk, and its sysfs folder with it,
		// while the write is under way.
		setHook(t, func() { os.RemoveAll(filepath.Dir(fro)) })
		_, err = d.WriteAt([]byte("abc"), 0)
		if !errors.Is(err, syscall.ENODEV) {
			t.Errorf("write: %v, want ENODEV", err)
		}
		waitGone(t, d)
		if _, err := d.ReadAt(make([]byte, 1), 0); !errors.Is(err, nvcore.ErrNoDevice) {
			t.Errorf("read after removal: %v", err)
		}
	})

	t.Run("detach during a long write", func(t *testing.T) {
		const size = 4 << 20
		dev := looptest.Attach(t, looptest.Image(t, make([]byte, size)))
		root, fro := looptest.FakeSysfs(t, dev, "1")
		p := openDevice(t, Options{Path: dev, SysfsRoot: root})
		reg := nvcore.NewRegistry()
		defer reg.RemoveAll()
		d, err := reg.Register(nvcore.Config{Name: "boot1"}, p)
		if err != nil {
			t.Fatal(err)
		}
		// The second chunk holds in the hook, force_ro lifted, until the
		// device is marked gone: the detach then waits for that chunk.
		var mu sync.Mutex
		chunks := 0
		started, release := make(chan struct{}), make(chan struct{})
		setHook(t, func() {
			mu.Lock()
			chunks++
			n := chunks
			mu.Unlock()
			if n == 2 {
				close(started)
				<-release
			}
		})
		done := make(chan error, 1)
		go func() {
			_, err := d.WriteAt(bytes.Repeat([]byte{0xa5}, size), 0)
			done <- err
		}()
		<-started
		detached := make(chan error, 1)
		go func() { detached <- reg.Unregister("boot1") }()
		waitGone(t, d)
		if got := readForceRO(t, fro); got != "0" {
			t.Errorf("force_ro during the chunk under way: %s, want 0", got)
		}
		close(release)
		if err := <-detached; err != nil {
			t.Fatal(err)
		}
		// Closed: force_ro is 1, and the write stopped after that chunk.
		if got := readForceRO(t, fro); got != "1" {
			t.Errorf("force_ro after the detach: %s, want 1", got)
		}
		if err := <-done; !errors.Is(err, nvcore.ErrNoDevice) {
			t.Errorf("the write: %v, want ErrNoDevice", err)
		}
		mu.Lock()
		if chunks != 2 {
			t.Errorf("%d chunks reached the device, want 2: the detach did not stop the write at the next chunk", chunks)
		}
		mu.Unlock()
	})
}

func waitGone(t *testing.T, d *nvcore.Device) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !d.Gone(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the device was not removed")
		}
	}
}

// TestGoneWatcher: when the kernel's device leaves sysfs, the provider
// reports it gone by itself, and the core removes it; a medium removed
// (size 0) likewise, and a disk of another diskseq under the same numbers
// (the old one unplugged and a new one plugged in between two polls).
func TestGoneWatcher(t *testing.T) {
	for _, how := range []string{"removed", "no medium", "another disk"} {
		t.Run(how, func(t *testing.T) {
			dev := looptest.Attach(t, looptest.Image(t, make([]byte, 64<<10)))
			root, fro := looptest.FakeSysfs(t, dev, "")
			seq := filepath.Join(filepath.Dir(fro), "diskseq")
			if err := os.WriteFile(seq, []byte("41\n"), 0o444); err != nil {
				t.Fatal(err)
			}
			p := openDevice(t, Options{Path: dev, SysfsRoot: root, PollInterval: 10 * time.Millisecond})
			reg := nvcore.NewRegistry()
			defer reg.RemoveAll()
			d, err := reg.Register(nvcore.Config{Name: "card"}, p)
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(30 * time.Millisecond)
			if d.Gone() {
				t.Fatal("removed while present")
			}
			switch how {
			case "removed":
				os.RemoveAll(filepath.Dir(fro))
			case "no medium":
				os.WriteFile(filepath.Join(filepath.Dir(fro), "size"), []byte("0\n"), 0o644)
			default: // unplugged and plugged back between two polls
				os.Remove(seq)
				os.WriteFile(seq, []byte("42\n"), 0o444)
			}
			waitGone(t, d)
		})
	}
}

// TestLoopDetachedUnderneath: losetup -d of a loop device the provider
// holds open does not take it away: the kernel marks it auto-clear and
// serves it until the last close, so reads and writes go on, nothing is
// reported gone, and the device disappears when the provider closes it.
func TestLoopDetachedUnderneath(t *testing.T) {
	img := looptest.Image(t, make([]byte, 64<<10))
	dev := looptest.Attach(t, img)
	p, err := Open(Options{Path: dev, PollInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	reg := nvcore.NewRegistry()
	defer reg.RemoveAll()
	d, err := reg.Register(nvcore.Config{Name: "loop"}, p)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
		t.Fatalf("losetup -d: %v\n%s", err, out)
	}
	autoclear, _ := os.ReadFile(filepath.Join("/sys/class/block", filepath.Base(dev), "loop/autoclear"))
	t.Logf("after losetup -d: autoclear %q", strings.TrimSpace(string(autoclear)))
	if _, err := d.WriteAt([]byte("still here"), 7); err != nil {
		t.Errorf("write after losetup -d: %v", err)
	}
	time.Sleep(50 * time.Millisecond)
	if d.Gone() {
		t.Error("reported gone")
	}
	if got, _ := os.ReadFile(img); !bytes.Equal(got[7:17], []byte("still here")) {
		t.Error("the write did not reach the image")
	}
	if err := reg.Unregister("loop"); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); looptest.Attached(dev); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s is still attached after the provider closed it", dev)
		}
	}
}
