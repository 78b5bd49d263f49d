package at24test

import (
	"bytes"
	"errors"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"periph.io/x/conn/v3/physic"
)

func TestPageWriteWrapsWithinPage(t *testing.T) {
	b := MustNew(Config{Size: 256, PageSize: 8, WriteCycle: -1})
	// 10 bytes from 0x14 (page 0x10..0x17): 0x14..0x17, then wrap to
	// 0x10..0x15, overwriting the first bytes written.
	data := []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}
	if err := b.Tx(0x50, append([]byte{0x14}, data...), nil); err != nil {
		t.Fatal(err)
	}
	want := bytes.Repeat([]byte{0xff}, 256)
	copy(want[0x10:], []byte{4, 5, 6, 7, 8, 9, 2, 3})
	if got := b.Bytes(); !bytes.Equal(got, want) {
		t.Errorf("page 0x10: % x, want % x", got[0x10:0x18], want[0x10:0x18])
	}
	// The pointer is left after the last byte, within the page: 0x16.
	r := make([]byte, 2)
	if err := b.Tx(0x50, nil, r); err != nil || !bytes.Equal(r, []byte{2, 3}) {
		t.Errorf("current-address read: % x, %v; want 02 03", r, err)
	}
}

func TestAddressingAndBlocks(t *testing.T) {
	cases := []struct {
		name      string
		cfg       Config
		addr      uint16
		w         []byte
		wantOff   int
		wantNAK   bool
		addresses int
	}{
		{"24c04 block 1", Config{Size: 512}, 0x51, []byte{0x10}, 0x110, false, 2},
		{"24c04 beyond", Config{Size: 512}, 0x52, []byte{0x10}, 0, true, 2},
		{"24c16 block 7", Config{Size: 2048}, 0x57, []byte{0xff}, 0x7ff, false, 8},
		{"24c256 16-bit", Config{Size: 32768}, 0x50, []byte{0x12, 0x34}, 0x1234, false, 1},
		{"24c2048 block 3", Config{Size: 256 << 10}, 0x53, []byte{0x00, 0x01}, 0x30001, false, 4},
		{"24c00 ignores pins", Config{Size: 16, Addresses: 8}, 0x56, []byte{0x03}, 3, false, 8},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.cfg.WriteCycle = -1
			b := MustNew(c.cfg)
			if got := b.Config().Addresses; got != c.addresses {
				t.Errorf("addresses %d, want %d", got, c.addresses)
			}
			err := b.Tx(c.addr, append(append([]byte(nil), c.w...), 0xa5), nil)
			if c.wantNAK {
				if !errors.Is(err, syscall.ENXIO) {
					t.Fatalf("write to an unclaimed address: %v, want ENXIO", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := b.Bytes()[c.wantOff]; got != 0xa5 {
				t.Errorf("byte at %#x is %#x, want 0xa5", c.wantOff, got)
			}
			r := make([]byte, 1)
			if err := b.Tx(c.addr, c.w, r); err != nil || r[0] != 0xa5 {
				t.Errorf("read back: %#x, %v", r[0], err)
			}
		})
	}
}

func TestWriteCycleNAK(t *testing.T) {
	b := MustNew(Config{Size: 256, WriteCycle: 20 * time.Millisecond})
	start := time.Now()
	if err := b.Tx(0x50, []byte{0, 1}, nil); err != nil {
		t.Fatal(err)
	}
	err := b.Tx(0x50, []byte{0}, make([]byte, 1))
	if !errors.Is(err, syscall.ENXIO) {
		t.Fatalf("read during the write cycle: %v, want ENXIO", err)
	}
	for b.Tx(0x50, []byte{0}, make([]byte, 1)) != nil {
		if time.Since(start) > 2*time.Second {
			t.Fatal("the write cycle never ended")
		}
		time.Sleep(time.Millisecond)
	}
	if el := time.Since(start); el < 20*time.Millisecond {
		t.Errorf("write cycle over after %v, want 20ms", el)
	}
	if s := b.Stats(); s.NAKs < 1 || s.PageWrites != 1 || s.Reads != 1 {
		t.Errorf("stats %+v", s)
	}
	b.SetNAK(true)
	if err := b.Tx(0x50, nil, nil); !errors.Is(err, syscall.ENXIO) {
		t.Errorf("under SetNAK: %v, want ENXIO", err)
	}
}

func TestUnplugPlugClose(t *testing.T) {
	b := MustNew(Config{Size: 256, WriteCycle: -1})
	b.Unplug()
	if err := b.Tx(0x50, []byte{0}, make([]byte, 4)); !errors.Is(err, syscall.ENODEV) {
		t.Fatalf("unplugged: %v, want ENODEV", err)
	}
	b.Plug()
	if err := b.Tx(0x50, []byte{0}, make([]byte, 4)); err != nil {
		t.Fatalf("plugged again: %v", err)
	}
	b.Close()
	if err := b.Tx(0x50, []byte{0}, make([]byte, 4)); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("closed: %v", err)
	}
	if s := b.Stats(); s.AfterClose != 1 || s.Failed != 1 {
		t.Errorf("stats %+v", s)
	}
}

// TestSpeed: a 128-byte read with a 2-byte word address at 400 kHz is
// 1191 bits, about 3 ms, and takes no less (a sleep is never shorter, so
// the lower bound holds on any machine; how much longer a loaded machine
// takes is not this test's business); Unplug cuts a transfer in flight
// short.
func TestSpeed(t *testing.T) {
	b := MustNew(Config{Size: 32768, Speed: 400_000})
	start := time.Now()
	if err := b.Tx(0x50, []byte{0, 0}, make([]byte, 128)); err != nil {
		t.Fatal(err)
	}
	el := time.Since(start)
	if el < 2900*time.Microsecond {
		t.Errorf("128-byte read at 400 kHz took %v, want at least the 3 ms of its 1191 bits", el)
	}
	t.Logf("128-byte read at 400 kHz: %v", el)

	// At 1 Hz the same read would take 20 minutes: a transfer that did not
	// notice the unplug could not end within the hang bound below.
	b.SetSpeed(1 * physic.Hertz)
	started := make(chan struct{})
	var once sync.Once
	b.SetHook(func(uint16, []byte, []byte) error {
		once.Do(func() { close(started) })
		return nil
	})
	done := make(chan error, 1)
	go func() { done <- b.Tx(0x50, []byte{0, 0}, make([]byte, 128)) }()
	<-started
	time.Sleep(20 * time.Millisecond) // on the wire
	b.Unplug()
	select {
	case err := <-done:
		if !errors.Is(err, syscall.ENODEV) {
			t.Errorf("transfer in flight at unplug: %v, want ENODEV", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the transfer in flight did not notice the unplug (a hang)")
	}
}

func TestSMBusShapes(t *testing.T) {
	b := MustNew(Config{Size: 256, WriteCycle: -1, SMBusOnly: true})
	if !b.SMBusOnly() {
		t.Fatal("SMBusOnly false")
	}
	ok := []struct{ w, r int }{{1, 1}, {1, 32}, {2, 0}, {33, 0}}
	bad := []struct{ w, r int }{{0, 1}, {1, 33}, {34, 0}, {1, 0}, {0, 0}, {2, 1}}
	for _, s := range ok {
		if err := b.Tx(0x50, make([]byte, s.w), make([]byte, s.r)); err != nil {
			t.Errorf("%d out, %d in: %v", s.w, s.r, err)
		}
	}
	for _, s := range bad {
		if err := b.Tx(0x50, make([]byte, s.w), make([]byte, s.r)); !errors.Is(err, syscall.EOPNOTSUPP) {
			t.Errorf("%d out, %d in: %v, want EOPNOTSUPP", s.w, s.r, err)
		}
	}
}

func TestIdentificationArea(t *testing.T) {
	id := make([]byte, 256)
	for i := range id {
		id[i] = byte(i) ^ 0x5a
	}
	b8 := MustNew(Config{Size: 256, IDAddr: 0x58, ID: id, WriteCycle: -1})
	r := make([]byte, 16)
	if err := b8.Tx(0x58, []byte{0x80}, r); err != nil || !bytes.Equal(r, id[0x80:0x90]) {
		t.Errorf("8-bit serial: % x, %v", r, err)
	}
	if err := b8.Tx(0x58, []byte{0x80, 1}, nil); !errors.Is(err, syscall.EIO) {
		t.Errorf("write to the identification area: %v, want EIO", err)
	}
	b16 := MustNew(Config{Size: 8192, IDAddr: 0x58, ID: id, WriteCycle: -1})
	if err := b16.Tx(0x58, []byte{0x08, 0x00}, r); err != nil || !bytes.Equal(r, id[:16]) {
		t.Errorf("16-bit serial: % x, %v", r, err)
	}
	if err := b16.Tx(0x58, []byte{0x00, 0x00}, r); !errors.Is(err, syscall.EIO) {
		t.Errorf("16-bit serial without 0x0800: %v, want EIO", err)
	}
}

func TestHookHoldsTransfer(t *testing.T) {
	b := MustNew(Config{Size: 256, WriteCycle: -1})
	inside, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	b.SetHook(func(uint16, []byte, []byte) error {
		once.Do(func() { close(inside); <-release })
		return nil
	})
	done := make(chan error, 1)
	go func() { done <- b.Tx(0x50, []byte{0}, make([]byte, 1)) }()
	<-inside
	b.Bytes() // the bus lock is free while the hook holds the transfer
	select {
	case <-done:
		t.Fatal("transfer finished while held")
	case <-time.After(10 * time.Millisecond):
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
