package fs

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nvmemfs/nvmemfs/nvcore"
	"github.com/nvmemfs/nvmemfs/nvcore/nvcoretest"
)

// TestReadTable walks the read column of the SPEC 3 table with pread on the
// mounted nvmem file.
func TestReadTable(t *testing.T) {
	m := mountTest(t)
	data := pattern(64, 0x5a)
	m.attach(t, nvcore.Config{Name: "b1"}, data)
	// --cache-all refuses a device with a word size or stride
	// (TestCacheAllRefusesUncacheable): there, only the byte device's rows.
	wordDevices := !mode.cacheAll
	if wordDevices {
		m.attach(t, nvcore.Config{Name: "w4", WordSize: 4, Stride: 4}, data)
		m.attach(t, nvcore.Config{Name: "w2s4", WordSize: 2, Stride: 4}, data)
	}

	cases := []struct {
		dev       string
		off, size int
		want      int // bytes returned from off, or -1 for an error
		errno     syscall.Errno
	}{
		{"b1", 0, 0, 0, 0},      // 1: count 0 -> 0
		{"b1", 64, 16, 0, 0},    // 2: pos == size -> EOF
		{"b1", 1000, 16, 0, 0},  // 2: pos > size -> EOF
		{"b1", 56, 16, 8, 0},    // 3: cut at the end
		{"b1", 3, 5, 5, 0},      // byte device: any offset, any count
		{"w4", 2, 8, -1, 22},    // 4: pos off the stride -> EINVAL
		{"w4", 0, 3, -1, 22},    // 5: count < word size -> EINVAL
		{"w4", 0, 6, 4, 0},      // 6: rounded down to the word size
		{"w4", 4, 4096, 60, 0},  // 3: cut at the end, a multiple of 4
		{"w4", 64, 4, 0, 0},     // 2 before 4: EOF, not EINVAL
		{"w4", 62, 4, 0, 0},     // 2: 62 < 64 but not on the stride -> checked after clamp
		{"w2s4", 4, 7, 6, 0},    // stride 4, word 2: 7 -> 6
		{"w2s4", 2, 2, -1, 22},  // offset 2 is off the stride 4
		{"w2s4", 60, 1, -1, 22}, // 1 byte is under the word size
		{"w2s4", 60, 100, 4, 0}, // cut to the end: 4 bytes
	}
	// Row "62, 4" on w4: the kernel clamps count to 2, then finds pos 62 off
	// the stride: EINVAL. Fix the expectation here rather than in the table
	// above, to keep the kernel's order visible.
	cases[10].want, cases[10].errno = -1, syscall.EINVAL
	for _, c := range cases {
		if c.dev != "b1" && !wordDevices {
			continue
		}
		fd := openFile(t, m.path(c.dev, "nvmem"), syscall.O_RDONLY)
		buf := make([]byte, c.size)
		n, err := syscall.Pread(fd, buf, int64(c.off))
		if c.want < 0 {
			if errnoOf(err) != c.errno {
				t.Errorf("%s: pread(%d at %d) = %d, %v; want %v", c.dev, c.size, c.off, n, err, c.errno)
			}
			continue
		}
		if err != nil || n != c.want {
			t.Errorf("%s: pread(%d at %d) = %d, %v; want %d bytes", c.dev, c.size, c.off, n, err, c.want)
			continue
		}
		if n > 0 && !bytes.Equal(buf[:n], data[c.off:c.off+n]) {
			t.Errorf("%s: pread(%d at %d) returned wrong bytes", c.dev, c.size, c.off)
		}
	}
}

// TestWriteTable walks the write column of the SPEC 3 table with pwrite.
func TestWriteTable(t *testing.T) {
	m := mountTest(t)
	cases := []struct {
		name      string
		cfg       nvcore.Config
		forceRO   bool
		off, size int
		want      int
		errno     syscall.Errno
	}{
		{"at end", nvcore.Config{}, false, 64, 4, -1, syscall.EFBIG},
		{"past end", nvcore.Config{}, false, 100, 4, -1, syscall.EFBIG},
		{"crossing end", nvcore.Config{}, false, 60, 8, 4, 0},
		{"off stride", nvcore.Config{WordSize: 4, Stride: 4}, false, 2, 4, -1, syscall.EINVAL},
		{"under word", nvcore.Config{WordSize: 4, Stride: 4}, false, 0, 3, -1, syscall.EINVAL},
		{"rounded down", nvcore.Config{WordSize: 4, Stride: 4}, false, 8, 6, 4, 0},
		{"force_ro", nvcore.Config{}, true, 0, 4, -1, syscall.EPERM},
		{"plain", nvcore.Config{}, false, 10, 20, 20, 0},
	}
	for i, c := range cases {
		if mode.cacheAll && !cacheable(c.cfg) {
			continue // refused by --cache-all (TestCacheAllRefusesUncacheable)
		}
		orig := pattern(64, byte(i))
		c.cfg.Name = "w" + string(rune('a'+i))
		d, mem := m.attach(t, c.cfg, orig)
		fd := openFile(t, m.path(c.cfg.Name, "nvmem"), syscall.O_WRONLY)
		d.SetForceRO(c.forceRO)
		src := bytes.Repeat([]byte{0xee}, c.size)
		n, err := syscall.Pwrite(fd, src, int64(c.off))
		want := append([]byte(nil), orig...)
		if c.want < 0 {
			if errnoOf(err) != c.errno {
				t.Errorf("%s: pwrite(%d at %d) = %d, %v; want %v", c.name, c.size, c.off, n, err, c.errno)
			}
		} else {
			if err != nil || n != c.want {
				t.Errorf("%s: pwrite(%d at %d) = %d, %v; want %d", c.name, c.size, c.off, n, err, c.want)
			}
			copy(want[c.off:], src[:c.want])
		}
		if got := mem.Bytes(); !bytes.Equal(got, want) {
			t.Errorf("%s: memory after the write:\n got %x\nwant %x", c.name, got, want)
		}
	}
}

// TestProviderErrno: a provider's own errno reaches the caller, and an
// error without one becomes EIO.
func TestProviderErrno(t *testing.T) {
	m := mountTest(t)
	_, mem := m.attach(t, nvcore.Config{Name: "flaky"}, pattern(32, 1))
	fd := openFile(t, m.path("flaky", "nvmem"), syscall.O_RDWR)
	// ENODEV, ENXIO and ESHUTDOWN are not here: they mean the hardware
	// went away, and remove the device (TestHardwareGone).
	for _, want := range []syscall.Errno{syscall.ETIMEDOUT, syscall.EIO, syscall.EREMOTEIO} {
		mem.SetHook(func(string, int64, int) error { return want })
		if _, err := syscall.Pread(fd, make([]byte, 4), 0); errnoOf(err) != want {
			t.Errorf("read with provider error %v: got %v", want, err)
		}
		if _, err := syscall.Pwrite(fd, make([]byte, 4), 0); errnoOf(err) != want {
			t.Errorf("write with provider error %v: got %v", want, err)
		}
	}
	mem.SetHook(func(string, int64, int) error { return os.ErrClosed })
	if _, err := syscall.Pread(fd, make([]byte, 4), 0); errnoOf(err) != syscall.EIO {
		t.Errorf("read with a non-errno provider error: got %v, want EIO", err)
	}
	mem.SetHook(func(string, int64, int) error { panic("provider bug") })
	if _, err := syscall.Pread(fd, make([]byte, 4), 0); errnoOf(err) != syscall.EIO {
		t.Errorf("read with a panicking provider: got %v, want EIO", err)
	}
}

// TestModes checks the SPEC 2 modes by stat, and that opening for writing a
// file without a write bit is EACCES for root too.
func TestModes(t *testing.T) {
	m := mountTest(t)
	cases := []struct {
		cfg      nvcore.Config
		mode     uint32
		forceRO  string
		cellMode uint32
	}{
		{nvcore.Config{Name: "rw"}, 0o644, "0\n", 0o644},
		{nvcore.Config{Name: "ro", ReadOnly: true}, 0o444, "1\n", 0o444},
		{nvcore.Config{Name: "root", RootOnly: true}, 0o600, "0\n", 0o600},
		{nvcore.Config{Name: "rootro", RootOnly: true, ReadOnly: true}, 0o400, "1\n", 0o400},
	}
	for _, c := range cases {
		c.cfg.Cells = []nvcore.CellInfo{{Name: "c", Offset: 0, Bytes: 2}}
		m.attach(t, c.cfg, pattern(16, 0))
		var st syscall.Stat_t
		if err := syscall.Stat(m.path(c.cfg.Name, "nvmem"), &st); err != nil {
			t.Fatal(err)
		}
		if st.Mode != syscall.S_IFREG|c.mode || st.Size != 16 {
			t.Errorf("%s: nvmem mode %o size %d, want %o size 16", c.cfg.Name, st.Mode, st.Size, syscall.S_IFREG|c.mode)
		}
		if err := syscall.Stat(m.path(c.cfg.Name, "cells", "c@0,0"), &st); err != nil || st.Mode&0o777 != c.cellMode {
			t.Errorf("%s: cell mode %o (%v), want %o", c.cfg.Name, st.Mode&0o777, err, c.cellMode)
		}
		if err := syscall.Stat(m.path(c.cfg.Name, "type"), &st); err != nil || st.Mode&0o777 != 0o444 {
			t.Errorf("%s: type mode %o (%v), want 444", c.cfg.Name, st.Mode&0o777, err)
		}
		if got, err := os.ReadFile(m.path(c.cfg.Name, "force_ro")); string(got) != c.forceRO {
			t.Errorf("%s: force_ro = %q (%v), want %q", c.cfg.Name, got, err, c.forceRO)
		}
		writable := c.mode&0o200 != 0
		// In cache-all mode the EACCES comes from the first write: no
		// open reaches nvmemfs (openOrFirstIO).
		for _, flags := range []int{syscall.O_WRONLY, syscall.O_RDWR} {
			if writable {
				if err := openClose(m.path(c.cfg.Name, "nvmem"), flags); err != nil {
					t.Errorf("%s: open for writing: %v", c.cfg.Name, err)
				}
			} else if err := openOrFirstIO(m.path(c.cfg.Name, "nvmem"), flags); errnoOf(err) != syscall.EACCES {
				t.Errorf("%s: open for writing as uid %d: %v, want EACCES", c.cfg.Name, os.Getuid(), err)
			}
		}
		if err := openOrFirstIO(m.path(c.cfg.Name, "type"), syscall.O_WRONLY); errnoOf(err) != syscall.EACCES {
			t.Errorf("%s: open type for writing: %v, want EACCES", c.cfg.Name, err)
		}
	}

	// A provider without a write callback: no write bit, no force_ro.
	if _, err := m.reg.Register(nvcore.Config{Name: "nowriter"}, nvcoretest.ReadOnly(nvcoretest.NewMemory(pattern(8, 0)))); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(m.path("nowriter", "nvmem")); err != nil || st.Mode().Perm() != 0o444 {
		t.Errorf("provider without writer: mode %v (%v), want 0444", st.Mode(), err)
	}
	if _, err := os.Stat(m.path("nowriter", "force_ro")); !os.IsNotExist(err) {
		t.Errorf("provider without writer has a force_ro file: %v", err)
	}
	// A provider without a read callback (a write-only OTP programmer).
	if _, err := m.reg.Register(nvcore.Config{Name: "noreader"}, nvcoretest.WriteOnly(nvcoretest.NewMemory(pattern(8, 0)))); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(m.path("noreader", "nvmem")); err != nil || st.Mode().Perm() != 0o200 {
		t.Errorf("provider without reader: mode %v (%v), want 0200", st.Mode(), err)
	}
	if _, err := os.ReadFile(m.path("noreader", "nvmem")); errnoOf(err) != syscall.EACCES {
		t.Errorf("open a write-only device for reading: %v, want EACCES", err)
	}
	if err := os.WriteFile(m.path("noreader", "nvmem"), []byte{1, 2}, 0); err != nil {
		t.Errorf("write a write-only device: %v", err)
	}
}

// TestTypeFile checks the text of every type.
func TestTypeFile(t *testing.T) {
	m := mountTest(t)
	for i, want := range []string{"Unknown\n", "EEPROM\n", "OTP\n", "Battery backed\n", "FRAM\n"} {
		name := "t" + string(rune('0'+i))
		m.attach(t, nvcore.Config{Name: name, Type: nvcore.Type(i)}, pattern(8, 0))
		if got, err := os.ReadFile(m.path(name, "type")); string(got) != want {
			t.Errorf("type %d: %q (%v), want %q", i, got, err, want)
		}
	}
}

// TestForceRO checks the kstrtobool parsing of force_ro and its effect.
func TestForceRO(t *testing.T) {
	m := mountTest(t)
	d, mem := m.attach(t, nvcore.Config{Name: "f"}, pattern(16, 0))
	fd := openFile(t, m.path("f", "nvmem"), syscall.O_WRONLY)
	cases := []struct {
		in    string
		want  string // file content after the write
		errno syscall.Errno
	}{
		{"1\n", "1\n", 0}, {"0\n", "0\n", 0}, {"y", "1\n", 0}, {"N", "0\n", 0},
		{"Yes please", "1\n", 0}, {"false", "0\n", 0}, {"T", "1\n", 0}, {"f", "0\n", 0},
		{"on", "1\n", 0}, {"OFF", "0\n", 0}, {"oN\n", "1\n", 0}, {"Of", "0\n", 0},
		{"2", "0\n", syscall.EINVAL}, {"o", "0\n", syscall.EINVAL}, {"ox", "0\n", syscall.EINVAL},
		{"x1", "0\n", syscall.EINVAL}, {" 1", "0\n", syscall.EINVAL},
	}
	for _, c := range cases {
		wfd, err := syscall.Open(m.path("f", "force_ro"), syscall.O_WRONLY|syscall.O_TRUNC, 0)
		if err != nil {
			t.Fatal(err)
		}
		_, err = syscall.Write(wfd, []byte(c.in))
		syscall.Close(wfd)
		if errnoOf(err) != c.errno {
			t.Errorf("write %q: %v, want errno %v", c.in, err, c.errno)
		}
		got, _ := os.ReadFile(m.path("f", "force_ro"))
		// In cache-all mode the page holds the text written until the
		// device's queue drops it, a moment after the write returned.
		for deadline := time.Now().Add(2 * time.Second); mode.cacheAll && string(got) != c.want && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
			got, _ = os.ReadFile(m.path("f", "force_ro"))
		}
		if string(got) != c.want {
			t.Errorf("after %q: force_ro reads %q, want %q", c.in, got, c.want)
		}
		if d.ForceRO() != (c.want == "1\n") {
			t.Errorf("after %q: device force_ro %v", c.in, d.ForceRO())
		}
	}
	// The switch is checked on every write of an already open descriptor,
	// and never changes the mode.
	os.WriteFile(m.path("f", "force_ro"), []byte("1"), 0)
	if _, err := syscall.Pwrite(fd, []byte{1}, 0); errnoOf(err) != syscall.EPERM {
		t.Errorf("write with force_ro=1: %v, want EPERM", err)
	}
	if st, _ := os.Stat(m.path("f", "nvmem")); st.Mode().Perm() != 0o644 {
		t.Errorf("force_ro changed the mode to %v", st.Mode())
	}
	os.WriteFile(m.path("f", "force_ro"), []byte("0"), 0)
	if n, err := syscall.Pwrite(fd, []byte{0xab}, 0); n != 1 || err != nil || mem.Bytes()[0] != 0xab {
		t.Errorf("write with force_ro=0: %d, %v", n, err)
	}
}

// TestTruncateIgnored: O_TRUNC and truncate change nothing and fail nothing.
func TestTruncateIgnored(t *testing.T) {
	m := mountTest(t)
	orig := pattern(32, 3)
	_, mem := m.attach(t, nvcore.Config{Name: "t"}, orig)
	path := m.path("t", "nvmem")
	out, err := exec.Command("sh", "-c", "printf hello > "+path).CombinedOutput()
	if err != nil {
		t.Fatalf("printf hello > nvmem: %v %s", err, out)
	}
	want := append([]byte("hello"), orig[5:]...)
	if got := mem.Bytes(); !bytes.Equal(got, want) {
		t.Errorf("after printf: %x, want %x", got, want)
	}
	if err := os.Truncate(path, 0); err != nil {
		t.Errorf("truncate to 0: %v", err)
	}
	if err := os.Truncate(path, 1000); err != nil {
		t.Errorf("truncate to 1000: %v", err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Size() != 32 {
		t.Errorf("size after truncate: %v, %v; want 32", st.Size(), err)
	}
	if got := mem.Bytes(); !bytes.Equal(got, want) {
		t.Errorf("truncate changed the memory: %x", got)
	}
}

// TestSeekAndTools: lseek past the end, then read is EOF; cat, dd and cmp
// work on the file as on sysfs.
func TestSeekAndTools(t *testing.T) {
	m := mountTest(t)
	data := pattern(4096+100, 9)
	m.attach(t, nvcore.Config{Name: "big"}, data)
	path := m.path("big", "nvmem")
	fd := openFile(t, path, syscall.O_RDONLY)
	if off, err := syscall.Seek(fd, 1<<20, 0); err != nil || off != 1<<20 {
		t.Fatalf("lseek past the end: %d, %v", off, err)
	}
	if n, err := syscall.Read(fd, make([]byte, 10)); n != 0 || err != nil {
		t.Errorf("read past the end: %d, %v; want EOF", n, err)
	}
	img := t.TempDir() + "/img"
	os.WriteFile(img, data, 0o644)
	if out, err := exec.Command("cmp", path, img).CombinedOutput(); err != nil {
		t.Errorf("cmp: %v %s", err, out)
	}
	out, err := exec.Command("cat", path).Output()
	if err != nil || !bytes.Equal(out, data) {
		t.Errorf("cat: %d bytes, %v", len(out), err)
	}
	out, err = exec.Command("dd", "if="+path, "bs=7", "skip=3", "count=2", "status=none").Output()
	if err != nil || !bytes.Equal(out, data[21:35]) {
		t.Errorf("dd: %x, %v", out, err)
	}
	// dd writing through the file, in odd blocks, then cmp against the truth.
	src := t.TempDir() + "/src"
	newData := pattern(len(data), 0x77)
	os.WriteFile(src, newData, 0o644)
	if out, err := exec.Command("dd", "if="+src, "of="+path, "bs=1000", "conv=notrunc", "status=none").CombinedOutput(); err != nil {
		t.Fatalf("dd write: %v %s", err, out)
	}
	if out, err := exec.Command("cmp", path, src).CombinedOutput(); err != nil {
		t.Errorf("cmp after dd write: %v %s", err, out)
	}
}

// TestKeepouts: reads give the fill value without asking the provider;
// writes there are dropped and still count.
func TestKeepouts(t *testing.T) {
	m := mountTest(t)
	data := pattern(64, 1)
	_, mem := m.attach(t, nvcore.Config{Name: "k", Keepouts: []nvcore.Keepout{{Start: 8, End: 16, Fill: 0xff}, {Start: 32, End: 40, Fill: 0}}}, data)
	fd := openFile(t, m.path("k", "nvmem"), syscall.O_RDWR)
	got := make([]byte, 64)
	if n, err := syscall.Pread(fd, got, 0); n != 64 || err != nil {
		t.Fatalf("pread: %d, %v", n, err)
	}
	want := append([]byte(nil), data...)
	copy(want[8:16], bytes.Repeat([]byte{0xff}, 8))
	copy(want[32:40], make([]byte, 8))
	if !bytes.Equal(got, want) {
		t.Errorf("read with keepouts:\n got %x\nwant %x", got, want)
	}
	reads := mem.Reads()
	if n, err := syscall.Pread(fd, got[:8], 8); n != 8 || err != nil || !bytes.Equal(got[:8], want[8:16]) {
		t.Errorf("read inside a keepout: %d %v %x", n, err, got[:8])
	}
	if mem.Reads() != reads {
		t.Errorf("a read inside a keepout reached the provider")
	}
	if n, err := syscall.Pwrite(fd, bytes.Repeat([]byte{0x11}, 20), 4); n != 20 || err != nil {
		t.Errorf("write across a keepout: %d, %v; want 20", n, err)
	}
	wantMem := append([]byte(nil), data...)
	copy(wantMem[4:8], bytes.Repeat([]byte{0x11}, 4))
	copy(wantMem[16:24], bytes.Repeat([]byte{0x11}, 8))
	if got := mem.Bytes(); !bytes.Equal(got, wantMem) {
		t.Errorf("write across a keepout reached it:\n got %x\nwant %x", got, wantMem)
	}
}

// TestCells: the SPEC 4 vectors through cell files, and write-then-read of
// bit fields leaving neighbouring bits alone.
func TestCells(t *testing.T) {
	m := mountTest(t)
	cells := []nvcore.CellInfo{
		{Name: "lo", Offset: 0, Bytes: 1, BitOffset: 0, NBits: 4},
		{Name: "hi", Offset: 0, Bytes: 1, BitOffset: 4, NBits: 4},
		{Name: "mid8", Offset: 0, Bytes: 2, BitOffset: 4, NBits: 8},
		{Name: "mid12", Offset: 0, Bytes: 2, BitOffset: 4, NBits: 12},
		{Name: "top4", Offset: 0, Bytes: 2, BitOffset: 12, NBits: 4},
		{Name: "mac", Offset: 8, Bytes: 6},
		{Name: "mac", Offset: 16, Bytes: 6}, // same name, another file
	}
	data := make([]byte, 32)
	copy(data, []byte{0xab, 0xcd})
	copy(data[8:], []byte{0, 0x11, 0x22, 0x33, 0x44, 0x55})
	_, mem := m.attach(t, nvcore.Config{Name: "c", Cells: cells}, data)

	entries, err := os.ReadDir(m.path("c", "cells"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	wantNames := "hi@0,4 lo@0,0 mac@10,0 mac@8,0 mid12@0,4 mid8@0,4 top4@0,c"
	if strings.Join(names, " ") != wantNames {
		t.Errorf("cells: %v\nwant %s", names, wantNames)
	}
	// mid8 and mid12 share name prefix, offset and bit: distinct names keep
	// them apart.
	vectors := map[string][]byte{
		"lo@0,0": {0x0b}, "hi@0,4": {0x0a}, "mid8@0,4": {0xda, 0x00},
		"mid12@0,4": {0xda, 0x0c}, "top4@0,c": {0x0c, 0x00},
		"mac@8,0": {0, 0x11, 0x22, 0x33, 0x44, 0x55}, "mac@10,0": make([]byte, 6),
	}
	for name, want := range vectors {
		got, err := os.ReadFile(m.path("c", "cells", name))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: %x (%v), want %x", name, got, err, want)
		}
		if st, err := os.Stat(m.path("c", "cells", name)); err != nil || st.Size() != int64(len(want)) {
			t.Errorf("%s: size %d, want %d", name, st.Size(), len(want))
		}
	}

	// Write every value of the 4-bit field at bit 12 and the 8-bit one at
	// bit 4; the other bits of the two bytes must keep their values.
	for _, c := range []struct {
		file              string
		off, nbits, bytes int
	}{{"top4@0,c", 12, 4, 2}, {"mid8@0,4", 4, 8, 2}, {"lo@0,0", 0, 4, 1}} {
		for v := range 1 << c.nbits {
			before := mem.Bytes()
			val := []byte{byte(v), byte(v >> 8)}[:c.bytes]
			if err := os.WriteFile(m.path("c", "cells", c.file), val, 0); err != nil {
				t.Fatalf("%s: write %x: %v", c.file, val, err)
			}
			got, _ := os.ReadFile(m.path("c", "cells", c.file))
			if !bytes.Equal(got, val) {
				t.Fatalf("%s: wrote %x, read back %x", c.file, val, got)
			}
			after := mem.Bytes()
			raw := func(b []byte) uint32 { return uint32(b[0]) | uint32(b[1])<<8 }
			mask := uint32(1<<c.nbits-1) << c.off
			if raw(after)&^mask != raw(before)&^mask {
				t.Fatalf("%s: value %#x changed bits outside the field: %04x -> %04x", c.file, v, raw(before), raw(after))
			}
			if (raw(after)&mask)>>c.off != uint32(v) {
				t.Fatalf("%s: value %#x stored as %04x", c.file, v, raw(after))
			}
			if !bytes.Equal(after[2:], before[2:]) {
				t.Fatalf("%s: write touched bytes past the field", c.file)
			}
		}
	}

	// Bits above the field and partial writes are refused.
	if err := os.WriteFile(m.path("c", "cells", "lo@0,0"), []byte{0x10}, 0); errnoOf(err) != syscall.EINVAL {
		t.Errorf("value wider than the field: %v, want EINVAL", err)
	}
	if err := os.WriteFile(m.path("c", "cells", "mac@8,0"), []byte{1, 2, 3}, 0); errnoOf(err) != syscall.EINVAL {
		t.Errorf("partial cell write: %v, want EINVAL", err)
	}
	mac := []byte{2, 0, 0, 0xaa, 0xbb, 0xcc}
	if err := os.WriteFile(m.path("c", "cells", "mac@8,0"), mac, 0); err != nil {
		t.Errorf("whole cell write: %v", err)
	}
	if got := mem.Bytes()[8:14]; !bytes.Equal(got, mac) {
		t.Errorf("cell write stored %x", got)
	}
}
