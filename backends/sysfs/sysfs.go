// Package sysfs provides nvmem devices that mirror the kernel's own: the
// device sysfs:NAME serves /sys/bus/nvmem/devices/NAME (its nvmem file, its
// type, its mode and its cells) through nvmemfs.
//
// What is mirrored, and how:
//
//   - The memory: reads and writes go to the kernel's nvmem file with
//     pread(2) and pwrite(2) on a descriptor opened once. The kernel checks
//     stride, word size and force_ro itself; its errors (EINVAL, EPERM,
//     EACCES, ETIMEDOUT, ...) reach the caller unchanged.
//   - The mode: read-only when the kernel file has no write bit, or when the
//     kernel's force_ro reads 1 at attach; root-only when it has no
//     other-read bit. Computed once, at attach (SPEC 2), as the kernel
//     computes its own from read_only when the device registers.
//   - The cells: one per file <name>@<off>,<bit> in the kernel's cells/
//     directory, as large as that file. Reading one reads the kernel's file,
//     so the kernel applies bit fields and post-processing.
//   - Removal: kernfs fails every read and write on a descriptor of a
//     removed file with ENODEV; the core removes a device whose provider
//     returns it. A poller also watches the kernel's directory, so that a
//     device that vanishes is removed even when nobody reads it.
package sysfs

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nvmemfs/nvmemfs/backends/gonewatch"
	"github.com/nvmemfs/nvmemfs/nvcore"
)

// Defaults for Options.
const (
	DefaultRoot         = "/sys"
	DefaultPollInterval = time.Second
)

// CellLayout is the Layout of every cell a mirror reports: the kernel found
// them, and the kernel reads them.
const CellLayout = "kernel"

// Options tell where the kernel's sysfs is and how often to look for a
// device that went away.
type Options struct {
	// Root is where sysfs is mounted; empty means /sys. Tests point it at a
	// fake tree.
	Root string
	// PollInterval is how often the mirror checks that the kernel's device
	// is still there; zero or less means one second.
	PollInterval time.Duration
}

func (o Options) root() string {
	if o.Root == "" {
		return DefaultRoot
	}
	return o.Root
}

func (o Options) interval() time.Duration {
	if o.PollInterval <= 0 {
		return DefaultPollInterval
	}
	return o.PollInterval
}

func devicesDir(o Options) string {
	return filepath.Join(o.root(), "bus", "nvmem", "devices")
}

// List returns the names of the kernel's nvmem devices, sorted. A sysfs
// without /bus/nvmem (a kernel built without nvmem support) has none; a Root
// that does not exist is an error.
func List(o Options) ([]string, error) {
	if _, err := os.Stat(o.root()); err != nil {
		return nil, fmt.Errorf("sysfs: %w", err)
	}
	entries, err := os.ReadDir(devicesDir(o))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("sysfs: %w", err)
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names, nil
}

// file is what a mirror needs of its descriptor; tests swap in a double to
// play a kernel that fails.
type file interface {
	io.ReaderAt
	io.WriterAt
}

// mirror is the state both provider types share.
type mirror struct {
	name     string
	dir      string // <Root>/bus/nvmem/devices/<name>
	f        *os.File
	io       file        // f, unless a test says otherwise
	writable bool        // f is open for writing
	ident    os.FileInfo // f at open: a file re-created under the same name is another device
	size     int64
	cfg      nvcore.Config
	skipped  []error
	poll     time.Duration

	mu      sync.Mutex
	closed  bool
	watcher gonewatch.Watcher
}

// ReadOnlyMirror is a kernel nvmem device that nvmemfs may only read: the
// kernel file has no write bit, or this process cannot open it for writing.
// It has no WriteAt, so the core gives it no write bit and no force_ro.
type ReadOnlyMirror struct{ m *mirror }

// Mirror is a kernel nvmem device opened for reading and writing: a
// ReadOnlyMirror with a WriteAt.
type Mirror struct{ ReadOnlyMirror }

var (
	_ nvcore.Provider     = (*ReadOnlyMirror)(nil)
	_ io.ReaderAt         = (*ReadOnlyMirror)(nil)
	_ nvcore.CellReader   = (*ReadOnlyMirror)(nil)
	_ nvcore.GoneNotifier = (*ReadOnlyMirror)(nil)
	_ nvcore.Provider     = (*Mirror)(nil)
	_ io.WriterAt         = (*Mirror)(nil)
)

// Open opens the kernel's nvmem device name and returns a provider for it,
// with the config to register it under: a *Mirror when the kernel file has a
// write bit and opens read-write, else a *ReadOnlyMirror. Cell files whose
// names or sizes the core cannot take are left out, logged, and listed by
// Skipped; anything else that is wrong fails the open with a message that
// says what and where.
func Open(name string, o Options) (nvcore.Provider, nvcore.Config, error) {
	m, err := open(name, o)
	if err != nil {
		return nil, nvcore.Config{}, err
	}
	for _, e := range m.skipped {
		slog.Warn("sysfs: not mirrored as the kernel shows it", "device", name, "err", e)
	}
	ro := ReadOnlyMirror{m}
	if !m.writable {
		return &ro, m.config(), nil
	}
	return &Mirror{ro}, m.config(), nil
}

func open(name string, o Options) (*mirror, error) {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return nil, fmt.Errorf("%w: sysfs: device name %q", nvcore.ErrInvalid, name)
	}
	dir := filepath.Join(devicesDir(o), name)
	if _, err := os.Stat(dir); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("sysfs: the kernel has no nvmem device %q in %s%s: %w",
				name, devicesDir(o), knownDevices(o), nvcore.ErrNoDevice)
		}
		return nil, fmt.Errorf("sysfs: %w", err)
	}
	path := filepath.Join(dir, "nvmem")
	st, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("sysfs: %s has no nvmem file (not an nvmem device?): %w", dir, nvcore.ErrNoDevice)
		}
		return nil, fmt.Errorf("sysfs: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("sysfs: %s is not a file: %w", path, nvcore.ErrInvalid)
	}
	perm := st.Mode().Perm()
	if perm&0o444 == 0 {
		// The kernel's device has no read callback. Rare enough that we do
		// not mirror it; say so rather than fail on the first read.
		return nil, fmt.Errorf("sysfs: %s (mode %04o) cannot be read, and only readable devices are mirrored: %w",
			path, perm, nvcore.ErrNotSupported)
	}
	if st.Size() <= 0 {
		return nil, fmt.Errorf("sysfs: %s has size %d: %w", path, st.Size(), nvcore.ErrInvalid)
	}

	f, writable, err := openNvmem(path, perm)
	if err != nil {
		return nil, fmt.Errorf("sysfs: %w", err)
	}
	ident, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("sysfs: %w", err)
	}
	m := &mirror{name: name, dir: dir, f: f, io: f, writable: writable, ident: ident, size: ident.Size(), poll: o.interval()}

	m.cfg.Name = name
	m.cfg.Type = m.readType()
	forceRO := m.readForceRO()
	// The kernel computes its mode once, from read_only, when the device
	// registers; force_ro shows and sets that read_only. We do the same at
	// attach: read-only when the kernel file cannot be written through us,
	// or when the kernel's force_ro is 1 now.
	m.cfg.ReadOnly = !writable || forceRO
	m.cfg.RootOnly = perm&0o004 == 0
	m.cfg.Access = kernelAccess(ident, perm, !m.cfg.ReadOnly)
	m.cfg.Cells = m.readCells()
	return m, nil
}

// kernelAccess is the owner, group and mode of the kernel's nvmem file,
// which the mirror keeps (a udev rule's chown or chmod of the kernel's
// file included); a write bit only if the mirror can write.
func kernelAccess(st fs.FileInfo, perm fs.FileMode, writable bool) nvcore.Access {
	var a nvcore.Access
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		uid, gid := sys.Uid, sys.Gid
		a.UID, a.GID = &uid, &gid
	}
	mode := uint32(perm)
	if !writable {
		mode &^= 0o222
	}
	a.Mode = &mode
	return a
}

// openNvmem opens the kernel's file read-write when its mode has a write bit
// and the kernel lets us, read-only otherwise. The mode is checked first:
// kernfs refuses writing to a file without a write bit even to root, while a
// plain file (the fake trees of tests) would let root write anything.
func openNvmem(path string, perm fs.FileMode) (f *os.File, writable bool, err error) {
	if perm&0o222 != 0 {
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err == nil {
			return f, true, nil
		}
		if !errors.Is(err, fs.ErrPermission) && !errors.Is(err, syscall.EROFS) {
			return nil, false, err
		}
	}
	f, err = os.Open(path)
	return f, false, err
}

// knownDevices lists the kernel's devices for an error message.
func knownDevices(o Options) string {
	names, err := List(o)
	if err != nil {
		return " (" + err.Error() + ")"
	}
	if len(names) == 0 {
		return " (it has none)"
	}
	return " (it has " + strings.Join(names, ", ") + ")"
}

// readType reads the kernel's type file: "EEPROM\n" and the like. A kernel
// too old to have one, or a type this program does not know, reads as
// Unknown; the second is reported.
func (m *mirror) readType() nvcore.Type {
	b, err := os.ReadFile(filepath.Join(m.dir, "type"))
	if errors.Is(err, fs.ErrNotExist) {
		return nvcore.TypeUnknown
	}
	if err != nil {
		m.skipped = append(m.skipped, fmt.Errorf("type: %w", err))
		return nvcore.TypeUnknown
	}
	t, err := nvcore.ParseType(strings.TrimRight(string(b), "\n"))
	if err != nil {
		m.skipped = append(m.skipped, fmt.Errorf("type: %w; shown as Unknown", err))
		return nvcore.TypeUnknown
	}
	return t
}

// readForceRO reads the kernel's force_ro: "0\n" or "1\n", absent when the
// device cannot be written (or the kernel predates it). Text it does not
// understand is reported and taken as 1: when in doubt, do not write.
func (m *mirror) readForceRO() bool {
	b, err := os.ReadFile(filepath.Join(m.dir, "force_ro"))
	if errors.Is(err, fs.ErrNotExist) {
		return false
	}
	if err != nil {
		m.skipped = append(m.skipped, fmt.Errorf("force_ro: %w; taken as 1", err))
		return true
	}
	switch strings.TrimSpace(string(b)) {
	case "0":
		return false
	case "1":
		return true
	}
	m.skipped = append(m.skipped, fmt.Errorf("force_ro: %q is neither 0 nor 1; taken as 1", b))
	return true
}

// readCells makes one cell of each file in the kernel's cells/ directory,
// sorted by offset, bit offset and name. Files the core could not take are
// left out and reported.
func (m *mirror) readCells() []nvcore.CellInfo {
	dir := filepath.Join(m.dir, "cells")
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		m.skipped = append(m.skipped, fmt.Errorf("cells: %w", err))
		return nil
	}
	var cells []nvcore.CellInfo
	for _, e := range entries {
		ci, err := m.cellInfo(dir, e)
		if err != nil {
			m.skipped = append(m.skipped, fmt.Errorf("cells/%s: %w", e.Name(), err))
			continue
		}
		cells = append(cells, ci)
	}
	slices.SortFunc(cells, func(a, b nvcore.CellInfo) int {
		return cmp.Or(cmp.Compare(a.Offset, b.Offset), cmp.Compare(a.BitOffset, b.BitOffset), strings.Compare(a.Name, b.Name))
	})
	return cells
}

func (m *mirror) cellInfo(dir string, e fs.DirEntry) (nvcore.CellInfo, error) {
	name, off, bit, err := ParseCellFileName(e.Name())
	if err != nil {
		return nvcore.CellInfo{}, err
	}
	st, err := os.Stat(filepath.Join(dir, e.Name()))
	if err != nil {
		return nvcore.CellInfo{}, err
	}
	if !st.Mode().IsRegular() {
		return nvcore.CellInfo{}, fmt.Errorf("%w: not a file", nvcore.ErrInvalid)
	}
	// The kernel's cell files are read-only; their read bits are what
	// the kernel (or an administrator's chmod) gives them.
	mode := uint32(st.Mode().Perm()) & 0o444
	ci := nvcore.CellInfo{
		Name:      name,
		Offset:    off,
		Bytes:     int(st.Size()),
		BitOffset: bit,
		Layout:    CellLayout,
		Provided:  true,
		Mode:      &mode,
	}
	if bit >= ci.Bytes*8 {
		return nvcore.CellInfo{}, fmt.Errorf("%w: bit offset %d lies past the cell's %d bytes", nvcore.ErrInvalid, bit, ci.Bytes)
	}
	if bit != 0 {
		// sysfs does not show nbits. The kernel reads the cell, so the width
		// only has to agree with the size for the core's checks: take the
		// widest field that fits.
		ci.NBits = ci.Bytes*8 - bit
	}
	if err := ci.Validate(m.size, 1, 1); err != nil {
		return nvcore.CellInfo{}, err
	}
	return ci, nil
}

// ParseCellFileName splits the name of a kernel cell file,
// <name>@<off>,<bit>, with off and bit in lowercase hex without 0x or
// leading zeros, as the kernel prints them with %x. Only that exact form is
// accepted, so that the name built back from the parts finds the same file.
func ParseCellFileName(s string) (name string, off int64, bit int, err error) {
	bad := func(why string) (string, int64, int, error) {
		return "", 0, 0, fmt.Errorf("%w: cell file name %q: %s (want NAME@OFF,BIT in lowercase hex)", nvcore.ErrInvalid, s, why)
	}
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return bad("no @")
	}
	if at == 0 {
		return bad("no name before @")
	}
	offText, bitText, ok := strings.Cut(s[at+1:], ",")
	if !ok {
		return bad("no comma")
	}
	o, ok := parseHex(offText, 63)
	if !ok {
		return bad("offset " + strconv.Quote(offText) + " is not lowercase hex")
	}
	b, ok := parseHex(bitText, 31)
	if !ok {
		return bad("bit offset " + strconv.Quote(bitText) + " is not lowercase hex")
	}
	return s[:at], int64(o), int(b), nil
}

// parseHex accepts what %x prints for a number of at most bits bits.
func parseHex(s string, bits int) (uint64, bool) {
	v, err := strconv.ParseUint(s, 16, bits)
	return v, err == nil && strconv.FormatUint(v, 16) == s
}

func (m *mirror) config() nvcore.Config {
	c := m.cfg
	c.Cells = slices.Clone(m.cfg.Cells)
	return c
}

// gone reports whether the kernel's device is no longer the one we opened:
// its nvmem file is missing, or is another file (a device that went and
// came back under the same name). An error that says neither, such as
// EACCES, does not count.
func (m *mirror) gone() bool {
	st, err := os.Stat(filepath.Join(m.dir, "nvmem"))
	if err != nil {
		return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
	}
	return !os.SameFile(st, m.ident)
}

// check passes an error of the kernel file on, so that the core tells a
// vanished device from a failing one (DESIGN rule 7). kernfs fails a
// descriptor of a removed file with ENODEV: that passes as it is. ENXIO and
// ESHUTDOWN also mean "gone" to the core, but a driver returns them for a
// bus error (an I2C NAK) while its device stays: when the kernel's device is
// still there, they pass as a driverError, which keeps the errno for the
// caller and no longer says "gone".
func (m *mirror) check(err error) error {
	if err == nil || err == io.EOF {
		return err
	}
	var errno syscall.Errno
	if !errors.As(err, &errno) || (errno != syscall.ENXIO && errno != syscall.ESHUTDOWN) {
		return err
	}
	if m.gone() {
		return fmt.Errorf("sysfs: %s: the kernel device is gone: %w (was: %v)", m.name, syscall.ENODEV, err)
	}
	return &driverError{err: err, errno: errno}
}

// driverError is an error the kernel's driver returned for a device that is
// still there. It hands its errno to errors.As, so the errno reaches the
// caller, but it does not wrap it: errors.Is(err, syscall.ENXIO) is false,
// and the core does not take the device for gone.
type driverError struct {
	err   error
	errno syscall.Errno
}

func (e *driverError) Error() string { return e.err.Error() }

// As sets a *syscall.Errno target to the kernel's errno.
func (e *driverError) As(target any) bool {
	if p, ok := target.(*syscall.Errno); ok {
		*p = e.errno
		return true
	}
	return false
}

func (m *mirror) readAt(p []byte, off int64) (int, error) {
	n, err := m.io.ReadAt(p, off)
	if errors.Is(err, syscall.EACCES) {
		// A read on a descriptor already open is not refused for
		// permission: the driver is going (at24 answers EACCES once its
		// remove has turned runtime PM off, before its nvmem device is
		// unregistered). The read in flight failed: EIO, or ENODEV once
		// the device is gone.
		if m.gone() {
			return n, fmt.Errorf("sysfs: %s: the kernel device is gone: %w (was: %v)", m.name, syscall.ENODEV, err)
		}
		return n, fmt.Errorf("%w: sysfs: %s: the driver refused the read (%v): it is unbinding", nvcore.ErrIO, m.name, err)
	}
	return n, m.check(err)
}

func (m *mirror) writeAt(p []byte, off int64) (int, error) {
	n, err := m.io.WriteAt(p, off)
	return n, m.check(err)
}

// readCell reads the kernel's file of the cell, whole.
func (m *mirror) readCell(ci nvcore.CellInfo) ([]byte, error) {
	if ci.Name == "" || ci.Name == "." || ci.Name == ".." || strings.ContainsAny(ci.Name, "/\x00") {
		return nil, fmt.Errorf("%w: sysfs: cell name %q", nvcore.ErrInvalid, ci.Name)
	}
	path := filepath.Join(m.dir, "cells", ci.FileName())
	b, err := os.ReadFile(path)
	if err == nil {
		return b, nil
	}
	if errors.Is(err, fs.ErrNotExist) && m.gone() {
		return nil, fmt.Errorf("sysfs: %s: the kernel device is gone: %w (was: %v)", m.name, syscall.ENODEV, err)
	}
	return nil, m.check(err)
}

// notifyGone checks every poll interval that the kernel's device is still
// there, and calls gone once when it is not.
func (m *mirror) notifyGone(gone func()) {
	m.watcher.Start(m.poll, m.gone, func() {
		slog.Info("sysfs: the kernel device is gone", "device", m.name, "dir", m.dir)
		gone()
	})
}

func (m *mirror) close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return fmt.Errorf("sysfs: %s: %w", m.name, os.ErrClosed)
	}
	m.closed = true
	m.mu.Unlock()
	m.watcher.Stop()
	return m.f.Close()
}

// Config returns the config to register the mirror under: the kernel's
// name, type, read-only and root-only flags, and cells.
func (r *ReadOnlyMirror) Config() nvcore.Config { return r.m.config() }

// Skipped lists what Open left out or could not read: cell files whose
// names or sizes the core cannot take, an unknown type, a force_ro that
// made no sense.
func (r *ReadOnlyMirror) Skipped() []error { return slices.Clone(r.m.skipped) }

// Size is the size of the kernel's nvmem file.
func (r *ReadOnlyMirror) Size() int64 { return r.m.size }

// TransferSize is the page size: kernfs moves at most one page per read or
// write call, so each chunk the core hands us is one system call.
func (r *ReadOnlyMirror) TransferSize() int { return os.Getpagesize() }

// ReadAt reads the kernel's nvmem file at off (pread, repeated until p is
// full). The kernel's errors pass through; see the package documentation
// for ENODEV and its kin.
func (r *ReadOnlyMirror) ReadAt(p []byte, off int64) (int, error) { return r.m.readAt(p, off) }

// ReadCell reads the kernel's cells/<name>@<off>,<bit> file: the cell as
// the kernel reads it, bit fields shifted down and post-processing applied.
func (r *ReadOnlyMirror) ReadCell(ci nvcore.CellInfo) ([]byte, error) { return r.m.readCell(ci) }

// NotifyGone starts a goroutine that checks every poll interval that the
// kernel's device is still there, and calls gone once when it is not. Close
// stops it and waits for it, so gone must not wait for Close (the registry's
// removes the device on a goroutine of its own). Only the first call counts.
func (r *ReadOnlyMirror) NotifyGone(gone func()) { r.m.notifyGone(gone) }

// Close stops the poller, waits for it, and closes the kernel's file.
func (r *ReadOnlyMirror) Close() error { return r.m.close() }

// WriteAt writes the kernel's nvmem file at off (pwrite, repeated until p is
// written). The kernel's refusals pass through: EPERM while its force_ro is
// 1, EACCES, and the driver's own errors.
func (w *Mirror) WriteAt(p []byte, off int64) (int, error) { return w.m.writeAt(p, off) }
