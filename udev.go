package main

// nvmemfs udev: the RUN program of docs/udev/99-nvmemfs.rules. udev gives
// it the event in its environment; it turns the event into an attach or a
// detach on the running server, asynchronously, and returns at once (udev
// kills RUN programs that take long).

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/nvmemfs/nvmemfs/backends/spec"
	"github.com/nvmemfs/nvmemfs/control"
)

func udevCommand(mountFlag cli.Flag) *cli.Command {
	return &cli.Command{
		Name:  "udev",
		Usage: "attach or detach for the udev event in the environment (ACTION, SUBSYSTEM, KERNEL, DEVPATH, DEVNAME, DEVLINKS, DISK_RO, DISKSEQ)",
		Flags: []cli.Flag{
			mountFlag,
			&cli.StringFlag{Name: "config", Value: "/etc/nvmemfs.conf", Usage: "the devices to attach as their hardware appears (at24:, mtd:, block:), one SPEC a line"},
			&cli.StringFlag{Name: "sysfs", Value: "/sys", Usage: "where sysfs is mounted"},
		},
		Action: udevCmd,
	}
}

// udevEvent is what udev tells a RUN program. devname is the device node
// (/dev/mmcblk0boot1) and devlinks the links udev made to it
// (/dev/disk/by-partlabel/...), separated by spaces.
// diskRO is set (to 0 or 1) on a block change event that only says the
// kernel's read-only flag changed; diskseq names a disk's medium (a
// partition's event has none: its disk's is in sysfs).
type udevEvent struct {
	action, subsystem, kernel, devpath string
	devname, devlinks                  string
	diskRO, diskseq                    string
}

func udevEventFromEnv() udevEvent {
	return udevEvent{os.Getenv("ACTION"), os.Getenv("SUBSYSTEM"), os.Getenv("KERNEL"), os.Getenv("DEVPATH"),
		os.Getenv("DEVNAME"), os.Getenv("DEVLINKS"), os.Getenv("DISK_RO"), os.Getenv("DISKSEQ")}
}

// medium names the medium of a block event's device: DISKSEQ, or the
// diskseq in sysfs, the device's or for a partition its disk's; "" where
// the kernel has none.
func (ev udevEvent) medium(sysfs string) string {
	if ev.diskseq != "" {
		return ev.diskseq
	}
	dir := filepath.Join(sysfs, ev.devpath)
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if b, err := os.ReadFile(filepath.Join(d, "diskseq")); err == nil {
			return strings.TrimSpace(string(b))
		}
	}
	return ""
}

func udevCmd(c *cli.Context) error {
	ev := udevEventFromEnv()
	if ev.action == "" || ev.subsystem == "" || ev.kernel == "" {
		return errors.New("udev: ACTION, SUBSYSTEM and KERNEL must be set (run from a udev rule)")
	}
	req, err := udevRequest(ev, c.String("config"), c.String("sysfs"))
	if err != nil || req == nil {
		return err
	}
	req.Async = true
	resp, err := control.Call(c.String("mount"), *req)
	if err != nil {
		// No server yet: the rule's SYSTEMD_WANTS starts nvmemfs.service,
		// which mirrors the kernel's devices and attaches the configured
		// ones that are present when it comes up.
		fmt.Fprintf(os.Stderr, "nvmemfs udev: %s %s %s: no server (%v); nvmemfs.service attaches it when it starts\n", ev.action, ev.subsystem, ev.kernel, err)
		return nil
	}
	return respErrors(resp)
}

// udevRequest decides what an event asks of the server, or nil for events
// that concern nvmemfs not at all.
func udevRequest(ev udevEvent, configPath, sysfs string) (*control.Request, error) {
	switch {
	case ev.subsystem == "nvmem" && ev.action == "add":
		return &control.Request{Op: "attach", Args: []string{sysfsSpec(ev.kernel, sysfs)}}, nil
	case ev.subsystem == "nvmem" && ev.action == "remove":
		return &control.Request{Op: "detach", Args: []string{ev.kernel}, IgnoreMissing: true}, nil
	// An adapter shows as i2c (the bus device) and, once i2c-dev binds, as
	// i2c-dev (its /dev/i2c-N node): the rules use the latter, so the node
	// exists by the time the EEPROMs on it are opened.
	case isI2C(ev.subsystem) && isAdapter(ev.kernel) && ev.action == "add":
		name, err := os.ReadFile(filepath.Join(sysfs, ev.devpath, "name"))
		if err != nil {
			return nil, fmt.Errorf("udev: adapter %s: %w", ev.kernel, err)
		}
		args, err := configuredOn(configPath, ev.kernel, strings.TrimSpace(string(name)))
		if err != nil || len(args) == 0 {
			return nil, err
		}
		// Relative paths in the config are taken from its folder.
		abs, _ := filepath.Abs(configPath)
		return &control.Request{Op: "attach", Args: args, Dir: filepath.Dir(abs)}, nil
	case isI2C(ev.subsystem) && isAdapter(ev.kernel) && ev.action == "remove":
		// The adapter's sysfs folder is gone: the server knows which
		// devices sat on it.
		return &control.Request{Op: "detach-hardware", Args: []string{ev.kernel}}, nil
	// An MTD partition (mtd3, not its read-only node mtd3ro) or a block
	// device or partition: the mtd: and block: SPECs of the config that
	// name it are attached; on removal the devices on it are detached.
	//
	// UnlessOn keys the attach to the hardware, as the removal is keyed, so
	// that the server takes udev's quick remove and add in that order; a
	// device the service attached at its start is not attached twice; and
	// one detached by hand stays so (an add without a remove before it is
	// udevadm trigger's).
	case (ev.subsystem == "mtd" && isMTD(ev.kernel) || ev.subsystem == "block") && ev.action == "add":
		args, err := configuredFlash(configPath, ev, sysfs)
		if err != nil || len(args) == 0 {
			return nil, err
		}
		abs, _ := filepath.Abs(configPath)
		return &control.Request{Op: "attach", Args: args, Dir: filepath.Dir(abs), UnlessOn: ev.kernel, Medium: ev.medium(sysfs)}, nil
	case (ev.subsystem == "mtd" && isMTD(ev.kernel) || ev.subsystem == "block") && ev.action == "remove":
		return &control.Request{Op: "detach-hardware", Args: []string{ev.kernel}}, nil
	// A block device's change event: a loop device set up or torn down
	// (losetup), a card put in or taken out of a reader; but also udev's
	// own, when a program that had the node open for writing closes it
	// (udev watches disks), and udevadm trigger's. For a device the
	// config names, the size tells: 0 is no medium, whose devices are
	// detached; otherwise the SPECs are attached as for an add, where no
	// device of theirs is there with this medium (the server asks the
	// provider, which compares diskseq, and detaches a device whose
	// medium was swapped) and no detach by hand holds (Request.UnlessOn).
	// DISK_RO marks a change of the read-only flag only, which the block:
	// provider itself makes around each write to an eMMC boot partition
	// (force_ro): nothing to do.
	case ev.subsystem == "block" && ev.action == "change":
		if ev.diskRO != "" {
			return nil, nil
		}
		args, err := configuredFlash(configPath, ev, sysfs)
		if err != nil || len(args) == 0 {
			return nil, err
		}
		size, err := os.ReadFile(filepath.Join(sysfs, ev.devpath, "size"))
		switch {
		case errors.Is(err, os.ErrNotExist) || err == nil && strings.TrimSpace(string(size)) == "0":
			// No medium, or the device is going (its remove comes next).
			return &control.Request{Op: "detach-hardware", Args: []string{ev.kernel}}, nil
		case err != nil:
			return nil, fmt.Errorf("udev: change of %s: %w", ev.kernel, err)
		}
		abs, _ := filepath.Abs(configPath)
		return &control.Request{Op: "attach", Args: args, Dir: filepath.Dir(abs), UnlessOn: ev.kernel, Medium: ev.medium(sysfs)}, nil
	}
	return nil, nil
}

// readUdevConfig reads the config file; a missing one declares nothing.
func readUdevConfig(path string) ([]*spec.Spec, error) {
	specs, err := spec.ReadConfigFile(path)
	if errors.Is(err, os.ErrNotExist) {
		slog.Debug("udev: no config file", "path", path)
		return nil, nil
	}
	return specs, err
}

// isMTD tells an MTD device's node (mtd3) from its read-only twin (mtd3ro).
func isMTD(kernel string) bool {
	n, ok := strings.CutPrefix(kernel, "mtd")
	if !ok {
		return false
	}
	_, err := strconv.Atoi(n)
	return err == nil
}

// configuredFlash returns the mtd: or block: SPECs of the config file that
// name the device of the event. An MTD device is named by its node
// (/dev/mtd3), its number (3, mtd3) or its partition name (sysfs
// DEVPATH/name, as /proc/mtd lists it). A block device is named by its
// node, its kernel name, a link udev made to it (DEVLINKS), or any other
// path that resolves to its node.
func configuredFlash(path string, ev udevEvent, sysfs string) ([]string, error) {
	specs, err := readUdevConfig(path)
	if err != nil {
		return nil, err
	}
	devname := ev.devname
	if devname == "" {
		devname = "/dev/" + ev.kernel
	}
	var out []string
	for _, sp := range specs {
		var match bool
		switch {
		case ev.subsystem == "mtd" && sp.Kind == "mtd":
			match = matchMTD(sp.Path, ev, devname, sysfs)
		case ev.subsystem == "block" && sp.Kind == "block":
			match = matchBlock(sp.Path, ev, devname)
		}
		if match {
			out = append(out, sp.Text)
		}
	}
	return out, nil
}

func matchMTD(dev string, ev udevEvent, devname, sysfs string) bool {
	switch dev {
	case devname, ev.kernel, strings.TrimPrefix(ev.kernel, "mtd"):
		return true
	}
	if strings.HasPrefix(dev, "/") {
		return false
	}
	name, err := os.ReadFile(filepath.Join(sysfs, ev.devpath, "name"))
	return err == nil && strings.TrimSpace(string(name)) == dev
}

func matchBlock(dev string, ev udevEvent, devname string) bool {
	if dev == devname || dev == "/dev/"+ev.kernel {
		return true
	}
	for _, link := range strings.Fields(ev.devlinks) {
		if dev == link {
			return true
		}
	}
	resolved, err := filepath.EvalSymlinks(dev)
	return err == nil && resolved == devname
}

func isI2C(subsystem string) bool { return subsystem == "i2c" || subsystem == "i2c-dev" }

// isAdapter tells an I2C adapter (i2c-3) from an I2C client (3-0050).
func isAdapter(kernel string) bool {
	n, ok := strings.CutPrefix(kernel, "i2c-")
	if !ok {
		return false
	}
	_, err := strconv.Atoi(n)
	return err == nil
}

// configuredOn returns the at24 SPECs of the config file that sit on the
// adapter i2c-N (named by number, path or adapter name). A missing config
// file declares nothing.
func configuredOn(path, adapter, adapterName string) ([]string, error) {
	specs, err := readUdevConfig(path)
	if err != nil {
		return nil, err
	}
	number := strings.TrimPrefix(adapter, "i2c-")
	var out []string
	for _, sp := range specs {
		if sp.Kind != "at24" {
			continue
		}
		switch sp.Bus {
		case adapter, number, "/dev/" + adapter, adapterName:
			out = append(out, sp.Text)
		}
	}
	return out, nil
}

// sysfsSpec is the SPEC that mirrors the kernel's nvmem device name.
func sysfsSpec(name, root string) string {
	if root == "" || root == "/sys" {
		return "sysfs:" + name
	}
	return "sysfs:" + name + ",root=" + root
}
