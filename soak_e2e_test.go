package main

// The soak (bench/soak/README.md): the real binary serves fault devices
// (backends/fault: computed content, injected errors, delays, short
// transfers and panics) while the main loop attaches and detaches them, and
// separate processes read them: cat on cells and nvmem, dd with various
// block sizes and offsets, and pread loops in helper processes (this test
// binary again, running TestSoakReader). It checks that
//
//   - no read returns a wrong byte: each is compared with the content of the
//     device incarnations that existed while it ran (every attach gets a new
//     seed, so bytes of a removed incarnation are wrong bytes too);
//   - every error is one the SPEC allows there: ENODEV and ENOENT on devices
//     that come and go (ENOENT only on a fresh lookup), EIO only on devices
//     whose faults fail reads, nothing at all on the device that stays;
//   - nothing hangs: every operation, attach and detach ends within
//     soakOpBound, or the soak kills it and fails;
//   - a provider panic is EIO and a "provider panic" line in the server's
//     log, one line per injected panic, and the server lives on;
//   - the server's descriptors, threads and memory do not grow.
//
// The short form runs in CI (soakShortRun); NVMEMFS_SOAK=10m runs a long one.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nvmemfs/nvmemfs/backends/fault"
)

const (
	// soakEnv holds the long form's duration (NVMEMFS_SOAK=10m).
	soakEnv = "NVMEMFS_SOAK"
	// soakSeedEnv fixes the main loop's random choices (printed by every run).
	soakSeedEnv = "NVMEMFS_SOAK_SEED"
	// soakReaderEnv carries the parameters of a pread helper process.
	soakReaderEnv = "NVMEMFS_SOAK_READER"
	// soakShortRun is the CI form's time of attach/detach cycles.
	soakShortRun = 10 * time.Second
	// soakMinCycles is the fewest attach/detach cycles a soak runs. A slow
	// machine runs past the soak's time to have them, up to soakStretch
	// times that time: under qemu-user (.ci/emulated-tests) every nvmemfs
	// command is an emulated process that starts in 0.1 s (arm) to 0.2 s
	// (arm64) idle and far slower beside the soak's readers; a detach
	// command took 0.9 s on average in an arm64 soak, which managed 2
	// cycles in 10 s.
	soakMinCycles = 5
	soakStretch   = 4
	// soakOpBound bounds every operation: a read, a tool, an attach, a
	// detach. The slowest legitimate one waits for a few provider delays of
	// at most 10 ms each.
	soakOpBound = 10 * time.Second
	// soakFailCap is how many failure messages are kept.
	soakFailCap = 40
	// soakLiveCap is how many fault providers may still be in the server's
	// memory when the last one closes: those attached, and the removed ones
	// the garbage collector has not reached yet.
	soakLiveCap = 400
)

// soakCell is a cell of every soak device.
type soakCell struct {
	Name       string
	Off        int64
	Bytes      int
	Bit, NBits int
}

var soakCells = []soakCell{
	{Name: "serial", Off: 0x10, Bytes: 16},
	{Name: "mac", Off: 0x26, Bytes: 6},
	{Name: "flags", Off: 0x31, Bytes: 2, Bit: 3, NBits: 9},
	{Name: "bit", Off: 0x40, Bytes: 1, Bit: 7, NBits: 1},
	{Name: "blob", Off: 0x80, Bytes: 300}, // crosses transfer boundaries
	{Name: "tail", Off: 0x7f8, Bytes: 8},  // the end of the smallest device
}

func (c soakCell) file() string { return fmt.Sprintf("%s@%x,%x", c.Name, c.Off, c.Bit) }

func soakCellsFile() string {
	var b strings.Builder
	b.WriteString("# NAME OFFSET BYTES [BIT_OFFSET NBITS]\n")
	for _, c := range soakCells {
		fmt.Fprintf(&b, "%s %#x %d", c.Name, c.Off, c.Bytes)
		if c.NBits != 0 {
			fmt.Fprintf(&b, " %d %d", c.Bit, c.NBits)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// truth is what a read of the cell returns on a device of this seed: its
// bytes, or its bit field moved down to bit 0 (SPEC 4), worked out bit by
// bit rather than as the core does it.
func (c soakCell) truth(seed uint64) []byte {
	raw := fault.Truth(seed, c.Off, c.Bytes)
	if c.NBits == 0 {
		return raw
	}
	out := make([]byte, c.Bytes)
	for i := range c.NBits {
		src := c.Bit + i
		if raw[src/8]>>(src%8)&1 != 0 {
			out[i/8] |= 1 << (i % 8)
		}
	}
	return out
}

// soakDev is a fault device of the soak.
type soakDev struct {
	Name string
	Size int64
	// Opts are the SPEC's fault and common options, after fault:SIZE,seed=N.
	Opts string
	// Seed0 is the seed of the first incarnation; each attach takes the next.
	Seed0 uint64
	// Cycled devices come and go; the others stay from mount to unmount.
	Cycled bool
	// EIO: its faults fail reads.
	EIO bool
	// Cached: attached with cache, so reads go through the page cache,
	// which may answer a read short before an error.
	Cached bool
}

var soakDevices = []soakDev{
	{Name: "soak-stable", Size: 4096, Opts: "xfer=256,delays=0.02,max-delay=2ms", Seed0: 1 << 40},
	{Name: "soak-clean", Size: 2048, Opts: "xfer=64,delays=0.05,max-delay=5ms", Seed0: 2 << 40, Cycled: true},
	{Name: "soak-faulty", Size: 8192, Opts: "xfer=128,errors=0.005,shorts=0.005,panics=0.002,delays=0.05,max-delay=10ms",
		Seed0: 3 << 40, Cycled: true, EIO: true},
	{Name: "soak-cached", Size: 4096, Opts: "xfer=512,errors=0.01,shorts=0.01,panics=0.003,delays=0.05,max-delay=5ms,cache",
		Seed0: 4 << 40, Cycled: true, EIO: true, Cached: true},
	{Name: "soak-wide", Size: 65536, Opts: "errors=0.02,shorts=0.02,panics=0.01,delays=0.1,max-delay=10ms",
		Seed0: 5 << 40, Cycled: true, EIO: true},
}

func (d *soakDev) spec(seed uint64, cells string) string {
	return fmt.Sprintf("fault:%d,seed=%d,%s,name=%s,cells=%s", d.Size, seed, d.Opts, d.Name, cells)
}

// allowed reports whether a read of d may fail with e: ENODEV and ENOENT
// while it comes and goes (ENOENT only on a fresh lookup, not through a
// descriptor held open), EIO where its faults fail reads. The device that
// stays may fail with nothing.
func (d *soakDev) allowed(e syscall.Errno, held bool) bool {
	switch e {
	case syscall.ENODEV:
		return d.Cycled
	case syscall.ENOENT:
		return d.Cycled && !held
	case syscall.EIO:
		return d.EIO
	}
	return false
}

// nvmemTruth is what a read of n bytes at off of nvmem returns.
func (d *soakDev) nvmemTruth(seed uint64, off, n int64) []byte {
	if off >= d.Size {
		return nil
	}
	return fault.Truth(seed, off, int(min(n, d.Size-off)))
}

// soakMono is CLOCK_MONOTONIC in nanoseconds: one clock for every process
// of the soak.
func soakMono() int64 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

// soakIncarnation is one attach of a device: its seed, from just before
// the attach began to just after the detach returned (to is 0 until then).
type soakIncarnation struct {
	seed     uint64
	from, to int64
}

// soakIncarnations is the history of the soak's devices. The main loop
// writes it, to memory and to a file; the pread helpers read the file. A
// read may return the content of any incarnation whose time overlaps its
// own, and of no other.
type soakIncarnations struct {
	mu      sync.Mutex
	byDev   map[string][]soakIncarnation
	f       *os.File
	off     int64 // read so far (helpers)
	partial []byte
	buf     []byte
}

func soakCreateIncarnations(path string) (*soakIncarnations, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND|os.O_EXCL, 0o644)
	if err != nil {
		return nil, err
	}
	return &soakIncarnations{byDev: map[string][]soakIncarnation{}, f: f}, nil
}

func soakOpenIncarnations(path string) (*soakIncarnations, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	l := &soakIncarnations{byDev: map[string][]soakIncarnation{}, f: f}
	return l, l.load()
}

// begin records that dev is about to be attached with seed.
func (l *soakIncarnations) begin(dev string, seed uint64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := soakMono()
	l.byDev[dev] = append(l.byDev[dev], soakIncarnation{seed: seed, from: now})
	_, err := fmt.Fprintf(l.f, "+ %s %d %d\n", dev, seed, now)
	return err
}

// end records that dev's detach has returned.
func (l *soakIncarnations) end(dev string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := soakMono()
	list := l.byDev[dev]
	if len(list) == 0 || list[len(list)-1].to != 0 {
		return fmt.Errorf("incarnations: %s ends but is not attached", dev)
	}
	list[len(list)-1].to = now
	_, err := fmt.Fprintf(l.f, "- %s %d %d\n", dev, list[len(list)-1].seed, now)
	return err
}

// load reads what the main loop has written since the last load.
func (l *soakIncarnations) load() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.buf == nil {
		l.buf = make([]byte, 32<<10)
	}
	buf := l.buf
	for {
		n, err := l.f.ReadAt(buf, l.off)
		l.off += int64(n)
		l.partial = append(l.partial, buf[:n]...)
		for {
			i := bytes.IndexByte(l.partial, '\n')
			if i < 0 {
				break
			}
			line := string(l.partial[:i])
			l.partial = l.partial[i+1:]
			var op, dev string
			var seed uint64
			var at int64
			if _, err := fmt.Sscanf(line, "%s %s %d %d", &op, &dev, &seed, &at); err != nil {
				return fmt.Errorf("incarnations: %q: %v", line, err)
			}
			switch list := l.byDev[dev]; op {
			case "+":
				l.byDev[dev] = append(list, soakIncarnation{seed: seed, from: at})
			case "-":
				if len(list) > 0 && list[len(list)-1].seed == seed {
					list[len(list)-1].to = at
				}
			}
		}
		if err == io.EOF || n < len(buf) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// candidates returns the seeds dev had at some moment of [t0, t1], newest
// first.
func (l *soakIncarnations) candidates(dev string, t0, t1 int64) []uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var seeds []uint64
	list := l.byDev[dev]
	for i := len(list) - 1; i >= 0; i-- {
		inc := list[i]
		if inc.to != 0 && inc.to < t0 {
			break // incarnations of one name follow each other
		}
		if inc.from <= t1 {
			seeds = append(seeds, inc.seed)
		}
	}
	return seeds
}

// endedBefore reports whether dev's incarnation seed was detached (its
// detach had returned) before t.
func (l *soakIncarnations) endedBefore(dev string, seed uint64, t int64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, inc := range l.byDev[dev] {
		if inc.seed == seed {
			return inc.to != 0 && inc.to < t
		}
	}
	return false
}

// soakVerdict is the judgement of one read.
type soakVerdict struct {
	// fits lists the incarnations whose content the bytes match (several
	// when they agree on those bytes).
	fits []uint64
	// outcome is ok, short (a success with fewer bytes than asked, but
	// correct ones: allowed only through the page cache), or the errno's
	// name.
	outcome string
	// problem says what is wrong, if anything.
	problem string
}

// soakJudge checks one read. got is what came back: all of it on success,
// what came before the error otherwise; want gives the whole of a successful
// read for a seed.
func soakJudge(d *soakDev, cands []uint64, got []byte, errno syscall.Errno, held bool, want func(uint64) []byte) soakVerdict {
	v := soakVerdict{outcome: "ok"}
	if errno != 0 {
		v.outcome = unix.ErrnoName(errno)
		if !d.allowed(errno, held) {
			v.problem = fmt.Sprintf("%s (%v) is not an error the SPEC allows here", v.outcome, errno)
			return v
		}
	}
	for _, seed := range cands {
		w := want(seed)
		switch {
		case bytes.Equal(got, w):
			v.fits = append(v.fits, seed)
		case len(got) < len(w) && bytes.HasPrefix(w, got) && errno != 0:
			v.fits = append(v.fits, seed) // what came before the error
		case len(got) < len(w) && bytes.HasPrefix(w, got) && d.Cached:
			// The page cache answers what it holds, short, and the
			// error comes with the next read.
			v.fits = append(v.fits, seed)
			v.outcome = "short"
		}
	}
	switch {
	case len(v.fits) > 0:
	case len(got) == 0 && (errno != 0 || len(want(0)) == 0):
		// An error before any byte, or an empty read at the end.
	case len(cands) == 0:
		v.problem = fmt.Sprintf("%d bytes from a device that was not attached at the time", len(got))
	default:
		w := want(cands[0])
		i := 0
		for i < len(got) && i < len(w) && got[i] == w[i] {
			i++
		}
		v.problem = fmt.Sprintf("wrong bytes: %d bytes (errno %d), want %d; first difference at byte %d (incarnations %x)",
			len(got), errno, len(w), i, cands)
	}
	return v
}

// soakErrnos maps the text of every errno, as tools print it, to the errno.
var soakErrnos = func() map[string]syscall.Errno {
	m := map[string]syscall.Errno{}
	for e := syscall.Errno(1); e < 200; e++ {
		text := strings.ToLower(e.Error())
		if _, ok := m[text]; !ok && !strings.HasPrefix(text, "errno ") {
			m[text] = e
		}
	}
	return m
}()

// soakToolErrno finds the errno in a tool's complaint, such as
// "dd: error reading '/x/nvmem': Input/output error".
func soakToolErrno(stderr string) syscall.Errno {
	for _, line := range strings.Split(stderr, "\n") {
		i := strings.LastIndex(line, ": ")
		if i < 0 {
			continue
		}
		if e, ok := soakErrnos[strings.ToLower(strings.TrimSpace(line[i+2:]))]; ok {
			return e
		}
	}
	return 0
}

// soakStats counts what readers did. Counts are keyed "TOOL OUTCOME" and
// "@DEVICE OUTCOME", where OUTCOME is ok or an errno's name.
type soakStats struct {
	Counts    map[string]int64
	Ops       int64
	Bytes     int64 // compared with the truth
	MaxOp     time.Duration
	MaxOpWhat string
	Failures  []string
	Failed    int64
}

type soakTally struct {
	mu sync.Mutex
	s  soakStats
}

func newSoakTally() *soakTally { return &soakTally{s: soakStats{Counts: map[string]int64{}}} }

func (t *soakTally) op(tool, dev, outcome string, n int, took time.Duration, what string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.s.Counts[tool+" "+outcome]++
	t.s.Counts["@"+dev+" "+outcome]++
	t.s.Ops++
	t.s.Bytes += int64(n)
	if took > t.s.MaxOp {
		t.s.MaxOp, t.s.MaxOpWhat = took, what
	}
}

func (t *soakTally) fail(format string, args ...any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.s.Failed++
	if len(t.s.Failures) < soakFailCap {
		t.s.Failures = append(t.s.Failures, fmt.Sprintf(format, args...))
	}
}

func (t *soakTally) merge(o soakStats) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, v := range o.Counts {
		t.s.Counts[k] += v
	}
	t.s.Ops += o.Ops
	t.s.Bytes += o.Bytes
	if o.MaxOp > t.s.MaxOp {
		t.s.MaxOp, t.s.MaxOpWhat = o.MaxOp, o.MaxOpWhat
	}
	t.s.Failed += o.Failed
	for _, f := range o.Failures {
		if len(t.s.Failures) < soakFailCap {
			t.s.Failures = append(t.s.Failures, f)
		}
	}
}

func (t *soakTally) snapshot() soakStats {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.s
	s.Counts = map[string]int64{}
	for k, v := range t.s.Counts {
		s.Counts[k] = v
	}
	s.Failures = slices.Clone(t.s.Failures)
	return s
}

// soakProc is what /proc says of the server.
type soakProc struct {
	RSSKiB, Threads, FDs int
	// Pooled counts the descriptors go-fuse keeps for good once it has
	// needed them: the pipes of its splice pool (one pair for each READ
	// answered at the same moment: it tries splice first) and its
	// /dev/null. They grow with the peak of concurrency, not with time.
	Pooled int
	At     time.Duration // into the run
}

func soakSample(pid int) (soakProc, error) {
	var p soakProc
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return p, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "VmRSS:":
			p.RSSKiB, _ = strconv.Atoi(f[1])
		case "Threads:":
			p.Threads, _ = strconv.Atoi(f[1])
		}
	}
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	fds, err := os.ReadDir(dir)
	p.FDs = len(fds)
	for _, fd := range fds {
		if target, err := os.Readlink(filepath.Join(dir, fd.Name())); err == nil && (strings.HasPrefix(target, "pipe:") || target == os.DevNull) {
			p.Pooled++
		}
	}
	return p, err
}

func (p soakProc) String() string {
	return fmt.Sprintf("%d fds (%d pipes and /dev/null), %d threads, VmRSS %.1f MiB", p.FDs, p.Pooled, p.Threads, float64(p.RSSKiB)/1024)
}

// soakAlive reports whether pid is a live process, not a zombie.
func soakAlive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(stat, ')')
	return i >= 0 && i+2 < len(stat) && stat[i+2] != 'Z'
}

// soakRun is the state of one soak.
type soakRun struct {
	mnt   string
	cells string
	devs  []*soakDev
	incs  *soakIncarnations
	tally *soakTally
	stop  atomic.Bool // readers stop
	hung  atomic.Bool // an operation did not end: the run stops
	wg    sync.WaitGroup
}

// tool runs one reading command with the deadline and judges it.
func (s *soakRun) tool(kind string, d *soakDev, want func(uint64) []byte, what, name string, args ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), soakOpBound)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	cmd.WaitDelay = time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	t0 := soakMono()
	err := cmd.Run()
	t1 := soakMono()
	if ctx.Err() != nil {
		s.hung.Store(true)
		s.tally.fail("hang: %s did not end within %v (killed)", what, soakOpBound)
		return
	}
	var errno syscall.Errno
	if err != nil {
		if errno = soakToolErrno(stderr.String()); errno == 0 {
			s.tally.fail("%s: %v, with no errno to classify: %q", what, err, stderr.String())
			return
		}
	} else if stderr.Len() > 0 {
		s.tally.fail("%s: succeeded, but said %q", what, stderr.String())
	}
	v := soakJudge(d, s.incs.candidates(d.Name, t0, t1), stdout.Bytes(), errno, false, want)
	if v.problem != "" {
		s.tally.fail("%s: %s", what, v.problem)
	}
	s.tally.op(kind, d.Name, v.outcome, stdout.Len(), time.Duration(t1-t0), what)
}

// catLoop reads cells, and now and then a whole nvmem, with cat.
func (s *soakRun) catLoop(seed uint64) {
	defer s.wg.Done()
	rng := rand.New(rand.NewPCG(seed, 1))
	for !s.stop.Load() && !s.hung.Load() {
		d := s.devs[rng.IntN(len(s.devs))]
		if rng.IntN(4) == 0 {
			s.tool("cat", d, func(seed uint64) []byte { return d.nvmemTruth(seed, 0, d.Size) },
				"cat "+d.Name+"/nvmem", "cat", filepath.Join(s.mnt, d.Name, "nvmem"))
			continue
		}
		c := soakCells[rng.IntN(len(soakCells))]
		s.tool("cat", d, c.truth, "cat "+d.Name+"/cells/"+c.file(), "cat", filepath.Join(s.mnt, d.Name, "cells", c.file()))
	}
}

// ddLoop reads nvmem with dd: block sizes from 1 byte to 64 KiB, whole
// blocks or any byte offset and count.
func (s *soakRun) ddLoop(seed uint64) {
	defer s.wg.Done()
	rng := rand.New(rand.NewPCG(seed, 2))
	sizes := []int64{1, 7, 64, 512, 4096, 65536}
	for !s.stop.Load() && !s.hung.Load() {
		d := s.devs[rng.IntN(len(s.devs))]
		bs := sizes[rng.IntN(len(sizes))]
		args := []string{"if=" + filepath.Join(s.mnt, d.Name, "nvmem"), "bs=" + strconv.FormatInt(bs, 10), "status=none"}
		maxBytes := min(16<<10, bs*256) // at most 256 reads
		var off, n int64
		switch {
		case rng.IntN(4) == 0:
			off, n = rng.Int64N(d.Size), 1+rng.Int64N(maxBytes)
			args = append(args, "iflag=skip_bytes,count_bytes", fmt.Sprintf("skip=%d", off), fmt.Sprintf("count=%d", n))
		case bs >= 512 && rng.IntN(4) == 0:
			skip := rng.Int64N((d.Size + bs - 1) / bs)
			off, n = skip*bs, d.Size
			args = append(args, fmt.Sprintf("skip=%d", skip))
		default:
			skip, count := rng.Int64N((d.Size+bs-1)/bs), 1+rng.Int64N(max(1, maxBytes/bs))
			off, n = skip*bs, count*bs
			args = append(args, fmt.Sprintf("skip=%d", skip), fmt.Sprintf("count=%d", count))
		}
		s.tool("dd", d, func(seed uint64) []byte { return d.nvmemTruth(seed, off, n) },
			"dd "+d.Name+"/nvmem "+strings.Join(args[1:], " "), "dd", args...)
	}
}

// nvmemfs runs the binary under test with the deadline.
func (s *soakRun) nvmemfs(args ...string) (string, time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), soakOpBound)
	defer cancel()
	cmd := exec.CommandContext(ctx, nvmemfsBin, args...)
	cmd.WaitDelay = time.Second
	start := time.Now()
	out, err := cmd.CombinedOutput()
	took := time.Since(start)
	if ctx.Err() != nil {
		s.hung.Store(true)
		return string(out), took, fmt.Errorf("hang: nvmemfs %s did not end within %v (killed)", strings.Join(args, " "), soakOpBound)
	}
	if err != nil {
		return string(out), took, fmt.Errorf("nvmemfs %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out), took, nil
}

// soakReaderParams tell a pread helper what to read.
type soakReaderParams struct {
	Mount   string
	Devices []soakDev
	IncLog  string
	OpBound time.Duration
	MaxRun  time.Duration // the helper stops by itself after this
	Seed    uint64
}

// soakHelper is a pread helper process, seen from the soak.
type soakHelper struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr bytes.Buffer // written by exec's copier until done
	begun  time.Time
	done   chan struct{} // closed when it has exited

	mu      sync.Mutex
	last    time.Time // of its last line
	lines   int
	stats   soakStats // its latest
	final   bool
	hang    string
	waitErr error
}

func (s *soakRun) startHelper(p soakReaderParams) (*soakHelper, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	raw, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	h := &soakHelper{done: make(chan struct{})}
	h.cmd = exec.Command(self, "-test.run=^TestSoakReader$", "-test.count=1", "-test.timeout=0")
	h.cmd.Env = append(os.Environ(), soakReaderEnv+"="+string(raw))
	h.cmd.Stderr = &h.stderr
	if h.stdin, err = h.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := h.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	h.begun = time.Now()
	if err := h.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			kind, rest, _ := strings.Cut(sc.Text(), " ")
			h.mu.Lock()
			h.last = time.Now()
			h.lines++
			switch kind {
			case "soak-stats", "soak-final":
				var st soakStats
				if err := json.Unmarshal([]byte(rest), &st); err == nil {
					h.stats, h.final = st, kind == "soak-final"
				}
			case "soak-hang":
				h.hang = rest
			}
			h.mu.Unlock()
		}
		io.Copy(io.Discard, stdout)
		err := h.cmd.Wait()
		h.mu.Lock()
		h.waitErr = err
		h.mu.Unlock()
		close(h.done)
	}()
	return h, nil
}

// silence says why the helper looks stuck, or "".
func (h *soakHelper) silence() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.hang != "":
		return "pread helper: " + h.hang
	case h.lines == 0 && time.Since(h.begun) > 90*time.Second:
		return fmt.Sprintf("pread helper %d: no sign of life %v after its start", h.cmd.Process.Pid, time.Since(h.begun).Round(time.Second))
	case h.lines > 0 && time.Since(h.last) > soakOpBound+5*time.Second:
		return fmt.Sprintf("pread helper %d: silent for %v", h.cmd.Process.Pid, time.Since(h.last).Round(time.Second))
	}
	return ""
}

// finish stops the helper and waits for it, killing it if it does not end.
func (h *soakHelper) finish(grace time.Duration) (soakStats, error) {
	h.stdin.Close()
	select {
	case <-h.done:
	case <-time.After(grace):
		h.cmd.Process.Kill()
		<-h.done
		return h.stats, fmt.Errorf("pread helper %d did not stop within %v (killed); stderr:\n%s", h.cmd.Process.Pid, grace, h.stderr.String())
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.hang != "" {
		return h.stats, errors.New("pread helper: " + h.hang)
	}
	if h.waitErr != nil || !h.final {
		return h.stats, fmt.Errorf("pread helper %d: exit %v, final report %v; stderr:\n%s", h.cmd.Process.Pid, h.waitErr, h.final, h.stderr.String())
	}
	return h.stats, nil
}

// TestSoakReader is the pread helper: run by TestSoak in processes of their
// own, it reads until its standard input closes, reporting on stdout.
func TestSoakReader(t *testing.T) {
	raw := os.Getenv(soakReaderEnv)
	if raw == "" {
		t.Skip("the pread helper of TestSoak, run by it in a process of its own")
	}
	var p soakReaderParams
	if err := json.Unmarshal([]byte(raw), &p); err != nil {
		t.Fatal(err)
	}
	if err := soakReader(p, os.Stdin, os.Stdout); err != nil {
		t.Fatal(err)
	}
}

// soakSlot is one reader goroutine's operation in flight, for the watchdog.
type soakSlot struct {
	start atomic.Int64 // soakMono at its start; 0 when idle
	what  atomic.Pointer[string]
}

// soakPreader is one pread loop of a helper.
type soakPreader struct {
	p     *soakReaderParams
	incs  *soakIncarnations
	tally *soakTally
	slot  *soakSlot
	rng   *rand.Rand
	held  map[string]*soakHeld // by path
	buf   []byte
}

// soakHeld is a descriptor kept open across operations, and across
// removals: it must read one incarnation only, and once it gets ENODEV,
// only ENODEV.
type soakHeld struct {
	fd   int
	seed uint64 // the incarnation it reads, once known
}

func soakReader(p soakReaderParams, in io.Reader, out io.Writer) error {
	incs, err := soakOpenIncarnations(p.IncLog)
	if err != nil {
		return err
	}
	tally := newSoakTally()
	var outMu sync.Mutex
	emit := func(kind string, v any) {
		raw, _ := json.Marshal(v)
		outMu.Lock()
		fmt.Fprintf(out, "%s %s\n", kind, raw)
		outMu.Unlock()
	}
	stopped := make(chan struct{})
	go func() {
		io.Copy(io.Discard, in)
		close(stopped)
	}()

	slots := make([]soakSlot, 3)
	// The watchdog: an operation past the bound is a hang. Say so and
	// exit; the soak fails.
	go func() {
		for range time.Tick(100 * time.Millisecond) {
			now := soakMono()
			for i := range slots {
				if st := slots[i].start.Load(); st != 0 && time.Duration(now-st) > p.OpBound {
					emit("soak-hang", fmt.Sprintf("%s: in flight for %v", *slots[i].what.Load(), time.Duration(now-st).Round(time.Millisecond)))
					os.Exit(3)
				}
			}
		}
	}()

	var stop atomic.Bool
	var wg sync.WaitGroup
	for w := range slots {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &soakPreader{p: &p, incs: incs, tally: tally, slot: &slots[w],
				rng: rand.New(rand.NewPCG(p.Seed, uint64(w))), held: map[string]*soakHeld{}, buf: make([]byte, 32<<10)}
			defer r.closeAll()
			for !stop.Load() {
				r.step(w)
			}
		}()
	}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(p.MaxRun)
loop:
	for {
		select {
		case <-stopped:
			break loop
		case <-deadline:
			tally.fail("pread helper: still running %v after its start: the soak never stopped it", p.MaxRun)
			break loop
		case <-tick.C:
			emit("soak-stats", tally.snapshot())
		}
	}
	stop.Store(true)
	wg.Wait()
	emit("soak-final", tally.snapshot())
	return nil
}

func (r *soakPreader) closeAll() {
	for _, h := range r.held {
		unix.Close(h.fd)
	}
}

// step runs one operation: loop 0 opens nvmem afresh each time, loop 1
// keeps a descriptor on each nvmem, loop 2 reads cells both ways.
func (r *soakPreader) step(w int) {
	d := &r.p.Devices[r.rng.IntN(len(r.p.Devices))]
	if w == 2 {
		c := soakCells[r.rng.IntN(len(soakCells))]
		off := int64(0)
		if r.rng.IntN(4) == 0 {
			off = r.rng.Int64N(int64(c.Bytes))
		}
		r.read("pread-cell", d, filepath.Join(r.p.Mount, d.Name, "cells", c.file()), r.rng.IntN(2) == 0, off, c.Bytes+8,
			func(seed uint64) []byte { return c.truth(seed)[off:] })
		return
	}
	sizes := []int{1, 3, 8, 64, 100, 512, 1000, 4096, 20000}
	n := sizes[r.rng.IntN(len(sizes))]
	off := r.rng.Int64N(d.Size + 64)
	if r.rng.IntN(8) == 0 { // across the end
		off = max(0, d.Size-1-r.rng.Int64N(int64(n)))
	}
	tool := "pread-open"
	if w == 1 {
		tool = "pread-held"
	}
	r.read(tool, d, filepath.Join(r.p.Mount, d.Name, "nvmem"), w == 1, off, n,
		func(seed uint64) []byte { return d.nvmemTruth(seed, off, int64(n)) })
}

func soakErrno(err error) syscall.Errno {
	var e syscall.Errno
	if err == nil || !errors.As(err, &e) {
		return 0
	}
	return e
}

// read reads n bytes at off of path, through the descriptor held for it
// or a fresh one, and judges the result.
func (r *soakPreader) read(tool string, d *soakDev, path string, held bool, off int64, n int, want func(uint64) []byte) {
	what := fmt.Sprintf("%s %s: %d bytes at %d", tool, strings.TrimPrefix(path, r.p.Mount+"/"), n, off)
	r.slot.what.Store(&what)
	r.slot.start.Store(soakMono())
	defer r.slot.start.Store(0)

	t0 := soakMono()
	var h *soakHeld
	if held {
		h = r.held[path]
	}
	if h == nil {
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			r.judge(tool, d, t0, nil, soakErrno(err), false, want, what)
			return
		}
		h = &soakHeld{fd: fd}
		if held {
			r.held[path] = h
		}
	}
	buf := r.buf[:n]
	got, err := unix.Pread(h.fd, buf, off)
	errno := soakErrno(err)
	if err != nil && errno == 0 {
		r.tally.fail("%s: %v", what, err)
	}
	fits := r.judge(tool, d, t0, buf[:max(got, 0)], errno, held, want, what)
	if !held {
		unix.Close(h.fd)
		return
	}
	switch {
	case errno == 0 && h.seed != 0 && r.incs.endedBefore(d.Name, h.seed, t0):
		// Bytes or none (a read at the end): either way not ENODEV.
		r.tally.fail("%s: a descriptor of incarnation %x, detached before this read began, read %d bytes; want ENODEV", what, h.seed, got)
	case errno == 0 && len(fits) > 0 && h.seed != 0 && !slices.Contains(fits, h.seed):
		r.tally.fail("%s: a descriptor that read incarnation %x returned the bytes of %x", what, h.seed, fits)
	case errno == 0 && len(fits) == 1:
		h.seed = fits[0]
	case errno == syscall.ENODEV:
		// Once gone, always gone (DESIGN rule 6).
		if _, err := unix.Pread(h.fd, buf, 0); soakErrno(err) != syscall.ENODEV {
			r.tally.fail("%s: ENODEV, then %v on the same descriptor", what, err)
		}
		unix.Close(h.fd)
		delete(r.held, path)
		return
	}
	if r.rng.IntN(64) == 0 {
		unix.Close(h.fd)
		delete(r.held, path)
	}
}

func (r *soakPreader) judge(tool string, d *soakDev, t0 int64, got []byte, errno syscall.Errno, held bool, want func(uint64) []byte, what string) []uint64 {
	t1 := soakMono()
	if err := r.incs.load(); err != nil {
		r.tally.fail("%v", err)
	}
	v := soakJudge(d, r.incs.candidates(d.Name, t0, t1), got, errno, held, want)
	if v.problem != "" {
		r.tally.fail("%s: %s", what, v.problem)
	}
	r.tally.op(tool, d.Name, v.outcome, len(got), time.Duration(t1-t0), what)
	return v.fits
}

// soakLog is what the server's log says.
type soakLog struct {
	panics   int            // "provider panic" lines
	closed   int            // "fault provider closed" lines
	injected map[string]int // their counters, summed
	live     int            // providers in memory at the last close
	bad      []string       // lines that must not be there
	byMsg    map[string]int // warnings and errors, by message
}

var soakKV = regexp.MustCompile(`(\w+)=("(?:[^"\\]|\\.)*"|\S+)`)

func soakReadLog(t *testing.T, path string) soakLog {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("server log: %v", err)
	}
	l := soakLog{injected: map[string]int{}, byMsg: map[string]int{}}
	for _, line := range strings.Split(string(raw), "\n") {
		kv := map[string]string{}
		for _, m := range soakKV.FindAllStringSubmatch(line, -1) {
			if _, ok := kv[m[1]]; !ok {
				kv[m[1]] = strings.Trim(m[2], `"`)
			}
		}
		msg := kv["msg"]
		if kv["level"] == "WARN" || kv["level"] == "ERROR" {
			l.byMsg[msg]++
		}
		switch {
		case msg == "provider panic":
			l.panics++
		case msg == "fault provider closed":
			l.closed++
			for _, k := range []string{"reads", "errors", "delays", "shorts", "panics"} {
				n, _ := strconv.Atoi(kv[k])
				l.injected[k] += n
			}
			l.live, _ = strconv.Atoi(kv["live"])
		case strings.HasPrefix(msg, "fault provider") || strings.HasPrefix(msg, "hardware gone"):
			if len(l.bad) < 10 {
				l.bad = append(l.bad, line)
			}
		}
	}
	return l
}

// TestSoak: see the top of this file. It runs in the default mode and in
// --cache-all, where every file is served from the page cache and no open
// reaches the server: what the readers see must not change.
func TestSoak(t *testing.T) {
	for _, mode := range []struct {
		name  string
		flags []string
	}{{"default", nil}, {"cache-all", []string{"--cache-all"}}} {
		t.Run(mode.name, func(t *testing.T) { soak(t, mode.flags) })
	}
}

func soak(t *testing.T, mountFlags []string) {
	requireFUSE(t)
	run := soakShortRun
	form := "short"
	if v := os.Getenv(soakEnv); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			t.Fatalf("%s=%q: want a duration, such as 10m", soakEnv, v)
		}
		run, form = d, "long"
	} else if testing.Short() {
		run = 4 * time.Second
	}
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv(soakSeedEnv); v != "" {
		var err error
		if seed, err = strconv.ParseUint(v, 0, 64); err != nil {
			t.Fatalf("%s=%q: %v", soakSeedEnv, v, err)
		}
	}
	t.Logf("soak, %s form: %v of cycles, %s=%d", form, run, soakSeedEnv, seed)
	rng := rand.New(rand.NewPCG(seed, 0))

	dir := t.TempDir()
	s := &soakRun{tally: newSoakTally()}
	s.cells = writeFile(t, dir, "soak.cells", []byte(soakCellsFile()))
	logPath := filepath.Join(dir, "server.log")
	incPath := filepath.Join(dir, "incarnations")
	var err error
	if s.incs, err = soakCreateIncarnations(incPath); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.incs.f.Close() })
	// With --cache-all every device is cached: reads go through the page
	// cache, which may answer short before an error (soakJudge).
	cacheAll := slices.Contains(mountFlags, "--cache-all")
	devices := slices.Clone(soakDevices)
	for i := range devices {
		devices[i].Cached = devices[i].Cached || cacheAll
		d := devices[i]
		s.devs = append(s.devs, &d)
	}
	stable := s.devs[0]
	if err := s.incs.begin(stable.Name, stable.Seed0); err != nil {
		t.Fatal(err)
	}
	s.mnt = mountNV(t, append(mountFlags, "--log", logPath, "--device", stable.spec(stable.Seed0, s.cells))...)
	pids := serverPIDs(t, s.mnt)
	if len(pids) != 1 {
		t.Fatalf("want one server, found %v", pids)
	}
	pid := pids[0]
	attaches := 1 // every attach closes a provider once, by the end

	// 1. Each fault alone, through cat: an error, a short transfer and a
	// panic all fail the read with EIO, and the server lives on.
	probes := []string{"errors=1", "shorts=1", "panics=1"}
	var specs []string
	for _, p := range probes {
		specs = append(specs, fmt.Sprintf("fault:256,name=probe-%s,%s", strings.TrimSuffix(p, "s=1"), p))
	}
	if _, _, err := s.nvmemfs(append([]string{"attach", "-m", s.mnt}, specs...)...); err != nil {
		t.Fatal(err)
	}
	attaches += len(probes)
	for _, p := range probes {
		name := "probe-" + strings.TrimSuffix(p, "s=1")
		r := runCmd(t, cmdOpts{env: []string{"LC_ALL=C"}}, "cat", filepath.Join(s.mnt, name, "nvmem"))
		if r.code != 1 || r.stdout != "" || soakToolErrno(r.stderr) != syscall.EIO {
			t.Errorf("cat of a device with %s: want exit 1, no output and EIO; got %v", p, r)
		}
		if !soakAlive(pid) {
			t.Fatalf("the server died reading a device with %s", p)
		}
	}
	if _, _, err := s.nvmemfs("detach", "-m", s.mnt, "probe-error", "probe-short", "probe-panic"); err != nil {
		t.Fatal(err)
	}
	// With --cache-all the kernel reads through its page cache, which
	// tries a failed read once more (readahead, then the page alone): the
	// panic may be met twice.
	if l := soakReadLog(t, logPath); l.panics != 1 && !(cacheAll && l.panics == 2) {
		t.Errorf("after one injected panic the server log has %d \"provider panic\" lines, want 1", l.panics)
	}
	quietStart, err := soakSample(pid)
	if err != nil {
		t.Fatal(err)
	}

	// 2. The readers: cat and dd loops here, pread loops in helpers.
	var helpers []*soakHelper
	stopReaders := sync.OnceFunc(func() {
		s.stop.Store(true)
		s.wg.Wait()
		for _, h := range helpers {
			if _, err := h.finish(soakOpBound + 5*time.Second); err != nil {
				t.Error(err)
			}
		}
	})
	t.Cleanup(stopReaders) // before the unmount, which cleans up after mountNV
	for i := range 2 {
		h, err := s.startHelper(soakReaderParams{Mount: s.mnt, Devices: devices, IncLog: incPath,
			OpBound: soakOpBound, MaxRun: run + 5*time.Minute, Seed: seed + uint64(i) + 1})
		if err != nil {
			t.Fatal(err)
		}
		helpers = append(helpers, h)
	}
	for i := range 2 {
		s.wg.Add(2)
		go s.catLoop(seed + uint64(i))
		go s.ddLoop(seed + uint64(i))
	}
	// The helpers start slowly (TestMain builds the binary again): wait
	// for their first report before the clock starts.
	for _, h := range helpers {
		for {
			h.mu.Lock()
			lines := h.lines
			h.mu.Unlock()
			if lines > 0 {
				break
			}
			if msg := h.silence(); msg != "" {
				t.Fatal(msg)
			}
			select {
			case <-h.done:
				t.Fatalf("pread helper exited at its start: %v\n%s", h.waitErr, h.stderr.String())
			case <-time.After(20 * time.Millisecond):
			}
		}
	}

	// 3. The cycles: attach the devices that are out, each with a new
	// seed; let the readers at them; detach most of them.
	type state struct {
		attached bool
		next     uint64 // the next seed
	}
	states := map[string]*state{}
	var cycled []*soakDev
	for _, d := range s.devs {
		if d.Cycled {
			cycled = append(cycled, d)
			states[d.Name] = &state{next: d.Seed0}
		}
	}
	var detachTimes []time.Duration
	var samples []soakProc
	var loopErr error
	// detach detaches names (in one command or one each), recording when
	// each incarnation ends.
	detach := func(names []string) error {
		if len(names) == 0 {
			return nil
		}
		groups := [][]string{names}
		if rng.IntN(2) == 0 {
			groups = nil
			for _, n := range names {
				groups = append(groups, []string{n})
			}
		}
		for _, g := range groups {
			_, took, err := s.nvmemfs(append([]string{"detach", "-m", s.mnt}, g...)...)
			detachTimes = append(detachTimes, took)
			if err != nil {
				return err
			}
			for _, n := range g {
				if err := s.incs.end(n); err != nil {
					return err
				}
				states[n].attached = false
			}
		}
		return nil
	}
	begin := time.Now()
	cycles := 0
	for loopErr == nil && !s.hung.Load() {
		if d := time.Since(begin); d >= run && (cycles >= soakMinCycles || d >= soakStretch*run) {
			break
		}
		cycles++
		var out []*soakDev
		for _, d := range cycled {
			if !states[d.Name].attached {
				out = append(out, d)
			}
		}
		rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
		together := rng.IntN(2) == 0
		var specs []string
		for i, d := range out {
			st := states[d.Name]
			if err := s.incs.begin(d.Name, st.next); err != nil {
				t.Fatal(err)
			}
			specs = append(specs, d.spec(st.next, s.cells))
			st.next++
			st.attached = true
			attaches++
			if together && i < len(out)-1 {
				continue
			}
			if _, _, err := s.nvmemfs(append([]string{"attach", "-m", s.mnt}, specs...)...); err != nil {
				loopErr = err
				break
			}
			specs = nil
		}
		if loopErr != nil {
			break
		}
		time.Sleep(20*time.Millisecond + time.Duration(rng.Int64N(int64(130*time.Millisecond))))
		var names []string
		for _, d := range cycled {
			if rng.IntN(4) != 0 {
				names = append(names, d.Name)
			}
		}
		rng.Shuffle(len(names), func(i, j int) { names[i], names[j] = names[j], names[i] })
		if loopErr = detach(names); loopErr != nil {
			break
		}
		time.Sleep(time.Duration(rng.Int64N(int64(40 * time.Millisecond))))

		if !soakAlive(pid) {
			loopErr = fmt.Errorf("the server (pid %d) died in cycle %d", pid, cycles)
			break
		}
		if p, err := soakSample(pid); err == nil {
			p.At = time.Since(begin)
			samples = append(samples, p)
		}
		for _, h := range helpers {
			if msg := h.silence(); msg != "" {
				loopErr = errors.New(msg)
			}
		}
	}
	elapsed := time.Since(begin)
	if loopErr != nil {
		t.Errorf("cycle %d: %v", cycles, loopErr)
	}
	var names []string
	for _, d := range cycled {
		if states[d.Name].attached {
			names = append(names, d.Name)
		}
	}
	if err := detach(names); err != nil {
		t.Error(err)
	}

	// 4. Stop the readers, let the server settle, and look at it.
	stopReaders()
	for _, h := range helpers {
		h.mu.Lock()
		st := h.stats
		h.mu.Unlock()
		s.tally.merge(st)
	}
	time.Sleep(300 * time.Millisecond)
	quietEnd, err := soakSample(pid)
	if err != nil {
		t.Errorf("the server is gone after the run: %v", err)
	}
	if devs := lsJSON(t, cmdOpts{}, "-m", s.mnt); len(devs) != 1 || devs[stable.Name].Size != stable.Size {
		t.Errorf("after the run, ls --json = %+v; want only %s", devs, stable.Name)
	}
	if !soakAlive(pid) {
		t.Fatalf("the server (pid %d) is gone", pid)
	}
	mustOK(t, nv(t, "unmount", s.mnt))
	if left := waitServerGone(t, s.mnt, 10*time.Second); len(left) > 0 {
		t.Errorf("servers %v still run after unmount", left)
	}
	log := soakReadLog(t, logPath)

	// 5. The verdict and the report.
	st := s.tally.snapshot()
	for _, f := range st.Failures {
		t.Error(f)
	}
	if st.Failed > int64(len(st.Failures)) {
		t.Errorf("... and %d more failures", st.Failed-int64(len(st.Failures)))
	}
	count := func(prefix, outcome string) int64 {
		var n int64
		for k, v := range st.Counts {
			if strings.HasPrefix(k, prefix) && strings.HasSuffix(k, " "+outcome) {
				n += v
			}
		}
		return n
	}
	for _, tool := range []string{"cat ", "dd ", "pread-open ", "pread-held ", "pread-cell "} {
		if count(tool, "ok") == 0 {
			t.Errorf("no %sread succeeded: the soak did not exercise it", tool)
		}
	}
	if cycles < soakMinCycles {
		t.Errorf("only %d cycles in %v", cycles, elapsed)
	} else if elapsed > run+run/2 {
		t.Logf("the soak ran %v, past its %v, to have %d cycles", elapsed.Round(time.Millisecond), run, soakMinCycles)
	}
	if log.closed != attaches {
		t.Errorf("the log shows %d providers closed, want one per attach: %d", log.closed, attaches)
	}
	if log.panics != log.injected["panics"] {
		t.Errorf("the log has %d \"provider panic\" lines for %d injected panics", log.panics, log.injected["panics"])
	}
	if len(log.bad) > 0 {
		t.Errorf("the server log says:\n%s", strings.Join(log.bad, "\n"))
	}
	failing := log.injected["errors"] + log.injected["shorts"] + log.injected["panics"]
	if eio := count("@", "EIO"); eio > int64(failing) {
		t.Errorf("%d reads failed with EIO, but only %d faults that fail a read were injected", eio, failing)
	}

	// Growth: descriptors at rest must come back to where they were; under
	// load, late in the run against early in it, nothing may grow clearly.
	var base, last soakProc
	for _, p := range samples {
		if p.At >= elapsed/4 {
			base = p
			break
		}
	}
	if len(samples) > 0 {
		last = samples[len(samples)-1]
	}
	var peak soakProc
	for _, p := range samples {
		peak.FDs, peak.Threads, peak.RSSKiB = max(peak.FDs, p.FDs), max(peak.Threads, p.Threads), max(peak.RSSKiB, p.RSSKiB)
	}
	if quietEnd.FDs-quietEnd.Pooled > quietStart.FDs-quietStart.Pooled+1 {
		t.Errorf("server descriptors at rest, besides go-fuse's pipes and /dev/null: %d before the run, %d after",
			quietStart.FDs-quietStart.Pooled, quietEnd.FDs-quietEnd.Pooled)
	}
	if base.FDs > 0 {
		if last.FDs > base.FDs+8 {
			t.Errorf("server descriptors under load: %d at %v, %d at the end", base.FDs, base.At.Round(time.Second), last.FDs)
		}
		if last.Threads > base.Threads+max(10, base.Threads/2) {
			t.Errorf("server threads under load: %d at %v, %d at the end", base.Threads, base.At.Round(time.Second), last.Threads)
		}
		if last.RSSKiB > base.RSSKiB+max(8<<10, base.RSSKiB/4) {
			t.Errorf("server VmRSS under load: %d KiB at %v, %d KiB at the end", base.RSSKiB, base.At.Round(time.Second), last.RSSKiB)
		}
	}

	// A removed device must not stay in memory for good. The collector
	// lags, so some are always there, but not hundreds.
	if log.live > soakLiveCap {
		t.Errorf("removed devices stay in memory: at the last close, %d fault providers were not garbage-collected, of %d attached in all",
			log.live, attaches)
	}

	var report strings.Builder
	fmt.Fprintf(&report, "soak (%s form, %s=%d): %d cycles in %v; %d attaches",
		form, soakSeedEnv, seed, cycles, elapsed.Round(time.Millisecond), attaches)
	if len(detachTimes) > 0 {
		var sum time.Duration
		for _, d := range detachTimes {
			sum += d
		}
		fmt.Fprintf(&report, ", %d detach commands (mean %v, max %v)", len(detachTimes),
			(sum / time.Duration(len(detachTimes))).Round(time.Microsecond*100), slices.Max(detachTimes).Round(time.Microsecond*100))
	}
	fmt.Fprintf(&report, "\noperations: %d, %.1f MiB compared with the truth, %d failures; slowest %v (%s)\n",
		st.Ops, float64(st.Bytes)/(1<<20), st.Failed, st.MaxOp.Round(time.Millisecond), st.MaxOpWhat)
	outcomes := []string{"ok", "short", "ENODEV", "ENOENT", "EIO"}
	var rows []string
	seen := map[string]bool{}
	for k := range st.Counts {
		row, outcome, _ := strings.Cut(k, " ")
		if !seen[row] {
			seen[row] = true
			rows = append(rows, row)
		}
		if !slices.Contains(outcomes, outcome) {
			outcomes = append(outcomes, outcome)
		}
	}
	sort.Slice(rows, func(i, j int) bool {
		if (rows[i][0] == '@') != (rows[j][0] == '@') {
			return rows[j][0] == '@'
		}
		return rows[i] < rows[j]
	})
	fmt.Fprintf(&report, "  %-18s", "")
	for _, o := range outcomes {
		fmt.Fprintf(&report, " %8s", o)
	}
	report.WriteString("\n")
	for _, row := range rows {
		fmt.Fprintf(&report, "  %-18s", row)
		for _, o := range outcomes {
			fmt.Fprintf(&report, " %8d", st.Counts[row+" "+o])
		}
		report.WriteString("\n")
	}
	fmt.Fprintf(&report, "faults injected (server log): %d provider reads, %d errors, %d delays, %d short transfers, %d panics; %d \"provider panic\" lines; %d providers closed, %d still in memory at the last close\n",
		log.injected["reads"], log.injected["errors"], log.injected["delays"], log.injected["shorts"], log.injected["panics"], log.panics, log.closed, log.live)
	var msgs []string
	for m, n := range log.byMsg {
		msgs = append(msgs, fmt.Sprintf("%q %d", m, n))
	}
	sort.Strings(msgs)
	fmt.Fprintf(&report, "server log warnings and errors: %s\n", strings.Join(msgs, ", "))
	fmt.Fprintf(&report, "server pid %d: at rest %v before, %v after; under load %v at %v, %v at %v; peak %d fds, %d threads, VmRSS %.1f MiB",
		pid, quietStart, quietEnd, base, base.At.Round(time.Second), last, last.At.Round(time.Second),
		peak.FDs, peak.Threads, float64(peak.RSSKiB)/1024)
	// The trend, in eighths of the run.
	report.WriteString("\nunder load, by eighths of the run:")
	next := time.Duration(0)
	for _, p := range samples {
		if p.At >= next {
			fmt.Fprintf(&report, "\n  %6v: %v", p.At.Round(time.Second), p)
			next += elapsed / 8
		}
	}
	t.Log(report.String())
}
