package main

// dump and flash: whole-device copies with progress on a terminal.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/urfave/cli/v2"
)

func transferCommands(mountFlag cli.Flag) []*cli.Command {
	return []*cli.Command{
		{
			Name:      "dump",
			Usage:     "copy a whole device to FILE",
			ArgsUsage: "DEVICE|IMAGE FILE",
			Flags:     []cli.Flag{mountFlag},
			Action:    dumpCmd,
		},
		{
			Name:      "flash",
			Usage:     "write FILE to a device, then read it back and verify",
			ArgsUsage: "DEVICE|IMAGE FILE",
			Flags:     []cli.Flag{mountFlag},
			Action:    flashCmd,
		},
	}
}

// transferChunk is the unit of a copy: small enough that progress moves on
// a slow EEPROM (4 KiB is a tenth of a second at 400 kHz).
const transferChunk = 4096

// progress prints bytes, rate and time left on standard error, when it is a
// terminal, at most ten times a second; elsewhere it says nothing.
type progress struct {
	verb  string
	total int64
	start time.Time
	last  time.Time
	tty   bool
}

func newProgress(verb string, total int64) *progress {
	return &progress{verb: verb, total: total, start: time.Now(), tty: isTerminal(os.Stderr)}
}

func (p *progress) update(done int64) {
	if !p.tty {
		return
	}
	now := time.Now()
	if done < p.total && now.Sub(p.last) < 100*time.Millisecond {
		return
	}
	p.last = now
	elapsed := now.Sub(p.start).Seconds()
	rate := float64(done) / max(elapsed, 1e-9)
	left := "?"
	if rate > 0 {
		left = (time.Duration(float64(p.total-done)/rate) * time.Second).Round(time.Second).String()
	}
	fmt.Fprintf(os.Stderr, "\r%s %d/%d bytes (%3.0f%%), %.1f kB/s, %s left   ",
		p.verb, done, p.total, 100*float64(done)/float64(max(p.total, 1)), rate/1000, left)
}

func (p *progress) finish() {
	if p.tty {
		fmt.Fprintln(os.Stderr)
	}
}

// copyRange copies n bytes from r to w at the same offsets, in chunks,
// reporting progress.
func copyRange(w io.WriterAt, r io.ReaderAt, n int64, p *progress) error {
	buf := make([]byte, transferChunk)
	for off := int64(0); off < n; {
		chunk := buf[:min(int64(len(buf)), n-off)]
		if err := readChunk(r, chunk, off); err != nil {
			return err
		}
		if _, err := w.WriteAt(chunk, off); err != nil {
			return fmt.Errorf("write at %#x: %w", off, err)
		}
		off += int64(len(chunk))
		p.update(off)
	}
	return nil
}

// verifyRange reads n bytes of got and of want, chunk by chunk at the same
// offsets, and says where the first byte differs. Neither side is ever held
// whole: a 32-bit board verifies a flash of gigabytes in 8 KiB.
func verifyRange(got, want io.ReaderAt, n int64, p *progress) error {
	a, b := make([]byte, transferChunk), make([]byte, transferChunk)
	for off := int64(0); off < n; {
		k := min(int64(len(a)), n-off)
		if err := readChunk(got, a[:k], off); err != nil {
			return err
		}
		if err := readChunk(want, b[:k], off); err != nil {
			return err
		}
		if i := firstDifference(a[:k], b[:k]); i >= 0 {
			return fmt.Errorf("byte %#x reads %#02x, wrote %#02x: the memory did not take the write (write-protected?)", off+int64(i), a[i], b[i])
		}
		off += k
		p.update(off)
	}
	return nil
}

// readChunk fills b from r at off, or says where it fell short.
func readChunk(r io.ReaderAt, b []byte, off int64) error {
	got, err := r.ReadAt(b, off)
	if got < len(b) {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("read at %#x: %w", off+int64(got), err)
	}
	return nil
}

func twoArgs(c *cli.Context) (*target, string, error) {
	if c.NArg() != 2 {
		return nil, "", fmt.Errorf("%s: want DEVICE FILE", c.Command.Name)
	}
	t, err := findTarget(c, c.Args().Get(0))
	return t, c.Args().Get(1), err
}

func dumpCmd(c *cli.Context) error {
	t, path, err := twoArgs(c)
	if err != nil {
		return err
	}
	dev, size, err := t.open(false)
	if err != nil {
		return fmt.Errorf("dump: %w", err)
	}
	defer dev.Close()
	out, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("dump: %w", err)
	}
	p := newProgress("dump", size)
	err = copyRange(out, dev, size, p)
	p.finish()
	if err == nil {
		err = out.Sync()
	}
	return errors.Join(wrapCmd("dump", err), out.Close())
}

func flashCmd(c *cli.Context) error {
	t, path, err := twoArgs(c)
	if err != nil {
		return err
	}
	src, n, err := openSource(path)
	if err != nil {
		return fmt.Errorf("flash: %w", err)
	}
	defer src.Close()
	dev, size, err := t.open(true)
	if err != nil {
		return fmt.Errorf("flash: %w", err)
	}
	defer dev.Close()
	if n > size {
		return fmt.Errorf("flash: %s is %d bytes, the device %d: nothing written", path, n, size)
	}
	p := newProgress("flash", n)
	err = copyRange(dev, src, n, p)
	p.finish()
	if err != nil {
		return wrapCmd("flash", t.explainRefusal(err))
	}
	if err := dev.Sync(); err != nil {
		return wrapCmd("flash", err)
	}
	// Read back what the memory holds now, not what a cache remembers
	// (nvmem files are served with direct I/O).
	p = newProgress("verify", n)
	err = verifyRange(dev, src, n, p)
	p.finish()
	return wrapCmd("flash: verify", err)
}

// source is what flash writes: a file read at offsets, never held whole
// (an image may be larger than a 32-bit process can hold).
type source interface {
	io.ReaderAt
	io.Closer
}

// openSource opens FILE for flash and tells its size: a regular file or a
// block device is read in place; anything else (a pipe) is read into
// memory first, at most pipeLimit bytes.
func openSource(path string) (source, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	switch {
	case fi.Mode().IsRegular():
		return f, fi.Size(), nil
	case fi.Mode()&os.ModeDevice != 0 && fi.Mode()&os.ModeCharDevice == 0:
		n, err := f.Seek(0, io.SeekEnd)
		if err != nil {
			f.Close()
			return nil, 0, err
		}
		return f, n, nil
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, pipeLimit+1))
	if err != nil {
		return nil, 0, err
	}
	if len(data) > pipeLimit {
		return nil, 0, fmt.Errorf("%s: more than %d bytes from a pipe: give a file", path, pipeLimit)
	}
	return nopCloser{bytes.NewReader(data)}, int64(len(data)), nil
}

// pipeLimit bounds what flash reads from a pipe into memory: far more than
// any EEPROM, well under what a 32-bit process can hold.
const pipeLimit = 256 << 20

type nopCloser struct{ *bytes.Reader }

func (nopCloser) Close() error { return nil }

func wrapCmd(what string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}

func firstDifference(a, b []byte) int {
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
