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
		Usage: "attach or detach for the udev event in the environment (ACTION, SUBSYSTEM, KERNEL, DEVPATH)",
		Flags: []cli.Flag{
			mountFlag,
			&cli.StringFlag{Name: "config", Value: "/etc/nvmemfs.conf", Usage: "the EEPROMs declared on I2C buses, one SPEC a line"},
			&cli.StringFlag{Name: "sysfs", Value: "/sys", Usage: "where sysfs is mounted"},
		},
		Action: udevCmd,
	}
}

// udevEvent is what udev tells a RUN program.
type udevEvent struct {
	action, subsystem, kernel, devpath string
}

func udevEventFromEnv() udevEvent {
	return udevEvent{os.Getenv("ACTION"), os.Getenv("SUBSYSTEM"), os.Getenv("KERNEL"), os.Getenv("DEVPATH")}
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
	}
	return nil, nil
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
	specs, err := spec.ReadConfigFile(path)
	if errors.Is(err, os.ErrNotExist) {
		slog.Debug("udev: no config file", "path", path)
		return nil, nil
	}
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
