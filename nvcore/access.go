package nvcore

import (
	"fmt"
	"slices"
	"strings"
)

// Access says who may use a device's files where the kernel's defaults
// (SPEC 2: root's files, nvmem 0644, 0444, 0600 or 0400, cells 0444 & the
// mode of nvmem) are not what is wanted: the serial number readable by
// everyone, the whole memory still root's. The zero Access keeps the
// kernel's defaults and the server's user.
//
// The policy lives in the core, not in the file system: the core knows what
// the device and each cell can do, so Register refuses a mode that would
// grant more than that, and every face of the device (the mount, ls) reads
// the same answer from the device.
type Access struct {
	// UID and GID own every file and folder of the device; nil means the
	// server's user and group.
	UID, GID *uint32
	// Mode is the nvmem file's permission bits; nil means the kernel's.
	Mode *uint32
	// CellsMode is every cell's mode, declared or found by a layout; nil
	// means the kernel's, 0444 & the mode of nvmem (with the write bit of
	// nvmem for a plain cell).
	CellsMode *uint32
	// CellModes gives one mode for the cells of one name (without
	// @off,bit), over CellInfo.Mode and CellsMode. It applies to a
	// layout's cells as they come and go with the content.
	CellModes map[string]uint32
}

// Set reports whether the access differs from the kernel's defaults.
func (a Access) Set() bool {
	return a.UID != nil || a.GID != nil || a.Mode != nil || a.CellsMode != nil || len(a.CellModes) > 0
}

// clone copies the map, so that a device never shares it with its caller.
func (a Access) clone() Access {
	if a.CellModes != nil {
		m := make(map[string]uint32, len(a.CellModes))
		for k, v := range a.CellModes {
			m[k] = v
		}
		a.CellModes = m
	}
	return a
}

// FormatMode writes permission bits as a SPEC or ls shows them: 0640.
func FormatMode(m uint32) string { return fmt.Sprintf("%04o", m) }

// checkAccess refuses an access that grants what the device cannot do:
// write bits on a device that cannot be written (read-only, force_ro set
// at attach, or a provider without writes) or on a cell that cannot be
// written (a layout's, a decoded or provider-read one), read bits on a
// device that cannot be read, and anything but permission bits. A
// cell-mode for a name no cell has, on a device without a layout (whose
// cells could still come), is a typo and refused too. The errors say
// which option and why; they wrap ErrInvalid.
func checkAccess(cfg Config, canRead, canWrite bool) error {
	a := cfg.Access
	readOnly := cfg.ReadOnly || !canWrite
	why := func() string {
		if canWrite {
			return "the device is read-only (ro, or force_ro set at attach)"
		}
		return "the device cannot be written (ro, or a memory opened read-only)"
	}
	check := func(opt string, m uint32, writable bool, cellWhy string) error {
		switch {
		case m&^0o777 != 0:
			return invalidf("%s%s: only permission bits, 0000 to 0777 (no setuid, setgid or sticky bit)", opt, FormatMode(m))
		case m&0o444 != 0 && !canRead:
			return invalidf("%s%s grants reading, but the device cannot be read", opt, FormatMode(m))
		case m&0o222 != 0 && readOnly:
			return invalidf("%s%s grants writing, but %s", opt, FormatMode(m), why())
		case m&0o222 != 0 && !writable:
			return invalidf("%s%s grants writing, but %s", opt, FormatMode(m), cellWhy)
		}
		return nil
	}
	if a.Mode != nil {
		if err := check("mode=", *a.Mode, true, ""); err != nil {
			return err
		}
	}
	if a.CellsMode != nil {
		writable, cellWhy := true, ""
		if cfg.Layout != nil {
			writable, cellWhy = false, fmt.Sprintf("the cells the layout %s finds are read-only (edit them with nvmemfs env or tlv)", cfg.Layout.Name())
		}
		for _, c := range cfg.Cells {
			if !c.plain() {
				writable, cellWhy = false, fmt.Sprintf("cell %q is read-only", c.Name)
				break
			}
		}
		if err := check("cells-mode=", *a.CellsMode, writable, cellWhy); err != nil {
			return err
		}
	}
	names := make([]string, 0, len(a.CellModes))
	for name := range a.CellModes {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		m := a.CellModes[name]
		opt := "cell-mode=" + name + ":"
		if name == "" || strings.ContainsAny(name, "@/\x00") {
			return invalidf("%s%s: want the cell's name without @off,bit", opt, FormatMode(m))
		}
		declared, writable := false, true
		for _, c := range cfg.Cells {
			if c.Name == name {
				declared = true
				writable = writable && c.plain()
			}
		}
		cellWhy := fmt.Sprintf("cell %q is read-only", name)
		if !declared {
			if cfg.Layout == nil {
				return invalidf("%s%s: the device has no cell %q and no layout that could find one", opt, FormatMode(m), name)
			}
			writable, cellWhy = false, fmt.Sprintf("a cell %q can only come from the layout %s, whose cells are read-only", name, cfg.Layout.Name())
		}
		if err := check(opt, m, writable, cellWhy); err != nil {
			return err
		}
	}
	for i, c := range cfg.Cells {
		if c.Mode == nil {
			continue
		}
		opt := fmt.Sprintf("cell %d (%s): mode=", i+1, c.Name)
		if err := check(opt, *c.Mode, c.plain(), fmt.Sprintf("cell %q is read-only", c.Name)); err != nil {
			return err
		}
	}
	return nil
}

// plain is Cell.Plain for a declaration: only such a cell can be written.
func (c CellInfo) plain() bool { return c.Layout == "" && c.Decode == nil && !c.Provided }

// cellMode is a cell's permission bits: cell-mode for its name, else its
// own declared mode, else cells-mode, else the kernel's (0444 & the mode of
// nvmem, plus the write bit of nvmem for a plain cell: SPEC 4, "we go
// further"). A cell that cannot be written never gets a write bit, whatever
// was asked (a layout may find a cell of a name that cell-mode gave to a
// declared one).
func (d *Device) cellMode(ci *CellInfo) uint32 {
	plain := ci.plain()
	var m uint32
	if v, ok := d.access.CellModes[ci.Name]; ok {
		m = v
	} else if ci.Mode != nil {
		m = *ci.Mode
	} else if d.access.CellsMode != nil {
		m = *d.access.CellsMode
	} else if plain {
		m = d.mode & 0o644
	} else {
		m = d.mode & 0o444
	}
	if !plain || d.readOnly {
		m &^= 0o222
	}
	return m
}

// Owner is the user and group of every file and folder of the device, as
// configured; -1 means the server's own.
func (d *Device) Owner() (uid, gid int) {
	uid, gid = -1, -1
	if d.access.UID != nil {
		uid = int(*d.access.UID)
	}
	if d.access.GID != nil {
		gid = int(*d.access.GID)
	}
	return uid, gid
}

// Access is the device's access as configured (Config.Access).
func (d *Device) Access() Access { return d.access.clone() }

// Mode is the cell file's permission bits (Device.cellMode).
func (c *Cell) Mode() uint32 { return c.dev.cellMode(c.info.Load()) }
