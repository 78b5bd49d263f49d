// Package spec parses device SPEC strings, cells files and config files,
// and opens the provider a SPEC names. It is the one place that knows every
// provider kind, so the command and the control server share it.
//
//	file:PATH[,name=NAME][,type=eeprom|otp|battery-backed|fram|unknown][,ro]
//	    [,root-only][,offset=N][,size=N][,word-size=N][,stride=N]
//	    [,keepout=START-END:FILL]...[,cells=CELLSFILE]
//	    [,layout=onie-tlv|u-boot-env|u-boot-env-redundant|sl28vpd|fixed|auto]
//	    [,env-size=N|auto][,env-flags=counter|boolean]
//
// Numbers are decimal, or hexadecimal with 0x. PATH may not contain a comma.
package spec

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/nvmemfs/nvmemfs/backends/file"
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
	// Layout names the layout that finds cells in the content; Env holds
	// the U-Boot environment's options (env-size, env-flags).
	Layout string
	Env    layouts.EnvConfig
}

// knownOptions are the options a SPEC may carry after KIND:ARGUMENT.
var knownOptions = map[string]bool{
	"name": true, "type": true, "ro": true, "root-only": true, "offset": true,
	"size": true, "word-size": true, "stride": true, "keepout": true, "cells": true,
	"layout": true, "env-size": true, "env-flags": true,
}

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
	default:
		return fail("unknown kind %q (known: file)", kind)
	}
	seen := map[string]bool{}
	for _, f := range fields[1:] {
		key, val, hasVal := strings.Cut(f, "=")
		if key != "keepout" {
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
		case !knownOptions[key]:
			return fail("unknown option %q", key)
		case !hasVal && key != "ro" && key != "root-only":
			return fail("option %q needs a value (%s=...)", key, key)
		}
		switch key {
		case "name":
			s.Config.Name = val
		case "type":
			s.Config.Type, err = nvcore.ParseType(val)
		case "ro":
			err = flag()
			s.Config.ReadOnly = true
		case "root-only":
			err = flag()
			s.Config.RootOnly = true
		case "offset":
			s.Offset, err = ParseNumber(val)
		case "size":
			s.Size, err = ParseNumber(val)
		case "word-size":
			s.Config.WordSize, err = parseInt(val)
		case "stride":
			s.Config.Stride, err = parseInt(val)
		case "keepout":
			var k nvcore.Keepout
			k, err = parseKeepout(val)
			s.Config.Keepouts = append(s.Config.Keepouts, k)
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
			}
		case "env-flags":
			s.Env.Flags, err = layouts.ParseEnvFlags(val)
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
	return s, nil
}

// LayoutOptions reads only the layout options of a SPEC: the layout's name
// and the U-Boot environment's settings, with the Redundant flag that the
// name implies. Tools that edit a device's content use it to learn how the
// device was attached.
func LayoutOptions(text string) (string, layouts.EnvConfig, error) {
	var layout string
	var env layouts.EnvConfig
	var err error
	for _, f := range strings.Split(strings.TrimSpace(text), ",")[1:] {
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
		}
	}
	env.Redundant = layout == "u-boot-env-redundant"
	return layout, env, nil
}

// Open opens the provider the spec names and checks its cells against it,
// pointing at the cells file's line on error. The caller owns the provider.
func (s *Spec) Open() (nvcore.Provider, error) {
	var p nvcore.Provider
	var err error
	switch s.Kind {
	case "file":
		p, err = file.Open(file.Options{Path: s.Path, Offset: s.Offset, Size: s.Size, ReadOnly: s.Config.ReadOnly})
	default:
		err = fmt.Errorf("unknown kind %q", s.Kind)
	}
	if err != nil {
		return nil, err
	}
	word, stride := max(1, s.Config.WordSize), max(1, s.Config.Stride)
	for i, c := range s.Config.Cells {
		if err := c.Validate(p.Size(), word, stride); err != nil {
			p.Close()
			return nil, fmt.Errorf("%s:%d: %w", s.CellsFile, s.cellLines[i], err)
		}
	}
	return p, nil
}

// Attach opens the provider and registers the device.
func (s *Spec) Attach(r *nvcore.Registry) (*nvcore.Device, error) {
	p, err := s.Open()
	if err != nil {
		return nil, err
	}
	cfg := s.Config
	if cfg.Layout, err = layouts.New(s.Layout, s.Env); err != nil {
		p.Close()
		return nil, err
	}
	d, err := r.Register(cfg, p)
	if err != nil {
		p.Close()
		return nil, err
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
