package at24_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"periph.io/x/conn/v3/i2c"

	"github.com/nvmemfs/nvmemfs/backends/at24"
	"github.com/nvmemfs/nvmemfs/backends/at24/at24test"
	"github.com/nvmemfs/nvmemfs/nvcore"
)

// simFor configures a simulated chip like c, with no write cycle (tests of
// write cycles set one).
func simFor(c at24.Chip) at24test.Config {
	return at24test.Config{
		Name:       "sim-" + c.Name,
		Size:       c.Size,
		AddrBytes:  c.AddrBytes,
		Addresses:  c.Addresses,
		PageSize:   max(c.PageSize, 1),
		WriteCycle: -1,
	}
}

func chip(t *testing.T, name string) at24.Chip {
	t.Helper()
	c, err := at24.LookupChip(name)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func open(t *testing.T, bus i2c.BusCloser, addr uint16, o at24.Options) nvcore.Provider {
	t.Helper()
	p, err := at24.Open(bus, addr, o)
	if err != nil {
		t.Fatalf("open %s at %#x: %v", o.Chip, addr, err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func writer(t *testing.T, p nvcore.Provider) io.WriterAt {
	t.Helper()
	w, ok := p.(io.WriterAt)
	if !ok {
		t.Fatalf("%T has no WriteAt", p)
	}
	return w
}

// pattern is n bytes that differ from their neighbours and, for large
// chips, from the bytes 256 or 65536 away, so a misplaced byte shows.
func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i) ^ byte(i>>8)*31 ^ byte(i>>16)*97 ^ seed
	}
	return b
}

func TestChipTable(t *testing.T) {
	want := []struct {
		name                    string
		size, abytes, addrs, pg int
		readOnly                bool
		offset                  int
	}{
		{"24c00", 16, 1, 8, 1, false, 0},
		{"24c01", 128, 1, 1, 8, false, 0},
		{"24c02", 256, 1, 1, 8, false, 0},
		{"24c04", 512, 1, 2, 16, false, 0},
		{"24c08", 1024, 1, 4, 16, false, 0},
		{"24c16", 2048, 1, 8, 16, false, 0},
		{"24c32", 4096, 2, 1, 32, false, 0},
		{"24c64", 8192, 2, 1, 32, false, 0},
		{"24c128", 16384, 2, 1, 64, false, 0},
		{"24c256", 32768, 2, 1, 64, false, 0},
		{"24c512", 65536, 2, 1, 128, false, 0},
		{"24c1024", 131072, 2, 2, 256, false, 0},
		{"24c2048", 262144, 2, 4, 256, false, 0},
		{"24cs01", 16, 1, 1, 0, true, 0x80},
		{"24cs02", 16, 1, 1, 0, true, 0x80},
		{"24cs04", 16, 1, 1, 0, true, 0x80},
		{"24cs08", 16, 1, 1, 0, true, 0x80},
		{"24cs16", 16, 1, 1, 0, true, 0x80},
		{"24cs32", 16, 2, 1, 0, true, 0x0800},
		{"24cs64", 16, 2, 1, 0, true, 0x0800},
		{"24mac402", 6, 1, 1, 0, true, 0x9a},
		{"24mac602", 8, 1, 1, 0, true, 0x98},
	}
	for _, w := range want {
		c := chip(t, w.name)
		got := []int{c.Size, c.AddrBytes, c.Addresses, c.PageSize, c.Offset}
		exp := []int{w.size, w.abytes, w.addrs, w.pg, w.offset}
		if c.Name != w.name || !slices.Equal(got, exp) || c.ReadOnly != w.readOnly {
			t.Errorf("%s: %+v, want size %d, %d address bytes, %d addresses, page %d, read-only %t, offset %#x",
				w.name, c, w.size, w.abytes, w.addrs, w.pg, w.readOnly, w.offset)
		}
		if !slices.Contains(at24.ChipNames, w.name) {
			t.Errorf("ChipNames lacks %s", w.name)
		}
	}
	if !slices.IsSorted(at24.ChipNames) {
		t.Errorf("ChipNames not sorted: %v", at24.ChipNames)
	}
	for _, name := range []string{"24C256", "atmel,24c256", " 24c256 "} {
		if c, err := at24.LookupChip(name); err != nil || c.Name != "24c256" {
			t.Errorf("LookupChip(%q): %+v, %v", name, c, err)
		}
	}
	if _, err := at24.LookupChip("24c3"); !errors.Is(err, nvcore.ErrInvalid) || !strings.Contains(err.Error(), "24c2048") {
		t.Errorf("unknown chip: %v", err)
	}
}

// checkLog verifies every transfer's shape: reads of at most ioLimit bytes
// within one I2C address, writes within one page of pageSize, addresses
// the chip claims.
func checkLog(t *testing.T, log []at24test.IO, c at24.Chip, base uint16, ioLimit, pageSize int) {
	t.Helper()
	bits := 8 * c.AddrBytes
	for _, io := range log {
		if io.Err != nil {
			continue
		}
		if io.Addr < base || int(io.Addr) >= int(base)+c.Addresses {
			t.Fatalf("transfer to %#x, outside %#x+%d", io.Addr, base, c.Addresses)
		}
		if len(io.W) < c.AddrBytes {
			t.Fatalf("transfer without a word address: %+v", io)
		}
		word := int(io.W[0])
		if c.AddrBytes == 2 {
			word = word<<8 | int(io.W[1])
		}
		off := int(io.Addr-base)<<bits | word
		data := len(io.W) - c.AddrBytes
		switch {
		case len(io.R) > 0 && data > 0:
			t.Fatalf("a transfer both writes data and reads: %+v", io)
		case len(io.R) > ioLimit:
			t.Fatalf("read of %d bytes, limit %d", len(io.R), ioLimit)
		case word+len(io.R) > 1<<bits:
			t.Fatalf("read of %d bytes at word %#x crosses to the next I2C address", len(io.R), word)
		case data > pageSize || data > 0 && off/pageSize != (off+data-1)/pageSize:
			t.Fatalf("write of %d bytes at %#x crosses a %d-byte page", data, off, pageSize)
		}
	}
}

// TestRoundTripEveryChip writes and reads back the whole of every writable
// chip with its typical page size, then its last byte alone.
func TestRoundTripEveryChip(t *testing.T) {
	for _, name := range at24.ChipNames {
		c := chip(t, name)
		if c.ReadOnly {
			continue
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			bus := at24test.MustNew(simFor(c))
			p := open(t, bus, 0x50, at24.Options{Chip: name, PageSize: c.PageSize})
			if p.Size() != int64(c.Size) {
				t.Fatalf("size %d, want %d", p.Size(), c.Size)
			}
			bus.SetLogging(true)
			data := pattern(c.Size, 0x3c)
			if n, err := writer(t, p).WriteAt(data, 0); err != nil || n != len(data) {
				t.Fatalf("write: %d, %v", n, err)
			}
			if !bytes.Equal(bus.Bytes(), data) {
				t.Fatal("chip content differs from what was written")
			}
			got := make([]byte, c.Size)
			if n, err := p.(io.ReaderAt).ReadAt(got, 0); err != nil || n != len(got) || !bytes.Equal(got, data) {
				t.Fatalf("read back: %d, %v, equal %t", n, err, bytes.Equal(got, data))
			}
			last := int64(c.Size - 1)
			if _, err := writer(t, p).WriteAt([]byte{0x5e}, last); err != nil {
				t.Fatal(err)
			}
			b := make([]byte, 1)
			if _, err := p.(io.ReaderAt).ReadAt(b, last); err != nil || b[0] != 0x5e || bus.Bytes()[last] != 0x5e {
				t.Errorf("last byte: %#x, %v", b[0], err)
			}
			if _, err := p.(io.ReaderAt).ReadAt(b, int64(c.Size)); !errors.Is(err, nvcore.ErrInvalid) {
				t.Errorf("read past the end: %v", err)
			}
			checkLog(t, bus.Log(), c, 0x50, at24.DefaultIOLimit, c.PageSize)
			s := bus.Stats()
			if s.Failed != 0 || s.NAKs != 0 {
				t.Errorf("stats %+v", s)
			}
		})
	}
}

// TestPageBoundaries writes every length near page boundaries with several
// page sizes no larger than the chip's real page: the content is exact and
// no write wraps around within a page.
func TestPageBoundaries(t *testing.T) {
	cases := []struct {
		chip  string
		pages []int
	}{
		{"24c02", []int{1, 2, 8}},
		{"24c16", []int{4, 16}},
		{"24c64", []int{1, 8, 32}},
	}
	for _, tc := range cases {
		c := chip(t, tc.chip)
		for _, pg := range tc.pages {
			t.Run(fmt.Sprintf("%s/page%d", tc.chip, pg), func(t *testing.T) {
				t.Parallel()
				bus := at24test.MustNew(simFor(c))
				p := open(t, bus, 0x50, at24.Options{Chip: tc.chip, PageSize: pg})
				if got := p.(nvcore.WriteTransferSizer).WriteTransferSize(); got != pg {
					t.Errorf("WriteTransferSize %d, want %d", got, pg)
				}
				w := writer(t, p)
				bus.SetLogging(true)
				model := bus.Bytes()
				seed := byte(1)
				for _, boundary := range []int{c.PageSize, 2 * c.PageSize, c.Size / 2} {
					for off := max(0, boundary-pg-1); off <= boundary+1; off++ {
						for n := 1; n <= 2*c.PageSize+2 && off+n <= c.Size; n++ {
							seed++
							data := pattern(n, seed)
							if _, err := w.WriteAt(data, int64(off)); err != nil {
								t.Fatalf("write of %d at %#x: %v", n, off, err)
							}
							copy(model[off:], data)
							if got := bus.Bytes(); !bytes.Equal(got, model) {
								i := 0
								for got[i] == model[i] {
									i++
								}
								t.Fatalf("write of %d at %#x: byte %#x is %#x, want %#x", n, off, i, got[i], model[i])
							}
						}
					}
				}
				checkLog(t, bus.Log(), c, 0x50, at24.DefaultIOLimit, pg)
			})
		}
	}
}

// TestMultiAddress: on chips spanning several I2C addresses, bytes land at
// base + (off >> 8) or base + (off >> 16), and a read across the border of
// two addresses is split.
func TestMultiAddress(t *testing.T) {
	cases := []struct {
		chip string
		base uint16
	}{
		{"24c04", 0x52},
		{"24c08", 0x54},
		{"24c16", 0x50},
		{"24c1024", 0x56},
		{"24c2048", 0x54},
	}
	for _, tc := range cases {
		t.Run(tc.chip, func(t *testing.T) {
			c := chip(t, tc.chip)
			cfg := simFor(c)
			cfg.Addr = tc.base
			bus := at24test.MustNew(cfg)
			p := open(t, bus, tc.base, at24.Options{Chip: tc.chip, PageSize: c.PageSize})
			w, r := writer(t, p), p.(io.ReaderAt)
			bits := 8 * c.AddrBytes
			for i := 1; i < c.Addresses; i++ {
				border := i << bits
				bus.SetLogging(true)
				bus.ResetStats()
				if _, err := w.WriteAt([]byte{byte(i), byte(0x80 | i)}, int64(border-1)); err != nil {
					t.Fatal(err)
				}
				mem := bus.Bytes()
				if mem[border-1] != byte(i) || mem[border] != byte(0x80|i) {
					t.Fatalf("bytes around %#x: %#x %#x", border, mem[border-1], mem[border])
				}
				log := bus.Log()
				wantW := []byte{0x00, byte(0x80 | i)}
				if c.AddrBytes == 2 {
					wantW = []byte{0x00, 0x00, byte(0x80 | i)}
				}
				if len(log) != 2 || log[0].Addr != tc.base+uint16(i-1) || log[1].Addr != tc.base+uint16(i) || !bytes.Equal(log[1].W, wantW) {
					t.Fatalf("writes around %#x: %+v", border, log)
				}

				bus.ResetStats()
				got := make([]byte, 4)
				if _, err := r.ReadAt(got, int64(border-2)); err != nil || !bytes.Equal(got, mem[border-2:border+2]) {
					t.Fatalf("read across %#x: % x, %v", border, got, err)
				}
				log = bus.Log()
				if len(log) != 2 || log[0].Addr != tc.base+uint16(i-1) || len(log[0].R) != 2 || log[1].Addr != tc.base+uint16(i) || len(log[1].R) != 2 {
					t.Fatalf("reads across %#x: %+v", border, log)
				}
			}
			// Content set behind the provider's back is read at the right place.
			data := pattern(c.Size, 0x99)
			bus.SetBytes(0, data)
			got := make([]byte, c.Size)
			if _, err := r.ReadAt(got, 0); err != nil || !bytes.Equal(got, data) {
				t.Fatalf("whole read: %v", err)
			}
		})
	}
}

// TestWriteCycle: right after a page write the chip NAKs; the next page
// write and a read right after succeed by polling.
func TestWriteCycle(t *testing.T) {
	c := chip(t, "24c02")
	cfg := simFor(c)
	cfg.WriteCycle = 0 // the default, 5 ms
	bus := at24test.MustNew(cfg)
	p := open(t, bus, 0x50, at24.Options{PageSize: 8})
	bus.ResetStats()
	data := pattern(24, 7)
	start := time.Now()
	if _, err := writer(t, p).WriteAt(data, 0x10); err != nil {
		t.Fatalf("three pages back to back: %v", err)
	}
	got := make([]byte, 24)
	if _, err := p.(io.ReaderAt).ReadAt(got, 0x10); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read right after: %v", err)
	}
	el := time.Since(start)
	s := bus.Stats()
	t.Logf("3 page writes and a read in %v: %+v", el, s)
	if s.PageWrites != 3 || s.Reads != 1 || s.NAKs < 3 {
		t.Errorf("stats %+v: want 3 page writes, 1 read, some NAKs", s)
	}
	if el < 15*time.Millisecond {
		t.Errorf("done in %v, less than three 5 ms write cycles", el)
	}
}

// TestWriteTimeout: a chip that never answers again fails after the write
// timeout with ETIMEDOUT, never with ENXIO, polling every millisecond or so.
func TestWriteTimeout(t *testing.T) {
	for _, timeout := range []time.Duration{0, 10 * time.Millisecond} {
		for _, op := range []string{"write", "read"} {
			t.Run(fmt.Sprintf("%s/%v", op, timeout), func(t *testing.T) {
				t.Parallel()
				want := timeout
				if want == 0 {
					want = at24.DefaultWriteTimeout
				}
				bus := at24test.MustNew(simFor(chip(t, "24c02")))
				p := open(t, bus, 0x50, at24.Options{PageSize: 8, WriteTimeout: timeout})
				bus.SetNAK(true)
				bus.ResetStats()
				start := time.Now()
				var err error
				if op == "write" {
					_, err = writer(t, p).WriteAt([]byte{1, 2, 3}, 0)
				} else {
					_, err = p.(io.ReaderAt).ReadAt(make([]byte, 3), 0)
				}
				el := time.Since(start)
				if !errors.Is(err, syscall.ETIMEDOUT) || errors.Is(err, syscall.ENXIO) {
					t.Fatalf("%v: want ETIMEDOUT and not ENXIO", err)
				}
				polls := bus.Stats().NAKs
				t.Logf("%s failed after %v, %d attempts: %v", op, el, polls, err)
				// Not before the timeout (a sleep is never shorter, so this
				// holds on any machine). That it gives up soon after is
				// counted, not timed: at most one attempt a millisecond of
				// the timeout, which a longer timeout would exceed.
				if el < want {
					t.Errorf("failed after %v, before the timeout %v", el, want)
				}
				if polls > int(want/time.Millisecond)+2 || polls < 2 {
					t.Errorf("%d attempts in %v, want 2 to %d", polls, want, int(want/time.Millisecond)+2)
				}
			})
		}
	}
}

// TestTimeoutKeepsDevice: through the core, a timeout is an error of the
// call; the device stays registered (ENXIO would have removed it).
func TestTimeoutKeepsDevice(t *testing.T) {
	bus := at24test.MustNew(simFor(chip(t, "24c02")))
	p := open(t, bus, 0x50, at24.Options{PageSize: 8, WriteTimeout: 5 * time.Millisecond})
	reg := nvcore.NewRegistry()
	t.Cleanup(func() { reg.RemoveAll() })
	d, err := reg.Register(nvcore.Config{Name: "ee", Type: nvcore.TypeEEPROM}, p)
	if err != nil {
		t.Fatal(err)
	}
	bus.SetNAK(true)
	if _, err := d.WriteAt([]byte{1}, 0); !errors.Is(err, syscall.ETIMEDOUT) {
		t.Fatalf("write to a stuck chip: %v", err)
	}
	time.Sleep(20 * time.Millisecond) // a removal would run on its own goroutine
	if d.Gone() {
		t.Fatal("a timeout removed the device")
	}
	bus.SetNAK(false)
	if _, err := d.WriteAt([]byte{1}, 0); err != nil {
		t.Fatalf("write once the chip answers: %v", err)
	}
}

// TestGoneErrors: ENODEV and ESHUTDOWN come back at once, with no retry;
// requests the adapter cannot serve too; a data NAK (EIO) is retried.
func TestGoneErrors(t *testing.T) {
	cases := []struct {
		name    string
		errno   syscall.Errno // returned by the hook; 0: unplug
		want    syscall.Errno
		retries bool
	}{
		{"unplug", 0, syscall.ENODEV, false},
		{"ESHUTDOWN", syscall.ESHUTDOWN, syscall.ESHUTDOWN, false},
		{"ENODEV", syscall.ENODEV, syscall.ENODEV, false},
		{"EOPNOTSUPP", syscall.EOPNOTSUPP, syscall.EOPNOTSUPP, false},
		{"EREMOTEIO", syscall.EREMOTEIO, syscall.ETIMEDOUT, true},
		{"EIO", syscall.EIO, syscall.ETIMEDOUT, true},
	}
	for _, tc := range cases {
		for _, op := range []string{"read", "write"} {
			t.Run(tc.name+"/"+op, func(t *testing.T) {
				bus := at24test.MustNew(simFor(chip(t, "24c02")))
				// A long timeout: an error returned at once shows.
				timeout := time.Second
				if tc.retries {
					timeout = 5 * time.Millisecond
				}
				p := open(t, bus, 0x50, at24.Options{PageSize: 8, WriteTimeout: timeout})
				var calls int
				var mu sync.Mutex
				bus.SetHook(func(uint16, []byte, []byte) error {
					mu.Lock()
					defer mu.Unlock()
					calls++
					if tc.errno != 0 {
						return fmt.Errorf("adapter: %w", tc.errno)
					}
					return nil
				})
				if tc.errno == 0 {
					bus.Unplug()
				}
				var err error
				if op == "write" {
					_, err = writer(t, p).WriteAt(make([]byte, 20), 0)
				} else {
					_, err = p.(io.ReaderAt).ReadAt(make([]byte, 20), 0)
				}
				if !errors.Is(err, tc.want) || errors.Is(err, syscall.ENXIO) {
					t.Fatalf("%v, want %v", err, tc.want)
				}
				mu.Lock()
				defer mu.Unlock()
				if !tc.retries && calls != 1 {
					t.Errorf("%d transfers, want 1: no retry", calls)
				}
				if tc.retries && calls < 2 {
					t.Errorf("%d transfers, want retries", calls)
				}
			})
		}
	}
}

// TestUnplugWhilePolling: a read polling a busy chip fails with ENODEV as
// soon as the bridge goes, not after the write timeout.
func TestUnplugWhilePolling(t *testing.T) {
	bus := at24test.MustNew(simFor(chip(t, "24c02")))
	p := open(t, bus, 0x50, at24.Options{WriteTimeout: 10 * time.Second})
	bus.SetNAK(true)
	bus.ResetStats()
	done := make(chan error, 1)
	go func() {
		_, err := p.(io.ReaderAt).ReadAt(make([]byte, 8), 0)
		done <- err
	}()
	for deadline := time.Now().Add(5 * time.Second); bus.Stats().NAKs < 3; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no polls")
		}
	}
	start := time.Now()
	bus.Unplug()
	select {
	case err := <-done:
		if !errors.Is(err, syscall.ENODEV) {
			t.Fatalf("%v, want ENODEV", err)
		}
		t.Logf("polling read failed %v after the unplug", time.Since(start))
	case <-time.After(2 * time.Second):
		t.Fatal("the polling read did not notice the unplug")
	}
}

func TestReadOnly(t *testing.T) {
	cases := []struct {
		chip     string
		readOnly bool
		canWrite bool
	}{
		{"24c02", false, true},
		{"24c02", true, false},
		{"24c256", true, false},
		{"spd", false, false},
		{"24cs02", false, false},
		{"24mac402", false, false},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%s/%t", tc.chip, tc.readOnly), func(t *testing.T) {
			c := chip(t, tc.chip)
			cfg := simFor(c)
			cfg.IDAddr = 0x58
			if c.Offset != 0 { // the identification area of a 24c02
				cfg.Size, cfg.AddrBytes, cfg.Addresses, cfg.PageSize = 256, c.AddrBytes, 1, 8
				if c.AddrBytes == 2 {
					cfg.Size = 8192
				}
			}
			addr := uint16(0x50)
			if c.Offset != 0 {
				addr = 0x58
			}
			bus := at24test.MustNew(cfg)
			p := open(t, bus, addr, at24.Options{Chip: tc.chip, ReadOnly: tc.readOnly})
			if _, ok := p.(io.WriterAt); ok != tc.canWrite {
				t.Fatalf("%T: WriteAt %t, want %t", p, ok, tc.canWrite)
			}
			reg := nvcore.NewRegistry()
			t.Cleanup(func() { reg.RemoveAll() })
			d, err := reg.Register(nvcore.Config{Name: "ee"}, p)
			if err != nil {
				t.Fatal(err)
			}
			if d.CanWrite() != tc.canWrite {
				t.Errorf("CanWrite %t", d.CanWrite())
			}
			if _, err := d.WriteAt([]byte{0}, 0); tc.canWrite == (err != nil) {
				t.Errorf("write: %v", err)
			}
		})
	}
}

// TestIdentificationVariants: serial numbers and EUIs are read from the
// identification address, at the word addresses at24.c uses.
func TestIdentificationVariants(t *testing.T) {
	id := pattern(256, 0xc3)
	cases := []struct {
		chip     string
		simSize  int
		off      int64
		n        int
		wantW    []byte
		wantData []byte
	}{
		{"24cs01", 128, 0, 16, []byte{0x80}, id[0x80:0x90]},
		{"24cs02", 256, 0, 16, []byte{0x80}, id[0x80:0x90]},
		{"24cs16", 2048, 4, 12, []byte{0x84}, id[0x84:0x90]},
		{"24cs32", 4096, 0, 16, []byte{0x08, 0x00}, id[0x00:0x10]},
		{"24cs64", 8192, 3, 13, []byte{0x08, 0x03}, id[0x03:0x10]},
		{"24mac402", 256, 0, 6, []byte{0x9a}, id[0x9a:0xa0]},
		{"24mac602", 256, 0, 8, []byte{0x98}, id[0x98:0xa0]},
		{"24mac602", 256, 2, 6, []byte{0x9a}, id[0x9a:0xa0]},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%s@%d", tc.chip, tc.off), func(t *testing.T) {
			c := chip(t, tc.chip)
			bus := at24test.MustNew(at24test.Config{Size: tc.simSize, AddrBytes: c.AddrBytes, IDAddr: 0x58, ID: id, WriteCycle: -1})
			p := open(t, bus, 0x58, at24.Options{Chip: tc.chip})
			if p.Size() != int64(c.Size) {
				t.Errorf("size %d, want %d", p.Size(), c.Size)
			}
			bus.SetLogging(true)
			got := make([]byte, tc.n)
			if n, err := p.(io.ReaderAt).ReadAt(got, tc.off); err != nil || n != tc.n || !bytes.Equal(got, tc.wantData) {
				t.Fatalf("read %d at %d: % x, %v; want % x", tc.n, tc.off, got, err, tc.wantData)
			}
			log := bus.Log()
			if len(log) != 1 || log[0].Addr != 0x58 || !bytes.Equal(log[0].W, tc.wantW) {
				t.Errorf("transfers %+v, want one to 0x58 with word address % x", log, tc.wantW)
			}
		})
	}
}

func TestBadOptions(t *testing.T) {
	cases := []struct {
		name string
		addr uint16
		o    at24.Options
		want string
	}{
		{"unknown chip", 0x50, at24.Options{Chip: "24c3"}, "unknown EEPROM chip"},
		{"reserved address", 0x03, at24.Options{}, "0x08 to 0x77"},
		{"10-bit address", 0x78, at24.Options{}, "0x08 to 0x77"},
		{"24c04 past 0x77", 0x77, at24.Options{Chip: "24c04"}, "0x08 to 0x77"},
		{"24c16 past 0x77", 0x78 - 4, at24.Options{Chip: "24c16"}, "0x08 to 0x77"},
		{"24c04 misaligned", 0x51, at24.Options{Chip: "24c04"}, "multiple of 2"},
		{"24c16 misaligned", 0x52, at24.Options{Chip: "24c16"}, "multiple of 8"},
		{"24c2048 misaligned", 0x52, at24.Options{Chip: "24c2048"}, "multiple of 4"},
		{"24c00 misaligned", 0x51, at24.Options{Chip: "24c00"}, "multiple of 8"},
		{"negative page", 0x50, at24.Options{PageSize: -8}, "negative page size"},
		{"page not a power of two", 0x50, at24.Options{PageSize: 24}, "not a power of two"},
		{"page larger than chip", 0x50, at24.Options{Chip: "24c01", PageSize: 256}, "larger than the chip"},
		{"page larger than a block", 0x50, at24.Options{Chip: "24c16", PageSize: 512}, "one I2C address reaches"},
		{"negative I/O limit", 0x50, at24.Options{IOLimit: -1}, "I/O limit"},
		{"huge I/O limit", 0x50, at24.Options{IOLimit: 1 << 20}, "I/O limit"},
		{"negative timeout", 0x50, at24.Options{WriteTimeout: -time.Second}, "negative write timeout"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			bus := at24test.MustNew(at24test.Config{Size: 2048, WriteCycle: -1})
			p, err := at24.Open(bus, tc.addr, tc.o)
			if err == nil {
				p.Close()
				t.Fatal("opened")
			}
			if !errors.Is(err, nvcore.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%v, want ErrInvalid and %q", err, tc.want)
			}
			if bus.Closed() || bus.Stats().Transfers != 0 {
				t.Errorf("bad options reached or closed the bus")
			}
		})
	}
	if _, err := at24.Open(nil, 0x50, at24.Options{}); !errors.Is(err, nvcore.ErrInvalid) {
		t.Errorf("nil bus: %v", err)
	}
	// Options the provider adjusts, as the kernel does.
	bus := at24test.MustNew(at24test.Config{Size: 256, WriteCycle: -1})
	p := open(t, bus, 0x50, at24.Options{IOLimit: 100, PageSize: 8})
	if got := p.(nvcore.TransferSizer).TransferSize(); got != 64 {
		t.Errorf("I/O limit 100 gives transfers of %d, want 64", got)
	}
	p2 := open(t, at24test.MustNew(at24test.Config{Size: 256, WriteCycle: -1}), 0x50, at24.Options{IOLimit: 16, PageSize: 64})
	if got := p2.(nvcore.WriteTransferSizer).WriteTransferSize(); got != 16 {
		t.Errorf("page 64, I/O limit 16: writes of %d, want 16", got)
	}
	if got := p2.(nvcore.TransferSizer).TransferSize(); got != 16 {
		t.Errorf("TransferSize %d, want 16", got)
	}
}

// TestProbe: Open reads one byte; no chip means an error, and the caller
// keeps the bus.
func TestProbe(t *testing.T) {
	bus := at24test.MustNew(at24test.Config{Size: 256, WriteCycle: -1})
	start := time.Now()
	_, err := at24.Open(bus, 0x57, at24.Options{WriteTimeout: 5 * time.Millisecond})
	if !errors.Is(err, syscall.ETIMEDOUT) || errors.Is(err, syscall.ENXIO) {
		t.Errorf("no chip at 0x57: %v, want ETIMEDOUT", err)
	}
	t.Logf("open of an absent chip failed after %v: %v", time.Since(start), err)
	bus.Unplug()
	if _, err := at24.Open(bus, 0x50, at24.Options{}); !errors.Is(err, syscall.ENODEV) {
		t.Errorf("unplugged bus: %v, want ENODEV", err)
	}
	if bus.Closed() {
		t.Error("a failed Open closed the bus")
	}
	bus.Plug()
	p := open(t, bus, 0x50, at24.Options{})
	if err := p.Close(); err != nil || !bus.Closed() {
		t.Errorf("Close: %v; bus closed %t", err, bus.Closed())
	}
}

func TestSMBusOnly(t *testing.T) {
	smbus := func(c at24.Chip) *at24test.Bus {
		cfg := simFor(c)
		cfg.Name, cfg.SMBusOnly, cfg.PageSize = "i2c-3", true, min(64, c.Size)
		return at24test.MustNew(cfg)
	}
	for _, name := range []string{"24c256", "24c32", "24cs64", "24c2048"} {
		bus := smbus(chip(t, name))
		_, err := at24.Open(bus, 0x50, at24.Options{Chip: name})
		want := name + " needs 16-bit word addresses; i2c-3 is an SMBus-only adapter, which sends one"
		if err == nil || !strings.Contains(err.Error(), want) || !errors.Is(err, nvcore.ErrNotSupported) {
			t.Errorf("%s on an SMBus-only adapter: %v", name, err)
		}
	}
	for _, tc := range []struct {
		chip             string
		o                at24.Options
		wantIO, wantPage int
	}{
		{"24c16", at24.Options{PageSize: 16}, 32, 16},
		{"24c16", at24.Options{PageSize: 64, IOLimit: 256}, 32, 32},
		{"24c02", at24.Options{IOLimit: 8, PageSize: 8}, 8, 8},
		{"24c04", at24.Options{PageSize: 64}, 32, 32},
	} {
		t.Run(fmt.Sprintf("%s/%d/%d", tc.chip, tc.o.IOLimit, tc.o.PageSize), func(t *testing.T) {
			c := chip(t, tc.chip)
			bus := smbus(c)
			tc.o.Chip = tc.chip
			p := open(t, bus, 0x50, tc.o)
			if got := p.(nvcore.TransferSizer).TransferSize(); got != tc.wantIO {
				t.Errorf("TransferSize %d, want %d", got, tc.wantIO)
			}
			if got := p.(nvcore.WriteTransferSizer).WriteTransferSize(); got != tc.wantPage {
				t.Errorf("WriteTransferSize %d, want %d", got, tc.wantPage)
			}
			bus.SetLogging(true)
			data := pattern(c.Size, 0x21)
			if _, err := writer(t, p).WriteAt(data, 0); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, c.Size)
			if _, err := p.(io.ReaderAt).ReadAt(got, 0); err != nil || !bytes.Equal(got, data) || !bytes.Equal(bus.Bytes(), data) {
				t.Fatalf("round trip: %v", err)
			}
			for _, io := range bus.Log() {
				read := len(io.W) == 1 && len(io.R) >= 1 && len(io.R) <= 32
				write := len(io.W) >= 2 && len(io.W) <= 33 && len(io.R) == 0
				if !read && !write || io.Err != nil {
					t.Fatalf("not an SMBus I2C-block shape: %d out, %d in, %v", len(io.W), len(io.R), io.Err)
				}
			}
		})
	}
}

// TestBusEfficiency: through the core, 32 KiB of a 24c256 read in at most
// 260 transfers; written with 64-byte pages in exactly 512 page writes.
func TestBusEfficiency(t *testing.T) {
	c := chip(t, "24c256")
	cfg := simFor(c)
	cfg.WriteCycle = 200 * time.Microsecond
	bus := at24test.MustNew(cfg)
	p := open(t, bus, 0x50, at24.Options{Chip: "24c256", PageSize: 64})
	reg := nvcore.NewRegistry()
	t.Cleanup(func() { reg.RemoveAll() })
	d, err := reg.Register(nvcore.Config{Name: "ee", Type: nvcore.TypeEEPROM}, p)
	if err != nil {
		t.Fatal(err)
	}
	data := pattern(c.Size, 0x42)
	bus.SetBytes(0, data)
	bus.ResetStats()
	got := make([]byte, c.Size)
	if n, err := d.ReadAt(got, 0); err != nil || n != c.Size || !bytes.Equal(got, data) {
		t.Fatalf("read: %d, %v", n, err)
	}
	s := bus.Stats()
	t.Logf("32 KiB read: %+v", s)
	if s.Transfers > 260 {
		t.Errorf("32 KiB read in %d transfers, want at most 260", s.Transfers)
	}

	bus.ResetStats()
	data = pattern(c.Size, 0x24)
	start := time.Now()
	if n, err := d.WriteAt(data, 0); err != nil || n != c.Size {
		t.Fatalf("write: %d, %v", n, err)
	}
	s = bus.Stats()
	t.Logf("32 KiB write in %v with a 200 us write cycle: %+v", time.Since(start), s)
	if s.PageWrites != 512 || s.BytesWritten != c.Size {
		t.Errorf("32 KiB written in %d page writes (%d bytes), want 512", s.PageWrites, s.BytesWritten)
	}
	if !bytes.Equal(bus.Bytes(), data) {
		t.Error("chip content differs")
	}
}

// TestConcurrentCallers: readers and writers on disjoint areas at once.
func TestConcurrentCallers(t *testing.T) {
	c := chip(t, "24c64")
	cfg := simFor(c)
	cfg.WriteCycle = 100 * time.Microsecond
	bus := at24test.MustNew(cfg)
	p := open(t, bus, 0x50, at24.Options{Chip: "24c64", PageSize: 32})
	w, r := writer(t, p), p.(io.ReaderAt)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			area := int64(g * 2048)
			for i := range 4 {
				data := pattern(512, byte(g*16+i))
				if _, err := w.WriteAt(data, area+int64(i*512)); err != nil {
					errs <- err
					return
				}
				got := make([]byte, 512)
				if _, err := r.ReadAt(got, area+int64(i*512)); err != nil || !bytes.Equal(got, data) {
					errs <- fmt.Errorf("goroutine %d: read back: %v", g, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
