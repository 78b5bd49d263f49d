package fs

import (
	"errors"
	"log/slog"
	"syscall"

	"github.com/nvmemfs/nvmemfs/nvcore"
)

// toErrno maps a core error to the errno a program sees. It is the one place
// that does (DESIGN, Errors): sentinels first, then an errno the provider
// returned (providerErrno), and EIO for anything else, logged here and
// nowhere else.
func toErrno(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	switch {
	case errors.Is(err, nvcore.ErrNoDevice):
		return syscall.ENODEV
	case errors.Is(err, nvcore.ErrReadOnly):
		return syscall.EPERM
	case errors.Is(err, nvcore.ErrNotSupported):
		return syscall.EOPNOTSUPP
	case errors.Is(err, nvcore.ErrInvalid):
		return syscall.EINVAL
	case errors.Is(err, nvcore.ErrTooBig):
		return syscall.EFBIG
	case errors.Is(err, nvcore.ErrCellRetired):
		// A removed kernfs file answers the descriptors still open on
		// it with ENODEV.
		return syscall.ENODEV
	case errors.Is(err, nvcore.ErrNoCell):
		return syscall.ENOENT
	}
	var errno syscall.Errno
	if errors.As(err, &errno) && errno != 0 {
		if e, ok := providerErrno(errno); ok {
			return e
		}
		slog.Error("provider failed with an errno FUSE cannot carry: EIO instead", "err", err)
		return syscall.EIO
	}
	if errors.Is(err, nvcore.ErrProviderPanic) {
		return syscall.EIO // logged, with its stack, where it was caught
	}
	slog.Error("provider failed", "err", err)
	return syscall.EIO
}

// providerErrno is the errno a program sees for a provider's own errno,
// and false for one it must not see. A provider's I/O errno (ETIMEDOUT,
// EREMOTEIO, EIO, EBUSY...) goes through, as the kernel's nvmem file
// passes its driver's (SPEC 3, step 8). But the FUSE kernel reads some
// errnos as answers about the protocol, not the call:
//
//   - ENOSYS says the server lacks the operation: the kernel stops sending
//     it for the whole mount (an fsync answered ENOSYS makes every later
//     fsync succeed without asking; an open, every later open).
//   - an errno of 512 or more (the kernel's ERESTARTSYS and friends) is
//     not a valid reply at all.
//
// The errnos that mean the hardware went away (ENODEV, ENXIO, ESHUTDOWN)
// start the device's removal (DESIGN rule 7), so the call says what every
// later call will: ENODEV.
func providerErrno(e syscall.Errno) (syscall.Errno, bool) {
	switch {
	case e == syscall.ENODEV || e == syscall.ENXIO || e == syscall.ESHUTDOWN:
		return syscall.ENODEV, true
	case e == syscall.ENOSYS, e <= 0, e >= 512:
		return 0, false
	}
	return e, true
}
