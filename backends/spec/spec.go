// Package spec parses device SPEC strings, cells files and config files,
// and opens the provider a SPEC names. It is the one place that knows every
// provider kind, so the command and the control server share it.
//
//	file:PATH[,name=NAME][,type=eeprom|otp|battery-backed|fram|unknown][,ro]
//	    [,root-only][,offset=N][,size=N][,word-size=N][,stride=N]
//	    [,keepout=START-END:FILL]...[,cells=CELLSFILE]
//	    [,layout=onie-tlv|u-boot-env|u-boot-env-redundant|sl28vpd|fixed|auto]
//	    [,env-size=N|auto][,env-flags=counter|boolean][,env-offset=N][,env-offset2=N]
//	    [,wp-gpio=CHIP:LINE[:active-low]][,cache]
//	    [,owner=USER|UID][,group=GROUP|GID][,mode=MODE][,cells-mode=MODE][,cell-mode=NAME:MODE]...
//	at24:BUS:ADDR[,chip=24c02][,pagesize=N][,io-limit=N] and the common options
//	sysfs:NAME[,root=SYSFS] and the common options
//	mtd:DEV and the common options: NOR flash, DEV /dev/mtdN, N, or a
//	    partition's name in /proc/mtd; a U-Boot environment there defaults
//	    to env-flags=boolean, as U-Boot's tools use on NOR
//	block:DEV[,offset=N][,size=N][,root=SYSFS] and the common options: a
//	    block device or partition (an eMMC boot partition, /dev/sdb3, a
//	    loop device), DEV its path, a link to it, or its kernel name
//	    (mmcblk0boot1); offset and size select a window, where U-Boot's
//	    environment sits on eMMC; root is where sysfs is (for force_ro)
//	fault:SIZE[,seed=N][,errors=P][,delays=P][,max-delay=DUR][,shorts=P][,panics=P][,xfer=N]
//	    and the common options (a test provider: computed content, injected faults)
//
// Numbers are decimal, or hexadecimal with 0x. PATH may not contain a comma.
package spec

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"periph.io/x/conn/v3/gpio"

	"github.com/nvmemfs/nvmemfs/backends/at24"
	"github.com/nvmemfs/nvmemfs/backends/block"
	"github.com/nvmemfs/nvmemfs/backends/fault"
	"github.com/nvmemfs/nvmemfs/backends/file"
	"github.com/nvmemfs/nvmemfs/backends/gpiocdev"
	"github.com/nvmemfs/nvmemfs/backends/i2cdev"
	"github.com/nvmemfs/nvmemfs/backends/mtd"
	"github.com/nvmemfs/nvmemfs/backends/sysfs"
	"github.com/nvmemfs/nvmemfs/backends/wp"
	"github.com/nvmemfs/nvmemfs/nvcore"
	"github.com/nvmemfs/nvmemfs/nvcore/layouts"
)

// Spec is a parsed device SPEC.
type Spec struct {
	// Text is the SPEC as written.
	Text string
	// Kind is the provider kind: "file".
	Kind string
	// Path is the image of a file device, made absolute.
	Path string
	// Offset and Size select a window of the image.
	Offset, Size int64
	// Config is the device configuration, cells included.
	Config nvcore.Config
	// CellsFile is where the cells came from, absolute; cellLines gives the
	// line of each cell in it, for error messages.
	CellsFile string
	cellLines []int
	typeSet   bool // type= was given
	// Layout names the layout that finds cells in the content; Env holds
	// the U-Boot environment's options (env-size, env-flags, env-offset,
	// env-offset2), and, once an mtd device is open, its erase size.
	Layout string
	Env    layouts.EnvConfig
	// WriteProtect is the wp-gpio line, if any.
	WriteProtect *wp.Spec

	// An at24 device: the I2C bus (/dev/i2c-N, N, or the adapter's name),
	// the chip's address, and the chip's options.
	Bus  string
	Addr uint16
	AT24 at24.Options
	// A sysfs mirror: the kernel's device name is Path; Root is where
	// sysfs is ("" for /sys). A block device: its path is Path, and Root
	// is the sysfs it finds force_ro in.
	Root string
	// A fault device: its size, seed, fault rates and transfer size.
	Fault fault.Options

	// Hardware names what the device sits on once it is open ("i2c-3" for
	// an EEPROM there), so that a hot-plug event can find its devices.
	Hardware string
	// Origin is FILE:LINE of the config file line the SPEC came from, ""
	// for one given directly. Errors of Attach start with it.
	Origin string
}

// commonOptions may follow any KIND:ARGUMENT; kindOptions only theirs.
var commonOptions = map[string]bool{
	"name": true, "type": true, "ro": true, "root-only": true,
	"word-size": true, "stride": true, "keepout": true, "cells": true,
	"layout": true, "env-size": true, "env-flags": true, "wp-gpio": true,
	"env-offset": true, "env-offset2": true,
	"cache": true,
}

var kindOptions = map[string]map[string]bool{
	"file":  {"offset": true, "size": true},
	"at24":  {"chip": true, "pagesize": true, "io-limit": true},
	"sysfs": {"root": true},
	"mtd":   {},
	"block": {"offset": true, "size": true, "root": true},
	"fault": {"seed": true, "errors": true, "delays": true, "max-delay": true, "shorts": true, "panics": true, "xfer": true},
}

// kinds lists the provider kinds, for messages.
const kinds = "file, at24, sysfs, fault, mtd, block"

// ErrSyntax marks every parse error.
var ErrSyntax = errors.New("bad device spec")

// Parse parses one SPEC. Relative paths are taken from dir. The cells file,
// if any, is read now.
func Parse(text, dir string) (*Spec, error) {
	fail := func(format string, args ...any) (*Spec, error) {
		return nil, fmt.Errorf("%w %q: %s", ErrSyntax, text, fmt.Sprintf(format, args...))
	}
	fields := strings.Split(strings.TrimSpace(text), ",")
	kind, arg, ok := strings.Cut(fields[0], ":")
	if !ok || arg == "" {
		return fail("want KIND:ARGUMENT first, such as file:/path/to/image.bin")
	}
	s := &Spec{Text: text, Kind: kind}
	switch kind {
	case "file":
		s.Path = absolute(arg, dir)
	case "at24":
		// BUS:ADDR: the address follows the last colon.
		i := strings.LastIndex(arg, ":")
		if i <= 0 {
			return fail("want at24:BUS:ADDR, such as at24:1:0x50 or at24:/dev/i2c-1:0x50")
		}
		s.Bus = arg[:i]
		addr, err := ParseNumber(arg[i+1:])
		if err != nil || addr < 0x03 || addr > 0x77 {
			return fail("address %q: want a 7-bit I2C address, 0x03 to 0x77", arg[i+1:])
		}
		s.Addr = uint16(addr)
	case "sysfs":
		if strings.ContainsAny(arg, "/") {
			return fail("sysfs:NAME takes the kernel's device name, as in /sys/bus/nvmem/devices/NAME")
		}
		s.Path = arg
	case "mtd":
		// /dev/mtdN, N or a partition name: resolved when opened, as
		// /proc/mtd says then.
		s.Path = arg
	case "block":
		// A kernel name (mmcblk0boot1) is the node of that name in /dev;
		// anything else is a path, a link to the device allowed.
		if !strings.Contains(arg, "/") {
			s.Path = "/dev/" + arg
		} else {
			s.Path = absolute(arg, dir)
		}
	case "fault":
		size, err := ParseNumber(arg)
		if err != nil || size < 1 {
			return fail("want fault:SIZE, a number of bytes, such as fault:4096")
		}
		s.Fault.Size = size
	default:
		return fail("unknown kind %q (known: %s)", kind, kinds)
	}
	seen := map[string]bool{}
	for _, f := range fields[1:] {
		key, val, hasVal := strings.Cut(f, "=")
		if key != "keepout" && key != "cell-mode" {
			if seen[key] {
				return fail("option %q given twice", key)
			}
			seen[key] = true
		}
		flag := func() error {
			if hasVal {
				return fmt.Errorf("option %q takes no value", key)
			}
			return nil
		}
		var err error
		switch {
		case key == "":
			return fail("empty option (two commas in a row?)")
		case !commonOptions[key] && !kindOptions[kind][key] && !accessOptions[key]:
			return fail("unknown option %q for %s", key, kind)
		case !hasVal && key != "ro" && key != "root-only" && key != "cache":
			return fail("option %q needs a value (%s=...)", key, key)
		}
		switch key {
		case "name":
			s.Config.Name = val
			err = nvcore.CheckName(val)
		case "type":
			s.Config.Type, err = nvcore.ParseType(val)
			s.typeSet = true
		case "ro":
			err = flag()
			s.Config.ReadOnly = true
		case "root-only":
			err = flag()
			s.Config.RootOnly = true
		case "cache":
			err = flag()
			s.Config.Cache = true
		case "offset":
			s.Offset, err = ParseNumber(val)
		case "size":
			s.Size, err = ParseNumber(val)
			if err == nil && s.Size == 0 {
				err = errors.New("size=0: a window needs at least one byte (leave size= out for the rest of the image)")
			}
		case "word-size":
			s.Config.WordSize, err = parseGranule(key, val)
		case "stride":
			s.Config.Stride, err = parseGranule(key, val)
		case "keepout":
			var k nvcore.Keepout
			k, err = parseKeepout(val)
			s.Config.Keepouts = append(s.Config.Keepouts, k)
		case "chip":
			_, err = at24.LookupChip(val)
			s.AT24.Chip = val
		case "pagesize":
			s.AT24.PageSize, err = parsePositive(key, val)
		case "io-limit":
			s.AT24.IOLimit, err = parsePositive(key, val)
		case "root":
			s.Root = absolute(val, dir)
		case "seed":
			var seed int64
			seed, err = ParseNumber(val)
			s.Fault.Seed = uint64(seed)
		case "errors":
			s.Fault.ErrorRate, err = parseRate(val)
		case "delays":
			s.Fault.DelayRate, err = parseRate(val)
		case "shorts":
			s.Fault.ShortRate, err = parseRate(val)
		case "panics":
			s.Fault.PanicRate, err = parseRate(val)
		case "max-delay":
			s.Fault.MaxDelay, err = time.ParseDuration(val)
			if err == nil && (s.Fault.MaxDelay < 0 || s.Fault.MaxDelay > time.Minute) {
				err = fmt.Errorf("max-delay %s: want 0 to 1m", val)
			}
		case "xfer":
			s.Fault.TransferSize, err = parsePositive(key, val)
		case "wp-gpio":
			var w wp.Spec
			w, err = wp.ParseSpec(val)
			s.WriteProtect = &w
		case "layout":
			if !slices.Contains(layouts.Names, val) {
				err = fmt.Errorf("unknown layout %q (known: %s)", val, strings.Join(layouts.Names, ", "))
			}
			s.Layout = val
		case "env-size":
			if val == "auto" {
				s.Env.AutoSize = true
			} else {
				s.Env.Size, err = ParseNumber(val)
				if err == nil && s.Env.Size == 0 {
					err = errors.New("env-size=0: give the size of one copy, or auto (leave env-size= out for the whole device, or half of it when redundant)")
				}
			}
		case "env-flags":
			s.Env.Flags, err = layouts.ParseEnvFlags(val)
		case "owner", "group", "mode", "cells-mode", "cell-mode":
			err = s.parseAccess(key, val)
		case "env-offset":
			s.Env.Offset, err = ParseNumber(val)
		case "env-offset2":
			s.Env.Offset2, err = ParseNumber(val)
			s.Env.Offset2Set = true
		case "cells":
			s.CellsFile = absolute(val, dir)
			s.Config.Cells, s.cellLines, err = ReadCellsFile(s.CellsFile)
			if err != nil {
				return nil, err
			}
		}
		if err != nil {
			return fail("%v", err)
		}
	}
	if (seen["env-size"] || seen["env-flags"]) && !strings.HasPrefix(s.Layout, "u-boot-env") && s.Layout != "auto" {
		return fail("env-size and env-flags go with layout=u-boot-env, u-boot-env-redundant or auto")
	}
	if err := checkEnvOffsets(seen, s.Layout); err != nil {
		return fail("%v", err)
	}
	if kind == "mtd" && !seen["env-flags"] {
		s.Env.Flags = layouts.EnvFlagsBoolean // NOR media (SPEC 8)
	}
	return s, nil
}

// checkEnvOffsets says whether env-offset and env-offset2 go with the
// layout: env-offset places a U-Boot environment (the first copy of a
// redundant one), env-offset2 the second copy. Where they fall on the
// device is checked at attach, when its size and erase size are known.
func checkEnvOffsets(seen map[string]bool, layout string) error {
	switch {
	case seen["env-offset2"] && layout != "u-boot-env-redundant":
		return errors.New("env-offset2 places the second copy: it goes with layout=u-boot-env-redundant")
	case seen["env-offset"] && layout != "u-boot-env" && layout != "u-boot-env-redundant":
		return errors.New("env-offset goes with layout=u-boot-env or u-boot-env-redundant")
	}
	return nil
}

// LayoutOptions reads only the layout options of a SPEC: the layout's name
// and the U-Boot environment's settings, with the Redundant flag that the
// name implies. Tools that edit a device's content use it to learn how the
// device was attached.
func LayoutOptions(text string) (string, layouts.EnvConfig, error) {
	var layout string
	var env layouts.EnvConfig
	var err error
	fields := strings.Split(strings.TrimSpace(text), ",")
	if strings.HasPrefix(fields[0], "mtd:") {
		env.Flags = layouts.EnvFlagsBoolean // unless env-flags= says otherwise, as Parse
	}
	for _, f := range fields[1:] {
		key, val, _ := strings.Cut(f, "=")
		switch key {
		case "layout":
			layout = val
		case "env-size":
			if val == "auto" {
				env.AutoSize = true
			} else if env.Size, err = ParseNumber(val); err != nil {
				return "", env, err
			}
		case "env-flags":
			if env.Flags, err = layouts.ParseEnvFlags(val); err != nil {
				return "", env, err
			}
		case "env-offset":
			if env.Offset, err = ParseNumber(val); err != nil {
				return "", env, err
			}
		case "env-offset2":
			if env.Offset2, err = ParseNumber(val); err != nil {
				return "", env, err
			}
			env.Offset2Set = true
		}
	}
	env.Redundant = layout == "u-boot-env-redundant"
	return layout, env, nil
}

// Open opens the provider the spec names and checks its cells against it,
// pointing at the cells file's line on error. It returns the device's
// configuration: the SPEC's, completed by what the hardware says of itself
// (a kernel device's name, type, modes and cells). The caller owns the
// provider.
func (s *Spec) Open() (nvcore.Provider, nvcore.Config, error) {
	cfg := s.Config
	var p nvcore.Provider
	var err error
	switch s.Kind {
	case "file":
		p, err = file.Open(file.Options{Path: s.Path, Offset: s.Offset, Size: s.Size, ReadOnly: cfg.ReadOnly})
	case "at24":
		p, err = s.openAT24()
		if !s.typeSet {
			cfg.Type = nvcore.TypeEEPROM // as the kernel's at24 says
		}
	case "sysfs":
		var kernel nvcore.Config
		p, kernel, err = sysfs.Open(s.Path, sysfs.Options{Root: s.Root})
		if err == nil {
			cfg = mergeKernel(cfg, kernel, s.typeSet)
		}
	case "mtd":
		p, err = mtd.OpenDevice(s.Path, mtd.Options{ReadOnly: cfg.ReadOnly})
		if err == nil {
			if path, rerr := mtd.Resolve(s.Path); rerr == nil {
				s.Hardware = filepath.Base(path) // mtd0: its udev remove event
			}
		}
		if g, ok := p.(interface{ Info() mtd.Info }); ok && err == nil {
			// A U-Boot environment there keeps its copies on erase blocks
			// of their own.
			s.Env.EraseSize = int64(g.Info().EraseSize)
		}
	case "block":
		p, err = block.Open(block.Options{Path: s.Path, Offset: s.Offset, Size: s.Size, ReadOnly: cfg.ReadOnly, SysfsRoot: s.Root})
		if dev, ok := p.(interface{ Path() string }); ok && err == nil {
			s.Hardware = filepath.Base(dev.Path()) // mmcblk0boot1: its udev remove event
		}
	case "fault":
		o := s.Fault
		o.Name = cfg.Name
		if err = o.Check(); err == nil {
			p = fault.New(o)
		}
	default:
		err = fmt.Errorf("unknown kind %q", s.Kind)
	}
	if err != nil {
		return nil, cfg, err
	}
	word, stride := max(1, cfg.WordSize), max(1, cfg.Stride)
	for i, c := range s.Config.Cells {
		if err := c.Validate(p.Size(), word, stride); err != nil {
			p.Close()
			return nil, cfg, fmt.Errorf("%s:%d: %w", s.CellsFile, s.cellLines[i], err)
		}
	}
	return p, cfg, nil
}

// openAT24 opens the I2C bus, checks that no kernel driver holds the
// address, and opens the chip on it.
func (s *Spec) openAT24() (nvcore.Provider, error) {
	bus, err := i2cdev.Open(s.Bus, i2cdev.Options{})
	if err != nil {
		return nil, err
	}
	if err := i2cdev.CheckAddress(i2cdev.Options{}, bus.Number(), s.Addr); err != nil {
		bus.Close()
		return nil, err
	}
	o := s.AT24
	o.ReadOnly = s.Config.ReadOnly
	p, err := at24.Open(bus, s.Addr, o) // owns the bus once it succeeds
	if err != nil {
		bus.Close()
		return nil, err
	}
	if bus.Number() >= 0 {
		s.Hardware = fmt.Sprintf("i2c-%d", bus.Number())
	}
	return p, nil
}

// DeviceName is the name the device will have, where the SPEC decides it:
// name=, or else a mirrored kernel device's own name. It is "" for a
// device that will be called nvmem<N>, with N chosen at attach.
func (s *Spec) DeviceName() string {
	if s.Config.Name != "" {
		return s.Config.Name
	}
	if s.Kind == "sysfs" {
		return s.Path
	}
	return ""
}

// mergeKernel completes a sysfs mirror's configuration with what the kernel
// says: its name unless the SPEC gives one, its type unless type= is given,
// its read-only and root-only modes (a SPEC may only add to them), and its
// cells before the declared ones.
func mergeKernel(cfg, kernel nvcore.Config, typeSet bool) nvcore.Config {
	if cfg.Name == "" {
		cfg.Name = kernel.Name
	}
	if !typeSet {
		cfg.Type = kernel.Type
	}
	cfg.ReadOnly = cfg.ReadOnly || kernel.ReadOnly
	cfg.RootOnly = cfg.RootOnly || kernel.RootOnly
	cfg.Cells = append(append([]nvcore.CellInfo(nil), kernel.Cells...), cfg.Cells...)
	return kernelAccess(cfg, kernel)
}

// Attach opens the provider and the write-protect line, and registers the
// device. Errors start with the config file and line the SPEC came from.
func (s *Spec) Attach(r *nvcore.Registry) (*nvcore.Device, error) {
	d, err := s.attach(r)
	if err != nil && s.Origin != "" {
		err = fmt.Errorf("%s: %w", s.Origin, err)
	}
	return d, err
}

func (s *Spec) attach(r *nvcore.Registry) (*nvcore.Device, error) {
	p, cfg, err := s.Open()
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*nvcore.Device, error) {
		p.Close()
		if c, ok := cfg.WriteProtect.(io.Closer); ok {
			c.Close()
		}
		return nil, err
	}
	// The layout's options against the device's size: a configuration
	// error, refused here as other option errors are, not left for ls.
	if err := layouts.Check(s.Layout, s.Env, p.Size()); err != nil {
		return fail(err)
	}
	if cfg.Layout, err = layouts.New(s.Layout, s.Env); err != nil {
		return fail(err)
	}
	if w := s.WriteProtect; w != nil {
		// Asserted from the start: the line is requested at its
		// protecting level, and the core asserts it again at register.
		pin, err := gpiocdev.Open(w.Chip, w.Line, gpio.Level(!w.ActiveLow))
		if err != nil {
			return fail(fmt.Errorf("wp-gpio: %w", err))
		}
		cfg.WriteProtect = wp.New(pin, w.ActiveLow)
	}
	d, err := r.Register(cfg, p)
	if err != nil {
		return fail(err)
	}
	return d, nil
}

func absolute(path, dir string) string {
	if filepath.IsAbs(path) || dir == "" {
		return filepath.Clean(path)
	}
	return filepath.Join(dir, path)
}

// ParseNumber reads a non-negative decimal number, or a hexadecimal one
// with 0x. A leading zero does not mean octal.
func ParseNumber(s string) (int64, error) {
	base, digits := 10, s
	if len(s) > 2 && (s[:2] == "0x" || s[:2] == "0X") {
		base, digits = 16, s[2:]
	}
	if digits == "" || digits[0] == '+' || digits[0] == '-' {
		return 0, fmt.Errorf("%q is not a number (decimal, or hex with 0x)", s)
	}
	n, err := strconv.ParseInt(digits, base, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a number (decimal, or hex with 0x)", s)
	}
	return n, nil
}

func parseInt(s string) (int, error) {
	n, err := ParseNumber(s)
	if err != nil {
		return 0, err
	}
	if n > 1<<30 {
		return 0, fmt.Errorf("%s is too large", s)
	}
	return int(n), nil
}

// parseGranule reads a word size or a stride: 1, 2, 4 or 8. Leaving the
// option out means 1; an explicit 0 is refused, not taken as 1.
func parseGranule(key, s string) (int, error) {
	n, err := parseInt(s)
	if err != nil {
		return 0, err
	}
	if n != 1 && n != 2 && n != 4 && n != 8 {
		return 0, fmt.Errorf("%s=%s: want 1, 2, 4 or 8", key, s)
	}
	return n, nil
}

// parsePositive reads a count that has a default when left out: an explicit
// 0 is refused, not taken as the default.
func parsePositive(key, s string) (int, error) {
	n, err := parseInt(s)
	if err == nil && n == 0 {
		err = fmt.Errorf("%s=0: want at least 1 (leave %s= out for the default)", key, key)
	}
	return n, err
}

// parseRate reads a probability from 0 to 1, as a decimal (0.01).
func parseRate(s string) (float64, error) {
	r, err := strconv.ParseFloat(s, 64)
	if err != nil || !(r >= 0 && r <= 1) {
		return 0, fmt.Errorf("%q is not a rate from 0 to 1 (such as 0.01)", s)
	}
	return r, nil
}

// parseKeepout reads START-END:FILL.
func parseKeepout(s string) (nvcore.Keepout, error) {
	rng, fill, ok := strings.Cut(s, ":")
	start, end, ok2 := strings.Cut(rng, "-")
	if !ok || !ok2 {
		return nvcore.Keepout{}, fmt.Errorf("keepout %q: want START-END:FILL", s)
	}
	var k nvcore.Keepout
	var err error
	if k.Start, err = ParseNumber(start); err != nil {
		return k, fmt.Errorf("keepout %q: start: %v", s, err)
	}
	if k.End, err = ParseNumber(end); err != nil {
		return k, fmt.Errorf("keepout %q: end: %v", s, err)
	}
	f, err := ParseNumber(fill)
	if err != nil || f > 0xff {
		return k, fmt.Errorf("keepout %q: fill must be a byte, 0 to 0xff", s)
	}
	k.Fill = byte(f)
	return k, nil
}
