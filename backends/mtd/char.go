package mtd

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/nvmemfs/nvmemfs/nvcore"
)

// Where the kernel lists MTD partitions and where their character devices
// live; tests point them elsewhere.
var (
	procMTD = "/proc/mtd"
	devDir  = "/dev"
)

// Char is the kernel's MTD character device /dev/mtdN: reads and programs
// with pread and pwrite, erase and locks with the MEM* ioctls. It
// implements Chip.
type Char struct {
	f    *os.File
	fd   uintptr
	info Info
}

var _ Chip = (*Char)(nil)

// OpenChar opens the MTD character device at path, read-write unless
// readOnly, and reads its geometry with MEMGETINFO.
func OpenChar(path string, readOnly bool) (*Char, error) {
	flag := os.O_RDWR
	if readOnly {
		flag = os.O_RDONLY
	}
	f, err := os.OpenFile(path, flag|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	c := &Char{f: f, fd: f.Fd()}
	var m mtdInfoUser
	if err := c.ioctl(memGetInfo, unsafe.Pointer(&m)); err != nil {
		f.Close()
		if errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.EINVAL) {
			return nil, fmt.Errorf("%w: %s is not an MTD character device (MEMGETINFO: %w)", nvcore.ErrInvalid, path, err)
		}
		return nil, fmt.Errorf("%s: MEMGETINFO: %w", path, err)
	}
	c.info = m.info(path)
	return c, nil
}

// OpenDevice resolves dev (see Resolve), opens it and returns its provider
// (see Open). A read-only device node, or o.ReadOnly, gives a read-only
// provider.
func OpenDevice(dev string, o Options) (nvcore.Provider, error) {
	path, err := Resolve(dev)
	if err != nil {
		return nil, err
	}
	c, err := OpenChar(path, o.ReadOnly)
	if err != nil {
		return nil, err
	}
	p, err := Open(c, o)
	if err != nil {
		c.Close()
		return nil, err
	}
	return p, nil
}

// Resolve turns the DEV of `mtd:DEV` into a device path: a path (starting
// with /) is taken as it is; N or mtdN is /dev/mtdN; anything else is a
// partition name as /proc/mtd lists it ("u-boot-env"), which must name
// exactly one partition.
func Resolve(dev string) (string, error) {
	switch {
	case dev == "":
		return "", fmt.Errorf("%w: mtd: no device", nvcore.ErrInvalid)
	case strings.HasPrefix(dev, "/"):
		return dev, nil
	case isNumber(dev):
		return filepath.Join(devDir, "mtd"+dev), nil
	case strings.HasPrefix(dev, "mtd") && isNumber(dev[3:]):
		return filepath.Join(devDir, dev), nil
	}
	parts, err := readProcMTD(procMTD)
	if err != nil {
		return "", fmt.Errorf("mtd: looking up the partition %q: %w", dev, err)
	}
	var found []string
	var names []string
	for _, p := range parts {
		names = append(names, strconv.Quote(p.name))
		if p.name == dev {
			found = append(found, p.dev)
		}
	}
	switch len(found) {
	case 1:
		return filepath.Join(devDir, found[0]), nil
	case 0:
		if len(names) == 0 {
			return "", fmt.Errorf("%w: mtd: no partition %q: %s lists none", nvcore.ErrInvalid, dev, procMTD)
		}
		return "", fmt.Errorf("%w: mtd: no partition %q in %s (there: %s)", nvcore.ErrInvalid, dev, procMTD, strings.Join(names, ", "))
	}
	return "", fmt.Errorf("%w: mtd: %d partitions are called %q (%s): name the device instead", nvcore.ErrInvalid, len(found), dev, strings.Join(found, ", "))
}

func isNumber(s string) bool {
	if s == "" || len(s) > 9 {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

type procPart struct{ dev, name string }

// readProcMTD parses /proc/mtd:
//
//	dev:    size   erasesize  name
//	mtd0: 00040000 00010000 "u-boot-env"
func readProcMTD(path string) ([]procPart, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var parts []procPart
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		dev, rest, ok := strings.Cut(line, ":")
		if !ok || !strings.HasPrefix(dev, "mtd") || !isNumber(dev[3:]) {
			continue // the header, or nothing we know
		}
		q := strings.IndexByte(rest, '"')
		if q < 0 || !strings.HasSuffix(rest, `"`) || len(rest) < q+2 {
			continue
		}
		parts = append(parts, procPart{dev: dev, name: rest[q+1 : len(rest)-1]})
	}
	return parts, sc.Err()
}

// ioctl runs one ioctl with a pointer argument, again after EINTR, and
// returns its result.
func (c *Char) ioctlRet(req uintptr, arg unsafe.Pointer) (int, error) {
	for {
		r, _, e := unix.Syscall(unix.SYS_IOCTL, c.fd, req, uintptr(arg))
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return 0, e
		}
		return int(r), nil
	}
}

func (c *Char) ioctl(req uintptr, arg unsafe.Pointer) error {
	_, err := c.ioctlRet(req, arg)
	return err
}

// eraseArg is the erase_info_user of [off, off+length), which must fit in
// 32 bits (as the device itself does: MEMGETINFO's size is 32 bits).
func (c *Char) eraseArg(op string, off, length int64) (eraseInfoUser, error) {
	if off < 0 || length < 0 || off+length > 1<<32 {
		return eraseInfoUser{}, fmt.Errorf("%w: %s: %s of %#x bytes at %#x beyond 4 GiB", nvcore.ErrInvalid, c.info.Name, op, length, off)
	}
	return eraseInfoUser{start: uint32(off), length: uint32(length)}, nil
}

// Info returns the geometry MEMGETINFO reported at open.
func (c *Char) Info() Info { return c.info }

// ReadAt reads with pread.
func (c *Char) ReadAt(p []byte, off int64) (int, error) { return c.f.ReadAt(p, off) }

// WriteAt programs with pwrite.
func (c *Char) WriteAt(p []byte, off int64) (int, error) { return c.f.WriteAt(p, off) }

// Erase erases the blocks of [off, off+length) with MEMERASE.
func (c *Char) Erase(off, length int64) error {
	return c.blockOp("MEMERASE", memErase, off, length)
}

// Lock locks the blocks of [off, off+length) with MEMLOCK.
func (c *Char) Lock(off, length int64) error {
	return c.blockOp("MEMLOCK", memLock, off, length)
}

// Unlock unlocks the blocks of [off, off+length) with MEMUNLOCK.
func (c *Char) Unlock(off, length int64) error {
	return c.blockOp("MEMUNLOCK", memUnlock, off, length)
}

// IsLocked asks MEMISLOCKED. Flash without locking answers EOPNOTSUPP.
func (c *Char) IsLocked(off, length int64) (bool, error) {
	a, err := c.eraseArg("MEMISLOCKED", off, length)
	if err != nil {
		return false, err
	}
	r, err := c.ioctlRet(memIsLocked, unsafe.Pointer(&a))
	if err != nil {
		return false, fmt.Errorf("MEMISLOCKED %#x+%#x: %w", off, length, err)
	}
	return r != 0, nil
}

func (c *Char) blockOp(name string, req uintptr, off, length int64) error {
	a, err := c.eraseArg(name, off, length)
	if err != nil {
		return err
	}
	if err := c.ioctl(req, unsafe.Pointer(&a)); err != nil {
		return fmt.Errorf("%s %#x+%#x: %w", name, off, length, err)
	}
	return nil
}

// Close closes the device.
func (c *Char) Close() error { return c.f.Close() }
