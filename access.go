package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/nvmemfs/nvmemfs/backends/spec"
	"github.com/nvmemfs/nvmemfs/nvcore"
)

// allowOtherHelp is what `nvmemfs mount --help` says of --allow-other: a
// device's owner=, group= and modes reach other users only through it.
const allowOtherHelp = "let other users in: the kernel then checks each file's owner, group and mode " +
	"(default_permissions), as the devices' owner=, group=, mode=, cells-mode= and cell-mode= set them. " +
	"Without it only the user who mounts can enter at all, whatever the modes say " +
	"(needs user_allow_other in /etc/fuse.conf for a user other than root)"

// accessWarning says when a device's SPEC gave access to users other than
// the server's own (owner=, group=, or modes with group or other bits)
// that a mount without --allow-other cannot give: only the mounting user
// can enter it. A SPEC without such options gets no warning, a mirror of
// a kernel device with the kernel's modes included: those are the
// kernel's defaults, not a wish of the user's.
func accessWarning(sp *spec.Spec, d *nvcore.Device, allowOther bool) string {
	if allowOther || sp == nil || !sp.Config.Access.Set() {
		return ""
	}
	var why []string
	uid, gid := d.Owner()
	if uid >= 0 && uid != os.Getuid() {
		why = append(why, fmt.Sprintf("owner %d", uid))
	}
	if gid >= 0 && gid != os.Getgid() && (d.Mode()&0o070 != 0 || cellsGrant(d, 0o070)) {
		why = append(why, fmt.Sprintf("group %d", gid))
	}
	if d.Mode()&0o007 != 0 || cellsGrant(d, 0o007) {
		why = append(why, "modes for other users")
	}
	if len(why) == 0 {
		return ""
	}
	return fmt.Sprintf("device %s: %s, but the mount has no --allow-other: only uid %d can enter it (mount with --allow-other for the modes to apply to others)",
		d.Name(), strings.Join(why, ", "), os.Getuid())
}

// cellsGrant reports whether a cell's mode has any of the bits.
func cellsGrant(d *nvcore.Device, bits uint32) bool {
	for _, c := range d.Cells() {
		if c.Mode()&bits != 0 {
			return true
		}
	}
	return false
}
