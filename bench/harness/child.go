package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The clients run in a child process (this same program, re-run with
// childEnv set), never beside the servers: a FUSE client in the server's
// own process competes with it for the Go scheduler's Ps, which a real
// client (cat, a script, another daemon) does not.

const childEnv = "NVMEMFS_BENCH_CHILD"

// runChildIfAsked runs the child's part and exits, when this process was
// started as a child.
func runChildIfAsked() {
	mode := os.Getenv(childEnv)
	if mode == "" {
		return
	}
	var err error
	switch mode {
	case "loops":
		err = childLoops(os.Stdin, os.Stdout)
	case "readers":
		err = childReaders(os.Stdin, os.Stdout)
	default:
		err = fmt.Errorf("unknown child mode %q", mode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench child:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// startChild starts this program as a child in the given mode.
func startChild(mode string) (*exec.Cmd, io.WriteCloser, *bufio.Reader, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, nil, nil, err
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), childEnv+"="+mode)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, nil, nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, nil, err
	}
	return cmd, in, bufio.NewReader(out), nil
}

// loopSpec is one client loop.
type loopSpec struct {
	Name string `json:"name"`
	// Kind is "cycle" (open, one pread, close), "pread" (one pread on a
	// descriptor opened beforehand), "write" (one pwrite of the Len bytes
	// read at Off beforehand, so the content never changes) or "bulk"
	// (open, sequential preads of Len bytes to the end of the file, close:
	// one pass).
	Kind string `json:"kind"`
	Path string `json:"path"`
	// Hold is a file kept open (and read once) during the loop: for a
	// write, a file of the same device whose pages the write must drop.
	Hold string `json:"hold,omitempty"`
	Off  int64  `json:"off"`
	Len  int    `json:"len"`
	// Iters is the number of operations timed in one repetition; for bulk,
	// the number of passes over the file.
	Iters int `json:"iters"`
}

// loopRequest asks the child for Reps repetitions of every group. Within a
// repetition a group's loops run back to back, starting one further along
// each time, so no loop always runs first or last.
type loopRequest struct {
	Reps   int          `json:"reps"`
	Groups [][]loopSpec `json:"groups"`
}

// loopResult gives, per loop name, one figure per repetition: nanoseconds
// per operation (cycle, pread) or per Len-byte read (bulk).
type loopResult struct {
	NsPerOp map[string][]float64 `json:"ns_per_op"`
	// Bytes is what one operation returned (checked to be the same on
	// every operation).
	Bytes map[string]int `json:"bytes"`
	Error string         `json:"error,omitempty"`
}

func childLoops(r io.Reader, w io.Writer) error {
	var req loopRequest
	if err := json.NewDecoder(r).Decode(&req); err != nil {
		return err
	}
	res := loopResult{NsPerOp: map[string][]float64{}, Bytes: map[string]int{}}
	err := runLoops(req, &res)
	if err != nil {
		res.Error = err.Error()
	}
	return json.NewEncoder(w).Encode(res)
}

func runLoops(req loopRequest, res *loopResult) error {
	// Warm up: every loop once, a tenth of its length, untimed. It fills
	// the dentry caches and the image files' pages.
	for _, g := range req.Groups {
		for _, s := range g {
			warm := s
			warm.Iters = max(1, s.Iters/10)
			_, n, err := runLoop(warm)
			if err != nil {
				return fmt.Errorf("%s: %w", s.Name, err)
			}
			res.Bytes[s.Name] = n
		}
	}
	for rep := range req.Reps {
		for _, g := range req.Groups {
			for i := range g {
				s := g[(i+rep)%len(g)]
				ns, n, err := runLoop(s)
				if err != nil {
					return fmt.Errorf("%s: %w", s.Name, err)
				}
				if n != res.Bytes[s.Name] {
					return fmt.Errorf("%s: read %d bytes, %d in the warm-up", s.Name, n, res.Bytes[s.Name])
				}
				res.NsPerOp[s.Name] = append(res.NsPerOp[s.Name], ns)
			}
		}
	}
	return nil
}

// runLoop times one repetition of s and returns nanoseconds per operation
// and the bytes one operation read.
func runLoop(s loopSpec) (float64, int, error) {
	buf := make([]byte, max(s.Len, 1))
	if s.Hold != "" {
		fd, err := syscall.Open(s.Hold, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err != nil {
			return 0, 0, fmt.Errorf("hold: %w", err)
		}
		defer syscall.Close(fd)
		if _, err := syscall.Pread(fd, make([]byte, 4096), 0); err != nil {
			return 0, 0, fmt.Errorf("hold: %w", err)
		}
	}
	switch s.Kind {
	case "write":
		fd, err := syscall.Open(s.Path, syscall.O_RDWR|syscall.O_CLOEXEC, 0)
		if err != nil {
			return 0, 0, fmt.Errorf("open: %w", err)
		}
		defer syscall.Close(fd)
		want, err := syscall.Pread(fd, buf, s.Off)
		if err != nil || want != len(buf) {
			return 0, 0, fmt.Errorf("read before writing: %d bytes, %v", want, err)
		}
		t0 := time.Now()
		for range s.Iters {
			n, err := syscall.Pwrite(fd, buf, s.Off)
			if err != nil || n != want {
				return 0, 0, fmt.Errorf("write: %d bytes, %v", n, err)
			}
		}
		return float64(time.Since(t0).Nanoseconds()) / float64(s.Iters), want, nil
	case "cycle":
		want := -1
		t0 := time.Now()
		for range s.Iters {
			fd, err := syscall.Open(s.Path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
			if err != nil {
				return 0, 0, fmt.Errorf("open: %w", err)
			}
			n, err := syscall.Pread(fd, buf, s.Off)
			syscall.Close(fd)
			if err != nil || n <= 0 || want >= 0 && n != want {
				return 0, 0, fmt.Errorf("read: %d bytes, %v", n, err)
			}
			want = n
		}
		return float64(time.Since(t0).Nanoseconds()) / float64(s.Iters), want, nil
	case "pread":
		fd, err := syscall.Open(s.Path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err != nil {
			return 0, 0, fmt.Errorf("open: %w", err)
		}
		defer syscall.Close(fd)
		want, err := syscall.Pread(fd, buf, s.Off)
		if err != nil || want <= 0 {
			return 0, 0, fmt.Errorf("first read: %d bytes, %v", want, err)
		}
		t0 := time.Now()
		for range s.Iters {
			n, err := syscall.Pread(fd, buf, s.Off)
			if err != nil || n != want {
				return 0, 0, fmt.Errorf("read: %d bytes, %v", n, err)
			}
		}
		return float64(time.Since(t0).Nanoseconds()) / float64(s.Iters), want, nil
	case "bulk":
		var reads, total int64
		t0 := time.Now()
		for range s.Iters {
			fd, err := syscall.Open(s.Path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
			if err != nil {
				return 0, 0, fmt.Errorf("open: %w", err)
			}
			var off int64
			for {
				n, err := syscall.Pread(fd, buf, off)
				if err != nil {
					syscall.Close(fd)
					return 0, 0, fmt.Errorf("read at %d: %w", off, err)
				}
				if n == 0 {
					break
				}
				off += int64(n)
				reads++
			}
			syscall.Close(fd)
			total += off
		}
		return float64(time.Since(t0).Nanoseconds()) / float64(reads), int(total / int64(s.Iters)), nil
	}
	return 0, 0, fmt.Errorf("unknown loop kind %q", s.Kind)
}

// runLoopsInChild runs req in a child process.
func runLoopsInChild(req loopRequest) (loopResult, error) {
	var res loopResult
	cmd, in, out, err := startChild("loops")
	if err != nil {
		return res, err
	}
	encErr := json.NewEncoder(in).Encode(req)
	in.Close()
	decErr := json.NewDecoder(out).Decode(&res)
	waitErr := cmd.Wait()
	if err := errors.Join(encErr, decErr, waitErr); err != nil {
		return res, fmt.Errorf("loop child: %w", err)
	}
	if res.Error != "" {
		return res, errors.New(res.Error)
	}
	return res, nil
}

// The readers child keeps readers on a device while the parent removes it.
// Protocol, one line each way per trial:
//
//	parent: run N SIZE DEVSIZE PATH   N readers, each opens PATH and loops
//	                                  on preads of SIZE bytes, at offsets
//	                                  going round the device
//	child:  ready                     every reader is about to read
//	        (the parent removes the device; every read fails)
//	child:  done READS BADERRS        reads that returned data; readers
//	                                  that ended on another error than ENODEV
//	        err TEXT                  the trial could not start
func childReaders(r io.Reader, w io.Writer) error {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		fields := strings.SplitN(sc.Text(), " ", 5)
		if len(fields) != 5 || fields[0] != "run" {
			return fmt.Errorf("bad command %q", sc.Text())
		}
		n, err1 := strconv.Atoi(fields[1])
		size, err2 := strconv.Atoi(fields[2])
		devSize, err3 := strconv.ParseInt(fields[3], 10, 64)
		if err := errors.Join(err1, err2, err3); err != nil {
			return fmt.Errorf("bad command %q: %w", sc.Text(), err)
		}
		reads, bad, err := readersTrial(n, size, devSize, fields[4], func() { fmt.Fprintln(w, "ready") })
		if err != nil {
			fmt.Fprintf(w, "err %v\n", err)
			continue
		}
		fmt.Fprintf(w, "done %d %d\n", reads, bad)
	}
	return sc.Err()
}

func readersTrial(n, size int, devSize int64, path string, ready func()) (reads int64, bad int64, err error) {
	fds := make([]int, 0, n)
	defer func() {
		for _, fd := range fds {
			syscall.Close(fd)
		}
	}()
	for range n {
		fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err != nil {
			return 0, 0, fmt.Errorf("open %s: %w", path, err)
		}
		fds = append(fds, fd)
	}
	var wg, started sync.WaitGroup
	var total, wrong atomic.Int64
	started.Add(n)
	for i, fd := range fds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, size)
			// Readers start at different places of the device.
			off := (int64(i) * int64(size) * 7) % devSize
			off -= off % int64(size)
			started.Done()
			for {
				_, err := syscall.Pread(fd, buf, off)
				if err != nil {
					if !errors.Is(err, syscall.ENODEV) {
						wrong.Add(1)
					}
					return
				}
				total.Add(1)
				off += int64(size)
				if off+int64(size) > devSize {
					off = 0
				}
			}
		}()
	}
	started.Wait()
	ready()
	wg.Wait()
	return total.Load(), wrong.Load(), nil
}
