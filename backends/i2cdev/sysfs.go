package i2cdev

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Options says where the kernel's trees are; tests point them at fakes.
type Options struct {
	// SysfsRoot is where sysfs is mounted; "" means "/sys".
	SysfsRoot string
	// DevRoot is where the i2c-N device nodes are; "" means "/dev".
	DevRoot string
}

func (o Options) sysfs() string {
	if o.SysfsRoot == "" {
		return "/sys"
	}
	return o.SysfsRoot
}

func (o Options) dev() string {
	if o.DevRoot == "" {
		return "/dev"
	}
	return o.DevRoot
}

// i2cMajor is the character-device major number of /dev/i2c-N
// (Documentation/i2c/dev-interface.rst: "major device number 89").
const i2cMajor = 89

// adapterDirs are the sysfs directories that list adapters as i2c-N, each
// with a "name" attribute. class/i2c-adapter needs CONFIG_I2C_COMPAT;
// class/i2c-dev lists only adapters that have a /dev node (i2c-dev loaded).
var adapterDirs = []string{
	"class/i2c-adapter",
	"bus/i2c/devices",
	"class/i2c-dev",
}

// adapter is where a bus name led.
type adapter struct {
	nr   int    // N of i2c-N; -1 if a path gave no way to know it
	path string // the device node
	name string // the adapter's name from sysfs; "" if not found
}

// parseAdapterNr parses "i2c-N" (exactly) and returns N, or -1.
func parseAdapterNr(s string) int {
	rest, ok := strings.CutPrefix(s, "i2c-")
	if !ok {
		return -1
	}
	return parseNr(rest)
}

// parseNr parses a plain decimal adapter number, or returns -1.
func parseNr(s string) int {
	if s == "" || len(s) > 9 {
		return -1
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return -1
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return -1
	}
	return n
}

// readAttr reads a sysfs attribute and drops the newline the kernel ends it
// with.
func readAttr(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	return strings.TrimSuffix(string(b), "\n"), nil
}

// adapterName reads the name of adapter nr from the first sysfs directory
// that has it, or returns "".
func adapterName(o Options, nr int) string {
	for _, d := range adapterDirs {
		if s, err := readAttr(filepath.Join(o.sysfs(), d, "i2c-"+strconv.Itoa(nr), "name")); err == nil {
			return s
		}
	}
	return ""
}

// listAdapters maps adapter numbers to names, over every sysfs directory
// that lists adapters. It also returns the directories it looked in.
func listAdapters(o Options) (map[int]string, []string) {
	found := map[int]string{}
	var looked []string
	for _, d := range adapterDirs {
		dir := filepath.Join(o.sysfs(), d)
		looked = append(looked, dir)
		ents, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range ents {
			nr := parseAdapterNr(e.Name())
			if nr < 0 {
				continue // a client such as 1-0050
			}
			if _, ok := found[nr]; ok {
				continue
			}
			if s, err := readAttr(filepath.Join(dir, e.Name(), "name")); err == nil {
				found[nr] = s
			}
		}
	}
	return found, looked
}

// resolve finds the adapter that name designates: a device node path, i2c-N,
// N, or an adapter name as sysfs shows it (exact match).
func resolve(name string, o Options) (adapter, error) {
	if name == "" {
		return adapter{}, errors.New("i2cdev: no bus given: want /dev/i2c-N, i2c-N, N or an adapter name")
	}
	if strings.HasPrefix(name, "/") {
		nr := nodeNumber(name)
		a := adapter{nr: nr, path: name}
		if nr >= 0 {
			a.name = adapterName(o, nr)
		}
		return a, nil
	}
	nr := parseAdapterNr(name)
	if nr < 0 {
		nr = parseNr(name)
	}
	if nr >= 0 {
		return adapter{nr: nr, path: filepath.Join(o.dev(), "i2c-"+strconv.Itoa(nr)), name: adapterName(o, nr)}, nil
	}

	all, looked := listAdapters(o)
	var match []int
	for nr, s := range all {
		if s == name {
			match = append(match, nr)
		}
	}
	sort.Ints(match)
	switch len(match) {
	case 1:
		nr := match[0]
		return adapter{nr: nr, path: filepath.Join(o.dev(), "i2c-"+strconv.Itoa(nr)), name: name}, nil
	case 0:
		return adapter{}, fmt.Errorf("i2cdev: no I2C adapter is named %q (not a path, i2c-N or N either; looked for names in %s; %s): %w",
			name, strings.Join(looked, ", "), describeAdapters(all), fs.ErrNotExist)
	default:
		var l []string
		for _, nr := range match {
			l = append(l, "i2c-"+strconv.Itoa(nr))
		}
		return adapter{}, fmt.Errorf("i2cdev: several I2C adapters are named %q: %s; give the number instead",
			name, strings.Join(l, ", "))
	}
}

// describeAdapters lists what was found, for an error message.
func describeAdapters(all map[int]string) string {
	if len(all) == 0 {
		return "found no adapters there"
	}
	nrs := make([]int, 0, len(all))
	for nr := range all {
		nrs = append(nrs, nr)
	}
	sort.Ints(nrs)
	const most = 16
	var l []string
	for i, nr := range nrs {
		if i == most {
			l = append(l, fmt.Sprintf("and %d more", len(nrs)-most))
			break
		}
		l = append(l, fmt.Sprintf("i2c-%d %q", nr, all[nr]))
	}
	return "found " + strings.Join(l, ", ")
}

// nodeNumber finds N for a device node path: from its name (i2c-N), from
// the name it links to (a udev symlink), or from its minor number.
func nodeNumber(path string) int {
	if nr := parseAdapterNr(filepath.Base(path)); nr >= 0 {
		return nr
	}
	if real, err := filepath.EvalSymlinks(path); err == nil {
		if nr := parseAdapterNr(filepath.Base(real)); nr >= 0 {
			return nr
		}
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err == nil && st.Mode&unix.S_IFMT == unix.S_IFCHR && unix.Major(uint64(st.Rdev)) == i2cMajor {
		return int(unix.Minor(uint64(st.Rdev)))
	}
	return -1
}

// clientName is the kernel's name for the I2C client at addr on bus nr
// (i2c_dev_set_name: "%d-%04x").
func clientName(nr int, addr uint16) string {
	return fmt.Sprintf("%d-%04x", nr, addr)
}

// CheckAddress tells whether nvmemfs may drive the chip at addr on adapter
// busNr itself. addr must be a 7-bit address outside the reserved ranges,
// 0x03 to 0x77 (the error wraps syscall.EINVAL otherwise). When a kernel
// driver is bound to the client at that address (the client directory
// <SysfsRoot>/bus/i2c/devices/<busNr>-00XX has a driver link), the error
// wraps syscall.EBUSY and names the driver, and the kernel nvmem device to
// mirror with the sysfs backend instead when there is one (at24 registers it
// as a child of the client, e.g. 1-0050/1-00500/nvmem). No client, or a
// client without a driver: nil.
func CheckAddress(o Options, busNr int, addr uint16) error {
	if addr < 0x03 || addr > 0x77 {
		return fmt.Errorf("i2cdev: address 0x%02x is outside the usable 7-bit range 0x03-0x77: %w", addr, syscall.EINVAL)
	}
	if busNr < 0 {
		return fmt.Errorf("i2cdev: bad adapter number %d: %w", busNr, syscall.EINVAL)
	}
	devices := filepath.Join(o.sysfs(), "bus/i2c/devices")
	client := filepath.Join(devices, clientName(busNr, addr))
	drv, bound, err := boundDriver(client)
	if err != nil {
		return fmt.Errorf("i2cdev: 0x%02x on i2c-%d: %w", addr, busNr, err)
	}
	if !bound {
		return nil
	}
	mirror := nvmemName(o, client)
	owner := ""
	if drv == "dummy" && mirror == "" {
		// A chip that spans several addresses (24c04 to 24c16, 24c1024,
		// ...) gets dummy clients for its upper addresses; the nvmem
		// device hangs off the client at the base address, a few below.
		for d := uint16(1); d <= 7 && d < addr; d++ {
			base := filepath.Join(devices, clientName(busNr, addr-d))
			if bdrv, ok, _ := boundDriver(base); ok && bdrv != "dummy" {
				if m := nvmemName(o, base); m != "" {
					owner = fmt.Sprintf(": an extra address of %s, bound to %s", filepath.Base(base), bdrv)
					mirror = m
					break
				}
			}
		}
	}
	if mirror == "" {
		mirror = clientName(busNr, addr)
	}
	return fmt.Errorf("i2cdev: 0x%02x on i2c-%d is in use by a kernel driver (%s%s): mirror it with sysfs:%s instead: %w",
		addr, busNr, drv, owner, mirror, syscall.EBUSY)
}

// boundDriver reports whether the client directory has a driver link, and
// the driver's name (the base name of the link's target).
func boundDriver(client string) (string, bool, error) {
	link := filepath.Join(client, "driver")
	if _, err := os.Lstat(link); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", false, nil
		}
		return "", false, err
	}
	if t, err := os.Readlink(link); err == nil {
		return filepath.Base(t), true, nil
	}
	if t, err := filepath.EvalSymlinks(link); err == nil {
		return filepath.Base(t), true, nil
	}
	return "unknown driver", true, nil
}

// nvmemName finds the nvmem device a driver registered for the client: a
// child directory of the client holding an "nvmem" file (at24 names it after
// the client plus an id, 1-00500, or after the firmware's label), or else an
// entry of <SysfsRoot>/bus/nvmem/devices whose target lives in the client's
// directory. "" if there is none.
func nvmemName(o Options, client string) string {
	if ents, err := os.ReadDir(client); err == nil {
		for _, e := range ents { // sorted by name
			if !e.IsDir() || e.Type()&fs.ModeSymlink != 0 {
				continue // driver, subsystem, of_node... are links, not children
			}
			if st, err := os.Stat(filepath.Join(client, e.Name(), "nvmem")); err == nil && st.Mode().IsRegular() {
				return e.Name()
			}
		}
	}
	realClient, err := filepath.EvalSymlinks(client)
	if err != nil {
		return ""
	}
	nvdir := filepath.Join(o.sysfs(), "bus/nvmem/devices")
	ents, err := os.ReadDir(nvdir)
	if err != nil {
		return ""
	}
	for _, e := range ents {
		t, err := filepath.EvalSymlinks(filepath.Join(nvdir, e.Name()))
		if err == nil && filepath.Dir(t) == realClient {
			return e.Name()
		}
	}
	return ""
}
