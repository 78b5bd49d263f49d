// Package at24 provides nvmem devices on I2C EEPROMs of the 24cXX family
// (Atmel AT24, Microchip 24LC/24AA, ST M24C and their clones) over a
// periph.io i2c.Bus, the way the kernel's at24 driver
// (drivers/misc/eeprom/at24.c) reaches them.
//
// Transfers. A read is cut into combined transactions of at most IOLimit
// bytes: the word address is written, then the data read after a repeated
// start. A read never crosses from one I2C address of a multi-address chip
// to the next. A write never crosses a page: each page (or the part of it
// being written) is one transaction carrying the word address and the data.
//
// Write cycles. After a page write the chip programs the page for a few
// milliseconds and does not acknowledge its address meanwhile. As at24.c
// does, every transfer is retried every millisecond or so until it succeeds
// or WriteTimeout has passed since the first attempt; then it fails with an
// error wrapping syscall.ETIMEDOUT. Linux reports an address NAK as ENXIO
// (EREMOTEIO or EIO on some adapters), which the nvmem core would take for
// vanished hardware: the provider never returns an error wrapping ENXIO.
// Errors wrapping ENODEV or ESHUTDOWN (a USB bridge unplugged) are returned
// at once, without retries, so the core removes the device promptly.
package at24

import (
	"errors"
	"fmt"
	"math/bits"
	"os"
	"sync"
	"syscall"
	"time"

	"periph.io/x/conn/v3/i2c"

	"github.com/nvmemfs/nvmemfs/nvcore"
)

// Defaults and limits of Options.
const (
	DefaultChip         = "24c02"
	DefaultPageSize     = 1 // one byte a write: slow, but safe on any chip
	DefaultIOLimit      = 128
	DefaultWriteTimeout = 25 * time.Millisecond
	// MaxIOLimit is the longest message i2c-dev accepts (longer is EINVAL).
	MaxIOLimit = 8192
	// SMBusBlockMax is the most data bytes of an SMBus I2C-block transfer
	// (I2C_SMBUS_BLOCK_MAX).
	SMBusBlockMax = 32
)

// pollInterval is the pause between two attempts of a NAKed transfer: the
// kernel's usleep_range(1000, 1500). time.Sleep never returns early and
// rarely overshoots by half a millisecond.
const pollInterval = time.Millisecond

// Options select the chip and tune the transfers.
type Options struct {
	// Chip is a name LookupChip knows; default "24c02".
	Chip string
	// PageSize is the write page of the chip in bytes, a power of two no
	// larger than the chip; default 1, slow but safe (the kernel's default
	// too): writing with a page larger than the chip's loses data, as the
	// chip wraps around within its page. Ignored when read-only.
	PageSize int
	// IOLimit is the most bytes one transaction moves; default 128, as the
	// kernel's io_limit. It is rounded down to a power of two (as the
	// kernel does) and must not exceed MaxIOLimit. Writes move at most
	// min(PageSize, IOLimit) bytes a transaction.
	IOLimit int
	// ReadOnly gives a provider without WriteAt.
	ReadOnly bool
	// WriteTimeout bounds the retries of a NAKed transfer (the chip busy
	// in its write cycle); default 25 ms, as the kernel's write_timeout.
	WriteTimeout time.Duration
}

// SMBusOnlyBus is implemented by buses whose adapter speaks only SMBus
// (I2C_FUNC_SMBUS_I2C_BLOCK, not I2C_FUNC_I2C). When SMBusOnly reports
// true, Open refuses chips with 16-bit word addresses (SMBus sends exactly
// one command byte), caps IOLimit and PageSize at SMBusBlockMax (32), and
// the provider then uses only these two shapes of Tx, which such a bus must
// translate:
//
//	Tx(addr, []byte{off}, r)            1 <= len(r) <= 32: i2c_smbus_read_i2c_block_data(off, len(r))
//	Tx(addr, []byte{off, data...}, nil) 1 <= len(data) <= 32: i2c_smbus_write_i2c_block_data(off, data)
type SMBusOnlyBus interface {
	SMBusOnly() bool
}

// EEPROM is a writable I2C EEPROM. It owns its bus: Close closes it.
type EEPROM struct {
	chip     Chip
	bus      i2c.BusCloser
	addr     uint16
	name     string // "24c256 at 0x50 on i2c-3", for errors
	ioLimit  int
	pageSize int
	writeMax int
	timeout  time.Duration

	// mu keeps one transfer sequence at a time on the chip, as at24.c's
	// lock: a page write and the polls after it are not interleaved with
	// another caller's transfers.
	mu   sync.Mutex
	wbuf []byte // word address + one write's data; guarded by mu

	closeOnce sync.Once
	closeErr  error
}

// ReadOnlyEEPROM is an I2C EEPROM opened read-only, or a read-only area
// (serial number, MAC address). It has no WriteAt, so the core sees a
// provider that cannot write. It owns its bus: Close closes it.
type ReadOnlyEEPROM struct{ e *EEPROM }

var (
	_ nvcore.Provider           = (*EEPROM)(nil)
	_ nvcore.TransferSizer      = (*EEPROM)(nil)
	_ nvcore.WriteTransferSizer = (*EEPROM)(nil)
	_ nvcore.Provider           = (*ReadOnlyEEPROM)(nil)
	_ nvcore.TransferSizer      = (*ReadOnlyEEPROM)(nil)
)

// Open returns a provider for the chip o.Chip whose first I2C address is
// addr: an *EEPROM, or a *ReadOnlyEEPROM when o.ReadOnly is set or the chip
// is a read-only variant. Serial-number and MAC variants live at the
// chip's identification address (0x58 | A2A1A0 on most parts), not at the
// memory's.
//
// Open checks the options and the address, then reads one byte (as the
// kernel's probe does) to make sure a chip answers. On success the provider
// owns bus and closes it in Close; on error the caller still owns bus.
func Open(bus i2c.BusCloser, addr uint16, o Options) (nvcore.Provider, error) {
	e, err := open(bus, addr, o)
	if err != nil {
		return nil, err
	}
	if o.ReadOnly || e.chip.ReadOnly {
		return &ReadOnlyEEPROM{e}, nil
	}
	return e, nil
}

func open(bus i2c.BusCloser, addr uint16, o Options) (*EEPROM, error) {
	if bus == nil {
		return nil, fmt.Errorf("%w: at24: no I2C bus", nvcore.ErrInvalid)
	}
	if o.Chip == "" {
		o.Chip = DefaultChip
	}
	chip, err := LookupChip(o.Chip)
	if err != nil {
		return nil, err
	}
	readOnly := o.ReadOnly || chip.ReadOnly
	if o.PageSize == 0 {
		o.PageSize = DefaultPageSize
	}
	if o.IOLimit == 0 {
		o.IOLimit = DefaultIOLimit
	}
	if o.WriteTimeout == 0 {
		o.WriteTimeout = DefaultWriteTimeout
	}
	invalid := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s on %s: %s", nvcore.ErrInvalid, chip.Name, bus.String(), fmt.Sprintf(format, args...))
	}
	switch {
	case o.IOLimit < 0 || o.IOLimit > MaxIOLimit:
		return nil, invalid("I/O limit %d out of range (1 to %d)", o.IOLimit, MaxIOLimit)
	case o.PageSize < 0:
		return nil, invalid("negative page size %d", o.PageSize)
	case o.WriteTimeout < 0:
		return nil, invalid("negative write timeout %v", o.WriteTimeout)
	}
	o.IOLimit = 1 << (bits.Len(uint(o.IOLimit)) - 1) // round down to a power of two

	if sb, ok := bus.(SMBusOnlyBus); ok && sb.SMBusOnly() {
		if chip.AddrBytes != 1 {
			return nil, fmt.Errorf("%w: %s needs 16-bit word addresses; %s is an SMBus-only adapter, which sends one",
				nvcore.ErrNotSupported, chip.Name, bus.String())
		}
		o.IOLimit = min(o.IOLimit, SMBusBlockMax)
		o.PageSize = min(o.PageSize, SMBusBlockMax)
	}
	if !readOnly {
		switch {
		case o.PageSize&(o.PageSize-1) != 0:
			return nil, invalid("page size %d is not a power of two", o.PageSize)
		case o.PageSize > chip.Size:
			return nil, invalid("page size %d is larger than the chip (%d bytes)", o.PageSize, chip.Size)
		case o.PageSize > 1<<chip.bits():
			return nil, invalid("page size %d is larger than what one I2C address reaches (%d bytes)", o.PageSize, 1<<chip.bits())
		}
	}

	last := int(addr) + chip.Addresses - 1
	switch {
	case addr < 0x08 || last > 0x77:
		if chip.Addresses > 1 {
			return nil, invalid("I2C addresses %#02x to %#02x: want 7-bit addresses from 0x08 to 0x77", addr, last)
		}
		return nil, invalid("I2C address %#02x: want a 7-bit address from 0x08 to 0x77", addr)
	case int(addr)%chip.Addresses != 0:
		return nil, invalid("the chip answers %d I2C addresses, so its first one must be a multiple of %d; %#02x is not",
			chip.Addresses, chip.Addresses, addr)
	}

	e := &EEPROM{
		chip:     chip,
		bus:      bus,
		addr:     addr,
		name:     fmt.Sprintf("%s at %#02x on %s", chip.Name, addr, bus.String()),
		ioLimit:  o.IOLimit,
		pageSize: o.PageSize,
		writeMax: min(o.PageSize, o.IOLimit),
		timeout:  o.WriteTimeout,
	}
	if !readOnly {
		e.wbuf = make([]byte, chip.AddrBytes+e.writeMax)
	}
	var probe [1]byte
	if _, err := e.ReadAt(probe[:], 0); err != nil {
		return nil, fmt.Errorf("no EEPROM answers: %w", err)
	}
	return e, nil
}

// Chip describes the chip.
func (e *EEPROM) Chip() Chip { return e.chip }

// Size is the size of the chip in bytes.
func (e *EEPROM) Size() int64 { return int64(e.chip.Size) }

// TransferSize is the I/O limit: the core cuts reads into aligned chunks of
// this size, each in its own read section, so a removal waits for one
// transaction at most.
func (e *EEPROM) TransferSize() int { return e.ioLimit }

// WriteTransferSize is the most bytes one page write moves: the page size,
// or the I/O limit if that is smaller. The core cuts writes into aligned
// chunks of this size.
func (e *EEPROM) WriteTransferSize() int { return e.writeMax }

func (e *EEPROM) checkRange(op string, n int, off int64) error {
	if off < 0 || off > int64(e.chip.Size) || int64(n) > int64(e.chip.Size)-off {
		return fmt.Errorf("%w: %s: %s of %d bytes at %#x outside the chip (%d bytes)", nvcore.ErrInvalid, e.name, op, n, off, e.chip.Size)
	}
	return nil
}

// locate turns a device offset into the I2C address that answers it and
// the word address within that address.
func (e *EEPROM) locate(pos int) (addr uint16, word int) {
	a := pos + e.chip.Offset
	return e.addr + uint16(a>>e.chip.bits()), a & (1<<e.chip.bits() - 1)
}

func (e *EEPROM) putWord(b []byte, word int) {
	if e.chip.AddrBytes == 2 {
		b[0], b[1] = byte(word>>8), byte(word)
	} else {
		b[0] = byte(word)
	}
}

// ReadAt reads len(p) bytes at off in transactions of at most IOLimit
// bytes, none crossing from one I2C address of the chip to the next.
func (e *EEPROM) ReadAt(p []byte, off int64) (int, error) {
	if err := e.checkRange("read", len(p), off); err != nil {
		return 0, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	var wa [2]byte
	done := 0
	for done < len(p) {
		pos := int(off) + done
		addr, word := e.locate(pos)
		n := min(len(p)-done, e.ioLimit, 1<<e.chip.bits()-word)
		e.putWord(wa[:], word)
		if err := e.tx(addr, wa[:e.chip.AddrBytes], p[done:done+n]); err != nil {
			return done, fmt.Errorf("%s: read of %d bytes at %#x: %w", e.name, n, pos, err)
		}
		done += n
	}
	return done, nil
}

// WriteAt writes p at off, one transaction per page or part of a page.
func (e *EEPROM) WriteAt(p []byte, off int64) (int, error) {
	if err := e.checkRange("write", len(p), off); err != nil {
		return 0, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	done := 0
	for done < len(p) {
		pos := int(off) + done
		addr, word := e.locate(pos)
		n := min(len(p)-done, e.writeMax, e.pageSize-pos%e.pageSize)
		buf := e.wbuf[:e.chip.AddrBytes+n]
		e.putWord(buf, word)
		copy(buf[e.chip.AddrBytes:], p[done:done+n])
		if err := e.tx(addr, buf, nil); err != nil {
			return done, fmt.Errorf("%s: write of %d bytes at %#x: %w", e.name, n, pos, err)
		}
		done += n
	}
	return done, nil
}

// tx runs one transaction, retrying it while the chip does not answer, as
// at24_regmap_read and at24_regmap_write do: the time of each attempt is
// taken before it, and attempts go on until one that started after the
// deadline has failed.
func (e *EEPROM) tx(addr uint16, w, r []byte) error {
	deadline := time.Now().Add(e.timeout)
	for attempt := 1; ; attempt++ {
		start := time.Now()
		err := e.bus.Tx(addr, w, r)
		if err == nil {
			return nil
		}
		if !retryable(err) {
			return err
		}
		if !start.Before(deadline) {
			// The last error is kept as text only: it may wrap ENXIO, which
			// the core would take for hardware gone.
			return fmt.Errorf("I2C address %#02x did not answer for %v (%d attempts; last: %v): %w",
				addr, e.timeout, attempt, err, syscall.ETIMEDOUT)
		}
		time.Sleep(pollInterval)
	}
}

// retryable tells a NAK, or any failure that may pass (arbitration lost, a
// bus timeout), from an adapter that is gone (ENODEV, ESHUTDOWN: returned
// at once, so the core removes the device) and from requests the adapter
// will never serve (returned at once rather than disguised as a timeout).
// A NAK is ENXIO on most Linux adapters, EREMOTEIO or EIO on some.
func retryable(err error) bool {
	switch {
	case errors.Is(err, syscall.ENXIO):
		return true
	case errors.Is(err, syscall.ENODEV), errors.Is(err, syscall.ESHUTDOWN):
		return false
	case errors.Is(err, syscall.EOPNOTSUPP), errors.Is(err, syscall.EINVAL),
		errors.Is(err, syscall.EBADF), errors.Is(err, syscall.ENOTTY),
		errors.Is(err, syscall.EFAULT), errors.Is(err, os.ErrClosed):
		return false
	}
	return true
}

// Close closes the bus. Later calls return the first call's result.
func (e *EEPROM) Close() error {
	e.closeOnce.Do(func() { e.closeErr = e.bus.Close() })
	return e.closeErr
}

// Chip describes the chip.
func (r *ReadOnlyEEPROM) Chip() Chip { return r.e.chip }

// Size is the size of the chip or area in bytes.
func (r *ReadOnlyEEPROM) Size() int64 { return r.e.Size() }

// TransferSize is the I/O limit, as for EEPROM.
func (r *ReadOnlyEEPROM) TransferSize() int { return r.e.TransferSize() }

// ReadAt reads as EEPROM.ReadAt does.
func (r *ReadOnlyEEPROM) ReadAt(p []byte, off int64) (int, error) { return r.e.ReadAt(p, off) }

// Close closes the bus.
func (r *ReadOnlyEEPROM) Close() error { return r.e.Close() }

// Exclusive tells the core that one transfer at a time reaches the chip,
// so callers queue before their read section and a removal waits for one
// chunk only.
func (e *EEPROM) Exclusive() {}

// Exclusive: as EEPROM's.
func (r *ReadOnlyEEPROM) Exclusive() {}
