package main

// End-to-end tests of block:DEV on real loop devices, through the mount:
// dd and cmp against the device itself, unaligned writes on 512- and
// 4096-byte sectors, read-only devices, errnos, removal during a long
// write, an eMMC boot partition's force_ro (a fake sysfs beside a real
// loop device), and a U-Boot environment at an offset shared with
// libubootenv's fw_printenv and fw_setenv.

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nvmemfs/nvmemfs/backends/block/looptest"
)

// pwriteErrno opens path write-only and writes data at off, returning the
// errno of the open or of the write (0 for success).
func pwriteErrno(path string, data []byte, off int64) (openErr, writeErr error) {
	fd, err := syscall.Open(path, syscall.O_WRONLY, 0)
	if err != nil {
		return err, nil
	}
	defer syscall.Close(fd)
	_, err = syscall.Pwrite(fd, data, off)
	return nil, err
}

// TestBlockReadWrite: a loop device attached as block:, on 512- and
// 4096-byte sectors: dd writes at unaligned offsets and lengths land
// exactly there on the device, the whole device reads back equal (cmp),
// a write at the end is EFBIG, and the listing shows the SPEC.
func TestBlockReadWrite(t *testing.T) {
	for _, bs := range []int{512, 4096} {
		t.Run(fmt.Sprint(bs), func(t *testing.T) {
			const size = 1 << 20
			want := pattern(size, 0x3c)
			img := looptest.Image(t, want)
			dev := looptest.Attach(t, img, "--sector-size", fmt.Sprint(bs))
			mnt := mountImages(t, "block:"+dev+",name=blk")
			nvm := filepath.Join(mnt, "blk", "nvmem")
			if got := lsJSON(t, cmdOpts{}, "-m", mnt)["blk"]; got.Size != size || got.Mode != "0644" || !strings.HasPrefix(got.Source, "block:") {
				t.Errorf("ls: %+v", got)
			}
			mustOK(t, runCmd(t, cmdOpts{}, "cmp", nvm, dev))

			src := filepath.Join(t.TempDir(), "src")
			for i, w := range []struct{ bs, seek, count int }{
				{1, 1, 1}, {1, 4095, 3}, {777, 3, 5}, {1000, 1, 70}, {65537, 1, 3}, {4096, 10, 4}, {1, size - 1, 1},
			} {
				data := pattern(w.bs*w.count, byte(i))
				if err := os.WriteFile(src, data, 0o644); err != nil {
					t.Fatal(err)
				}
				mustOK(t, runCmd(t, cmdOpts{}, "dd", "if="+src, "of="+nvm, fmt.Sprintf("bs=%d", w.bs), fmt.Sprintf("seek=%d", w.seek), "conv=notrunc", "status=none"))
				copy(want[w.bs*w.seek:], data)
			}
			if got := readFile(t, dev); !bytes.Equal(got, want) {
				t.Errorf("the device differs from what dd wrote, from byte %#x", firstDifference(got, want))
			}
			mustOK(t, runCmd(t, cmdOpts{}, "cmp", nvm, dev))
			// dd reads at odd sizes too.
			out := filepath.Join(t.TempDir(), "out")
			mustOK(t, runCmd(t, cmdOpts{}, "dd", "if="+nvm, "of="+out, "bs=3333", "skip=7", "count=11", "status=none"))
			if got := readFile(t, out); !bytes.Equal(got, want[3333*7:3333*18]) {
				t.Error("dd read at an odd offset differs")
			}
			// A write at the end: EFBIG (SPEC 3), nothing changes.
			if oerr, werr := pwriteErrno(nvm, []byte("x"), size); oerr != nil || !errors.Is(werr, syscall.EFBIG) {
				t.Errorf("write at the end: open %v, write %v; want EFBIG", oerr, werr)
			}
			if got := readFile(t, dev); !bytes.Equal(got, want) {
				t.Error("the device changed after the refused write")
			}
		})
	}
}

// TestBlockReadOnly: a loop device set up with losetup -r is attached
// read-only, and the server log says why: nvmem has no write bit, an open
// for writing is EACCES (SPEC 2, root too), the device is readable. The
// ro option does the same on a writable device.
func TestBlockReadOnly(t *testing.T) {
	content := pattern(64<<10, 9)
	rodev := looptest.Attach(t, looptest.Image(t, content), "-r")
	rwdev := looptest.Attach(t, looptest.Image(t, content))
	logFile := filepath.Join(t.TempDir(), "server.log")
	conf := writeFile(t, t.TempDir(), "devices.conf", []byte("block:"+rodev+",name=rodev\nblock:"+rwdev+",name=roopt,ro\n"))
	mnt := mountNV(t, "--config", conf, "--log", logFile)
	for _, name := range []string{"rodev", "roopt"} {
		nvm := filepath.Join(mnt, name, "nvmem")
		if m := fileMode(t, nvm); m != 0o444 {
			t.Errorf("%s: mode %o, want 0444", name, m)
		}
		if oerr, _ := pwriteErrno(nvm, []byte("x"), 0); !errors.Is(oerr, syscall.EACCES) {
			t.Errorf("%s: open for writing: %v, want EACCES", name, oerr)
		}
		if got := readFile(t, nvm); !bytes.Equal(got, content) {
			t.Errorf("%s: content differs", name)
		}
	}
	log, _ := os.ReadFile(logFile)
	wantContains(t, "server log", string(log), "served read-only", rodev, "BLKROGET")
}

// TestBlockForceRO: an eMMC boot partition as the kernel shows it: a
// force_ro of 1 (here in a fake sysfs, root=, beside a real loop device).
// A dd through the mount writes the device, force_ro reads 1 again after
// it, and a detach during a long write (dd of 16 MiB) stops it with
// ENODEV, waits for one chunk, and leaves force_ro at 1.
func TestBlockForceRO(t *testing.T) {
	const size = 16 << 20
	img := looptest.Image(t, make([]byte, size))
	dev := looptest.Attach(t, img)
	root, fro := looptest.FakeSysfs(t, dev, "1")
	mnt := mountImages(t, "block:"+dev+",name=boot1,root="+root)
	nvm := filepath.Join(mnt, "boot1", "nvmem")
	mustOK(t, runCmd(t, cmdOpts{}, "sh", "-c", `printf 'bootcmd' | dd of="$1" bs=1 seek=5 conv=notrunc status=none`, "sh", nvm))
	if got := readFile(t, dev); string(got[5:12]) != "bootcmd" {
		t.Errorf("the device holds %q at 5", got[5:12])
	}
	if got := strings.TrimSpace(string(readFile(t, fro))); got != "1" {
		t.Errorf("force_ro after the write: %s, want 1", got)
	}

	// A long write, and a detach in the middle of it.
	dd := exec.Command("dd", "if=/dev/zero", "of="+nvm, "bs=1M", "count=16", "conv=notrunc")
	var stderr bytes.Buffer
	dd.Stderr = &stderr
	if err := dd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	mustOK(t, nv(t, "detach", "-m", mnt, "boot1"))
	took := time.Since(start)
	err := dd.Wait()
	t.Logf("detach took %v; dd: %v: %s", took, err, strings.TrimSpace(stderr.String()))
	if got := strings.TrimSpace(string(readFile(t, fro))); got != "1" {
		t.Errorf("force_ro after the detach: %s, want 1", got)
	}
	if err == nil {
		t.Log("dd finished before the detach (a fast machine): nothing to interrupt")
	} else if !strings.Contains(stderr.String(), "No such device") {
		t.Errorf("dd after the detach: %s, want ENODEV (No such device)", stderr.String())
	}
}

// TestBlockLoopDetachedUnderneath: losetup -d of an attached loop device
// changes nothing the mount can see (the kernel keeps the device until
// its last user closes it), and the loop device disappears once nvmemfs
// detaches it.
func TestBlockLoopDetachedUnderneath(t *testing.T) {
	img := looptest.Image(t, make([]byte, 64<<10))
	dev := looptest.Attach(t, img)
	mnt := mountImages(t, "block:"+dev+",name=lp")
	nvm := filepath.Join(mnt, "lp", "nvmem")
	mustOK(t, runCmd(t, cmdOpts{}, "losetup", "-d", dev))
	if oerr, werr := pwriteErrno(nvm, []byte("after"), 100); oerr != nil || werr != nil {
		t.Errorf("write after losetup -d: %v %v", oerr, werr)
	}
	if got := readFile(t, img); string(got[100:105]) != "after" {
		t.Error("the write did not reach the image")
	}
	if _, ok := lsJSON(t, cmdOpts{}, "-m", mnt)["lp"]; !ok {
		t.Error("the device left the mount")
	}
	mustOK(t, nv(t, "detach", "-m", mnt, "lp"))
	for deadline := time.Now().Add(5 * time.Second); looptest.Attached(dev); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s still attached after the detach", dev)
		}
	}
}

// TestBlockEnv: a redundant U-Boot environment at an offset of a block
// device (as on an eMMC boot partition, fw_env.config
// "DEV 0x3e000 0x2000" and "DEV 0x40000 0x2000"): fw_setenv makes it on
// the device itself, nvmemfs env reads it through block: with a window,
// nvmemfs env set writes it, and fw_printenv on the device agrees.
func TestBlockEnv(t *testing.T) {
	requireTool(t, "fw_setenv")
	img := looptest.Image(t, make([]byte, 512<<10))
	dev := looptest.Attach(t, img)
	dir := t.TempDir()
	fwConfig := writeFile(t, dir, "fw_env.config", []byte(fmt.Sprintf("%s 0x3e000 0x2000\n%s 0x40000 0x2000\n", dev, dev)))
	defaults := writeFile(t, dir, "defaults.txt", []byte("bootdelay=3\n"))
	mustOK(t, runCmd(t, cmdOpts{}, "fw_setenv", "-c", fwConfig, "-f", defaults, "board", "emmc"))

	mnt := mountImages(t, "block:"+dev+",name=env,offset=0x3e000,size=0x4000,layout=u-boot-env-redundant,env-size=0x2000")
	want := []string{"board=emmc", "bootdelay=3"}
	if got := envLines(mustOK(t, nv(t, "env", "-m", mnt, "env")).stdout); !slices.Equal(got, want) {
		t.Errorf("nvmemfs env: %q, want %q", got, want)
	}
	mustOK(t, nv(t, "env", "-m", mnt, "env", "set", "serial#", "EMMC-0001"))
	want = []string{"board=emmc", "bootdelay=3", "serial#=EMMC-0001"}
	if got := envLines(mustOK(t, runCmd(t, cmdOpts{}, "fw_printenv", "-c", fwConfig)).stdout); !slices.Equal(got, want) {
		t.Errorf("fw_printenv of the device after nvmemfs env set: %q, want %q", got, want)
	}
	mustOK(t, runCmd(t, cmdOpts{}, "fw_setenv", "-c", fwConfig, "bootdelay"))
	want = []string{"board=emmc", "serial#=EMMC-0001"}
	if got := envLines(mustOK(t, nv(t, "env", "-m", mnt, "env")).stdout); !slices.Equal(got, want) {
		t.Errorf("nvmemfs env after fw_setenv: %q, want %q", got, want)
	}
	// Nothing outside the window changed.
	got := readFile(t, img)
	if !bytes.Equal(got[:0x3e000], make([]byte, 0x3e000)) || !bytes.Equal(got[0x42000:], make([]byte, len(got)-0x42000)) {
		t.Error("bytes outside the environment's window changed")
	}
}
