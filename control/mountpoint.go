package control

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// LazyUnmount detaches the mount on path: umount2(MNT_DETACH) as root, else
// through the setuid fusermount3 (or fusermount), which lets a user unmount
// the FUSE mounts they made.
func LazyUnmount(path string) error {
	err := unix.Unmount(path, unix.MNT_DETACH)
	if err == nil || !errors.Is(err, unix.EPERM) {
		return err
	}
	for _, tool := range []string{"fusermount3", "fusermount"} {
		if _, lookErr := exec.LookPath(tool); lookErr != nil {
			continue
		}
		out, runErr := exec.Command(tool, "-u", "-z", path).CombinedOutput()
		if runErr != nil {
			return fmt.Errorf("%s: %v: %s", tool, runErr, strings.TrimSpace(string(out)))
		}
		return nil
	}
	return err
}

// FSType is the type an nvmemfs mount has in /proc/self/mountinfo.
const FSType = "fuse.nvmemfs"

// Resolve is the identity of a mountpoint: its absolute path with every
// symlink resolved, so that a mount reached through a link and through its
// real path is one mount with one control socket. A dead FUSE mount cannot
// be resolved through (stat says ENOTCONN or ECONNABORTED): its cleaned absolute path is
// used then, with the parent resolved.
func Resolve(mountpoint string) (string, error) {
	abs, err := filepath.Abs(mountpoint)
	if err != nil {
		return "", err
	}
	real, err := filepath.EvalSymlinks(abs)
	if err == nil {
		return real, nil
	}
	if !disconnected(err) {
		return "", err
	}
	parent, err := filepath.EvalSymlinks(filepath.Dir(abs))
	if err != nil {
		return "", err
	}
	return filepath.Join(parent, filepath.Base(abs)), nil
}

// Mount is one entry of /proc/self/mountinfo.
type Mount struct {
	Point  string // where it is mounted, unescaped
	FSType string
	UserID int    // the FUSE server's user (the user_id= option); -1 if none
	Dev    string // the file system's device number, MAJ:MIN
}

// MountsAt returns the mounts stacked on path, bottom first.
func MountsAt(path string) ([]Mount, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseMountinfo(f, path)
}

// parseMountinfo reads the mountinfo format (proc(5)): ID PARENT MAJ:MIN
// ROOT POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS.
func parseMountinfo(r io.Reader, path string) ([]Mount, error) {
	var found []Mount
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		sep := -1
		for i := 6; i < len(f); i++ {
			if f[i] == "-" {
				sep = i
				break
			}
		}
		if len(f) < 5 || sep < 0 || sep+3 >= len(f) {
			continue
		}
		if unescapeMountinfo(f[4]) != path {
			continue
		}
		m := Mount{Point: path, FSType: f[sep+1], UserID: -1, Dev: f[2]}
		for _, opt := range strings.Split(f[sep+3], ",") {
			if v, ok := strings.CutPrefix(opt, "user_id="); ok {
				if id, err := strconv.Atoi(v); err == nil {
					m.UserID = id
				}
			}
		}
		found = append(found, m)
	}
	return found, sc.Err()
}

// unescapeMountinfo undoes the kernel's octal escapes (\040 for a space,
// \011, \012, \134) in a mountinfo path.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// deadMount reports whether the FUSE mount on path has lost its server.
// statfs asks the server every time, where stat may be answered from the
// attribute cache for a while after the server died.
func deadMount(path string) bool {
	var st unix.Statfs_t
	return disconnected(unix.Statfs(path, &st))
}

// disconnected reports whether err is what a FUSE mount without its server
// answers: ENOTCONN, or ECONNABORTED when the kernel aborted the
// connection with requests in flight (seen on 6.18).
func disconnected(err error) bool {
	return errors.Is(err, unix.ENOTCONN) || errors.Is(err, unix.ECONNABORTED)
}

// ErrLiveMount is returned by CleanDeadMount when a working nvmemfs mount
// is on the mountpoint.
var ErrLiveMount = errors.New("an nvmemfs mount is already live there")

// CleanDeadMount prepares mountpoint (resolved) for a new server: a dead
// nvmemfs mount on it (its server killed: every access says ENOTCONN) is
// detached lazily, with a log line, as many times as such mounts are
// stacked there; a live nvmemfs mount is refused with ErrLiveMount. It
// reports whether it cleaned anything. Other file systems on the
// mountpoint are no concern of ours: FUSE mounts over them as over a
// folder.
func CleanDeadMount(mountpoint string) (bool, error) {
	cleaned := false
	for {
		mounts, err := MountsAt(mountpoint)
		if err != nil {
			return cleaned, err
		}
		if len(mounts) == 0 || mounts[len(mounts)-1].FSType != FSType {
			return cleaned, nil
		}
		if !deadMount(mountpoint) {
			return cleaned, fmt.Errorf("%s: %w", mountpoint, ErrLiveMount)
		}
		if err := LazyUnmount(mountpoint); err != nil {
			return cleaned, fmt.Errorf("%s: a dead nvmemfs mount is there (its server is gone), and unmounting it failed: %w", mountpoint, err)
		}
		slog.Warn("a dead nvmemfs mount (its server was killed) was unmounted lazily", "mountpoint", mountpoint)
		cleaned = true
	}
}

// fusectl is where the kernel's FUSE control file system is mounted.
const fusectl = "/sys/fs/fuse/connections"

// connectionID is the name of a FUSE connection's folder in fusectl: the
// superblock's device number as the kernel encodes it (major << 20 | minor;
// FUSE mounts have major 0).
func connectionID(dev string) (string, error) {
	maj, min, ok := strings.Cut(dev, ":")
	major, err1 := strconv.ParseUint(maj, 10, 32)
	minor, err2 := strconv.ParseUint(min, 10, 32)
	if !ok || err1 != nil || err2 != nil {
		return "", fmt.Errorf("bad device number %q", dev)
	}
	return strconv.FormatUint(major<<20|minor, 10), nil
}

// AbortConnection aborts the FUSE connection of the nvmemfs mount at
// mountpoint, as `echo 1 > /sys/fs/fuse/connections/N/abort` does: every
// request waiting for the server fails at once. A server that gives up
// must do this before it exits: one of its threads may be inside the
// kernel, delivering a notification that waits for a page a READ holds
// locked, and that READ is answered by no one once the server is leaving;
// the process would never finish exiting, nor the mount ever be free.
// fusectl is mounted if it is not (as root).
func AbortConnection(mountpoint string) error {
	mounts, err := MountsAt(mountpoint)
	if err != nil {
		return err
	}
	if len(mounts) == 0 || mounts[len(mounts)-1].FSType != FSType {
		return fmt.Errorf("%s: no nvmemfs mount there", mountpoint)
	}
	id, err := connectionID(mounts[len(mounts)-1].Dev)
	if err != nil {
		return err
	}
	abort := filepath.Join(fusectl, id, "abort")
	if _, err := os.Stat(abort); err != nil {
		if err := unix.Mount("fusectl", fusectl, "fusectl", 0, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("mount fusectl on %s: %w", fusectl, err)
		}
	}
	return os.WriteFile(abort, []byte("1"), 0)
}
