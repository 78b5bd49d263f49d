package main

// A user whose access the device's modes limit to some of its cells (the
// serial number readable by everyone, the whole memory root's) may still
// print what they may read: env and tlv, refused the nvmem file, read the
// cell files instead. Nothing here asks the server: reading needs only
// read access to the files read.

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/nvmemfs/nvmemfs/backends/sysfs"
	"github.com/nvmemfs/nvmemfs/nvcore/layouts"
)

// fromCells reports whether a command should print from the cells: it
// only reads (no operation), the target is a mounted device, and its
// nvmem file was refused for lack of permission.
func fromCells(t *target, op []string, err error) bool {
	return err != nil && t != nil && !t.image && len(op) == 0 && errors.Is(err, os.ErrPermission)
}

// cellValue is one cell file read.
type cellValue struct {
	name   string
	off    int64
	bit    int
	value  []byte
	denied bool
}

// readCells reads every cell file of the device's cells/ in offset order;
// those the user may not read are marked denied. A device without cells/
// has none.
func readCells(t *target) ([]cellValue, error) {
	dir := filepath.Join(filepath.Dir(t.path), "cells")
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	var cells []cellValue
	for _, e := range entries {
		name, off, bit, err := sysfs.ParseCellFileName(e.Name())
		if err != nil {
			continue
		}
		v, err := os.ReadFile(filepath.Join(dir, e.Name()))
		switch {
		case errors.Is(err, os.ErrPermission):
			cells = append(cells, cellValue{name: name, off: off, bit: bit, denied: true})
		case errors.Is(err, os.ErrNotExist), errors.Is(err, syscall.ENODEV):
			// Left with a layout edit or a detach since the listing.
		case err != nil:
			return nil, fmt.Errorf("%s: %w", e.Name(), err)
		default:
			cells = append(cells, cellValue{name: name, off: off, bit: bit, value: v})
		}
	}
	slices.SortFunc(cells, func(a, b cellValue) int {
		return cmp.Or(cmp.Compare(a.off, b.off), cmp.Compare(a.bit, b.bit), strings.Compare(a.name, b.name))
	})
	return cells, nil
}

// splitDenied returns the readable cells and the names of the others.
func splitDenied(cells []cellValue) (readable []cellValue, denied []string) {
	for _, c := range cells {
		if c.denied {
			denied = append(denied, c.name)
		} else {
			readable = append(readable, c)
		}
	}
	return readable, denied
}

// readableCells reads the cells for cmd, says which were withheld, and
// returns those the user may read: at least one, or an error.
func readableCells(cmd string, t *target, refused error) ([]cellValue, error) {
	cells, err := readCells(t)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cmd, err)
	}
	readable, denied := splitDenied(cells)
	if err := cellsNote(cmd, t, refused, readable, denied); err != nil {
		return nil, err
	}
	return readable, nil
}

// cellsNote tells, on standard error, that the output is the cells the user
// may read and which were withheld. With no cell readable, the refusal of
// nvmem is the command's error.
func cellsNote(cmd string, t *target, refused error, readable []cellValue, denied []string) error {
	if len(readable) == 0 {
		if len(denied) > 0 {
			return fmt.Errorf("%w; and none of its %d cells is readable by you either", refused, len(denied))
		}
		return refused
	}
	msg := fmt.Sprintf("nvmemfs: %s: %s is not readable by you: shown are the cells you may read (%d of %d)", cmd, t.path, len(readable), len(readable)+len(denied))
	if len(denied) > 0 {
		msg += fmt.Sprintf("; not readable: %s", strings.Join(denied, ", "))
	}
	fmt.Fprintln(os.Stderr, msg)
	return nil
}

// tlvFromCells prints the TlvInfo fields of the cells the user may read,
// as tlv prints them, without the header and checksum only nvmem holds.
func tlvFromCells(t *target, refused error) error {
	readable, err := readableCells("tlv", t, refused)
	if err != nil {
		return err
	}
	var tlvs []layouts.TLV
	for _, c := range readable {
		code, err := layouts.TLVCode(c.name)
		if err != nil {
			continue // a declared cell, not one of the TlvInfo's
		}
		tlvs = append(tlvs, layouts.TLV{Code: code, Value: c.value, Offset: c.off})
	}
	return layouts.DescribeTLVs(os.Stdout, tlvs)
}

// envFromCells prints the variables of the cells the user may read, as
// env prints them: ethaddr, which its cell gives as 6 bytes, as its text.
func envFromCells(t *target, refused error) error {
	readable, err := readableCells("env", t, refused)
	if err != nil {
		return err
	}
	var b strings.Builder
	for _, c := range readable {
		v := string(c.value)
		if c.name == "ethaddr" && len(c.value) == 6 {
			v = net.HardwareAddr(c.value).String()
		}
		fmt.Fprintf(&b, "%s=%s\n", c.name, v)
	}
	_, err = os.Stdout.WriteString(b.String())
	return err
}
