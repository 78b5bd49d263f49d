package fs

import (
	"bytes"
	"os"
	"slices"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nvmemfs/nvmemfs/nvcore"
)

// TestHardwareGone: a provider that starts failing with an errno of
// vanished hardware (DESIGN rule 7) is removed by itself: the reader gets
// ENODEV on that call or the next, the device leaves the tree, its provider
// is closed, and a second device is not disturbed.
func TestHardwareGone(t *testing.T) {
	for _, errno := range []syscall.Errno{syscall.ENODEV, syscall.ENXIO, syscall.ESHUTDOWN} {
		t.Run(errno.Error(), func(t *testing.T) {
			m := mountTest(t)
			_, mem := m.attach(t, nvcore.Config{Name: "usb"}, pattern(4096, 1))
			otherData := pattern(64, 2)
			m.attach(t, nvcore.Config{Name: "other"}, otherData)
			fd := openFile(t, m.path("usb", "nvmem"), syscall.O_RDONLY)

			var unplugged atomic.Bool
			mem.SetHook(func(string, int64, int) error {
				if unplugged.Load() {
					return errno
				}
				return nil
			})
			buf := make([]byte, 512)
			if _, err := syscall.Pread(fd, buf, 0); err != nil {
				t.Fatalf("read before the unplug: %v", err)
			}
			unplugged.Store(true)
			if mode.cached {
				// A read served from the page cache does not ask the
				// hardware: drop the pages so that this one does.
				dropPageCache(t, m.path("usb", "nvmem"))
			}
			_, err := syscall.Pread(fd, buf, 512)
			if e := errnoOf(err); e != errno && e != syscall.ENODEV {
				t.Errorf("read as the hardware goes: %v, want %v or ENODEV", err, errno)
			}
			deadline := time.Now().Add(2 * time.Second)
			for !mem.Closed() || slices.Contains(listDir(t, m.dir), "usb") {
				if time.Now().After(deadline) {
					t.Fatalf("device not removed after its hardware went: closed %t, root %q", mem.Closed(), listDir(t, m.dir))
				}
				time.Sleep(5 * time.Millisecond)
			}
			if _, err := syscall.Pread(fd, buf, 0); errnoOf(err) != syscall.ENODEV {
				t.Errorf("read after the removal: %v, want ENODEV", err)
			}
			if _, err := os.Stat(m.path("usb")); errnoOf(err) != syscall.ENOENT {
				t.Errorf("stat after the removal: %v, want ENOENT", err)
			}
			if n := mem.CallsAfterClose(); n != 0 {
				t.Errorf("%d provider calls after close", n)
			}
			if got, err := os.ReadFile(m.path("other", "nvmem")); err != nil || !bytes.Equal(got, otherData) {
				t.Errorf("the other device: %v", err)
			}
		})
	}
}
