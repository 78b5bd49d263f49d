package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Scale: the real nvmemfs binary, mounted with a config of many devices,
// each with many cells. The server runs in a process of its own, so its
// resident memory is its own, read from /proc/<pid>/status.

type scaleConfig struct {
	devices int
	cells   int
	binary  string // nvmemfs binary; empty: go build it
	listRep int
}

// ScaleResult is the scale section of results.json.
type ScaleResult struct {
	Devices int    `json:"devices"`
	Cells   int    `json:"cells_per_device"`
	Binary  string `json:"binary"`
	// ReadyMs is from starting `nvmemfs mount --foreground --config` to its
	// readiness report; EmptyReadyMs the same with an empty config. Their
	// difference is the time to attach the devices.
	ReadyMs      float64 `json:"ready_ms"`
	EmptyReadyMs float64 `json:"empty_ready_ms"`
	AttachMs     float64 `json:"attach_ms"`
	// Listing the root (every device) and one device's cells/, the first
	// time (the kernel knows no names yet) and then again (median).
	ListRootColdMs  float64 `json:"list_root_cold_ms"`
	ListRootWarmMs  Summary `json:"list_root_warm_ms"`
	ListCellsColdMs float64 `json:"list_cells_cold_ms"`
	ListCellsWarmMs Summary `json:"list_cells_warm_ms"`
	RootEntries     int     `json:"root_entries"`
	CellEntries     int     `json:"cell_entries"`
	// Resident memory of the server process, MiB: after attaching, after
	// the listings, and its peak (VmHWM); and of the empty server.
	RSSReadyMiB  float64 `json:"rss_ready_mib"`
	RSSListedMiB float64 `json:"rss_listed_mib"`
	HWMMiB       float64 `json:"hwm_mib"`
	EmptyRSSMiB  float64 `json:"empty_rss_mib"`
}

// moduleRoot finds the folder of this repository's go.mod, from the
// working folder up.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.Contains(string(b), "module github.com/nvmemfs/nvmemfs\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod of github.com/nvmemfs/nvmemfs above the working folder")
		}
		dir = parent
	}
}

// buildNvmemfs builds the nvmemfs command into dir.
func buildNvmemfs(dir string) (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "nvmemfs")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, ".")...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
}

// scaleServer is a running nvmemfs mount.
type scaleServer struct {
	cmd *exec.Cmd
	mnt string
	bin string
}

// startServer runs `nvmemfs mount --foreground --config cfg mnt` and waits
// for its readiness report on the descriptor NVMEMFS_READY_FD names: the
// report the background `nvmemfs mount` waits for before it returns.
func startServer(bin, cfg, mnt string) (*scaleServer, time.Duration, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, 0, err
	}
	cmd := exec.Command(bin, "mount", "--foreground", "--config", cfg, mnt)
	cmd.ExtraFiles = []*os.File{w}
	cmd.Env = append(os.Environ(), "NVMEMFS_READY_FD=3")
	cmd.Stderr = os.Stderr
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		w.Close()
		r.Close()
		return nil, 0, err
	}
	w.Close()
	// The read ends with the report, or when the server exits (a server
	// that never reports is stopped below, which closes its end).
	lines := make(chan string, 1)
	go func() {
		defer r.Close()
		line, _ := bufio.NewReader(r).ReadString('\n')
		lines <- strings.TrimSpace(line)
	}()
	s := &scaleServer{cmd: cmd, mnt: mnt, bin: bin}
	var line string
	select {
	case line = <-lines:
	case <-time.After(2 * time.Minute):
		line = "no readiness report in 2 minutes"
	}
	took := time.Since(t0)
	if line != "ok" {
		s.stop()
		return nil, 0, fmt.Errorf("nvmemfs mount: %q", line)
	}
	return s, took, nil
}

// stop asks the server to unmount and exit (SIGTERM, as systemd does), and
// unmounts lazily if it does not within 30 s.
func (s *scaleServer) stop() {
	s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		s.cmd.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		syscall.Unmount(s.mnt, syscall.MNT_DETACH)
		<-done
	}
}

// procStatusKiB reads a "Name:   N kB" line of /proc/<pid>/status.
func procStatusKiB(pid int, field string) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				return strconv.ParseFloat(f[0], 64)
			}
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

func rssMiB(pid int, field string) float64 {
	kib, err := procStatusKiB(pid, field)
	if err != nil {
		return -1
	}
	return kib / 1024
}

// timedList reads a folder's names and returns how long it took and how
// many there were.
func timedList(dir string) (time.Duration, int, error) {
	t0 := time.Now()
	f, err := os.Open(dir)
	if err != nil {
		return 0, 0, err
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	return time.Since(t0), len(names), err
}

func runScaleSection(work string, cfg scaleConfig, logf func(string, ...any)) (*ScaleResult, error) {
	res := &ScaleResult{Devices: cfg.devices, Cells: cfg.cells}
	dir := filepath.Join(work, "scale")
	imgDir := filepath.Join(dir, "img")
	if err := os.MkdirAll(imgDir, 0o755); err != nil {
		return nil, err
	}
	bin := cfg.binary
	if bin == "" {
		var err error
		logf("scale: building nvmemfs")
		if bin, err = buildNvmemfs(dir); err != nil {
			return nil, err
		}
	}
	res.Binary = bin

	// One cells file for every device: cells of 6 bytes, 16 bytes apart.
	var cells strings.Builder
	cells.WriteString("# NAME OFFSET BYTES\n")
	for i := range cfg.cells {
		fmt.Fprintf(&cells, "cell-%02d %#x 6\n", i, i*16)
	}
	if err := os.WriteFile(filepath.Join(dir, "cells.txt"), []byte(cells.String()), 0o644); err != nil {
		return nil, err
	}
	imgSize := max(1024, cfg.cells*16)
	img := make([]byte, imgSize)
	var conf strings.Builder
	for i := range cfg.devices {
		name := fmt.Sprintf("dev%04d", i)
		for j := range img {
			img[j] = byte(i + j*7)
		}
		if err := os.WriteFile(filepath.Join(imgDir, name+".bin"), img, 0o644); err != nil {
			return nil, err
		}
		fmt.Fprintf(&conf, "file:img/%s.bin,name=%s,type=eeprom,cells=cells.txt\n", name, name)
	}
	full := filepath.Join(dir, "nvmemfs.conf")
	empty := filepath.Join(dir, "empty.conf")
	if err := os.WriteFile(full, []byte(conf.String()), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(empty, []byte("# no devices\n"), 0o644); err != nil {
		return nil, err
	}
	mnt := filepath.Join(dir, "mnt")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		return nil, err
	}

	// The empty server: start-up and mount alone.
	srv, took, err := startServer(bin, empty, mnt)
	if err != nil {
		return nil, err
	}
	res.EmptyReadyMs = ms(took)
	res.EmptyRSSMiB = rssMiB(srv.cmd.Process.Pid, "VmRSS")
	srv.stop()

	logf("scale: mounting %d devices x %d cells", cfg.devices, cfg.cells)
	srv, took, err = startServer(bin, full, mnt)
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	pid := srv.cmd.Process.Pid
	res.ReadyMs = ms(took)
	res.AttachMs = res.ReadyMs - res.EmptyReadyMs
	res.RSSReadyMiB = rssMiB(pid, "VmRSS")

	cellsDir := filepath.Join(mnt, fmt.Sprintf("dev%04d", cfg.devices/2), "cells")
	d, n, err := timedList(mnt)
	if err != nil {
		return nil, err
	}
	res.ListRootColdMs, res.RootEntries = ms(d), n
	if d, n, err = timedList(cellsDir); err != nil {
		return nil, err
	}
	res.ListCellsColdMs, res.CellEntries = ms(d), n
	var root, cell []float64
	for range cfg.listRep {
		d, _, err := timedList(mnt)
		if err != nil {
			return nil, err
		}
		root = append(root, ms(d))
		if d, _, err = timedList(cellsDir); err != nil {
			return nil, err
		}
		cell = append(cell, ms(d))
	}
	res.ListRootWarmMs, res.ListCellsWarmMs = summarize(root), summarize(cell)
	res.RSSListedMiB = rssMiB(pid, "VmRSS")
	res.HWMMiB = rssMiB(pid, "VmHWM")
	if res.RootEntries != cfg.devices || res.CellEntries != cfg.cells {
		return res, fmt.Errorf("listed %d devices and %d cells, want %d and %d", res.RootEntries, res.CellEntries, cfg.devices, cfg.cells)
	}
	logf("scale: ready in %.0f ms (empty %.0f ms), root listed in %.1f ms, RSS %.1f MiB", res.ReadyMs, res.EmptyReadyMs, res.ListRootColdMs, res.RSSListedMiB)
	return res, nil
}
