// Package gpiocdev drives one output line through the kernel's GPIO
// character device (/dev/gpiochipN, uAPI v2), as a periph gpio.PinOut. It
// is what a write-protect line of an EEPROM needs, and no more.
package gpiocdev

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/physic"
	"periph.io/x/conn/v3/pin"
)

// lineFlagOutput is GPIO_V2_LINE_FLAG_OUTPUT (include/uapi/linux/gpio.h);
// x/sys names the ioctls and structures but not the flag bits.
const lineFlagOutput = 1 << 3

// Line is one requested output line. It holds the request until Halt.
type Line struct {
	chip   string
	offset int

	mu    sync.Mutex
	fd    int // the line request's descriptor; -1 once halted
	level gpio.Level
}

var _ gpio.PinOut = (*Line)(nil)

// chipPath accepts /dev/gpiochipN, gpiochipN or N.
func chipPath(chip string) string {
	switch {
	case strings.HasPrefix(chip, "/"):
		return chip
	case strings.HasPrefix(chip, "gpiochip"):
		return filepath.Join("/dev", chip)
	}
	return "/dev/gpiochip" + chip
}

// Open requests line offset of chip as an output driven to initial, under
// the consumer name "nvmemfs" (what gpioinfo shows).
func Open(chip string, offset int, initial gpio.Level) (*Line, error) {
	if offset < 0 || offset >= 64*1024 {
		return nil, fmt.Errorf("gpio %s:%d: bad line offset", chip, offset)
	}
	path := chipPath(chip)
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("gpio %s:%d: %w", chip, offset, err)
	}
	defer f.Close()

	req := lineRequest(offset, initial)
	if err := ioctl(int(f.Fd()), unix.GPIO_V2_GET_LINE_IOCTL, unsafe.Pointer(&req)); err != nil {
		return nil, fmt.Errorf("gpio %s:%d: request as output: %w", path, offset, err)
	}
	return &Line{chip: path, offset: offset, fd: int(req.Fd), level: initial}, nil
}

// lineRequest is the GPIO_V2_GET_LINE_IOCTL argument that asks for line
// offset as an output driven to initial.
func lineRequest(offset int, initial gpio.Level) unix.GPIOV2LineRequest {
	var req unix.GPIOV2LineRequest
	req.Offsets[0] = uint32(offset)
	copy(req.Consumer[:], "nvmemfs")
	req.Num_lines = 1
	req.Config.Flags = lineFlagOutput
	req.Config.Num_attrs = 1
	req.Config.Attrs[0].Attr.Id = unix.GPIO_V2_LINE_ATTR_ID_OUTPUT_VALUES
	req.Config.Attrs[0].Attr.Flags = levelBit(initial) // the union's values member
	req.Config.Attrs[0].Mask = 1
	return req
}

func levelBit(l gpio.Level) uint64 {
	if l == gpio.High {
		return 1
	}
	return 0
}

func ioctl(fd int, req uintptr, arg unsafe.Pointer) error {
	for {
		_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(arg))
		if e != unix.EINTR {
			if e != 0 {
				return e
			}
			return nil
		}
	}
}

// Out drives the line.
func (l *Line) Out(level gpio.Level) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fd < 0 {
		return fmt.Errorf("%s: line released", l)
	}
	vals := unix.GPIOV2LineValues{Bits: levelBit(level), Mask: 1}
	if err := ioctl(l.fd, unix.GPIO_V2_LINE_SET_VALUES_IOCTL, unsafe.Pointer(&vals)); err != nil {
		return fmt.Errorf("%s: set %s: %w", l, level, err)
	}
	l.level = level
	return nil
}

// PWM is not something a write-protect line does.
func (l *Line) PWM(gpio.Duty, physic.Frequency) error {
	return errors.New("gpiocdev: PWM not supported")
}

// Halt releases the line; the kernel keeps its last level or lets it go,
// as the chip's driver decides.
func (l *Line) Halt() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fd < 0 {
		return nil
	}
	err := unix.Close(l.fd)
	l.fd = -1
	return err
}

// String names the line as CHIP:OFFSET.
func (l *Line) String() string { return fmt.Sprintf("%s:%d", l.chip, l.offset) }

// Name is String.
func (l *Line) Name() string { return l.String() }

// Number is the line's offset on its chip.
func (l *Line) Number() int { return l.offset }

// Function reports the line's use.
func (l *Line) Function() string { return string(l.Func()) }

// Func is always OUT.
func (l *Line) Func() pin.Func { return gpio.OUT }
