// Command nvmemfs mounts non-volatile memories (EEPROMs, OTP, image files)
// as a file system laid out like /sys/bus/nvmem/devices, and attaches and
// detaches them at run time.
package main

import (
	"bufio"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/nvmemfs/nvmemfs/backends/at24"
	"github.com/nvmemfs/nvmemfs/backends/spec"
	"github.com/nvmemfs/nvmemfs/backends/sysfs"
	"github.com/nvmemfs/nvmemfs/control"
	"github.com/nvmemfs/nvmemfs/fs"
	"github.com/nvmemfs/nvmemfs/nvcore"
)

//go:embed testdata/demo
var demoFiles embed.FS

// cacheAllHelp is what `mount --help` says of --cache-all (docs/CLI.md
// says the same at length).
const cacheAllHelp = `--cache-all: every device is attached as with the option cache, and the kernel
keeps every file (nvmem, cells, type, force_ro) in its page cache; no open,
flush or release reaches the server, so opening, reading and closing a file
already read costs no round trip. What changes for a user:
  - a device that cannot be cached is refused at attach (word-size or stride
    above 1; a writable device with keepouts);
  - what sysfs refuses at open (EACCES for a write-open of a read-only file,
    for root too; ENODEV for a removed device's cached name) is refused by the
    first read or write instead; the mode is checked on each read and write
    that reaches the server, not only at open;
  - a write through nvmemfs updates or drops the pages of every file holding
    those bytes before it returns (two writes to one device at once: a moment
    after); force_ro reads the text written until a moment after the write;
  - content changed outside nvmemfs (another program writing a file image,
    the kernel's device behind a sysfs mirror, an I2C chip written by another
    host) is not noticed: cached pages stay until a write through nvmemfs,
    a detach, or memory pressure drops them;
  - a removal is unchanged: once detach returns, earlier descriptors get
    ENODEV on read and write, cached pages included, and a fresh lookup ENOENT;
  - mmap with MAP_SHARED maps (the page cache backs every file).`

// readyFDEnv names the descriptor on which a server started in the
// background reports "ok" or its error to the command that started it.
const readyFDEnv = "NVMEMFS_READY_FD"

func main() {
	app := newApp()
	if err := app.Run(flagsFirst(app, os.Args)); err != nil {
		fmt.Fprintln(os.Stderr, "nvmemfs:", err)
		os.Exit(1)
	}
}

func newApp() *cli.App {
	mountFlag := &cli.StringFlag{
		Name: "mount", Aliases: []string{"m"}, Value: "/nvmem", EnvVars: []string{"NVMEMFS_MOUNT"},
		Usage: "the nvmemfs mountpoint to act on",
	}
	cli.VersionPrinter = printVersion
	return &cli.App{
		Name:    "nvmemfs",
		Usage:   "non-volatile memories as files, with the kernel's sysfs nvmem semantics",
		Version: readBuildVersion().Version,
		// A SPEC is itself a comma-separated list: --device must not be split.
		DisableSliceFlagSeparator: true,
		Commands: append([]*cli.Command{
			{
				Name:        "mount",
				Usage:       "mount nvmemfs and attach devices; returns once the mount is ready",
				ArgsUsage:   "MOUNTPOINT",
				Description: cacheAllHelp,
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "foreground", Aliases: []string{"f"}, Usage: "serve in this process instead of the background"},
					&cli.BoolFlag{Name: "allow-other", Usage: allowOtherHelp},
					&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Usage: "attach the devices of `FILE`, one SPEC a line"},
					&cli.StringSliceFlag{Name: "device", Aliases: []string{"d"}, Usage: "attach `SPEC` (repeatable)"},
					&cli.BoolFlag{Name: "demo", Usage: "attach demo devices built from the bundled images"},
					&cli.BoolFlag{Name: "mirror", Usage: "mirror every nvmem device of the kernel (sysfs:NAME)"},
					&cli.StringFlag{Name: "sysfs", Value: "/sys", Usage: "where sysfs is, for --mirror"},
					&cli.BoolFlag{Name: "keep-going", Usage: "log a device that cannot be attached (or a missing --config) and go on"},
					&cli.StringFlag{Name: "log", Usage: "append the server's log to `FILE`"},
					&cli.BoolFlag{Name: "debug", Usage: "log every FUSE request"},
					&cli.BoolFlag{Name: "cache-all", Usage: "serve every file from the page cache, with no open or close round trip (see below)"},
				},
				Action: mountCmd,
			},
			{
				Name: "attach", Usage: "attach devices to a running mount", ArgsUsage: "SPEC...",
				Description: "SPEC is file:PATH, at24:BUS:ADDR, sysfs:NAME, mtd:DEV or block:DEV with options (docs/CLI.md, docs/HARDWARE.md, docs/ACCESS.md).\n" +
					"at24 chips: " + strings.Join(at24.ChipNames, " "),
				Flags: []cli.Flag{mountFlag}, Action: requestCmd("attach"),
			},
			{
				Name: "detach", Usage: "detach devices; returns once the provider is closed", ArgsUsage: "NAME...",
				Flags: []cli.Flag{mountFlag}, Action: requestCmd("detach"),
			},
			{
				Name: "ls", Usage: "list the attached devices",
				Flags:  []cli.Flag{mountFlag, &cli.BoolFlag{Name: "json", Usage: "print JSON"}},
				Action: lsCmd,
			},
			{
				Name: "unmount", Usage: "detach every device, unmount, and stop the server", ArgsUsage: "MOUNTPOINT",
				Action: unmountCmd,
			},
		}, append(append(editCommands(mountFlag), transferCommands(mountFlag)...), udevCommand(mountFlag))...),
	}
}

// flagsFirst moves a command's flags ahead of its arguments, so that
// `nvmemfs cell DEVICE CELL --set VALUE` means what it says: urfave/cli
// stops reading flags at the first argument. Only flags the command knows
// move, with their values; "--" ends the flags.
func flagsFirst(app *cli.App, args []string) []string {
	if len(args) < 3 {
		return args
	}
	cmd := app.Command(args[1])
	if cmd == nil {
		return args
	}
	// --help or -h anywhere before "--" asks for the command's help, and
	// only for that: urfave/cli would take the arguments for help topics.
	if !cmd.HideHelp {
		for _, a := range args[2:] {
			if a == "--" {
				break
			}
			if slices.Contains(cli.HelpFlag.Names(), strings.TrimLeft(a, "-")) && strings.HasPrefix(a, "-") {
				return []string{args[0], args[1], "--help"}
			}
		}
	}
	takesValue := map[string]bool{}
	for _, f := range cmd.Flags {
		_, isBool := f.(*cli.BoolFlag)
		for _, name := range f.Names() {
			takesValue[name] = !isBool
		}
	}
	var flags, rest []string
	for i := 2; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			rest = append(rest, args[i:]...)
			break
		}
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		needs, known := takesValue[name]
		if !strings.HasPrefix(a, "-") || a == "-" || !known {
			rest = append(rest, a)
			continue
		}
		flags = append(flags, a)
		if needs && !hasValue && i+1 < len(args) {
			i++
			flags = append(flags, args[i])
		}
	}
	return append(append(args[:2:2], flags...), rest...)
}

// oneMountpoint is the command's MOUNTPOINT, resolved (control.Resolve): a
// mount reached through a symlink is the same mount. A missing one is left
// for the mount itself to report.
func oneMountpoint(c *cli.Context) (string, error) {
	if c.NArg() != 1 {
		return "", fmt.Errorf("%s: want exactly one MOUNTPOINT", c.Command.Name)
	}
	mnt, err := control.Resolve(c.Args().First())
	if errors.Is(err, os.ErrNotExist) {
		return filepath.Abs(c.Args().First())
	}
	return mnt, err
}

// mountCmd starts the server. In the background it re-runs itself with
// --foreground and waits for the child to report readiness.
func mountCmd(c *cli.Context) error {
	mnt, err := oneMountpoint(c)
	if err != nil {
		return err
	}
	if !c.Bool("foreground") {
		return startBackground(mnt)
	}
	return serve(c, mnt)
}

func startBackground(mnt string) error {
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	args := append([]string{"mount", "--foreground"}, os.Args[2:]...)
	cmd := exec.Command(self, args...)
	cmd.ExtraFiles = []*os.File{w}
	cmd.Env = append(os.Environ(), readyFDEnv+"=3")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	w.Close()
	msg, _ := io.ReadAll(r)
	r.Close()
	text := strings.TrimSpace(string(msg))
	// Warnings come first, one a line, then "ok".
	if warnings, ok := strings.CutSuffix(text, "ok"); ok && (warnings == "" || strings.HasSuffix(warnings, "\n")) {
		for _, w := range strings.Split(strings.TrimSpace(warnings), "\n") {
			if w != "" {
				fmt.Fprintln(os.Stderr, "nvmemfs:", w)
			}
		}
		cmd.Process.Release()
		return nil
	}
	cmd.Wait()
	if text == "" {
		text = "the server exited before the mount was ready"
	}
	return errors.New(text)
}

// serve mounts, attaches, reports readiness and serves until unmounted.
func serve(c *cli.Context, mnt string) (err error) {
	var ready *os.File
	if fd, convErr := strconv.Atoi(os.Getenv(readyFDEnv)); convErr == nil {
		os.Unsetenv(readyFDEnv)
		ready = os.NewFile(uintptr(fd), "ready")
		defer func() {
			if err != nil && ready != nil {
				fmt.Fprintln(ready, err)
				ready.Close()
				err = cli.Exit("", 1)
			}
		}()
	}
	if err := setupLog(c.String("log"), ready != nil); err != nil {
		return err
	}

	specs, cleanup, err := collectSpecs(c)
	if err != nil {
		return err
	}
	defer cleanup()

	reg := nvcore.NewRegistry()
	var fsys *fs.FS
	var once sync.Once
	var shutdownErr error
	var ctl *control.Server
	// shutdown drains and closes every device, then unmounts. A mount still
	// in use is detached lazily, and this server keeps answering ENODEV on
	// the descriptors left open until the last one closes; its control
	// socket closes at once, so a new server may mount in its place.
	shutdown := func() error {
		once.Do(func() {
			notifySystemd("STOPPING=1")
			ctl.StopListening()
			shutdownErr = errors.Join(reg.Close(), fsys.Unmount())
			ctl.ReleaseMountpoint()
		})
		return shutdownErr
	}
	ctl = control.NewServer(reg, shutdown)
	// The control socket first: its lock refuses a second server for this
	// mountpoint before anything is mounted on top of the first.
	if err := ctl.Listen(mnt); err != nil {
		return err
	}
	defer ctl.Close()
	// A server killed with SIGKILL leaves its mount dead (ENOTCONN): clean
	// it, or systemd's restart would fail here for good.
	if _, err := control.CleanDeadMount(mnt); errors.Is(err, control.ErrLiveMount) {
		return fmt.Errorf("%s is already mounted by another nvmemfs server", mnt)
	} else if err != nil {
		return err
	}
	allowOther := c.Bool("allow-other")
	fsys, err = fs.Mount(mnt, reg, fs.Options{AllowOther: allowOther, Debug: c.Bool("debug"), CacheAll: c.Bool("cache-all")})
	if err != nil {
		return err
	}
	ctl.Warn = func(sp *spec.Spec, d *nvcore.Device) string { return accessWarning(sp, d, allowOther) }
	var warnings []string
	for _, sp := range specs {
		d, err := ctl.AttachSpec(sp)
		if err == nil {
			if w := accessWarning(sp, d, allowOther); w != "" {
				slog.Warn(w)
				warnings = append(warnings, "warning: "+w)
			}
		}
		if err != nil {
			err = fmt.Errorf("attach %s: %w", sp.Text, err)
			if c.Bool("keep-going") {
				// Hardware absent now is attached by the udev hook when
				// it appears.
				slog.Warn("not attached", "err", err)
				continue
			}
			shutdown()
			return err
		}
	}
	ctl.Serve()

	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	go func() {
		s := <-sigs
		slog.Info("signal: unmounting", "signal", s.String())
		go shutdown()
		// A provider stuck in a call keeps its removal, and so the
		// shutdown, waiting (the log names it). A second signal ends the
		// server without it: the FUSE connection is aborted (see
		// AbortConnection), the mount detached lazily, so that no dead
		// mount is left behind, and descriptors still open under it fail.
		s = <-sigs
		slog.Error("second signal: exiting without waiting for the removals", "signal", s.String())
		notifySystemd("STOPPING=1")
		if err := control.AbortConnection(mnt); err != nil {
			slog.Error("abort the FUSE connection", "mountpoint", mnt, "err", err)
		}
		if err := control.LazyUnmount(mnt); err != nil {
			slog.Error("lazy unmount", "mountpoint", mnt, "err", err)
		}
		os.Exit(1)
	}()

	slog.Info("mounted", "mountpoint", mnt, "devices", len(reg.Devices()))
	notifySystemd("READY=1")
	if ready != nil {
		for _, w := range warnings {
			fmt.Fprintln(ready, w)
		}
		fmt.Fprintln(ready, "ok")
		ready.Close()
		ready = nil
		os.Chdir("/")
	}
	fsys.Wait()
	// Unmounted by request, by signal, or from outside (umount): in every
	// case the devices are drained and closed before the server exits.
	return shutdown()
}

// setupLog sends slog to a file; a background server without one logs
// nowhere, since its terminal is gone.
func setupLog(path string, background bool) error {
	var w io.Writer = os.Stderr
	if path != "" {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			return err
		}
		w = f
	} else if background {
		w = io.Discard
	}
	if background {
		devNull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
		if err == nil {
			unix.Dup2(int(devNull.Fd()), 0)
			unix.Dup2(int(devNull.Fd()), 1)
			if path == "" {
				unix.Dup2(int(devNull.Fd()), 2)
			}
		}
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(w, nil)))
	return nil
}

// collectSpecs gathers the devices of --config, --device and --demo, parsed
// before anything is mounted so that a typo fails the mount cleanly.
func collectSpecs(c *cli.Context) ([]*spec.Spec, func(), error) {
	cleanup := func() {}
	var specs []*spec.Spec
	if path := c.String("config"); path != "" {
		list, err := spec.ReadConfigFile(path)
		switch {
		case errors.Is(err, os.ErrNotExist) && c.Bool("keep-going"):
			slog.Warn("no config file", "path", path)
		case err != nil:
			return nil, cleanup, err
		}
		specs = append(specs, list...)
	}
	if c.Bool("mirror") {
		root := c.String("sysfs")
		names, err := sysfs.List(sysfs.Options{Root: root})
		if err != nil && !c.Bool("keep-going") {
			return nil, cleanup, err
		}
		for _, name := range names {
			sp, err := spec.Parse(sysfsSpec(name, root), "")
			if err != nil {
				return nil, cleanup, err
			}
			specs = append(specs, sp)
		}
	}
	cwd, _ := os.Getwd()
	for _, text := range c.StringSlice("device") {
		sp, err := spec.Parse(text, cwd)
		if err != nil {
			return nil, cleanup, err
		}
		specs = append(specs, sp)
	}
	if c.Bool("demo") {
		dir, err := unpackDemo()
		if err != nil {
			return nil, cleanup, err
		}
		cleanup = func() { os.RemoveAll(dir) }
		list, err := spec.ReadConfigFile(filepath.Join(dir, "demo.conf"))
		if err != nil {
			return nil, cleanup, err
		}
		specs = append(specs, list...)
	}
	return specs, cleanup, nil
}

// unpackDemo copies the bundled demo images to a fresh folder, so that
// writes through the mount never touch the originals.
func unpackDemo() (string, error) {
	dir, err := os.MkdirTemp("", "nvmemfs-demo-")
	if err != nil {
		return "", err
	}
	err = iofs.WalkDir(demoFiles, "testdata/demo", func(path string, e iofs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		data, err := demoFiles.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, e.Name()), data, 0o644)
	})
	if err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	return dir, nil
}

// requestCmd sends attach or detach with the command's arguments.
func requestCmd(op string) cli.ActionFunc {
	return func(c *cli.Context) error {
		if c.NArg() == 0 {
			return fmt.Errorf("%s: nothing to %s", op, op)
		}
		cwd, _ := os.Getwd()
		resp, err := control.Call(c.String("mount"), control.Request{Op: op, Args: c.Args().Slice(), Dir: cwd})
		if err != nil {
			return err
		}
		for _, w := range resp.Warnings {
			fmt.Fprintln(os.Stderr, "nvmemfs: warning:", w)
		}
		if len(resp.Errors) == 0 {
			report("%sed %s", op, strings.Join(c.Args().Slice(), " "))
		}
		return respErrors(resp)
	}
}

// isTerminal reports whether f is a terminal.
func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// report says briefly what a command changed, on standard error when it
// is a terminal; a script sees nothing.
func report(format string, args ...any) {
	if isTerminal(os.Stderr) {
		fmt.Fprintf(os.Stderr, format+"\n", args...)
	}
}

func respErrors(resp *control.Response) error {
	if len(resp.Errors) == 0 {
		return nil
	}
	return errors.New(strings.Join(resp.Errors, "\nnvmemfs: "))
}

func lsCmd(c *cli.Context) error {
	resp, err := control.Call(c.String("mount"), control.Request{Op: "ls"})
	if err != nil {
		return err
	}
	if err := respErrors(resp); err != nil {
		return err
	}
	if c.Bool("json") {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if resp.Devices == nil {
			resp.Devices = []control.DeviceInfo{}
		}
		return enc.Encode(resp.Devices)
	}
	out := bufio.NewWriter(os.Stdout)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tTYPE\tSIZE\tMODE\tOWNER\tGROUP\tFORCE_RO\tLAYOUT\tCELLS\tSOURCE")
	for _, d := range resp.Devices {
		layout := d.Layout
		if layout == "" {
			layout = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%t\t%s\t%d\t%s\n", d.Name, d.Type, d.Size, d.Mode, d.Owner, d.Group, d.ForceRO, layout, len(d.Cells), d.Source)
	}
	tw.Flush()
	for _, d := range resp.Devices {
		if d.LayoutError != "" {
			fmt.Fprintf(out, "%s: %s\n", d.Name, d.LayoutError)
		}
	}
	return out.Flush()
}

func unmountCmd(c *cli.Context) error {
	mnt, err := oneMountpoint(c)
	if err != nil {
		return err
	}
	resp, err := control.Call(mnt, control.Request{Op: "unmount"})
	if errors.Is(err, control.ErrDeadMount) {
		// Its server was killed: nothing to stop, only the mount to clean.
		if _, err := control.CleanDeadMount(mnt); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "nvmemfs: %s: the mount was dead (its server was gone): unmounted it\n", mnt)
		return nil
	}
	if err != nil {
		return err
	}
	return respErrors(resp)
}

// notifySystemd tells systemd the service's state (sd_notify), when it runs
// as a Type=notify unit; elsewhere it does nothing.
func notifySystemd(state string) {
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return
	}
	// An abstract socket's "@" prefix is understood by net as it is.
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		slog.Warn("sd_notify", "err", err)
		return
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		slog.Warn("sd_notify", "err", err)
	}
}
