package fs

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// fuseDevice is the device a FUSE server reads its requests from.
const fuseDevice = "/dev/fuse"

// checkFuseDevice runs before a mount by a user other than root, which goes
// through fusermount3. When fusermount3 fails it says why on its standard
// error, which a background server has sent to /dev/null, and go-fuse
// reports only its exit status ("fusermount exited with code 256"). The
// usual reason is a FUSE device the user may not open: fusermount3 opens it
// as the calling user (it drops its privileges around the open), so
// access(2), which checks with the real user and group ids, gives the
// answer it would get, and the mount fails here saying so.
func checkFuseDevice(dev string) error {
	err := unix.Access(dev, unix.R_OK|unix.W_OK)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENODEV), errors.Is(err, unix.ENXIO):
		return fmt.Errorf("cannot open %s: %w (is the fuse kernel module loaded?)", dev, err)
	case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
		return fmt.Errorf("cannot open %s: %w: fusermount3 opens it as the user who mounts, who needs read and write access to it (udev makes it 0666 on Debian)", dev, err)
	}
	return fmt.Errorf("cannot open %s: %w", dev, err)
}

// fusermountError adds, to go-fuse's report of a failed fusermount3, where
// fusermount3's own message went.
func fusermountError(err error) error {
	msg := strings.TrimSpace(err.Error())
	if !strings.HasPrefix(msg, "fusermount exited") {
		return err
	}
	return fmt.Errorf("%s: fusermount3 printed why on the server's standard error (run nvmemfs mount --foreground to see it)", msg)
}
