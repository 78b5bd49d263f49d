package spec

import (
	"fmt"
	"os/user"
	"strconv"
	"strings"

	"github.com/nvmemfs/nvmemfs/nvcore"
)

// accessOptions are the SPEC options that set owner, group and modes
// (nvcore.Access); cell-mode may be given once a cell name.
var accessOptions = map[string]bool{"owner": true, "group": true, "mode": true, "cells-mode": true, "cell-mode": true}

// parseAccess reads one of accessOptions into s.Config.Access. What a
// mode may grant is the core's to check, against the device, at attach.
func (s *Spec) parseAccess(key, val string) error {
	a := &s.Config.Access
	switch key {
	case "owner":
		id, err := lookupID(val, "user")
		a.UID = &id
		return err
	case "group":
		id, err := lookupID(val, "group")
		a.GID = &id
		return err
	case "mode":
		m, err := ParseMode(val)
		a.Mode = &m
		return err
	case "cells-mode":
		m, err := ParseMode(val)
		a.CellsMode = &m
		return err
	case "cell-mode":
		name, mode, ok := strings.Cut(val, ":")
		if !ok || name == "" {
			return fmt.Errorf("cell-mode=%s: want NAME:MODE, such as cell-mode=serial-number:0444", val)
		}
		if strings.ContainsAny(name, "@/") {
			return fmt.Errorf("cell-mode=%s: want the cell's name without @off,bit (serial-number, not serial-number@1f,0)", val)
		}
		if _, dup := a.CellModes[name]; dup {
			return fmt.Errorf("cell-mode for %q given twice", name)
		}
		m, err := ParseMode(mode)
		if err != nil {
			return fmt.Errorf("cell-mode=%s: %v", val, err)
		}
		if a.CellModes == nil {
			a.CellModes = map[string]uint32{}
		}
		a.CellModes[name] = m
	}
	return nil
}

// ParseMode reads permission bits in octal, as chmod takes them: 0640 or
// 640. Only the permission bits are accepted: a setuid, setgid or sticky
// bit means nothing to a memory's file.
func ParseMode(s string) (uint32, error) {
	m, err := strconv.ParseUint(s, 8, 32)
	if err != nil || s == "" || s[0] == '+' || s[0] == '-' || len(s) > 4 {
		return 0, fmt.Errorf("mode %q: want octal permission bits, such as 0640", s)
	}
	if m > 0o777 {
		return 0, fmt.Errorf("mode %s: only permission bits, 0000 to 0777 (no setuid, setgid or sticky bit)", s)
	}
	return uint32(m), nil
}

// lookupID reads a user or group: a name of this machine's user database,
// or a number, which need not be in it (as chown takes one).
func lookupID(s, kind string) (uint32, error) {
	if s == "" {
		return 0, fmt.Errorf("empty %s name", kind)
	}
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		if n == 1<<32-1 {
			return 0, fmt.Errorf("%s %s: -1 (4294967295) means no change to chown, not an id", kind, s)
		}
		return uint32(n), nil
	}
	var id string
	var err error
	if kind == "user" {
		var u *user.User
		if u, err = user.Lookup(s); err == nil {
			id = u.Uid
		}
	} else {
		var g *user.Group
		if g, err = user.LookupGroup(s); err == nil {
			id = g.Gid
		}
	}
	if err != nil {
		return 0, fmt.Errorf("%s %q: not a number and not known to this machine (%v)", kind, s, err)
	}
	n, err := strconv.ParseUint(id, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%s %q has the id %q, not a number", kind, s, id)
	}
	return uint32(n), nil
}

// cellModeWord reads a cells file line's optional last word, mode=MODE.
func cellModeWord(words []string) ([]string, *uint32, error) {
	last := words[len(words)-1]
	v, ok := strings.CutPrefix(last, "mode=")
	if !ok {
		return words, nil, nil
	}
	m, err := ParseMode(v)
	if err != nil {
		return nil, nil, err
	}
	return words[:len(words)-1], &m, nil
}

// kernelAccess completes a sysfs mirror's access with the kernel's: the
// owner, group and modes of the kernel's files, where the SPEC says
// nothing (a cells-mode of the SPEC is over the kernel's cell modes).
func kernelAccess(cfg, kernel nvcore.Config) nvcore.Config {
	a := &cfg.Access
	if a.UID == nil {
		a.UID = kernel.Access.UID
	}
	if a.GID == nil {
		a.GID = kernel.Access.GID
	}
	if a.Mode == nil && kernel.Access.Mode != nil {
		// The kernel computed its mode when the device registered; a
		// mirror that is read-only (ro, force_ro, or a file we cannot
		// write) shows no write bit, as a kernel device would.
		m := *kernel.Access.Mode
		if cfg.ReadOnly {
			m &^= 0o222
		}
		a.Mode = &m
	}
	if a.CellsMode != nil {
		for i := range cfg.Cells {
			if cfg.Cells[i].Provided {
				cfg.Cells[i].Mode = nil
			}
		}
	}
	return cfg
}
