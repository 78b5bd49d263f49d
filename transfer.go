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
	"golang.org/x/sys/unix"
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
	_, err := unix.IoctlGetTermios(int(os.Stderr.Fd()), unix.TCGETS)
	return &progress{verb: verb, total: total, start: time.Now(), tty: err == nil}
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
		got, err := r.ReadAt(chunk, off)
		if got < len(chunk) {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("read at %#x: %w", off+int64(got), err)
		}
		if _, err := w.WriteAt(chunk, off); err != nil {
			return fmt.Errorf("write at %#x: %w", off, err)
		}
		off += int64(len(chunk))
		p.update(off)
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
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("flash: %w", err)
	}
	dev, size, err := t.open(true)
	if err != nil {
		return fmt.Errorf("flash: %w", err)
	}
	defer dev.Close()
	if int64(len(data)) > size {
		return fmt.Errorf("flash: %s is %d bytes, the device %d: nothing written", path, len(data), size)
	}
	p := newProgress("flash", int64(len(data)))
	err = copyRange(dev, bytes.NewReader(data), int64(len(data)), p)
	p.finish()
	if err != nil {
		return wrapCmd("flash", err)
	}
	if err := dev.Sync(); err != nil {
		return wrapCmd("flash", err)
	}
	// Read back what the memory holds now, not what a cache remembers
	// (nvmem files are served with direct I/O).
	back := &memWriter{b: make([]byte, len(data))}
	p = newProgress("verify", int64(len(data)))
	err = copyRange(back, dev, int64(len(data)), p)
	p.finish()
	if err != nil {
		return wrapCmd("flash: verify", err)
	}
	if i := firstDifference(back.b, data); i >= 0 {
		return fmt.Errorf("flash: verify: byte %#x reads %#02x, wrote %#02x: the memory did not take the write (write-protected?)", i, back.b[i], data[i])
	}
	return nil
}

func wrapCmd(what string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}

// memWriter is an io.WriterAt into a slice of known size.
type memWriter struct{ b []byte }

func (m *memWriter) WriteAt(p []byte, off int64) (int, error) { return copy(m.b[off:], p), nil }

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
