// Package block provides nvmem devices on a block device or a partition:
// an eMMC boot partition (/dev/mmcblk0boot1), a raw partition (/dev/sdb3),
// a loop device, or a window of one (an offset and a size), which is where
// U-Boot keeps its environment on eMMC.
//
// Durability. The device is opened with O_DIRECT|O_DSYNC: every write goes
// from an aligned buffer straight to the device, and with O_DSYNC the
// kernel marks it FUA (or follows it with a cache flush), so a write is on
// the medium when it returns. O_DIRECT rather than buffered writes and
// fsync, because fsync of a block device flushes every dirty page of the
// whole device, other writers' included, and reports their write-back
// errors as ours; and because a read-modify-write must read the medium,
// not a page cache another program may be filling. O_DIRECT needs the
// offset, the length and the buffer aligned to the logical block size
// (BLKSSZGET): writes that do not cover whole blocks are read-modify-write
// of the blocks they touch, and reads go through an aligned buffer too.
//
// Transfers. The read and write transfer size is 64 KiB (or one logical
// block, when that is larger): the nvmem core cuts long I/O into aligned
// chunks of that size, each in a read section of its own, so a detach
// waits for one chunk at most. The provider is Exclusive: one transfer
// reaches the device at a time, through one buffer.
//
// Read-only devices. A device the kernel reports read-only (BLKROGET: a
// loop device set up with losetup -r, blockdev --setro, a card's write
// protect switch), or one that cannot be opened for writing, is served
// read-only, and the reason is logged and kept (ReadOnlyDevice.Reason).
// The exception is a disk whose force_ro reads 1: that is the kernel's
// write protection of eMMC boot partitions, which a writer lifts.
//
// eMMC write protection. The kernel's MMC block driver gives each of its
// disks (mmcblkX, mmcblkXbootY) a force_ro attribute, and sets it to 1 on
// boot partitions (drivers/mmc/core/block.c). Its value is the disk's read-only
// flag XOR the card's own protection, so it reads 1 only when the kernel,
// not the card, holds the disk read-only. Like U-Boot's fw_setenv and
// libubootenv, the provider writes 0 to /sys/block/<disk>/force_ro before
// each chunk it writes and 1 after it, on every path out of the write
// (errors and panics included), and again in Close if a restore failed.
// For a partition of a disk, it is the disk's force_ro. When force_ro
// cannot be written (not root), the write fails with an error wrapping
// nvcore.ErrReadOnly (EPERM) that says so, and nothing is written.
//
// Removal. The provider watches /sys/dev/block/MAJ:MIN: when the kernel
// removes the device (a card pulled, a USB stick unplugged), or its size
// drops to 0 (media removed from a reader), the device is reported gone
// (nvcore.GoneNotifier), and an I/O error at that time is returned wrapping
// ENODEV, so the core removes the device (DESIGN rule 7). A loop device
// detached with losetup -d while the provider holds it open is not gone:
// the kernel only marks it for auto-clear, keeps serving it, and removes it
// when the provider closes it.
package block

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/nvmemfs/nvmemfs/backends/file"
	"github.com/nvmemfs/nvmemfs/backends/gonewatch"
	"github.com/nvmemfs/nvmemfs/nvcore"
)

// Defaults for Options.
const (
	DefaultSysfsRoot    = "/sys"
	DefaultPollInterval = time.Second
	// transferSize bounds one chunk of I/O: a read section, one buffer.
	transferSize = 64 << 10
	// maxBlockSize bounds a logical block size reported by the kernel.
	maxBlockSize = 64 << 10
)

// Options selects the device and the window of it that becomes the nvmem
// device.
type Options struct {
	// Path is the block device: /dev/mmcblk0boot1, /dev/sdb3, /dev/loop0,
	// or a link to one (/dev/disk/by-partlabel/u-boot-env).
	Path string
	// Offset is where the window starts on the device; it need not be
	// aligned to the block size.
	Offset int64
	// Size of the window; 0 means up to the end of the device.
	Size int64
	// ReadOnly opens the device read-only; the provider then has no write
	// face.
	ReadOnly bool
	// SysfsRoot is where sysfs is mounted; empty means /sys. Tests point
	// it at a fake tree holding dev/block/MAJ:MIN/force_ro.
	SysfsRoot string
	// PollInterval is how often the provider checks that the kernel's
	// device is still there; zero or less means one second.
	PollInterval time.Duration
}

// Device is a read-write window of a block device.
type Device struct {
	path    string // as resolved: the device node
	fd      int
	devSize int64 // the whole device
	offset  int64 // the window
	size    int64
	bs      int    // logical block size
	xfer    int    // transfer size, a multiple of bs
	sysDev  string // /sys/dev/block/MAJ:MIN, or "" if sysfs does not know it
	sysDir  string // the directory that link resolves to
	// diskseq is the kernel's sequence number of the disk at open ("" on
	// kernels before 5.15): a medium unplugged and plugged back between
	// two polls may get the same MAJ:MIN, never the same diskseq.
	diskseq  string
	forceRO  string // the force_ro attribute to lift around writes, or ""
	poll     time.Duration
	readOnly string // why the device is read-only, or ""

	// mu keeps one transfer at a time on buf and on force_ro; lifted
	// (guarded by it) says force_ro was lifted and not yet restored.
	mu     sync.Mutex
	buf    []byte // aligned, xfer + 2*bs
	lifted bool

	stateMu sync.Mutex // guards closed
	closed  bool
	watcher gonewatch.Watcher
}

// ReadOnlyDevice is a block device served read-only: it has no WriteAt,
// so the core sees a provider that cannot write.
type ReadOnlyDevice struct{ d *Device }

var (
	_ nvcore.Provider           = (*Device)(nil)
	_ nvcore.TransferSizer      = (*Device)(nil)
	_ nvcore.WriteTransferSizer = (*Device)(nil)
	_ nvcore.Exclusive          = (*Device)(nil)
	_ nvcore.GoneNotifier       = (*Device)(nil)
	_ io.WriterAt               = (*Device)(nil)
	_ nvcore.Provider           = (*ReadOnlyDevice)(nil)
	_ nvcore.TransferSizer      = (*ReadOnlyDevice)(nil)
	_ nvcore.Exclusive          = (*ReadOnlyDevice)(nil)
	_ nvcore.GoneNotifier       = (*ReadOnlyDevice)(nil)
)

// testHookLifted, when set, runs after force_ro is lifted and before the
// device is written: tests look at force_ro there, or take the device away.
var testHookLifted func()

// Open opens the block device and checks that the window lies inside it.
// It returns a *Device, or a *ReadOnlyDevice when o.ReadOnly is set or the
// kernel holds the device read-only (see the package documentation).
func Open(o Options) (nvcore.Provider, error) {
	d, err := open(o)
	if err != nil {
		return nil, err
	}
	if d.readOnly != "" {
		if !o.ReadOnly {
			slog.Warn("block: the device is served read-only", "device", d.path, "reason", d.readOnly)
		}
		return &ReadOnlyDevice{d}, nil
	}
	return d, nil
}

func open(o Options) (*Device, error) {
	if o.Path == "" {
		return nil, fmt.Errorf("%w: block: no device", nvcore.ErrInvalid)
	}
	if o.Offset < 0 || o.Size < 0 {
		return nil, fmt.Errorf("%w: block %s: offset and size must not be negative", nvcore.ErrInvalid, o.Path)
	}
	path, err := filepath.EvalSymlinks(o.Path)
	if err != nil {
		return nil, fmt.Errorf("block: %w", err)
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return nil, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	if err := checkBlock(o.Path, path, st.Mode); err != nil {
		return nil, err
	}
	root := o.SysfsRoot
	if root == "" {
		root = DefaultSysfsRoot
	}
	d := &Device{path: path, poll: o.PollInterval}
	if d.poll <= 0 {
		d.poll = DefaultPollInterval
	}
	d.findSysfs(root, uint64(st.Rdev)) // uint32 on mips

	flag := unix.O_RDWR
	if o.ReadOnly {
		flag = unix.O_RDONLY
		d.readOnly = "ro was asked for"
	}
	const common = unix.O_DIRECT | unix.O_DSYNC | unix.O_CLOEXEC | unix.O_NOCTTY
	fd, err := openRetry(path, flag|common)
	if err != nil && flag == unix.O_RDWR && (errors.Is(err, unix.EROFS) || errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM)) {
		// The MMC driver refuses a writer of a card that protects itself
		// (EROFS); a node without write permission, EACCES.
		d.readOnly = fmt.Sprintf("opening it for writing failed: %v", err)
		fd, err = openRetry(path, unix.O_RDONLY|common)
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	d.fd = fd
	if err := d.geometry(); err != nil {
		unix.Close(fd)
		return nil, err
	}
	size := o.Size
	if size == 0 {
		size = d.devSize - o.Offset
	}
	switch {
	case d.devSize == 0:
		err = fmt.Errorf("%w: block %s is empty (size 0: no medium?)", nvcore.ErrInvalid, path)
	case o.Offset >= d.devSize:
		err = fmt.Errorf("%w: block %s: offset %#x is past its end (%#x bytes)", nvcore.ErrInvalid, path, o.Offset, d.devSize)
	case size > d.devSize-o.Offset:
		err = fmt.Errorf("%w: block %s: window %#x+%#x reaches past its end (%#x bytes)", nvcore.ErrInvalid, path, o.Offset, size, d.devSize)
	}
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	d.offset, d.size = o.Offset, size
	d.xfer = max(transferSize, d.bs)
	align := max(d.bs, os.Getpagesize())
	d.buf = alignedBuffer(d.xfer+2*d.bs, align)
	return d, nil
}

func openRetry(path string, flag int) (int, error) {
	for {
		fd, err := unix.Open(path, flag, 0)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

// checkBlock refuses what is not a block device, naming what it is.
func checkBlock(given, path string, mode uint32) error {
	what := file.KindOf(mode)
	switch mode & unix.S_IFMT {
	case unix.S_IFBLK:
		return nil
	case unix.S_IFREG:
		what += " (use file:" + given + " for an image)"
	case unix.S_IFCHR:
		what += " (use mtd: for /dev/mtdN)"
	}
	name := given
	if path != given {
		name = fmt.Sprintf("%s (%s)", given, path)
	}
	return fmt.Errorf("%w: block: %s is %s, not a block device", nvcore.ErrInvalid, name, what)
}

// findSysfs finds the device's sysfs directory through /sys/dev/block,
// and the force_ro attribute that protects it: its own (a disk, such as
// mmcblk0boot1) or, for a partition, its disk's.
func (d *Device) findSysfs(root string, rdev uint64) {
	link := filepath.Join(root, "dev", "block", fmt.Sprintf("%d:%d", unix.Major(rdev), unix.Minor(rdev)))
	dir, err := filepath.EvalSymlinks(link)
	if err != nil {
		slog.Debug("block: no sysfs directory: removal is seen only through I/O errors", "device", d.path, "err", err)
		return
	}
	d.sysDev, d.sysDir = link, dir
	d.diskseq = d.readDiskseq()
	if exists(filepath.Join(dir, "force_ro")) {
		d.forceRO = filepath.Join(dir, "force_ro")
	} else if exists(filepath.Join(dir, "partition")) && exists(filepath.Join(filepath.Dir(dir), "force_ro")) {
		d.forceRO = filepath.Join(filepath.Dir(dir), "force_ro")
	}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// geometry reads the size, the logical block size and the read-only flag,
// and decides whether the device is served read-only.
func (d *Device) geometry() error {
	var size uint64
	if err := d.ioctlPtr(unix.BLKGETSIZE64, unsafe.Pointer(&size)); err != nil {
		return fmt.Errorf("block %s: BLKGETSIZE64: %w", d.path, err)
	}
	if size > 1<<62 {
		return fmt.Errorf("%w: block %s: size %d", nvcore.ErrInvalid, d.path, size)
	}
	d.devSize = int64(size)
	var bs int32
	if err := d.ioctlPtr(unix.BLKSSZGET, unsafe.Pointer(&bs)); err != nil {
		return fmt.Errorf("block %s: BLKSSZGET: %w", d.path, err)
	}
	if bs < 512 || bs > maxBlockSize || bs&(bs-1) != 0 {
		return fmt.Errorf("%w: block %s: logical block size %d", nvcore.ErrInvalid, d.path, bs)
	}
	d.bs = int(bs)
	if tail := d.devSize % int64(bs); tail != 0 {
		// The kernel refuses I/O on a part of a logical block (a loop
		// device of 4096-byte sectors over an image of 64 KiB + 512):
		// only whole blocks are served.
		slog.Warn("block: the device ends inside a logical block; served up to its last whole block", "device", d.path, "size", d.devSize, "block", bs, "left_out", tail)
		d.devSize -= tail
	}
	var ro int32
	if err := d.ioctlPtr(unix.BLKROGET, unsafe.Pointer(&ro)); err != nil {
		return fmt.Errorf("block %s: BLKROGET: %w", d.path, err)
	}
	if ro == 0 || d.readOnly != "" {
		return nil
	}
	if d.forceRO != "" {
		if v, err := readFlag(d.forceRO); err == nil && v {
			return nil // the kernel's eMMC protection: lifted around writes
		}
		d.readOnly = fmt.Sprintf("the kernel reports it read-only (BLKROGET), and %s reads 0: the card itself protects it (a write-protect switch, or a boot partition locked with ro_lock_until_reset)", d.forceRO)
		return nil
	}
	d.readOnly = "the kernel reports it read-only (BLKROGET: losetup -r, blockdev --setro, or the medium's own write protection); make it writable (blockdev --setrw) and attach it again"
	return nil
}

func (d *Device) ioctlPtr(req uint, arg unsafe.Pointer) error {
	for {
		_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(d.fd), uintptr(req), uintptr(arg))
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return e
		}
		return nil
	}
}

// alignedBuffer returns n bytes whose first byte is aligned to align, a
// power of two. Go's heap does not move objects, so the alignment holds.
func alignedBuffer(n, align int) []byte {
	b := make([]byte, n+align)
	skip := int(uintptr(unsafe.Pointer(&b[0])) & uintptr(align-1))
	if skip != 0 {
		skip = align - skip
	}
	return b[skip : skip+n : skip+n]
}

// readFlag reads a sysfs boolean attribute such as force_ro.
func readFlag(path string) (bool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return false, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return false, fmt.Errorf("%s: %q is not 0 or 1", path, b)
	}
	return n != 0, nil
}

// writeFlag writes 0 or 1 to a sysfs attribute. It does not create one.
func writeFlag(path string, v bool) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	s := "0"
	if v {
		s = "1"
	}
	_, err = f.WriteString(s)
	return errors.Join(err, f.Close())
}

// Path is the device node, links resolved.
func (d *Device) Path() string { return d.path }

// BlockSize is the logical block size (BLKSSZGET).
func (d *Device) BlockSize() int { return d.bs }

// ForceRO is the force_ro attribute lifted around writes, or "".
func (d *Device) ForceRO() string { return d.forceRO }

// Size is the size of the window.
func (d *Device) Size() int64 { return d.size }

// TransferSize is 64 KiB, or one logical block if that is larger.
func (d *Device) TransferSize() int { return d.xfer }

// WriteTransferSize is the same as TransferSize: force_ro is lifted and
// restored around each chunk, so a detach never waits for more than one.
func (d *Device) WriteTransferSize() int { return d.xfer }

// Exclusive tells the core that one transfer at a time reaches the device.
func (d *Device) Exclusive() {}

// inside reports whether n bytes at off lie in the window, without adding
// them (a large off would overflow).
func (d *Device) inside(n int, off int64) bool {
	return off >= 0 && off <= d.size && int64(n) <= d.size-off
}

// ReadAt reads len(p) bytes at off of the window, through the aligned
// buffer, at most one transfer size at a time.
func (d *Device) ReadAt(p []byte, off int64) (int, error) {
	if !d.inside(len(p), off) {
		return 0, fmt.Errorf("%w: block %s: read of %d bytes at %#x outside the window (%#x bytes)", nvcore.ErrInvalid, d.path, len(p), off, d.size)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.eachPiece(len(p), off, func(done int, start int64, head, n int, buf []byte) error {
		if err := d.pread(buf, start); err != nil {
			return err
		}
		copy(p[done:done+n], buf[head:head+n])
		return nil
	})
}

// eachPiece cuts n bytes at off of the window into pieces that fit the
// buffer, and calls fn for each in order: done bytes come before it, start
// is the device offset of its first logical block, head its offset in that
// block, n its length, and buf the part of the buffer that holds its
// whole blocks. It stops at fn's first error, and returns the bytes of the
// pieces done.
func (d *Device) eachPiece(total int, off int64, fn func(done int, start int64, head, n int, buf []byte) error) (int, error) {
	done := 0
	for done < total {
		pos := d.offset + off + int64(done)
		start := pos &^ int64(d.bs-1)
		head := int(pos - start)
		n := min(total-done, d.xfer-head)
		if err := fn(done, start, head, n, d.buf[:roundUp(head+n, d.bs)]); err != nil {
			return done, err
		}
		done += n
	}
	return done, nil
}

// WriteAt writes p at off of the window: force_ro lifted, whole logical
// blocks written (the partial ones at either end read first and merged),
// force_ro restored. It returns the bytes written before the first failure.
func (d *Device) WriteAt(p []byte, off int64) (n int, err error) {
	if !d.inside(len(p), off) {
		return 0, fmt.Errorf("%w: block %s: write of %d bytes at %#x outside the window (%#x bytes)", nvcore.ErrInvalid, d.path, len(p), off, d.size)
	}
	if len(p) == 0 {
		return 0, nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.lift(); err != nil {
		return 0, err
	}
	defer func() {
		if rerr := d.restore(); rerr != nil {
			if err == nil {
				// The bytes are on the medium, so the error must not read
				// as ErrReadOnly (EPERM, "nothing written"); a device gone
				// meanwhile stays ENODEV.
				format := "%w: block %s: %d bytes were written, but the write protection could not be restored: %v"
				if errors.Is(rerr, syscall.ENODEV) {
					format = "%w: block %s: %d bytes were written, but the write protection could not be restored: %w"
				}
				err = fmt.Errorf(format, nvcore.ErrIO, d.path, n, rerr)
			} else {
				err = fmt.Errorf("%w (and the write protection could not be restored: %v)", err, rerr)
			}
		}
	}()
	if testHookLifted != nil {
		testHookLifted()
	}
	return d.eachPiece(len(p), off, func(done int, start int64, head, size int, buf []byte) error {
		span := len(buf)
		if head != 0 || size < d.bs {
			if err := d.pread(buf[:d.bs], start); err != nil {
				return fmt.Errorf("reading the first block before writing part of it: %w", err)
			}
		}
		if tail := span - d.bs; (head+size)%d.bs != 0 && tail > 0 {
			if err := d.pread(buf[tail:], start+int64(tail)); err != nil {
				return fmt.Errorf("reading the last block before writing part of it: %w", err)
			}
		}
		copy(buf[head:], p[done:done+size])
		return d.pwrite(buf, start)
	})
}

func roundUp(n, to int) int { return (n + to - 1) / to * to }

// pread fills b from off or fails.
func (d *Device) pread(b []byte, off int64) error { return d.full("read", unix.Pread, b, off) }

// pwrite writes b at off or fails.
func (d *Device) pwrite(b []byte, off int64) error { return d.full("write", unix.Pwrite, b, off) }

// full repeats transfer until all of b has moved, or fails.
func (d *Device) full(op string, transfer func(int, []byte, int64) (int, error), b []byte, off int64) error {
	for done := 0; done < len(b); {
		n, err := transfer(d.fd, b[done:], off+int64(done))
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return d.ioError(op, len(b), off, err)
		case n == 0:
			return fmt.Errorf("%w: block %s: %s of %d bytes at %#x: no progress after %d bytes (did the device shrink?)", nvcore.ErrIO, d.path, op, len(b), off, done)
		}
		done += n
	}
	return nil
}

// ioError names a failed transfer. A device the kernel removed is reported
// with ENODEV, so the core removes it; a device the kernel holds read-only
// (EPERM from write(2)) with nvcore.ErrReadOnly.
func (d *Device) ioError(op string, n int, off int64, err error) error {
	if d.gone() {
		return fmt.Errorf("block %s: the device is gone (%s of %d bytes at %#x: %v): %w", d.path, op, n, off, err, syscall.ENODEV)
	}
	if op == "write" && (errors.Is(err, unix.EPERM) || errors.Is(err, unix.EROFS)) {
		return fmt.Errorf("%w: block %s: the kernel refuses the write, the device is read-only (blockdev --getro): %w", nvcore.ErrReadOnly, d.path, err)
	}
	return fmt.Errorf("block %s: %s of %d bytes at %#x: %w", d.path, op, n, off, err)
}

// HardwareGone reports whether the kernel removed the device, or its
// medium (nvcore.GoneChecker): udev's change event for a medium swapped
// can come before the next poll.
func (d *Device) HardwareGone() bool { return d.gone() }

// MediumID is the disk's diskseq at open (nvcore.MediumIdentifier): the
// kernel gives each medium, and each loop binding, a new one. "" on a
// kernel without diskseq (before 5.15).
func (d *Device) MediumID() string { return d.diskseq }

// gone reports whether the kernel removed the device, or its medium.
func (d *Device) gone() bool {
	if d.sysDev == "" {
		return false
	}
	if _, err := os.Stat(d.sysDev); errors.Is(err, os.ErrNotExist) {
		return true
	}
	if d.diskseq != "" {
		if seq := d.readDiskseq(); seq != "" && seq != d.diskseq {
			return true // another disk under the same numbers
		}
	}
	b, err := os.ReadFile(filepath.Join(d.sysDir, "size"))
	return err == nil && strings.TrimSpace(string(b)) == "0"
}

// readDiskseq reads the disk's diskseq: the device's own, or for a
// partition its disk's; "" if sysfs has none.
func (d *Device) readDiskseq() string {
	dir := d.sysDir
	if exists(filepath.Join(dir, "partition")) {
		dir = filepath.Dir(dir)
	}
	b, err := os.ReadFile(filepath.Join(dir, "diskseq"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// lift writes 0 to force_ro if it reads 1. mu is held.
func (d *Device) lift() error {
	if d.forceRO == "" {
		return nil
	}
	on, err := readFlag(d.forceRO)
	if err != nil {
		return d.forceROError("reading", err)
	}
	if !on {
		return nil
	}
	if err := writeFlag(d.forceRO, false); err != nil {
		return d.forceROError("writing 0 to", err)
	}
	d.lifted = true
	return nil
}

// restore writes 1 to force_ro if lift wrote 0. mu is held.
func (d *Device) restore() error {
	if !d.lifted {
		return nil
	}
	if err := writeFlag(d.forceRO, true); err != nil {
		return d.forceROError("writing 1 to", err)
	}
	d.lifted = false
	return nil
}

func (d *Device) forceROError(op string, err error) error {
	switch {
	case errors.Is(err, os.ErrNotExist) && d.gone():
		return fmt.Errorf("block %s: the device is gone (%s %s: %v): %w", d.path, op, d.forceRO, err, syscall.ENODEV)
	case errors.Is(err, os.ErrPermission) || errors.Is(err, unix.EROFS):
		return fmt.Errorf("%w: block %s is write-protected by the kernel, and %s %s failed (%w): lifting the protection needs root and a writable sysfs", nvcore.ErrReadOnly, d.path, op, d.forceRO, err)
	}
	return fmt.Errorf("%w: block %s: %s %s: %w", nvcore.ErrReadOnly, d.path, op, d.forceRO, err)
}

// NotifyGone starts a goroutine that checks every poll interval that the
// kernel's device is still there, and calls gone once when it is not.
// Close stops it and waits for it.
func (d *Device) NotifyGone(gone func()) {
	if d.sysDev == "" {
		return
	}
	d.watcher.Start(d.poll, d.gone, func() {
		slog.Info("block: the kernel device is gone", "device", d.path, "sysfs", d.sysDev)
		gone()
	})
}

// Close stops the watcher, restores force_ro if a write left it lifted,
// and closes the device. Later calls fail with os.ErrClosed.
func (d *Device) Close() error {
	d.stateMu.Lock()
	if d.closed {
		d.stateMu.Unlock()
		return fmt.Errorf("block %s: %w", d.path, os.ErrClosed)
	}
	d.closed = true
	d.stateMu.Unlock()
	d.watcher.Stop()
	d.mu.Lock()
	defer d.mu.Unlock()
	var rerr error
	if d.lifted {
		rerr = d.restore()
		if errors.Is(rerr, syscall.ENODEV) {
			rerr = nil // nothing left to protect
		}
	}
	return errors.Join(rerr, unix.Close(d.fd))
}

// Reason says why the device is served read-only.
func (r *ReadOnlyDevice) Reason() string { return r.d.readOnly }

// Path is the device node, links resolved.
func (r *ReadOnlyDevice) Path() string { return r.d.path }

// Size is the size of the window.
func (r *ReadOnlyDevice) Size() int64 { return r.d.size }

// TransferSize is as Device's.
func (r *ReadOnlyDevice) TransferSize() int { return r.d.xfer }

// Exclusive: as Device's.
func (r *ReadOnlyDevice) Exclusive() {}

// ReadAt reads as Device.ReadAt does.
func (r *ReadOnlyDevice) ReadAt(p []byte, off int64) (int, error) { return r.d.ReadAt(p, off) }

// NotifyGone watches the device as Device.NotifyGone does.
func (r *ReadOnlyDevice) NotifyGone(gone func()) { r.d.NotifyGone(gone) }

// HardwareGone asks as Device.HardwareGone does.
func (r *ReadOnlyDevice) HardwareGone() bool { return r.d.HardwareGone() }

// MediumID is Device.MediumID.
func (r *ReadOnlyDevice) MediumID() string { return r.d.MediumID() }

// Close closes the device.
func (r *ReadOnlyDevice) Close() error { return r.d.Close() }
