// Package at24test simulates an I2C EEPROM of the 24cXX family on a bus of
// its own, for testing the at24 provider without hardware, as periph's
// i2ctest does for drivers in general.
//
// The simulated chip behaves as the datasheets say: an address pointer that
// a write of the word address sets and every data byte advances; 8-bit or
// 16-bit (big-endian) word addresses; several I2C addresses for the chips
// larger than one word address reaches, the higher bits of the offset
// choosing the address; page writes whose address counter wraps around
// within the page (writing past the page end overwrites its start); and a
// write cycle after each page write during which the chip acknowledges
// nothing. An address nobody acknowledges fails with an error wrapping
// syscall.ENXIO, as i2c-dev reports it.
//
// Around the chip: an optional emulated bus clock (transfers take as long
// as on the wire), an identification area at an address of its own (serial
// number, EUI), an SMBus-only mode, counters and a transaction log, a hook
// that runs before every transfer (to hold one in flight), and Unplug,
// after which every transfer fails with an error wrapping syscall.ENODEV,
// as a vanished USB I2C bridge fails.
package at24test

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/physic"
)

// DefaultWriteCycle is the write cycle of Config.WriteCycle zero: 5 ms,
// the usual datasheet maximum.
const DefaultWriteCycle = 5 * time.Millisecond

// Config describes the simulated chip and its bus.
type Config struct {
	// Name is what String returns; default "at24test".
	Name string
	// Size of the memory in bytes, a power of two.
	Size int
	// AddrBytes is the width of the word address: 1 or 2. Default: 1 for
	// chips up to 2 KiB, 2 above.
	AddrBytes int
	// Addr is the chip's first I2C address; default 0x50.
	Addr uint16
	// Addresses is how many consecutive I2C addresses the chip answers;
	// default Size / 256 (8-bit) or Size / 65536 (16-bit), at least 1. The
	// offset is ((addr - Addr) << 8*AddrBytes | word address) modulo Size.
	Addresses int
	// PageSize is the chip's real write page, a power of two; default 8.
	PageSize int
	// WriteCycle is how long the chip NAKs after a page write; zero means
	// DefaultWriteCycle, negative none.
	WriteCycle time.Duration
	// Speed is the emulated bus clock in Hz: each transfer takes 9 bit
	// times a byte, plus start, repeated start and stop. Zero: instant.
	Speed int
	// IDAddr, when not zero, is the I2C address of the identification area,
	// a read-only page of 256 bytes holding ID: a serial number at 0x80
	// (8-bit chips) and an EUI-48 at 0x9a or an EUI-64 at 0x98. It is
	// indexed by the low 8 bits of the word address; on 16-bit chips the
	// word address must also have bits 11 and 10 set to 10 (0x0800), as on
	// the AT24CS32/64, so their serial number sits at ID[0:16].
	IDAddr uint16
	ID     []byte
	// SMBusOnly makes the bus report SMBusOnly() true and refuse, with an
	// error wrapping syscall.EOPNOTSUPP, every transfer but the two an SMBus
	// I2C-block adapter can do: Tx(addr, [off], r) with 1 to 32 bytes in r,
	// and Tx(addr, [off, data...], nil) with 1 to 32 data bytes.
	SMBusOnly bool
}

// Stats counts what the bus saw.
type Stats struct {
	// Transfers counts every Tx call that passed the hook.
	Transfers int
	// Reads counts acknowledged transfers that read data.
	Reads int
	// PageWrites counts acknowledged transfers that wrote data bytes.
	PageWrites int
	// NAKs counts transfers no chip acknowledged: during a write cycle,
	// under SetNAK, or to an address the chip does not claim.
	NAKs int
	// Failed counts transfers that failed otherwise: unplugged, a shape the
	// bus refuses, a write to the identification area.
	Failed int
	// BytesRead and BytesWritten count data bytes, word addresses aside.
	BytesRead, BytesWritten int
	// AfterClose counts transfers attempted after Close.
	AfterClose int
}

// IO is one transfer in the log.
type IO struct {
	Addr uint16
	W, R []byte // copies; R as returned
	Err  error
}

// Bus is a simulated chip on a bus of its own. It implements i2c.BusCloser
// and is safe for concurrent use: transfers run one at a time, as on a real
// bus.
type Bus struct {
	cfg Config

	mu         sync.Mutex // the bus: held for a whole transfer
	mem        []byte
	id         [256]byte
	ptr        int // the address pointer, an offset into mem
	busyUntil  time.Time
	writeCycle time.Duration
	speed      int
	nak        bool
	closed     bool
	stats      Stats
	logging    bool
	log        []IO

	hook atomic.Pointer[func(addr uint16, w, r []byte) error]

	plugMu    sync.Mutex
	unplugged atomic.Bool
	gone      chan struct{} // closed by Unplug; wakes transfers in flight
}

var _ i2c.BusCloser = (*Bus)(nil)

// New returns a chip as c describes it, erased (every byte 0xff).
func New(c Config) (*Bus, error) {
	if c.Name == "" {
		c.Name = "at24test"
	}
	if c.Size <= 0 || c.Size&(c.Size-1) != 0 {
		return nil, fmt.Errorf("at24test: size %d is not a power of two", c.Size)
	}
	if c.AddrBytes == 0 {
		c.AddrBytes = 1
		if c.Size > 2048 {
			c.AddrBytes = 2
		}
	}
	if c.AddrBytes != 1 && c.AddrBytes != 2 {
		return nil, fmt.Errorf("at24test: %d-byte word addresses", c.AddrBytes)
	}
	if c.Addr == 0 {
		c.Addr = 0x50
	}
	if c.Addresses == 0 {
		c.Addresses = max(1, c.Size>>(8*c.AddrBytes))
	}
	if c.PageSize == 0 {
		c.PageSize = 8
	}
	if c.PageSize < 0 || c.PageSize&(c.PageSize-1) != 0 || c.PageSize > c.Size {
		return nil, fmt.Errorf("at24test: page size %d", c.PageSize)
	}
	if c.WriteCycle == 0 {
		c.WriteCycle = DefaultWriteCycle
	}
	if len(c.ID) > 256 {
		return nil, fmt.Errorf("at24test: identification area of %d bytes, want at most 256", len(c.ID))
	}
	b := &Bus{
		cfg:        c,
		mem:        make([]byte, c.Size),
		writeCycle: max(c.WriteCycle, 0),
		speed:      c.Speed,
		gone:       make(chan struct{}),
	}
	for i := range b.mem {
		b.mem[i] = 0xff
	}
	for i := range b.id {
		b.id[i] = 0xff
	}
	copy(b.id[:], c.ID)
	return b, nil
}

// MustNew is New for tests: it panics on an invalid Config.
func MustNew(c Config) *Bus {
	b, err := New(c)
	if err != nil {
		panic(err)
	}
	return b
}

// Config returns the configuration, defaults filled in.
func (b *Bus) Config() Config { return b.cfg }

// String returns Config.Name.
func (b *Bus) String() string { return b.cfg.Name }

// SMBusOnly reports Config.SMBusOnly.
func (b *Bus) SMBusOnly() bool { return b.cfg.SMBusOnly }

// SetSpeed sets the emulated bus clock (0: instant).
func (b *Bus) SetSpeed(f physic.Frequency) error {
	if f < 0 {
		return fmt.Errorf("at24test: negative bus speed %v", f)
	}
	b.mu.Lock()
	b.speed = int(f / physic.Hertz)
	b.mu.Unlock()
	return nil
}

// SetWriteCycle changes the write cycle of the page writes to come; zero or
// less means none.
func (b *Bus) SetWriteCycle(d time.Duration) {
	b.mu.Lock()
	b.writeCycle = max(d, 0)
	b.mu.Unlock()
}

// SetNAK makes the chip NAK every transfer while on, as one that never
// leaves its write cycle (or lost its power) does.
func (b *Bus) SetNAK(on bool) {
	b.mu.Lock()
	b.nak = on
	b.mu.Unlock()
}

// SetHook installs fn, which runs at the start of every transfer, outside
// the bus lock: it may block to hold the transfer in flight. An error from
// fn fails the transfer. nil removes the hook.
func (b *Bus) SetHook(fn func(addr uint16, w, r []byte) error) {
	if fn == nil {
		b.hook.Store(nil)
		return
	}
	b.hook.Store(&fn)
}

// Unplug makes every transfer fail with an error wrapping syscall.ENODEV,
// those in flight included, as when a USB I2C bridge is pulled out.
func (b *Bus) Unplug() {
	b.plugMu.Lock()
	defer b.plugMu.Unlock()
	if b.unplugged.Swap(true) {
		return
	}
	close(b.gone)
}

// Plug undoes Unplug.
func (b *Bus) Plug() {
	b.plugMu.Lock()
	defer b.plugMu.Unlock()
	if b.unplugged.Swap(false) {
		b.gone = make(chan struct{})
	}
}

// Unplugged reports whether the bus is unplugged.
func (b *Bus) Unplugged() bool { return b.unplugged.Load() }

func (b *Bus) goneChan() chan struct{} {
	b.plugMu.Lock()
	defer b.plugMu.Unlock()
	return b.gone
}

// Bytes returns a copy of the memory.
func (b *Bus) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]byte(nil), b.mem...)
}

// SetBytes copies p into the memory at off, bypassing the bus.
func (b *Bus) SetBytes(off int, p []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if off < 0 || off+len(p) > len(b.mem) {
		panic(fmt.Sprintf("at24test: SetBytes of %d bytes at %#x outside the %d-byte chip", len(p), off, len(b.mem)))
	}
	copy(b.mem[off:], p)
}

// SetID replaces the identification area's content from its start.
func (b *Bus) SetID(p []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	copy(b.id[:], p)
}

// Stats returns the counters.
func (b *Bus) Stats() Stats {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.stats
}

// ResetStats zeroes the counters and empties the log.
func (b *Bus) ResetStats() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.stats = Stats{}
	b.log = nil
}

// SetLogging turns the transaction log on or off.
func (b *Bus) SetLogging(on bool) {
	b.mu.Lock()
	b.logging = on
	b.mu.Unlock()
}

// Log returns the transfers logged since SetLogging(true) or ResetStats.
func (b *Bus) Log() []IO {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]IO(nil), b.log...)
}

// Close closes the bus: later transfers fail (and count in AfterClose).
func (b *Bus) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	return nil
}

// Closed reports whether Close was called.
func (b *Bus) Closed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}

// errUnplugged is what every transfer returns once unplugged: what i2c-dev
// returns when the adapter behind /dev/i2c-N has gone.
func (b *Bus) errUnplugged() error {
	return fmt.Errorf("%s: adapter unplugged: %w", b.cfg.Name, syscall.ENODEV)
}

// Tx runs one transfer: w is written, then r read after a repeated start.
func (b *Bus) Tx(addr uint16, w, r []byte) error {
	if h := b.hook.Load(); h != nil {
		if err := (*h)(addr, w, r); err != nil {
			b.mu.Lock()
			b.stats.Failed++
			b.record(addr, w, r, err)
			b.mu.Unlock()
			return err
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	err := b.tx(addr, w, r)
	b.record(addr, w, r, err)
	return err
}

func (b *Bus) record(addr uint16, w, r []byte, err error) {
	if !b.logging {
		return
	}
	io := IO{Addr: addr, W: append([]byte(nil), w...), Err: err}
	if err == nil && len(r) > 0 {
		io.R = append([]byte(nil), r...)
	}
	b.log = append(b.log, io)
}

// tx runs a transfer with b.mu held.
func (b *Bus) tx(addr uint16, w, r []byte) error {
	if b.closed {
		b.stats.AfterClose++
		return fmt.Errorf("%s: transfer after Close: %w", b.cfg.Name, os.ErrClosed)
	}
	b.stats.Transfers++
	gone := b.goneChan()
	if b.unplugged.Load() {
		b.stats.Failed++
		return b.errUnplugged()
	}
	if b.cfg.SMBusOnly {
		okRead := len(w) == 1 && len(r) >= 1 && len(r) <= 32
		okWrite := len(w) >= 2 && len(w) <= 33 && len(r) == 0
		if !okRead && !okWrite {
			b.stats.Failed++
			return fmt.Errorf("%s: %d bytes out, %d in: not an SMBus I2C-block transfer: %w", b.cfg.Name, len(w), len(r), syscall.EOPNOTSUPP)
		}
	}

	block := int(addr) - int(b.cfg.Addr)
	isID := b.cfg.IDAddr != 0 && addr == b.cfg.IDAddr
	claimed := isID || block >= 0 && block < b.cfg.Addresses
	if !claimed || b.nak || time.Now().Before(b.busyUntil) {
		b.stats.NAKs++
		// Start, the address byte and its NAK, stop.
		if err := b.wire(11, gone); err != nil {
			return err
		}
		return fmt.Errorf("%s: address %#02x not acknowledged: %w", b.cfg.Name, addr, syscall.ENXIO)
	}

	ab := b.cfg.AddrBytes
	if len(w) > 0 && len(w) < ab {
		b.stats.Failed++
		return fmt.Errorf("%s: %d-byte word address, want %d: %w", b.cfg.Name, len(w), ab, syscall.EIO)
	}
	if len(w) > ab && len(r) > 0 {
		b.stats.Failed++
		return fmt.Errorf("%s: data written, then read without a stop: %w", b.cfg.Name, syscall.EIO)
	}
	// Time on the wire: start, address, bytes out; repeated start, address,
	// bytes in; stop.
	wireBits := 1 + 9 + 9*len(w) + 1
	if len(r) > 0 {
		wireBits += 1 + 9 + 9*len(r)
	}

	if isID {
		return b.txID(w, r, wireBits, gone)
	}

	pos := b.ptr
	if len(w) >= ab {
		word := int(w[0])
		if ab == 2 {
			word = word<<8 | int(w[1])
		}
		pos = (block<<(8*ab) | word) & (b.cfg.Size - 1)
	}
	data := w[min(len(w), ab):]
	if err := b.wire(wireBits, gone); err != nil {
		return err
	}
	// The transfer went through: it takes effect now.
	switch {
	case len(data) > 0:
		page := b.cfg.PageSize
		base := pos &^ (page - 1)
		for i, c := range data {
			b.mem[base+(pos-base+i)%page] = c
		}
		b.ptr = base + (pos-base+len(data))%page
		b.stats.PageWrites++
		b.stats.BytesWritten += len(data)
		if b.writeCycle > 0 {
			b.busyUntil = time.Now().Add(b.writeCycle)
		}
	case len(r) > 0:
		for i := range r {
			r[i] = b.mem[(pos+i)&(b.cfg.Size-1)]
		}
		b.ptr = (pos + len(r)) & (b.cfg.Size - 1)
		b.stats.Reads++
		b.stats.BytesRead += len(r)
	default:
		b.ptr = pos
	}
	return nil
}

// txID serves the identification area: reads only, from a word address.
func (b *Bus) txID(w, r []byte, wireBits int, gone chan struct{}) error {
	ab := b.cfg.AddrBytes
	switch {
	case len(w) > ab:
		b.stats.Failed++
		return fmt.Errorf("%s: identification area is read-only (data byte not acknowledged): %w", b.cfg.Name, syscall.EIO)
	case len(w) < ab && len(r) > 0:
		b.stats.Failed++
		return fmt.Errorf("%s: identification area read without a word address: %w", b.cfg.Name, syscall.EIO)
	}
	word := 0
	if len(w) == ab {
		word = int(w[ab-1])
		if ab == 2 && (int(w[0])<<8)&0x0c00 != 0x0800 {
			b.stats.Failed++
			return fmt.Errorf("%s: identification area word address %#04x lacks bits 11:10 = 10: %w",
				b.cfg.Name, int(w[0])<<8|int(w[1]), syscall.EIO)
		}
	}
	if err := b.wire(wireBits, gone); err != nil {
		return err
	}
	for i := range r {
		r[i] = b.id[(word+i)&0xff]
	}
	if len(r) > 0 {
		b.stats.Reads++
		b.stats.BytesRead += len(r)
	}
	return nil
}

// wire waits while n bits cross the emulated bus, and fails the transfer
// if the bus is unplugged meanwhile.
func (b *Bus) wire(n int, gone chan struct{}) error {
	if b.speed > 0 {
		d := time.Duration(int64(n) * int64(time.Second) / int64(b.speed))
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-gone:
			t.Stop()
		}
	}
	if b.unplugged.Load() {
		b.stats.Failed++
		return b.errUnplugged()
	}
	return nil
}
