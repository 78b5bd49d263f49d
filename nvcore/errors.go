package nvcore

import (
	"errors"
	"fmt"
)

// Sentinel errors. Callers test them with errors.Is; the core wraps them with
// context (which device, which offset) using %w. The FUSE layer maps each to
// one errno.
var (
	// ErrNoDevice: the device was removed, or never existed (ENODEV).
	ErrNoDevice = errors.New("no such device")
	// ErrReadOnly: the device, or its force_ro switch, forbids writing (EPERM
	// through the nvmem file, as the kernel's sysfs file does).
	ErrReadOnly = errors.New("device is read-only")
	// ErrNotSupported: the provider has no callback for this operation
	// (EOPNOTSUPP).
	ErrNotSupported = errors.New("operation not supported by the provider")
	// ErrInvalid: an argument breaks a rule of the device, such as an offset
	// off the stride or a length under the word size (EINVAL).
	ErrInvalid = errors.New("invalid argument")
	// ErrTooBig: a write starts at or past the end of the device (EFBIG).
	ErrTooBig = errors.New("offset past the end of the device")
	// ErrNoCell: the device has no cell of that name (ENOENT).
	ErrNoCell = errors.New("no such cell")
	// ErrCellRetired: the cell left its device's content (a layout
	// re-parsed it away). It is an ErrNoCell; a file of that cell, opened
	// before, answers ENODEV, as a removed sysfs file does.
	ErrCellRetired = fmt.Errorf("%w: the cell left the content", ErrNoCell)
	// ErrExist: a device of that name is already registered (EEXIST).
	ErrExist = errors.New("device name already in use")
	// ErrIO: the provider failed in a way that has no errno of its own, such
	// as a short transfer or a panic (EIO).
	ErrIO = errors.New("input/output error")
	// ErrProviderPanic: the provider panicked. It is an ErrIO; the core has
	// logged the panic with its stack where it caught it.
	ErrProviderPanic = fmt.Errorf("%w: provider panic", ErrIO)
)
