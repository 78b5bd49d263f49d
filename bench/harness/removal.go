package main

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/trace"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nvmemfs/nvmemfs/backends/at24"
	"github.com/nvmemfs/nvmemfs/backends/at24/at24test"
	nvfs "github.com/nvmemfs/nvmemfs/fs"
	"github.com/nvmemfs/nvmemfs/nvcore"
)

// Removal latency: how long Registry.Unregister (what `nvmemfs detach`
// runs in the server) takes while readers in another process loop on the
// device through the mount.

type removalConfig struct {
	readers  []int
	trials   int
	at24Chip string
	speed    int // Hz
	profile  string
	// trace, when set, is where an execution trace of the removals goes
	// (go tool trace -pprof=sched shows where goroutines waited for a P).
	trace string
}

// RemovalPoint is one provider at one number of readers.
type RemovalPoint struct {
	Provider string  `json:"provider"`
	Readers  int     `json:"readers"`
	Trials   int     `json:"trials"`
	ReadSize int     `json:"read_size"`
	P50ms    float64 `json:"p50_ms"`
	P99ms    float64 `json:"p99_ms"`
	MaxMs    float64 `json:"max_ms"`
	// ChunkMs is the time of one provider chunk, the longest call a
	// removal should have to wait for; TargetMs = ChunkMs + 5.
	ChunkMs  float64 `json:"chunk_ms"`
	TargetMs float64 `json:"target_ms"`
	Met      bool    `json:"met"`
	// ReadsPerTrial is the median number of reads the readers completed
	// in a trial before the removal: they were busy.
	ReadsPerTrial float64 `json:"reads_per_trial"`
	// The removal in two phases: marking the device gone, the drain
	// (Synchronize) and closing the provider; then the file system's part
	// (RmChild, and NotifyDelete to the kernel, on fs's notifier goroutine).
	DrainP50ms  float64 `json:"drain_p50_ms"`
	DrainP99ms  float64 `json:"drain_p99_ms"`
	NotifyP50ms float64 `json:"notify_p50_ms"`
	NotifyP99ms float64 `json:"notify_p99_ms"`
	// RunDelay is how long this process's threads (the server's) waited
	// for a CPU while the removal was under way, summed over the threads
	// (/proc/self/task/*/schedstat): on a machine that others share, the
	// part of the removal that is nobody's code. SlowestRunDelayMs is that
	// of the slowest removal.
	RunDelayP50ms     float64 `json:"run_delay_p50_ms"`
	RunDelayP99ms     float64 `json:"run_delay_p99_ms"`
	SlowestRunDelayMs float64 `json:"slowest_run_delay_ms"`
	// ChunksDuring is the median number of bus transfers (chunks) that
	// started while the removal was under way, ChunksDuringMax the most:
	// calls that entered their read section before the removal and queued
	// for the bus. Simulated buses only.
	ChunksDuring    float64 `json:"chunks_started_during_removal"`
	ChunksDuringMax float64 `json:"chunks_started_during_removal_max"`
	// BadEnds counts readers that ended on another error than ENODEV.
	BadEnds int64     `json:"bad_ends"`
	Samples []float64 `json:"samples_ms"`
}

// RemovalResult is the removal section of results.json.
type RemovalResult struct {
	Points []RemovalPoint `json:"points"`
	Note   string         `json:"note"`
	I2CHz  int            `json:"i2c_hz"`
}

// removalProvider attaches one device for a trial.
type removalProvider struct {
	name     string
	readSize int
	devSize  int64
	chunk    time.Duration
	settle   [2]time.Duration // random pause before the removal, so it lands anywhere in a read
	attach   func(reg *nvcore.Registry, name string) (*busProbe, error)
}

// stampCell is the one cell every removal device has: its CELL_REMOVE
// event, published once the drain is over and the provider closed, and
// before the file system is told (DEVICE_REMOVE), splits a removal's time
// in two.
func stampCell() []nvcore.CellInfo {
	return []nvcore.CellInfo{{Name: "stamp", Offset: 0, Bytes: 4}}
}

// phases records, for the removal under way, when its drain ended
// (CELL_REMOVE) and when the file system had dropped the device
// (DEVICE_REMOVE, seen after fs's own subscriber has run).
type phases struct {
	drained, notified atomic.Int64 // UnixNano
}

func (ph *phases) event(ev nvcore.Event) {
	switch ev.Kind {
	case nvcore.CellRemove:
		ph.drained.Store(time.Now().UnixNano())
	case nvcore.DeviceRemove:
		ph.notified.Store(time.Now().UnixNano())
	}
}

// busProbe watches a simulated bus: transfers counts every transfer that
// started.
type busProbe struct{ transfers atomic.Int64 }

// fileChunkTime measures what one provider chunk of a file device costs: a
// 64 KiB ReadAt of the (page-cached) image, the transfer size the core uses
// for providers that state none. Median of 200.
func fileChunkTime(path string) (time.Duration, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	var runs []float64
	for i := range 200 {
		t0 := time.Now()
		if _, err := f.ReadAt(buf, int64(i%8)*int64(len(buf))); err != nil && err != io.EOF {
			return 0, err
		}
		runs = append(runs, float64(time.Since(t0)))
	}
	return time.Duration(median(runs)), nil
}

// at24ChunkTime is the wire time of one 128-byte read of a chip with
// addrBytes-byte word addresses: start, address, word address, repeated
// start, address, 128 data bytes, stop; 9 bits a byte.
func at24ChunkTime(addrBytes, ioLimit, speed int) time.Duration {
	bits := 1 + 9 + 9*addrBytes + 1 + 9 + 9*ioLimit + 1
	return time.Duration(int64(bits) * int64(time.Second) / int64(speed))
}

// at24Provider attaches a simulated chip at cfg.speed, read-only.
func at24Provider(name string, chip at24.Chip, cfg removalConfig) removalProvider {
	chunk := at24ChunkTime(chip.AddrBytes, at24.DefaultIOLimit, cfg.speed)
	return removalProvider{
		name: name, readSize: 4096, devSize: int64(chip.Size), chunk: chunk,
		// One to four chunk times: the readers are inside their reads.
		settle: [2]time.Duration{chunk, 4 * chunk},
		attach: func(reg *nvcore.Registry, dev string) (*busProbe, error) {
			bus := at24test.MustNew(at24test.Config{
				Name: "sim-" + dev, Size: chip.Size, AddrBytes: chip.AddrBytes,
				Addresses: chip.Addresses, PageSize: max(chip.PageSize, 1), Speed: cfg.speed,
			})
			probe := &busProbe{}
			bus.SetHook(func(uint16, []byte, []byte) error {
				probe.transfers.Add(1)
				return nil
			})
			p, err := at24.Open(bus, 0x50, at24.Options{Chip: cfg.at24Chip, ReadOnly: true})
			if err != nil {
				bus.Close()
				return nil, err
			}
			if _, err := reg.Register(nvcore.Config{Name: dev, Type: nvcore.TypeEEPROM, Cells: stampCell()}, p); err != nil {
				p.Close()
				return nil, err
			}
			return probe, nil
		},
	}
}

func runRemovalSection(work string, cfg removalConfig, cl *cleanups, logf func(string, ...any)) (*RemovalResult, error) {
	dir := filepath.Join(work, "mnt", "removal")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	reg, mount, err := mountNvmemfs(dir, nvfs.Options{})
	if err != nil {
		return nil, fmt.Errorf("mount nvmemfs: %w", err)
	}
	cl.add(func() {
		reg.RemoveAll()
		mount.Unmount()
	})
	// Subscribed after fs.Mount: runs after the file system's subscriber.
	ph := &phases{}
	unsubscribe := reg.Subscribe(ph.event)
	defer unsubscribe()

	img := filepath.Join(work, "images", "removal.bin")
	if err := os.MkdirAll(filepath.Dir(img), 0o755); err != nil {
		return nil, err
	}
	const fileSize = 4 << 20
	if err := writeBulk(img, fileSize); err != nil {
		return nil, err
	}
	fileChunk, err := fileChunkTime(img)
	if err != nil {
		return nil, err
	}
	chip, err := at24.LookupChip(cfg.at24Chip)
	if err != nil {
		return nil, err
	}
	providers := []removalProvider{
		{
			name: "file", readSize: bulkRead, devSize: fileSize, chunk: fileChunk,
			settle: [2]time.Duration{time.Millisecond, 3 * time.Millisecond},
			attach: func(reg *nvcore.Registry, name string) (*busProbe, error) {
				_, err := attachFile(reg, name, img, false, stampCell())
				return nil, err
			},
		},
		at24Provider("at24", chip, cfg),
	}

	stopProfile, err := startProfile(cfg.profile)
	if err != nil {
		return nil, err
	}
	defer stopProfile()
	if cfg.trace != "" {
		f, err := os.Create(cfg.trace)
		if err != nil {
			return nil, err
		}
		if err := trace.Start(f); err != nil {
			f.Close()
			return nil, err
		}
		defer func() {
			trace.Stop()
			f.Close()
		}()
	}
	res := &RemovalResult{Note: fmt.Sprintf("file: %d KiB preads of a %d MiB image, 64 KiB provider chunks; at24: %s at %d kHz, 4 KiB preads, %d-byte chunks",
		bulkRead>>10, fileSize>>20, cfg.at24Chip, cfg.speed/1000, at24.DefaultIOLimit), I2CHz: cfg.speed}
	trial := 0
	for _, p := range providers {
		for _, n := range cfg.readers {
			pt, err := removalPoint(reg, dir, p, n, cfg.trials, &trial, ph)
			if err != nil {
				return nil, fmt.Errorf("removal %s with %d readers: %w", p.name, n, err)
			}
			logf("removal %-4s %2d readers: p50 %.2f ms, p99 %.2f ms, max %.2f ms (target %.2f ms)",
				p.name, n, pt.P50ms, pt.P99ms, pt.MaxMs, pt.TargetMs)
			res.Points = append(res.Points, pt)
		}
	}
	return res, nil
}

func removalPoint(reg *nvcore.Registry, dir string, p removalProvider, readers, trials int, trial *int, ph *phases) (RemovalPoint, error) {
	pt := RemovalPoint{Provider: p.name, Readers: readers, Trials: trials, ReadSize: p.readSize,
		ChunkMs: ms(p.chunk), TargetMs: ms(p.chunk) + 5}
	var lines chan string
	var in io.WriteCloser
	if readers > 0 {
		cmd, stdin, out, err := startChild("readers")
		if err != nil {
			return pt, err
		}
		in = stdin
		lines = make(chan string, 4)
		go func() {
			defer close(lines)
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				lines <- sc.Text()
			}
		}()
		defer func() {
			in.Close()
			cmd.Wait()
		}()
	}
	next := func(what string) (string, error) {
		select {
		case l, ok := <-lines:
			if !ok {
				return "", fmt.Errorf("the readers' process ended, waiting for %s", what)
			}
			if strings.HasPrefix(l, "err ") {
				return "", fmt.Errorf("readers: %s", l[4:])
			}
			return l, nil
		case <-time.After(60 * time.Second):
			return "", fmt.Errorf("no %q from the readers in 60 s", what)
		}
	}
	var reads, during, drain, notify, delay []float64
	for range trials {
		*trial++
		name := fmt.Sprintf("rm-%s-%d", p.name, *trial)
		probe, err := p.attach(reg, name)
		if err != nil {
			return pt, err
		}
		if readers > 0 {
			fmt.Fprintf(in, "run %d %d %d %s\n", readers, p.readSize, p.devSize, filepath.Join(dir, name, "nvmem"))
			if l, err := next("ready"); err != nil {
				reg.Unregister(name)
				return pt, err
			} else if l != "ready" {
				reg.Unregister(name)
				return pt, fmt.Errorf("readers said %q", l)
			}
		}
		span := p.settle[1] - p.settle[0]
		time.Sleep(p.settle[0] + time.Duration(rand.Int64N(int64(span)+1)))
		var c0 int64
		if probe != nil {
			c0 = probe.transfers.Load()
		}
		ph.drained.Store(0)
		ph.notified.Store(0)
		rd0 := runDelay()
		t0 := time.Now()
		if err := reg.Unregister(name); err != nil {
			return pt, err
		}
		pt.Samples = append(pt.Samples, ms(time.Since(t0)))
		delay = append(delay, ms(runDelay()-rd0))
		if d, n := ph.drained.Load(), ph.notified.Load(); d != 0 && n != 0 {
			drain = append(drain, ms(time.Duration(d-t0.UnixNano())))
			notify = append(notify, ms(time.Duration(n-d)))
		}
		if probe != nil {
			during = append(during, float64(probe.transfers.Load()-c0))
		}
		if readers > 0 {
			l, err := next("done")
			if err != nil {
				return pt, err
			}
			var n, bad int64
			if _, err := fmt.Sscanf(l, "done %d %d", &n, &bad); err != nil {
				return pt, fmt.Errorf("readers said %q", l)
			}
			reads = append(reads, float64(n))
			pt.BadEnds += bad
		}
	}
	pt.P50ms = percentile(pt.Samples, 50)
	pt.P99ms = percentile(pt.Samples, 99)
	pt.MaxMs = percentile(pt.Samples, 100)
	pt.Met = pt.P99ms <= pt.TargetMs
	if len(reads) > 0 {
		pt.ReadsPerTrial = median(reads)
	}
	pt.RunDelayP50ms, pt.RunDelayP99ms = percentile(delay, 50), percentile(delay, 99)
	slowest := 0
	for i, v := range pt.Samples {
		if v > pt.Samples[slowest] {
			slowest = i
		}
	}
	if len(delay) > 0 {
		pt.SlowestRunDelayMs = delay[slowest]
	}
	if len(drain) > 0 {
		pt.DrainP50ms, pt.DrainP99ms = percentile(drain, 50), percentile(drain, 99)
		pt.NotifyP50ms, pt.NotifyP99ms = percentile(notify, 50), percentile(notify, 99)
	}
	if len(during) > 0 {
		pt.ChunksDuring = median(during)
		pt.ChunksDuringMax = percentile(during, 100)
	}
	return pt, nil
}

// runDelay sums the time this process's threads have spent runnable but
// waiting for a CPU (the second field of /proc/self/task/*/schedstat).
func runDelay() time.Duration {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return 0
	}
	var sum int64
	for _, t := range tasks {
		b, err := os.ReadFile("/proc/self/task/" + t.Name() + "/schedstat")
		if err != nil {
			continue
		}
		if f := strings.Fields(string(b)); len(f) >= 2 {
			if v, err := strconv.ParseInt(f[1], 10, 64); err == nil {
				sum += v
			}
		}
	}
	return time.Duration(sum)
}
