package fs

import (
	"errors"
	"log/slog"
	"syscall"

	"github.com/nvmemfs/nvmemfs/nvcore"
)

// toErrno maps a core error to the errno a program sees. It is the one place
// that does (DESIGN, Errors): sentinels first, then an errno the provider
// returned, and EIO for anything else, logged here and nowhere else.
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
	case errors.Is(err, nvcore.ErrNoCell):
		return syscall.ENOENT
	}
	var errno syscall.Errno
	if errors.As(err, &errno) && errno != 0 {
		return errno
	}
	if errors.Is(err, nvcore.ErrProviderPanic) {
		return syscall.EIO // logged, with its stack, where it was caught
	}
	slog.Error("provider failed", "err", err)
	return syscall.EIO
}
