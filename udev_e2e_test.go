package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nvmemfs/nvmemfs/backends/block/looptest"
)

// fakeSysfs copies the sysfs backend's fake tree (three kernel nvmem
// devices) and adds an I2C adapter, i2c-9, named "nvmemfs-test-bridge".
func fakeSysfs(t *testing.T) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "sys")
	if err := os.CopyFS(root, os.DirFS("backends/sysfs/testdata/sys")); err != nil {
		t.Fatal(err)
	}
	// git keeps no modes: set the kernel's.
	for dev, mode := range map[string]os.FileMode{"0-00500": 0o644, "imx-ocotp0": 0o400, "ds1307_nvram0": 0o444} {
		if err := os.Chmod(filepath.Join(root, "bus/nvmem/devices", dev, "nvmem"), mode); err != nil {
			t.Fatal(err)
		}
	}
	adapter := filepath.Join(root, "devices/pci0000:00/usb1/i2c-9/i2c-dev/i2c-9")
	if err := os.MkdirAll(adapter, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, adapter, "name", []byte("nvmemfs-test-bridge\n"))
	return root
}

// udevRun runs `nvmemfs udev` with the environment udev gives a RUN
// program for one event.
func udevRun(t *testing.T, mnt, sys, conf string, env ...string) result {
	t.Helper()
	args := []string{"udev", "-m", mnt, "--sysfs", sys}
	if conf != "" {
		args = append(args, "--config", conf)
	}
	return runCmd(t, cmdOpts{env: append(env, "SEQNUM=1", "UDEV_LOG=3")}, nvmemfsBin, args...)
}

// waitFor polls cond for up to five seconds: udev's attaches are
// asynchronous.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestUdev: the events udev gives for a kernel nvmem device and for an I2C
// adapter, against a live mount; and against no mount at all.
func TestUdev(t *testing.T) {
	requireFUSE(t)
	sys := fakeSysfs(t)
	logFile := filepath.Join(t.TempDir(), "server.log")
	mnt := mountNV(t, "--log", logFile)

	// A kernel nvmem device appears: mirrored, with its cells. udev kills
	// RUN programs that take long, so `nvmemfs udev` returns before the
	// server attaches. Here the device's type file is a FIFO: the attach
	// waits in the server until the test writes the type, so the device
	// cannot be there when `nvmemfs udev` returns, and a udev command that
	// waited for the attach would never return (runCmd's bound).
	typeFile := filepath.Join(sys, "bus/nvmem/devices/0-00500/type")
	if err := os.Remove(typeFile); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(typeFile, 0o444); err != nil {
		t.Fatal(err)
	}
	writeType := sync.OnceFunc(func() {
		// O_RDWR never waits for a reader; the server reads the type,
		// then EOF once this end is closed.
		f, err := os.OpenFile(typeFile, os.O_RDWR, 0)
		if err != nil {
			t.Error(err)
			return
		}
		f.WriteString("EEPROM\n")
		f.Close()
	})
	t.Cleanup(writeType) // before the unmount, which waits for the attach
	r := mustOK(t, udevRun(t, mnt, sys, "", "ACTION=add", "SUBSYSTEM=nvmem", "KERNEL=0-00500", "DEVPATH=/devices/platform/i2c/i2c-0/0-0050/0-00500"))
	if r.stdout != "" || r.stderr != "" {
		t.Errorf("udev printed %q %q", r.stdout, r.stderr)
	}
	if _, ok := lsJSON(t, cmdOpts{}, "-m", mnt)["0-00500"]; ok {
		t.Error("0-00500 was attached before the server could read its type: nvmemfs udev waited for the attach")
	}
	writeType()
	waitFor(t, "the mirror of 0-00500", func() bool { _, ok := lsJSON(t, cmdOpts{}, "-m", mnt)["0-00500"]; return ok })
	// A plain type file again, for the attaches that follow.
	if err := os.Remove(typeFile); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Dir(typeFile), "type", []byte("EEPROM\n"))
	dev := lsJSON(t, cmdOpts{}, "-m", mnt)["0-00500"]
	if dev.Type != "EEPROM" || dev.Size != 256 || len(dev.Cells) == 0 || !strings.HasPrefix(dev.Source, "sysfs:0-00500") {
		t.Errorf("mirror: %+v", dev)
	}
	kernel := readFile(t, filepath.Join(sys, "bus/nvmem/devices/0-00500/nvmem"))
	mustOK(t, runCmd(t, cmdOpts{}, "cmp", filepath.Join(mnt, "0-00500", "nvmem"), filepath.Join(sys, "bus/nvmem/devices/0-00500/nvmem")))
	_ = kernel
	// The same event twice (udevadm trigger) changes nothing and fails
	// nothing: the server logs the duplicate.
	mustOK(t, udevRun(t, mnt, sys, "", "ACTION=add", "SUBSYSTEM=nvmem", "KERNEL=0-00500", "DEVPATH=/x"))

	// It goes: detached.
	mustOK(t, udevRun(t, mnt, sys, "", "ACTION=remove", "SUBSYSTEM=nvmem", "KERNEL=0-00500", "DEVPATH=/x"))
	waitFor(t, "0-00500 to leave", func() bool { _, ok := lsJSON(t, cmdOpts{}, "-m", mnt)["0-00500"]; return !ok })
	if _, err := os.Stat(filepath.Join(mnt, "0-00500")); !os.IsNotExist(err) {
		t.Errorf("stat after the remove event: %v", err)
	}

	// An I2C adapter appears: the EEPROM the config declares on it (by the
	// adapter's name) is attached. There is no /dev/i2c-9 here, so the
	// attach fails in the server, which logs why; the qemu integration
	// test does it on a real bus.
	conf := writeFile(t, t.TempDir(), "nvmemfs.conf", []byte(
		"# EEPROMs on a USB bridge\nat24:nvmemfs-test-bridge:0x50,chip=24c02,name=bridge-eeprom\n"+
			"at24:other-bridge:0x51,name=elsewhere\n"))
	mustOK(t, udevRun(t, mnt, sys, conf, "ACTION=add", "SUBSYSTEM=i2c-dev", "KERNEL=i2c-9", "DEVPATH=/devices/pci0000:00/usb1/i2c-9/i2c-dev/i2c-9"))
	waitFor(t, "the server to log the attach", func() bool {
		log, _ := os.ReadFile(logFile)
		return strings.Contains(string(log), "attach at24:nvmemfs-test-bridge:0x50,chip=24c02,name=bridge-eeprom")
	})
	log, _ := os.ReadFile(logFile)
	if strings.Contains(string(log), "elsewhere") {
		t.Errorf("a device of another adapter was attached:\n%s", log)
	}
	if !strings.Contains(string(log), "nvmemfs-test-bridge") {
		t.Errorf("the log does not say which bus failed:\n%s", log)
	}
	t.Logf("server log:\n%s", log)
	mustOK(t, udevRun(t, mnt, sys, conf, "ACTION=remove", "SUBSYSTEM=i2c-dev", "KERNEL=i2c-9", "DEVPATH=/devices/pci0000:00/usb1/i2c-9/i2c-dev/i2c-9"))
	// An I2C client (3-0050), not an adapter, concerns nvmemfs not.
	mustOK(t, udevRun(t, mnt, sys, conf, "ACTION=add", "SUBSYSTEM=i2c", "KERNEL=3-0050", "DEVPATH=/x"))

	// Without a server the hook says so and succeeds: systemd starts the
	// service (SYSTEMD_WANTS), which mirrors what is there.
	r = mustOK(t, udevRun(t, t.TempDir(), sys, "", "ACTION=add", "SUBSYSTEM=nvmem", "KERNEL=0-00500", "DEVPATH=/x"))
	wantContains(t, "udev without a server", r.stderr, "no server", "nvmemfs.service")
	// Outside udev: a clear error.
	wantContains(t, "udev without an event", mustFail(t, nv(t, "udev", "-m", mnt)), "ACTION")
}

// TestMountMirror: mount --mirror mirrors every kernel nvmem device.
func TestMountMirror(t *testing.T) {
	requireFUSE(t)
	sys := fakeSysfs(t)
	mnt := mountNV(t, "--mirror", "--sysfs", sys)
	if got := readDirNames(t, mnt); strings.Join(got, " ") != "0-00500 ds1307_nvram0 imx-ocotp0" {
		t.Errorf("mirrored %q", got)
	}
	if got := lsJSON(t, cmdOpts{}, "-m", mnt)["imx-ocotp0"]; got.Mode != "0400" || got.Type != "OTP" {
		t.Errorf("imx-ocotp0: %+v, want the kernel's mode 0400 and type OTP", got)
	}
}

// TestUdevFlash: the events udev gives for block devices and MTD
// partitions. A block device that the config names (by node, by kernel
// name, or by a link to it) is attached when it appears and detached when
// it goes; one it does not name is left alone. An MTD partition is matched
// by number or by its partition name in sysfs (there is no MTD here, so
// the attach fails in the server, which logs it); its read-only twin
// mtdNro is ignored.
func TestUdevFlash(t *testing.T) {
	requireFUSE(t)
	content := pattern(64<<10, 0x77)
	dev := looptest.Attach(t, looptest.Image(t, content))
	other := looptest.Attach(t, looptest.Image(t, make([]byte, 4096)))
	sys := fakeSysfs(t)
	mtdDir := filepath.Join(sys, "devices/virtual/mtd/mtd5")
	if err := os.MkdirAll(mtdDir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, mtdDir, "name", []byte("u-boot-env\n"))
	links := t.TempDir()
	link := filepath.Join(links, "uboot-env")
	if err := os.Symlink(dev, link); err != nil {
		t.Fatal(err)
	}
	conf := writeFile(t, t.TempDir(), "nvmemfs.conf", []byte(
		"block:"+dev+",name=bynode\n"+
			"block:"+filepath.Base(dev)+",name=byname,ro\n"+
			"block:"+link+",name=bylink,ro\n"+
			"block:/dev/nvmemfs-no-such-disk,name=elsewhere\n"+
			"mtd:u-boot-env,name=flashenv\n"+
			"at24:1:0x50,name=eeprom\n"))
	logFile := filepath.Join(t.TempDir(), "server.log")
	mnt := mountNV(t, "--log", logFile)
	names := func() string {
		var n []string
		for name := range lsJSON(t, cmdOpts{}, "-m", mnt) {
			n = append(n, name)
		}
		slices.Sort(n)
		return strings.Join(n, " ")
	}

	kernel := filepath.Base(dev)
	ev := []string{"SUBSYSTEM=block", "KERNEL=" + kernel, "DEVNAME=" + dev, "DEVPATH=/devices/virtual/block/" + kernel}
	mustOK(t, udevRun(t, mnt, sys, conf, append(ev, "ACTION=add")...))
	waitFor(t, "the three SPECs of the loop device", func() bool { return names() == "bylink byname bynode" })
	mustOK(t, runCmd(t, cmdOpts{}, "cmp", filepath.Join(mnt, "bynode", "nvmem"), dev))
	if got := lsJSON(t, cmdOpts{}, "-m", mnt)["bylink"]; got.Mode != "0444" {
		t.Errorf("bylink: %+v", got)
	}
	// Another block device, named by no SPEC: nothing.
	mustOK(t, udevRun(t, mnt, sys, conf, "ACTION=add", "SUBSYSTEM=block", "KERNEL="+filepath.Base(other), "DEVNAME="+other, "DEVPATH=/devices/virtual/block/"+filepath.Base(other)))
	// Gone: all three detached.
	mustOK(t, udevRun(t, mnt, sys, conf, append(ev, "ACTION=remove")...))
	waitFor(t, "the loop device's devices to leave", func() bool { return names() == "" })

	// A link udev made (DEVLINKS), which need not exist here.
	conf2 := writeFile(t, t.TempDir(), "nvmemfs.conf", []byte("block:/dev/disk/by-partlabel/nvmemfs-test-env,name=bypartlabel\n"))
	mustOK(t, udevRun(t, mnt, sys, conf2, append(ev, "ACTION=add", "DEVLINKS=/dev/disk/by-id/x /dev/disk/by-partlabel/nvmemfs-test-env")...))
	waitFor(t, "the server to log the DEVLINKS attach", func() bool {
		log, _ := os.ReadFile(logFile)
		return strings.Contains(string(log), "attach block:/dev/disk/by-partlabel/nvmemfs-test-env,name=bypartlabel")
	})

	// MTD: mtd5 is "u-boot-env" in sysfs; mtd5ro is ignored.
	mustOK(t, udevRun(t, mnt, sys, conf, "ACTION=add", "SUBSYSTEM=mtd", "KERNEL=mtd5ro", "DEVPATH=/devices/virtual/mtd/mtd5ro"))
	mustOK(t, udevRun(t, mnt, sys, conf, "ACTION=add", "SUBSYSTEM=mtd", "KERNEL=mtd5", "DEVPATH=/devices/virtual/mtd/mtd5"))
	waitFor(t, "the server to log the MTD attach", func() bool {
		log, _ := os.ReadFile(logFile)
		return strings.Contains(string(log), "attach mtd:u-boot-env,name=flashenv")
	})
	mustOK(t, udevRun(t, mnt, sys, conf, "ACTION=remove", "SUBSYSTEM=mtd", "KERNEL=mtd5", "DEVPATH=/devices/virtual/mtd/mtd5"))
	log, _ := os.ReadFile(logFile)
	for _, never := range []string{"elsewhere", "name=eeprom", "mtd5ro"} {
		if strings.Contains(string(log), never) {
			t.Errorf("the server log mentions %q:\n%s", never, log)
		}
	}
	if n := strings.Count(string(log), "attach mtd:u-boot-env"); n != 1 {
		t.Errorf("%d attaches of mtd:u-boot-env, want 1 (mtd5ro is not the partition):\n%s", n, log)
	}
}

// TestUdevBlockChange: a block device's change event, as losetup, a card
// reader, and udev itself (a writer closing the node) give it. With a
// medium (a size above 0) the config's SPECs for it are attached, once: a
// second change, and one that only flips the read-only flag (DISK_RO,
// which the block: provider itself causes around each write to an eMMC
// boot partition), attach nothing more. A medium swapped under the same
// device (another diskseq, other bytes) replaces the device: a descriptor
// of the old one gets ENODEV, the path serves the new bytes. A detach by
// hand holds against change events with the same medium (udev sends one
// when the detach closes the device) and ends with another medium. Size 0
// (the medium gone) detaches.
//
// The server's provider reads a fake sysfs (root=) that knows the loop
// device, where the test sets diskseq; the hook gets DISKSEQ in its
// environment, as from the kernel, and reads the size from its own fake
// sysfs (--sysfs).
func TestUdevBlockChange(t *testing.T) {
	requireFUSE(t)
	a, b := pattern(16<<10, 0x21), pattern(16<<10, 0x9c)
	img := looptest.Image(t, a)
	dev := looptest.Attach(t, img)
	kernel := filepath.Base(dev)
	root, _ := looptest.FakeSysfs(t, dev, "")
	var st syscall.Stat_t
	if err := syscall.Stat(dev, &st); err != nil {
		t.Fatal(err)
	}
	rdev := uint64(st.Rdev)
	devDir := filepath.Join(root, "dev", "block", fmt.Sprintf("%d:%d", unix.Major(rdev), unix.Minor(rdev)))
	seq := "101"
	writeFile(t, devDir, "diskseq", []byte(seq+"\n"))
	// newMedium puts content in the image and a new diskseq on the device,
	// as a card swapped in a reader.
	newMedium := func(content []byte, next string) {
		t.Helper()
		if err := os.WriteFile(img, content, 0o644); err != nil {
			t.Fatal(err)
		}
		seq = next
		writeFile(t, devDir, "diskseq", []byte(seq+"\n"))
	}
	hookSys := t.TempDir()
	hookDev := filepath.Join(hookSys, "devices/virtual/block", kernel)
	if err := os.MkdirAll(hookDev, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, hookDev, "size", []byte("32\n"))
	// Two SPECs on the device: each is followed on its own.
	conf := writeFile(t, t.TempDir(), "nvmemfs.conf", []byte("block:"+dev+",name=disk,root="+root+"\n"+
		"block:"+dev+",name=disk2,ro,size=4096,root="+root+"\n"))
	logFile := filepath.Join(t.TempDir(), "server.log")
	mnt := mountNV(t, "--log", logFile)
	nvmem := filepath.Join(mnt, "disk", "nvmem")
	change := func(extra ...string) {
		t.Helper()
		mustOK(t, udevRun(t, mnt, hookSys, conf, append([]string{"ACTION=change", "SUBSYSTEM=block", "KERNEL=" + kernel,
			"DEVNAME=" + dev, "DEVPATH=/devices/virtual/block/" + kernel, "DISKSEQ=" + seq}, extra...)...))
	}
	// logged waits for the server to have logged n lines holding what: a
	// change that attaches nothing leaves only that trace.
	logged := func(what string, n int) {
		t.Helper()
		waitFor(t, fmt.Sprintf("%d server log lines %q", n, what), func() bool {
			log, _ := os.ReadFile(logFile)
			return strings.Count(string(log), what) >= n
		})
	}
	holds := func(want []byte) func() bool {
		return func() bool {
			got, err := os.ReadFile(nvmem)
			return err == nil && bytes.Equal(got, want)
		}
	}
	devices := func() int { return len(lsJSON(t, cmdOpts{}, "-m", mnt)) }
	noFailures := func(when string) {
		t.Helper()
		log, _ := os.ReadFile(logFile)
		if strings.Contains(string(log), "failed") {
			t.Errorf("%s: the server log has failures:\n%s", when, log)
		}
	}

	change()
	waitFor(t, "the loop device's SPEC to attach on its change event", holds(a))
	for _, extra := range [][]string{nil, {"DISK_RO=1"}, {"DISK_RO=0"}, nil} {
		change(extra...)
	}
	// Two requests (DISK_RO asks nothing), each skipping both SPECs.
	logged("its device is there, on the same medium", 4)
	if n := devices(); n != 2 {
		t.Errorf("after four more change events: %d devices, want disk and disk2", n)
	}
	noFailures("changes with the medium in place")

	// Another medium under the same device.
	fd, err := syscall.Open(nvmem, syscall.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	newMedium(b, "102")
	change()
	waitFor(t, "the new medium's bytes at the same path", holds(b))
	if _, err := syscall.Pread(fd, make([]byte, 8), 0); err != syscall.ENODEV {
		t.Errorf("a descriptor of the old medium's device: %v, want ENODEV", err)
	}
	noFailures("a medium swapped")
	// Who noticed: the change event (the server asked the provider), or
	// the provider's own poll, if its tick came first.
	log, _ := os.ReadFile(logFile)
	for _, line := range strings.Split(string(log), "\n") {
		if strings.Contains(line, "gone") {
			t.Logf("server: %s", line)
		}
	}

	// Detached by hand: udev's change (the detach closed a node open for
	// writing) and any other with this medium leave it detached.
	// disk2, not detached, stays followed.
	mustOK(t, nv(t, "detach", "-m", mnt, "disk"))
	change()
	change()
	logged("detached by hand, with the same medium since", 2)
	if got := lsJSON(t, cmdOpts{}, "-m", mnt); len(got) != 1 || got["disk2"].Name != "disk2" {
		t.Errorf("change events after a detach by hand of disk, same medium: devices %v, want disk2 only", got)
	}
	// Another medium: attached again.
	newMedium(a, "103")
	change()
	waitFor(t, "another medium to attach after a detach by hand", holds(a))
	waitFor(t, "disk2 on the new medium too", func() bool { return devices() == 2 })
	noFailures("a detach by hand, then another medium")

	// No medium.
	writeFile(t, hookDev, "size", []byte("0\n"))
	change()
	waitFor(t, "the device to leave when the medium is gone", func() bool { return devices() == 0 })
	noFailures("the medium gone")
}
