// Package i2cdev drives a real Linux I2C adapter through its i2c-dev node,
// /dev/i2c-N, as a periph.io i2c.BusCloser.
//
// On an adapter that speaks plain I2C, a Tx is one I2C_RDWR ioctl: a write
// message, a read message, or both joined by a repeated START. An adapter
// that only speaks SMBus (many PC host controllers, some USB bridges, the
// kernel's i2c-stub) gets the Tx shapes an EEPROM with 8-bit word addresses
// needs translated into SMBus transactions; see Bus.Tx.
//
// Errors from the kernel keep their errno, wrapped with context, so callers
// can test them with errors.Is: syscall.ENXIO (no ACK: nobody at the
// address, or a chip busy with its write cycle), syscall.EREMOTEIO (some
// adapters' way to report a NAK), syscall.ETIMEDOUT, and syscall.ENODEV or
// syscall.ESHUTDOWN when the adapter is gone (a USB bridge unplugged).
// Documentation/i2c/fault-codes.rst lists what each code means. The kernel's
// i2c-stub reports an address with no chip as ENODEV.
package i2cdev

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/physic"
)

// Bus is an open /dev/i2c-N. Its methods are safe for concurrent use; the
// transfers are serialized.
type Bus struct {
	nr    int    // N, or -1 when opened by a path that did not tell
	path  string // the device node
	name  string // the adapter's name from sysfs, or ""
	funcs uint64 // what I2C_FUNCS reported

	mu   sync.Mutex
	sys  sysIoctl // the open node; nil once closed
	addr int      // the address last set with I2C_SLAVE, or -1
}

var _ i2c.BusCloser = (*Bus)(nil)

// sysIoctl is the one system call the bus needs, behind an interface so
// that the tests can put a simulated adapter behind a Bus.
type sysIoctl interface {
	// ioctlPtr issues request req whose argument is a pointer, and
	// returns the result or the errno. The pointer stays an
	// unsafe.Pointer until the system call itself, as the unsafe.Pointer
	// rules require.
	ioctlPtr(req uintptr, arg unsafe.Pointer) (int, error)
	// ioctlInt issues request req whose argument is a number.
	ioctlInt(req, arg uintptr) (int, error)
	close() error
}

// fdIoctl is the real thing: an open i2c-dev file descriptor.
type fdIoctl int

func (fd fdIoctl) ioctlPtr(req uintptr, arg unsafe.Pointer) (int, error) {
	for {
		r, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(arg))
		if e != unix.EINTR {
			return ioctlResult(r, e)
		}
	}
}

func (fd fdIoctl) ioctlInt(req, arg uintptr) (int, error) {
	for {
		r, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, arg)
		if e != unix.EINTR {
			return ioctlResult(r, e)
		}
	}
}

func ioctlResult(r uintptr, e unix.Errno) (int, error) {
	if e != 0 {
		return -1, e
	}
	return int(r), nil
}

func (fd fdIoctl) close() error { return unix.Close(int(fd)) }

// Open opens an I2C adapter. name is a device node path (/dev/i2c-1), i2c-N,
// N, or the adapter's name as <SysfsRoot>/class/i2c-adapter/i2c-N/name (or
// <SysfsRoot>/bus/i2c/devices/i2c-N/name) shows it, matched exactly, so that
// a USB bridge is found whatever number it got this time. A name two
// adapters share is an error that lists them. Open asks the adapter what it
// can do (I2C_FUNCS) and fails if the node is not an I2C adapter.
func Open(name string, o Options) (*Bus, error) {
	a, err := resolve(name, o)
	if err != nil {
		return nil, err
	}
	prefix := "i2cdev: "
	if name != a.path {
		prefix += fmt.Sprintf("%q: ", name)
	}
	fd, err := unix.Open(a.path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		hint := ""
		if errors.Is(err, unix.ENOENT) {
			hint = " (is the i2c-dev module loaded? modprobe i2c-dev)"
		}
		return nil, fmt.Errorf("%s%w%s", prefix, &os.PathError{Op: "open", Path: a.path, Err: err}, hint)
	}
	sys := fdIoctl(fd)
	// I2C_FUNCS writes an unsigned long: pointer-sized on Linux, as is
	// Go's uint.
	var funcs uint
	_, err = sys.ioctlPtr(ioctlFuncs, unsafe.Pointer(&funcs))
	runtime.KeepAlive(&funcs)
	if err != nil {
		sys.close()
		return nil, fmt.Errorf("%s%s: I2C_FUNCS: %w (not an i2c-dev node?)", prefix, a.path, err)
	}
	return newBus(a, uint64(funcs), sys), nil
}

func newBus(a adapter, funcs uint64, sys sysIoctl) *Bus {
	return &Bus{nr: a.nr, path: a.path, name: a.name, funcs: funcs, sys: sys, addr: -1}
}

// Number is N of /dev/i2c-N, or -1 if the bus was opened by a path that
// did not tell.
func (b *Bus) Number() int { return b.nr }

// Name is the adapter's name as sysfs shows it ("" if sysfs did not say).
func (b *Bus) Name() string { return b.name }

// Funcs is the adapter's functionality mask as I2C_FUNCS reported it: the
// Func* bits.
func (b *Bus) Funcs() uint64 { return b.funcs }

// SMBusOnly reports whether the adapter lacks plain I2C (FuncI2C), so that
// Tx translates to SMBus transactions and refuses what it cannot translate.
func (b *Bus) SMBusOnly() bool { return b.funcs&FuncI2C == 0 }

// String names the bus: i2c-N, with the adapter's name when known.
func (b *Bus) String() string {
	s := b.path
	if b.nr >= 0 {
		s = "i2c-" + strconv.Itoa(b.nr)
	}
	if b.name != "" {
		s += " (" + b.name + ")"
	}
	return s
}

// SetSpeed is not something i2c-dev can do: the bus clock is set by the
// device tree (clock-frequency) or the adapter driver. The error wraps
// syscall.EOPNOTSUPP, which errors.Is also matches with
// errors.ErrUnsupported.
func (b *Bus) SetSpeed(f physic.Frequency) error {
	return fmt.Errorf("i2cdev: %s: cannot set the speed to %s: i2c-dev has no way to change the bus clock (set clock-frequency in the device tree, or the adapter driver's parameter): %w",
		b, f, syscall.EOPNOTSUPP)
}

// Close closes the device node. A Tx after Close fails with an error that
// matches os.ErrClosed and syscall.ENODEV.
func (b *Bus) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.sys == nil {
		return nil
	}
	err := b.sys.close()
	b.sys = nil
	if err != nil {
		return fmt.Errorf("i2cdev: %s: close: %w", b, err)
	}
	return nil
}

// Tx does one transaction with the chip at the 7-bit address addr: write w,
// then read into r; either may be empty.
//
// On a plain I2C adapter it is one I2C_RDWR ioctl, a combined transaction
// (no STOP between the write and the read); each direction carries at most
// MaxMsgLen bytes. With neither w nor r, it is an empty write, which only
// probes the address.
//
// On an SMBus-only adapter (see SMBusOnly) exactly these shapes work, each
// as the SMBus transaction that puts the same bytes on the wire:
//
//	Tx(addr, [cmd], r), 1 <= len(r) <= 32  read I2C block data (a read byte data, for one byte, if that is all the adapter has)
//	Tx(addr, [cmd, d...], nil), 1..32 d    write I2C block data (write byte data, for one byte, if that is all it has)
//	Tx(addr, [cmd], nil)                   write byte, cmd as the byte: sets an EEPROM's address pointer, and polls for the end of a write cycle
//	Tx(addr, nil, nil)                     quick write
//
// Tx(addr, nil, nil) is a quick write on either kind of adapter: a few
// chips misbehave on one (i2cdetect avoids it for 0x50-0x5f because of the
// AT24RF08), so poll an EEPROM's write cycle with Tx(addr, [cmd], nil).
//
// The address is set with I2C_SLAVE, which the kernel refuses (EBUSY) for
// an address a driver owns. Other shapes, and shapes the adapter's
// functionality lacks, fail with an error wrapping syscall.EOPNOTSUPP.
func (b *Bus) Tx(addr uint16, w, r []byte) error {
	if b.SMBusOnly() {
		return b.txSMBus(addr, w, r)
	}
	return b.txI2C(addr, w, r)
}

func (b *Bus) txErr(addr uint16, w, r []byte, what string, err error) error {
	return fmt.Errorf("i2cdev: %s: 0x%02x: write %d, read %d bytes: %s%w", b, addr, len(w), len(r), what, err)
}

// errClosed is what a closed bus answers: os.ErrClosed for what it is,
// syscall.ENODEV for callers that watch for a device that went away.
var errClosed = fmt.Errorf("%w: %w", os.ErrClosed, syscall.ENODEV)

func (b *Bus) txI2C(addr uint16, w, r []byte) error {
	msgs, err := buildMsgs(addr, w, r)
	if err != nil {
		return b.txErr(addr, w, r, "", err)
	}
	arg := rdwrArg(msgs)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.sys == nil {
		return b.txErr(addr, w, r, "", errClosed)
	}
	n, err := b.sys.ioctlPtr(ioctlRdwr, unsafe.Pointer(&arg))
	runtime.KeepAlive(&arg)
	runtime.KeepAlive(msgs)
	runtime.KeepAlive(w)
	runtime.KeepAlive(r)
	if err != nil {
		return b.txErr(addr, w, r, "I2C_RDWR: ", err)
	}
	if n != len(msgs) {
		return b.txErr(addr, w, r, "", fmt.Errorf("I2C_RDWR did %d of %d messages: %w", n, len(msgs), syscall.EIO))
	}
	return nil
}

func (b *Bus) txSMBus(addr uint16, w, r []byte) error {
	if err := checkAddr7(addr); err != nil {
		return b.txErr(addr, w, r, "", err)
	}
	x, err := planSMBus(b.funcs, w, r)
	if err != nil {
		return b.txErr(addr, w, r, "", err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.sys == nil {
		return b.txErr(addr, w, r, "", errClosed)
	}
	if b.addr != int(addr) {
		if _, err := b.sys.ioctlInt(ioctlSlave, uintptr(addr)); err != nil {
			b.addr = -1
			hint := ""
			if errors.Is(err, unix.EBUSY) {
				hint = " (a kernel driver owns the address)"
			}
			return b.txErr(addr, w, r, "I2C_SLAVE"+hint+": ", err)
		}
		b.addr = int(addr)
	}
	arg := x.arg()
	_, err = b.sys.ioctlPtr(ioctlSMBus, unsafe.Pointer(&arg))
	runtime.KeepAlive(&arg)
	runtime.KeepAlive(x)
	if err != nil {
		return b.txErr(addr, w, r, x.String()+": ", err)
	}
	if err := x.result(r); err != nil {
		return b.txErr(addr, w, r, "", err)
	}
	return nil
}
