// Command harness measures nvmemfs beside its baselines, side by side in
// one run on one machine, and writes the figures as a table, as JSON
// (results.json) and as a plot of removal latency (removal.png):
//
//	go run ./bench/harness -out bench/out
//
// It mounts FUSE file systems, so it needs /dev/fuse (and root for FUSE
// passthrough). docs/PERFORMANCE.md explains every figure; bench/README.md
// the flags.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// options are the harness's flags.
type options struct {
	out        string
	work       string
	quick      bool
	sections   string
	reps       int
	trials     int
	readers    string
	devices    int
	cells      int
	binary     string
	profileDir string
	speed      int
	procs      int
	trace      string
	log        io.Writer
}

func defaultOptions() options {
	return options{
		out:      "bench/out",
		sections: "srcu,loops,removal,scale",
		readers:  "0,1,2,4,8,16,32",
		devices:  1000,
		cells:    50,
		speed:    400_000,
		log:      os.Stderr,
	}
}

func main() {
	runChildIfAsked()
	o := defaultOptions()
	flag.StringVar(&o.out, "out", o.out, "folder for results.json and removal.png")
	flag.StringVar(&o.work, "work", "", "scratch folder for images and mountpoints (default: a new temporary folder, removed afterwards)")
	flag.BoolVar(&o.quick, "quick", false, "a smoke run: few iterations, small devices (figures not meaningful)")
	flag.StringVar(&o.sections, "sections", o.sections, "comma-separated sections to run: srcu, loops, removal, scale")
	flag.IntVar(&o.reps, "reps", 0, "repetitions of every loop and SRCU figure (default 7, quick 2)")
	flag.IntVar(&o.trials, "trials", 0, "removals per provider and reader count (default 100, quick 3)")
	flag.StringVar(&o.readers, "readers", o.readers, "reader counts for the removal figures")
	flag.IntVar(&o.devices, "devices", o.devices, "devices for the scale figure (quick: 20)")
	flag.IntVar(&o.cells, "cells", o.cells, "cells per device for the scale figure")
	flag.StringVar(&o.binary, "nvmemfs", "", "nvmemfs binary for the scale figure (default: go build it)")
	flag.StringVar(&o.profileDir, "cpuprofile-dir", "", "write CPU profiles of the servers (this process) during the loops and the removals here")
	flag.IntVar(&o.speed, "i2c-speed", o.speed, "emulated I2C clock of the simulated EEPROM, Hz")
	flag.IntVar(&o.procs, "gomaxprocs", 0, "GOMAXPROCS of this process, which runs the servers of the loops and removals (default: the Go default, one per core, as the nvmemfs binary runs)")
	flag.StringVar(&o.trace, "trace-removal", "", "write an execution trace of the removal section to this file")
	replot := flag.String("plot-from", "", "only draw removal.png again, into -out, from this results.json")
	flag.Parse()
	if flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "harness: no arguments expected; see -h")
		os.Exit(2)
	}
	if *replot != "" {
		if err := plotFrom(*replot, o.out); err != nil {
			fmt.Fprintln(os.Stderr, "harness:", err)
			os.Exit(1)
		}
		return
	}
	res, err := run(o)
	if res != nil {
		printTable(os.Stdout, res)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "harness:", err)
		os.Exit(1)
	}
}

// cleanups run in reverse order, once, at the end or on a signal.
type cleanups struct {
	mu  sync.Mutex
	fns []func()
}

func (c *cleanups) add(fn func()) {
	c.mu.Lock()
	c.fns = append(c.fns, fn)
	c.mu.Unlock()
}

func (c *cleanups) run() {
	c.mu.Lock()
	fns := c.fns
	c.fns = nil
	c.mu.Unlock()
	for _, fn := range slices.Backward(fns) {
		fn()
	}
}

// Machine describes where the figures come from.
type Machine struct {
	CPU        string `json:"cpu"`
	Cores      int    `json:"cores"`
	Kernel     string `json:"kernel"`
	Go         string `json:"go"`
	OS         string `json:"os"`
	Arch       string `json:"arch"`
	Root       bool   `json:"root"`
	Date       string `json:"date"`
	LoadAvg    string `json:"loadavg_at_start"`
	LoadAvgEnd string `json:"loadavg_at_end"`
	// CPUPressure is /proc/pressure/cpu's "some" line at the start and
	// the end: the share of time tasks waited for a CPU.
	CPUPressure    string `json:"cpu_pressure_at_start"`
	CPUPressureEnd string `json:"cpu_pressure_at_end"`
	GoMaxProcs     int    `json:"gomaxprocs"`
}

// Target is one of the targets, and whether the run met it.
type Target struct {
	Name        string  `json:"name"`
	Target      string  `json:"target"`
	Measured    string  `json:"measured"`
	Value       float64 `json:"value"`
	Limit       float64 `json:"limit"`
	Met         bool    `json:"met"`
	WasMeasured bool    `json:"was_measured"`
}

// Results is results.json.
type Results struct {
	Machine Machine `json:"machine"`
	Quick   bool    `json:"quick"`
	Reps    int     `json:"reps"`
	// ServerProcs is GOMAXPROCS of the harness process while its servers
	// ran (the scale server is the nvmemfs binary, with its own default).
	ServerProcs int               `json:"server_gomaxprocs"`
	Started     string            `json:"started"`
	Seconds     float64           `json:"seconds"`
	SRCU        *SRCUResult       `json:"srcu,omitempty"`
	Loops       *LoopsResult      `json:"loops,omitempty"`
	Removal     *RemovalResult    `json:"removal,omitempty"`
	Scale       *ScaleResult      `json:"scale,omitempty"`
	Targets     []Target          `json:"targets"`
	Errors      map[string]string `json:"errors,omitempty"`
	Files       []string          `json:"files"`
}

func machine() Machine {
	m := Machine{Cores: runtime.NumCPU(), Go: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH,
		Root: os.Geteuid() == 0, Date: time.Now().UTC().Format(time.RFC3339), GoMaxProcs: runtime.GOMAXPROCS(0)}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	m.LoadAvg = loadAvg()
	m.CPUPressure = cpuPressure()
	return m
}

// cpuPressure is the "some" line of /proc/pressure/cpu, without its total.
func cpuPressure() string {
	b, err := os.ReadFile("/proc/pressure/cpu")
	if err != nil {
		return ""
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 4 {
		return ""
	}
	return strings.Join(f[1:4], " ")
}

// loadAvg is the 1, 5 and 15 minute load averages: on a shared machine,
// what else was running.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}

func parseInts(s string) ([]int, error) {
	var l []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 0 {
			return nil, fmt.Errorf("bad number %q in %q", f, s)
		}
		l = append(l, n)
	}
	return l, nil
}

// run runs the sections o asks for and writes the results; it returns them
// with the first error of any section.
func run(o options) (*Results, error) {
	start := time.Now()
	logf := func(format string, args ...any) {
		fmt.Fprintf(o.log, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
	}
	if o.reps == 0 {
		o.reps = 7
		if o.quick {
			o.reps = 2
		}
	}
	if o.trials == 0 {
		o.trials = 100
		if o.quick {
			o.trials = 3
		}
	}
	readers, err := parseInts(o.readers)
	if err != nil {
		return nil, err
	}
	if o.quick {
		readers = slices.DeleteFunc(readers, func(n int) bool { return n > 4 })
		o.devices = min(o.devices, 20)
	}
	want := map[string]bool{}
	for s := range strings.SplitSeq(o.sections, ",") {
		switch s = strings.TrimSpace(s); s {
		case "srcu", "loops", "removal", "scale":
			want[s] = true
		default:
			return nil, fmt.Errorf("unknown section %q", s)
		}
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return nil, err
	}
	work := o.work
	if work == "" {
		if work, err = os.MkdirTemp("", "nvmemfs-bench-"); err != nil {
			return nil, err
		}
		defer os.RemoveAll(work)
	}
	if o.profileDir != "" {
		if err := os.MkdirAll(o.profileDir, 0o755); err != nil {
			return nil, err
		}
	}
	profile := func(name string) string {
		if o.profileDir == "" {
			return ""
		}
		return filepath.Join(o.profileDir, name)
	}

	var cl cleanups
	defer cl.run()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		if _, ok := <-sigs; ok {
			cl.run()
			os.Exit(130)
		}
	}()

	res := &Results{Machine: machine(), Quick: o.quick, Reps: o.reps, Started: start.UTC().Format(time.RFC3339), Errors: map[string]string{}}
	logf("machine: %s, %d cores, Linux %s, %s", res.Machine.CPU, res.Machine.Cores, res.Machine.Kernel, res.Machine.Go)

	if want["srcu"] {
		cfg := srcuConfig{cpus: cpuList(), ops: 20_000_000, reps: o.reps}
		if o.quick {
			cfg.ops = 200_000
		}
		res.SRCU = runSRCUSection(cfg, logf)
	}
	if o.procs > 0 {
		runtime.GOMAXPROCS(o.procs)
	}
	res.ServerProcs = runtime.GOMAXPROCS(0)
	if want["loops"] {
		cfg := loopsConfig{reps: o.reps, cycleIters: 3000, preadIters: 10000, bulkPasses: 4, bulkSize: 16 << 20, profile: profile("loops.pprof")}
		if o.quick {
			cfg = loopsConfig{reps: o.reps, cycleIters: 50, preadIters: 100, bulkPasses: 1, bulkSize: 1 << 20, profile: cfg.profile}
		}
		lr, err := runLoopsSection(work, cfg, &cl, logf)
		if err != nil {
			res.Errors["loops"] = err.Error()
		}
		res.Loops = lr
		cl.run() // unmount before the next section
	}
	if want["removal"] {
		cfg := removalConfig{readers: readers, trials: o.trials, at24Chip: "24c256", speed: o.speed, profile: profile("removal.pprof"), trace: o.trace}
		rr, err := runRemovalSection(work, cfg, &cl, logf)
		if err != nil {
			res.Errors["removal"] = err.Error()
		}
		res.Removal = rr
		cl.run()
		if rr != nil {
			png := filepath.Join(o.out, "removal.png")
			if err := plotRemoval(png, removalPanels(rr, o.speed), removalSubtitle(o.trials, res.ServerProcs)); err != nil {
				res.Errors["plot"] = err.Error()
			} else {
				res.Files = append(res.Files, png)
			}
		}
	}
	if want["scale"] {
		cfg := scaleConfig{devices: o.devices, cells: o.cells, binary: o.binary, listRep: 10}
		sr, err := runScaleSection(work, cfg, logf)
		if err != nil {
			res.Errors["scale"] = err.Error()
		}
		res.Scale = sr
	}
	res.Targets = targets(res)
	res.Seconds = time.Since(start).Seconds()
	res.Machine.LoadAvgEnd = loadAvg()
	res.Machine.CPUPressureEnd = cpuPressure()

	js := filepath.Join(o.out, "results.json")
	res.Files = append(res.Files, js)
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return res, err
	}
	if err := os.WriteFile(js, append(b, '\n'), 0o644); err != nil {
		return res, err
	}
	logf("wrote %s", strings.Join(res.Files, ", "))
	if len(res.Errors) > 0 {
		var errs []error
		for _, k := range []string{"loops", "removal", "plot", "scale"} {
			if e, ok := res.Errors[k]; ok {
				errs = append(errs, fmt.Errorf("%s: %s", k, e))
			}
		}
		return res, errors.Join(errs...)
	}
	return res, nil
}

// plotFrom draws removal.png into out from a results.json.
func plotFrom(path, out string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var res Results
	if err := json.Unmarshal(b, &res); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if res.Removal == nil || len(res.Removal.Points) == 0 {
		return fmt.Errorf("%s has no removal figures", path)
	}
	pt := res.Removal.Points[0]
	speed := res.Removal.I2CHz
	if speed == 0 {
		speed = defaultOptions().speed
	}
	return plotRemoval(filepath.Join(out, "removal.png"), removalPanels(res.Removal, speed), removalSubtitle(pt.Trials, res.ServerProcs))
}

func removalPanels(rr *RemovalResult, speed int) []panelData {
	var panels []panelData
	for _, prov := range []string{"file", "at24"} {
		var p panelData
		switch prov {
		case "file":
			p.title = "FILE, 64 KIB CHUNKS"
		case "at24":
			p.title = fmt.Sprintf("24C256 AT %d KHZ, 128 B CHUNKS", speed/1000)
		}
		for _, pt := range rr.Points {
			if pt.Provider != prov {
				continue
			}
			p.readers = append(p.readers, pt.Readers)
			p.p50 = append(p.p50, pt.P50ms)
			p.p99 = append(p.p99, pt.P99ms)
			p.max = append(p.max, pt.MaxMs)
			p.target = pt.TargetMs
		}
		if len(p.readers) > 0 {
			panels = append(panels, p)
		}
	}
	return panels
}

func removalSubtitle(trials, procs int) string {
	return fmt.Sprintf("TIME FOR REGISTRY.UNREGISTER TO RETURN, %d REMOVALS A POINT, SERVER GOMAXPROCS %d", trials, procs)
}

// ratioOf finds a ratio's median by name.
func ratioOf(rs []Ratio, name string) (float64, bool) {
	for _, r := range rs {
		if r.Name == name {
			return r.Ratio.Median, len(r.Ratio.Runs) > 0
		}
	}
	return 0, false
}

func targets(res *Results) []Target {
	var ts []Target
	add := func(name, target string, value, limit float64, atMost, measured bool, format string) {
		t := Target{Name: name, Target: target, Value: value, Limit: limit, WasMeasured: measured}
		if measured {
			t.Measured = fmt.Sprintf(format, value)
			if atMost {
				t.Met = value <= limit
			} else {
				t.Met = value >= limit
			}
		} else {
			t.Measured = "not measured"
		}
		ts = append(ts, t)
	}
	var loops []Ratio
	if res.Loops != nil {
		loops = res.Loops.Ratios
	}
	v, ok := ratioOf(loops, "cycle/nvmemfs / cycle/minimal")
	add("small-cell open+read+close", "at most 1.1x the minimal go-fuse server", v, 1.1, true, ok, "%.2fx")
	v, ok = ratioOf(loops, "pread/nvmemfs / pread/minimal")
	add("small-cell pread", "at most 1.1x the minimal go-fuse server", v, 1.1, true, ok, "%.2fx")
	v, ok = ratioOf(loops, "cycle/nvmemfs-cache-all / cycle/sysfs")
	add("--cache-all cell open+read+close", "at most 1.0x sysfs", v, 1.0, true, ok, "%.2fx")
	v, ok = ratioOf(loops, "pread/nvmemfs-cache / pread/sysfs")
	add("cached cell pread", "at most 1.0x sysfs", v, 1.0, true, ok, "%.2fx")
	v, ok = ratioOf(loops, "cycle/nvmemfs / cycle/nvmemfs-flush")
	add("default cell open+read+close", "no slower than before FOPEN_NOFLUSH (at most 1.0x)", v, 1.0, true, ok, "%.2fx")
	v, ok = ratioOf(loops, "bulk/nvmemfs / bulk/loopback")
	add("bulk read, 128 KiB", "at least 0.9x go-fuse loopback, passthrough off (throughput)", v, 0.9, false, ok, "%.2fx")
	var srcu []Ratio
	if res.SRCU != nil {
		srcu = res.SRCU.Ratios
	}
	v, ok = ratioOf(srcu, "srcu/cpu2 / rwmutex/cpu2")
	add("SRCU read section vs RWMutex", "at most 0.5x an RWMutex read lock at 2 cores", v, 0.5, true, ok, "%.2fx")
	v, ok = ratioOf(srcu, "srcu/cpu2 / srcu/cpu1")
	add("SRCU at 2 cores vs 1", "ns/op at 2 cores no more than at 1", v, 1.0, true, ok, "%.2fx")
	for _, prov := range []string{"file", "at24"} {
		var pt *RemovalPoint
		if res.Removal != nil {
			for i := range res.Removal.Points {
				p := &res.Removal.Points[i]
				if p.Provider == prov && p.Readers == 32 {
					pt = p
				}
			}
		}
		name := "removal with 32 readers, " + prov
		if pt == nil {
			add(name, "p99 at most one provider chunk + 5 ms", 0, 0, true, false, "")
			continue
		}
		add(name, fmt.Sprintf("p99 at most one provider chunk + 5 ms (%.2f ms)", pt.TargetMs), pt.P99ms, pt.TargetMs, true, true, "%.2f ms p99")
	}
	sc := res.Scale
	full := sc != nil && sc.Devices >= 1000 && sc.Cells >= 50 && sc.RootEntries == sc.Devices
	var attach, hwm float64
	if sc != nil {
		attach, hwm = sc.AttachMs, sc.HWMMiB
	}
	add("1000 devices x 50 cells: attach", "under 2 s", attach/1000, 2, true, full, "%.2f s")
	add("1000 devices x 50 cells: resident memory", "at most 64 MiB (peak VmHWM of the server)", hwm, 64, true, full, "%.1f MiB")
	return ts
}
