package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"

	"github.com/nvmemfs/nvmemfs/backends/file"
	nvfs "github.com/nvmemfs/nvmemfs/fs"
	"github.com/nvmemfs/nvmemfs/nvcore"
)

// The small-cell, bulk and cache-mode loops: every server mounted at once in
// this process, every client loop run by one child process, interleaved.

const (
	cellOff   = 0xfa // the demo EEPROM's mac-address cell
	cellBytes = 6
	cellRel   = "board/cells/mac-address@fa,0"
	bulkRead  = 128 << 10
)

// sysfsCandidates are small kernel attributes, the first readable one is the
// sysfs baseline.
var sysfsCandidates = []string{
	"/sys/class/net/lo/address",
	"/sys/kernel/mm/transparent_hugepage/enabled",
	"/sys/devices/system/cpu/online",
}

func sysfsAttr() (string, error) {
	for _, p := range sysfsCandidates {
		if b, err := os.ReadFile(p); err == nil && len(b) >= cellBytes {
			return p, nil
		}
	}
	return "", fmt.Errorf("none of %v is readable", sysfsCandidates)
}

// LoopFigure is one client loop's figures.
type LoopFigure struct {
	Name string `json:"name"`
	// NsPerOp: one open-read-close cycle, one pread, or (bulk) one
	// 128 KiB read.
	NsPerOp Summary `json:"ns_per_op"`
	// MiBPerSec is given for bulk reads.
	MiBPerSec *Summary `json:"mib_per_s,omitempty"`
	// Bytes one operation read (for bulk: one pass).
	Bytes int `json:"bytes"`
}

// Ratio compares two loops of the same repetition: A over B, per
// repetition, then the median.
type Ratio struct {
	Name    string  `json:"name"`
	Of      string  `json:"of"`
	Over    string  `json:"over"`
	Measure string  `json:"measure"` // "time" (ns/op) or "throughput"
	Ratio   Summary `json:"ratio"`
}

// LoopsResult is the loops section of results.json.
type LoopsResult struct {
	SysfsPath string       `json:"sysfs_path"`
	BulkBytes int64        `json:"bulk_bytes"`
	Figures   []LoopFigure `json:"figures"`
	Ratios    []Ratio      `json:"ratios"`
	// Passthrough: what the kernel offered and what happened.
	Passthrough PassthroughResult `json:"passthrough"`
}

// PassthroughResult says whether FUSE passthrough worked.
type PassthroughResult struct {
	KernelOffers bool `json:"kernel_offers"`
	// ServerReads counts the READ requests each loopback server saw during
	// the timed loops: none means the kernel read the backing file itself.
	ServerReadsOff int64  `json:"server_reads_off"`
	ServerReadsOn  int64  `json:"server_reads_on"`
	InEffect       bool   `json:"in_effect"`
	Note           string `json:"note"`
}

type loopsConfig struct {
	reps       int
	cycleIters int
	preadIters int
	bulkPasses int
	bulkSize   int64
	profile    string // CPU profile of this process (the servers) during the loops
}

// mountNvmemfs mounts an empty registry at dir.
func mountNvmemfs(dir string, o nvfs.Options) (*nvcore.Registry, *nvfs.FS, error) {
	reg := nvcore.NewRegistry()
	f, err := nvfs.Mount(dir, reg, o)
	if err != nil {
		return nil, nil, err
	}
	return reg, f, nil
}

// attachFile registers an image file as a device, with the given cells.
func attachFile(reg *nvcore.Registry, name, path string, cache bool, cells []nvcore.CellInfo) (*nvcore.Device, error) {
	p, err := file.Open(file.Options{Path: path})
	if err != nil {
		return nil, err
	}
	d, err := reg.Register(nvcore.Config{Name: name, Type: nvcore.TypeEEPROM, Cache: cache, Cells: cells}, p)
	if err != nil {
		p.Close()
		return nil, err
	}
	return d, nil
}

func macCell() []nvcore.CellInfo {
	return []nvcore.CellInfo{{Name: "mac-address", Offset: cellOff, Bytes: cellBytes}}
}

// boardImage is a 4 KiB EEPROM image whose bytes differ from their
// neighbours.
func boardImage() []byte {
	b := make([]byte, 4096)
	for i := range b {
		b[i] = byte(i*7) ^ 0x5a
	}
	return b
}

// writeBulk writes a file of size bytes of a pattern.
func writeBulk(path string, size int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	block := make([]byte, 1<<20)
	for i := range block {
		block[i] = byte(i * 13)
	}
	for left := size; left > 0; {
		n := min(left, int64(len(block)))
		if _, err := f.Write(block[:n]); err != nil {
			f.Close()
			return err
		}
		left -= n
	}
	return f.Close()
}

func runLoopsSection(work string, cfg loopsConfig, cl *cleanups, logf func(string, ...any)) (*LoopsResult, error) {
	sysfs, err := sysfsAttr()
	if err != nil {
		return nil, err
	}
	res := &LoopsResult{SysfsPath: sysfs, BulkBytes: cfg.bulkSize}

	imgDir := filepath.Join(work, "images")
	srcDir := filepath.Join(work, "loopsrc")
	for _, d := range []string{imgDir, srcDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	board := boardImage()
	for _, name := range []string{"board.bin", "board-cached.bin", "plain-cached.bin", "board-flush.bin", "board-all.bin", "plain-all.bin"} {
		if err := os.WriteFile(filepath.Join(imgDir, name), board, 0o644); err != nil {
			return nil, err
		}
	}
	bulkPath := filepath.Join(srcDir, "bulk.bin")
	if err := writeBulk(bulkPath, cfg.bulkSize); err != nil {
		return nil, err
	}

	mnt := func(name string) (string, error) {
		d := filepath.Join(work, "mnt", name)
		return d, os.MkdirAll(d, 0o755)
	}

	// nvmemfs: the cell device, its cached twin, the bulk device.
	// Three mounts: the default (with board-cached attached with cache),
	// the default as it was before FOPEN_NOFLUSH (Options.Flush), and
	// --cache-all. plain-* are cached devices without cells: a write
	// there has no other file's pages to drop. Each device has an image
	// of its own.
	type nvDev struct {
		name, image string
		cache       bool
		cells       []nvcore.CellInfo
	}
	nvDir, err := mnt("nvmemfs")
	if err != nil {
		return nil, err
	}
	flushDir, err := mnt("nvmemfs-flush")
	if err != nil {
		return nil, err
	}
	allDir, err := mnt("nvmemfs-cache-all")
	if err != nil {
		return nil, err
	}
	for _, nm := range []struct {
		dir     string
		opts    nvfs.Options
		devices []nvDev
	}{
		{nvDir, nvfs.Options{}, []nvDev{
			{"board", "board.bin", false, macCell()},
			{"board-cached", "board-cached.bin", true, macCell()},
			{"plain-cached", "plain-cached.bin", true, nil},
			{"bulk", bulkPath, false, nil},
		}},
		{flushDir, nvfs.Options{Flush: true}, []nvDev{{"board", "board-flush.bin", false, macCell()}}},
		{allDir, nvfs.Options{CacheAll: true}, []nvDev{
			{"board", "board-all.bin", true, macCell()},
			{"plain", "plain-all.bin", true, nil},
		}},
	} {
		reg, nvmount, err := mountNvmemfs(nm.dir, nm.opts)
		if err != nil {
			return nil, fmt.Errorf("mount nvmemfs at %s: %w", nm.dir, err)
		}
		cl.add(func() {
			reg.RemoveAll()
			nvmount.Unmount()
		})
		for _, d := range nm.devices {
			path := d.image
			if !filepath.IsAbs(path) {
				path = filepath.Join(imgDir, path)
			}
			if _, err := attachFile(reg, d.name, path, d.cache, d.cells); err != nil {
				return nil, err
			}
		}
	}

	// The minimal server: the same 6 bytes at the same depth.
	minDir, err := mnt("minimal")
	if err != nil {
		return nil, err
	}
	minServer, err := mountMinimal(minDir, cellRel, board[cellOff:cellOff+cellBytes])
	if err != nil {
		return nil, fmt.Errorf("mount the minimal server: %w", err)
	}
	cl.add(func() { minServer.Unmount() })

	// go-fuse's loopback over the bulk image, passthrough off and on.
	offDir, err := mnt("loopback")
	if err != nil {
		return nil, err
	}
	lbOff, err := mountLoopback(offDir, srcDir, false)
	if err != nil {
		return nil, err
	}
	cl.add(func() { lbOff.server.Unmount() })
	onDir, err := mnt("loopback-passthrough")
	if err != nil {
		return nil, err
	}
	lbOn, err := mountLoopback(onDir, srcDir, true)
	if err != nil {
		return nil, err
	}
	cl.add(func() { lbOn.server.Unmount() })

	cellPath := filepath.Join(nvDir, cellRel)
	cachedCell := filepath.Join(nvDir, "board-cached/cells/mac-address@fa,0")
	nvmemPath := filepath.Join(nvDir, "board/nvmem")
	cachedNvmem := filepath.Join(nvDir, "board-cached/nvmem")
	flushCell := filepath.Join(flushDir, cellRel)
	allCell := filepath.Join(allDir, cellRel)
	allNvmem := filepath.Join(allDir, "board/nvmem")
	write := func(name, path, hold string, iters int) loopSpec {
		return loopSpec{Name: name, Kind: "write", Path: path, Hold: hold, Off: cellOff, Len: cellBytes, Iters: iters}
	}
	small := func(name, kind, path string, off int64, iters int) loopSpec {
		return loopSpec{Name: name, Kind: kind, Path: path, Off: off, Len: cellBytes, Iters: iters}
	}
	bulk := func(name, path string) loopSpec {
		return loopSpec{Name: name, Kind: "bulk", Path: path, Len: bulkRead, Iters: cfg.bulkPasses}
	}
	ci, pi := cfg.cycleIters, cfg.preadIters
	req := loopRequest{Reps: cfg.reps, Groups: [][]loopSpec{
		{
			small("cycle/nvmemfs", "cycle", cellPath, 0, ci),
			small("cycle/nvmemfs-flush", "cycle", flushCell, 0, ci),
			small("cycle/nvmemfs-cache", "cycle", cachedCell, 0, ci),
			small("cycle/nvmemfs-cache-all", "cycle", allCell, 0, ci),
			small("cycle/minimal", "cycle", filepath.Join(minDir, cellRel), 0, ci),
			small("cycle/sysfs", "cycle", sysfs, 0, ci),
		},
		{
			small("pread/nvmemfs", "pread", cellPath, 0, pi),
			small("pread/nvmemfs-cache", "pread", cachedCell, 0, pi),
			small("pread/nvmemfs-cache-all", "pread", allCell, 0, pi),
			small("pread/minimal", "pread", filepath.Join(minDir, cellRel), 0, pi),
			small("pread/sysfs", "pread", sysfs, 0, pi),
		},
		{
			bulk("bulk/nvmemfs", filepath.Join(nvDir, "bulk/nvmem")),
			bulk("bulk/loopback", filepath.Join(offDir, "bulk.bin")),
			bulk("bulk/loopback-passthrough", filepath.Join(onDir, "bulk.bin")),
			bulk("bulk/direct", bulkPath),
		},
		{
			small("cache/nvmem-pread/cached", "pread", cachedNvmem, cellOff, pi),
			small("cache/nvmem-pread/cache-all", "pread", allNvmem, cellOff, pi),
			small("cache/nvmem-pread/uncached", "pread", nvmemPath, cellOff, pi),
			small("cache/nvmem-pread/sysfs", "pread", sysfs, 0, pi),
		},
		// What dropping the cell's pages adds to a write of nvmem: the
		// same write where a cell is open (and cached) and where there is
		// no cell.
		{
			write("write/default", nvmemPath, cellPath, ci),
			write("write/cache", cachedNvmem, cachedCell, ci),
			write("write/cache-nocell", filepath.Join(nvDir, "plain-cached/nvmem"), "", ci),
			write("write/cache-all", allNvmem, allCell, ci),
			write("write/cache-all-nocell", filepath.Join(allDir, "plain/nvmem"), "", ci),
		},
		{
			small("cache/nvmem-cycle/cached", "cycle", cachedNvmem, cellOff, ci),
			small("cache/nvmem-cycle/uncached", "cycle", nvmemPath, cellOff, ci),
			small("cache/nvmem-cycle/sysfs", "cycle", sysfs, 0, ci),
		},
		{
			small("cache/cell-pread/cached", "pread", cachedCell, 0, pi),
			small("cache/cell-pread/uncached", "pread", cellPath, 0, pi),
		},
	}}

	stopProfile, err := startProfile(cfg.profile)
	if err != nil {
		return nil, err
	}
	readsOff0, readsOn0 := lbOff.stats.reads.Load(), lbOn.stats.reads.Load()
	logf("loops: %d repetitions of %d groups in a child process", cfg.reps, len(req.Groups))
	out, err := runLoopsInChild(req)
	stopProfile()
	if err != nil {
		return nil, err
	}
	pt := &res.Passthrough
	pt.KernelOffers = lbOn.kernelOffers
	pt.ServerReadsOff = lbOff.stats.reads.Load() - readsOff0
	pt.ServerReadsOn = lbOn.stats.reads.Load() - readsOn0
	pt.InEffect = pt.KernelOffers && pt.ServerReadsOn == 0 && pt.ServerReadsOff > 0
	switch {
	case pt.InEffect:
		pt.Note = "passthrough in effect: the kernel read the backing file, no READ reached the server"
	case !pt.KernelOffers:
		pt.Note = "the kernel did not offer CAP_PASSTHROUGH (needs Linux 6.9+ with CONFIG_FUSE_PASSTHROUGH)"
	case os.Geteuid() != 0:
		pt.Note = "not root: registering a backing file needs CAP_SYS_ADMIN, go-fuse fell back to normal reads"
	default:
		pt.Note = "the kernel offered passthrough but READs still reached the server"
	}

	for _, g := range req.Groups {
		for _, s := range g {
			runs := out.NsPerOp[s.Name]
			f := LoopFigure{Name: s.Name, NsPerOp: summarize(runs), Bytes: out.Bytes[s.Name]}
			if s.Kind == "bulk" {
				tp := make([]float64, len(runs))
				for i, ns := range runs {
					tp[i] = float64(bulkRead) / (1 << 20) / (ns / 1e9)
				}
				sum := summarize(tp)
				f.MiBPerSec = &sum
			}
			res.Figures = append(res.Figures, f)
		}
	}
	timeRatio := func(a, b string) {
		res.Ratios = append(res.Ratios, Ratio{Name: a + " / " + b, Of: a, Over: b, Measure: "time",
			Ratio: summarize(pairRatios(out.NsPerOp[a], out.NsPerOp[b]))})
	}
	// Throughput of a over b: b's time over a's.
	tpRatio := func(a, b string) {
		res.Ratios = append(res.Ratios, Ratio{Name: a + " / " + b, Of: a, Over: b, Measure: "throughput",
			Ratio: summarize(pairRatios(out.NsPerOp[b], out.NsPerOp[a]))})
	}
	timeRatio("cycle/nvmemfs-cache-all", "cycle/sysfs")
	timeRatio("cycle/nvmemfs-cache", "cycle/sysfs")
	timeRatio("cycle/nvmemfs", "cycle/nvmemfs-flush")
	timeRatio("pread/nvmemfs-cache", "pread/sysfs")
	timeRatio("pread/nvmemfs-cache-all", "pread/sysfs")
	timeRatio("cache/nvmem-pread/cache-all", "cache/nvmem-pread/sysfs")
	timeRatio("write/cache", "write/cache-nocell")
	timeRatio("write/cache-all", "write/cache-all-nocell")
	timeRatio("write/cache", "write/default")
	timeRatio("write/cache-all", "write/default")
	timeRatio("cycle/nvmemfs", "cycle/minimal")
	timeRatio("cycle/nvmemfs", "cycle/sysfs")
	timeRatio("cycle/minimal", "cycle/sysfs")
	timeRatio("pread/nvmemfs", "pread/minimal")
	timeRatio("pread/nvmemfs", "pread/sysfs")
	timeRatio("pread/minimal", "pread/sysfs")
	tpRatio("bulk/nvmemfs", "bulk/loopback")
	tpRatio("bulk/nvmemfs", "bulk/loopback-passthrough")
	tpRatio("bulk/nvmemfs", "bulk/direct")
	tpRatio("bulk/loopback-passthrough", "bulk/loopback")
	timeRatio("cache/nvmem-pread/cached", "cache/nvmem-pread/uncached")
	timeRatio("cache/nvmem-pread/cached", "cache/nvmem-pread/sysfs")
	timeRatio("cache/nvmem-cycle/cached", "cache/nvmem-cycle/uncached")
	timeRatio("cache/nvmem-cycle/cached", "cache/nvmem-cycle/sysfs")
	timeRatio("cache/cell-pread/cached", "cache/cell-pread/uncached")
	return res, nil
}

// startProfile starts a CPU profile of this process into path (nothing when
// path is empty) and returns the function that stops it.
func startProfile(path string) (func(), error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
