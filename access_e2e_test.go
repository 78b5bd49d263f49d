package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// testUser is a real unprivileged user made for a test with useradd, and
// removed after it; its group is its own (useradd --user-group).
type testUser struct {
	name     string
	uid, gid int
}

// makeTestUser adds a system user with its own group, or skips where
// the test cannot (not root, no useradd).
func makeTestUser(t *testing.T, name string) testUser {
	t.Helper()
	if os.Geteuid() != 0 {
		skipOrFailInCI(t, "needs root to add a user and mount for others")
	}
	for _, tool := range []string{"useradd", "userdel", "setpriv"} {
		if _, err := exec.LookPath(tool); err != nil {
			skipOrFailInCI(t, "no %s", tool)
		}
	}
	// A user left by a killed run goes first.
	runCmd(t, cmdOpts{}, "userdel", name)
	mustOK(t, runCmd(t, cmdOpts{}, "useradd", "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", name))
	t.Cleanup(func() {
		if r := runCmd(t, cmdOpts{}, "userdel", name); r.code != 0 {
			t.Errorf("userdel %s: %v", name, r)
		}
	})
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return testUser{name: name, uid: uid, gid: gid}
}

// run runs a command as the user: its uid, its group, its groups only.
func (u testUser) run(t *testing.T, name string, args ...string) result {
	t.Helper()
	return runCmd(t, cmdOpts{}, "setpriv", append([]string{"--reuid=" + u.name, "--regid=" + u.name, "--init-groups", "--", name}, args...)...)
}

// cellFile is the path of the one cell of a device named name.
func cellFile(t *testing.T, mnt, dev, name string) string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(mnt, dev, "cells", name+"@*"))
	if len(m) != 1 {
		t.Fatalf("%s: %d cells named %s: %v", dev, len(m), name, m)
	}
	return m[0]
}

// wantReads checks, file by file, that the user's cat of it succeeds or
// fails with EACCES, as the modes say; "gone" wants ENOENT.
func wantReads(t *testing.T, u testUser, when string, files map[string]string) {
	t.Helper()
	for path, want := range files {
		r := u.run(t, "cat", path)
		switch want {
		case "read":
			if r.code != 0 {
				t.Errorf("%s: %s cannot read %s: %s", when, u.name, path, r.stderr)
			}
		case "denied":
			if r.code == 0 || !strings.Contains(r.stderr, "Permission denied") {
				t.Errorf("%s: %s reading %s: want EACCES, got exit %d %q", when, u.name, path, r.code, r.stderr)
			}
		case "gone":
			if r.code == 0 || !strings.Contains(r.stderr, "No such file") {
				t.Errorf("%s: %s reading %s: want ENOENT, got exit %d %q", when, u.name, path, r.code, r.stderr)
			}
		}
	}
}

// lsAccess is what ls --json says of owners and modes.
type lsAccess struct {
	Name  string `json:"name"`
	Mode  string `json:"mode"`
	Owner string `json:"owner"`
	Group string `json:"group"`
	UID   int    `json:"uid"`
	GID   int    `json:"gid"`
	Cells []struct {
		Name  string `json:"name"`
		Mode  string `json:"mode"`
		Owner string `json:"owner"`
		Group string `json:"group"`
	} `json:"cells"`
}

// TestAccessModes: a real unprivileged user, through an --allow-other
// mount, reads exactly what owner=, group=, mode=, cells-mode=, cell-mode=
// and a cells file's mode= grant: for declared cells and a layout's, after
// a layout edit that adds and removes cells, and after detach and attach
// again; nvmemfs cell and tlv work for that user on the cells they may
// read, env and tlv edits need write access to nvmem.
func TestAccessModes(t *testing.T) {
	requireFUSE(t)
	u := makeTestUser(t, "nvmemfs-reader")
	shared, _, _ := userSandbox(t, u.uid)
	mnt := filepath.Join(shared, "root-mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"onie.bin", "eeprom.bin", "uboot-env.bin"} {
		data, err := os.ReadFile(filepath.Join("testdata/demo", f))
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, shared, f, data)
	}
	// The board's cells: the serial number for the user's group to read
	// and write, the MAC address root's only, the rest as nvmem.
	writeFile(t, shared, "board.cells", []byte("board-name 0x04 16\nserial-number 0x14 12 mode=0660\nmac-address 0xfa 6 mode=0600\n"))
	// The ONIE recipe: serial number, MAC and product name for everyone,
	// the rest root's; service-tag for everyone once it appears.
	onie := "file:" + filepath.Join(shared, "onie.bin") + ",name=onie,layout=onie-tlv,mode=0600,cells-mode=0400," +
		"cell-mode=serial-number:0444,cell-mode=mac-address:0444,cell-mode=product-name:0444,cell-mode=service-tag:0444"
	board := "file:" + filepath.Join(shared, "eeprom.bin") + ",name=board,cells=board.cells,group=" + u.name + ",mode=0640"
	env := "file:" + filepath.Join(shared, "uboot-env.bin") + ",name=env,layout=u-boot-env-redundant,env-size=0x2000,owner=" + u.name + ",mode=0600,cells-mode=0400"
	plain := "file:" + filepath.Join(shared, "uboot-env.bin") + ",name=plain,ro"
	sealed := "file:" + filepath.Join(shared, "onie.bin") + ",name=sealed,ro,layout=onie-tlv,mode=0400"
	conf := writeFile(t, shared, "devices.conf", []byte(strings.Join([]string{onie, board, env, plain, sealed}, "\n")+"\n"))
	t.Cleanup(func() { cleanupMount(t, mnt) })
	mustOK(t, nv(t, "mount", "--allow-other", "--config", conf, mnt))

	files := func() map[string]string {
		return map[string]string{
			filepath.Join(mnt, "onie/nvmem"):           "denied",
			filepath.Join(mnt, "onie/type"):            "read",
			cellFile(t, mnt, "onie", "serial-number"):  "read",
			cellFile(t, mnt, "onie", "mac-address"):    "read",
			cellFile(t, mnt, "onie", "part-number"):    "denied",
			cellFile(t, mnt, "onie", "crc32"):          "denied",
			filepath.Join(mnt, "board/nvmem"):          "read", // by group
			cellFile(t, mnt, "board", "board-name"):    "read", // 0640 & 0644, by group
			cellFile(t, mnt, "board", "serial-number"): "read",
			cellFile(t, mnt, "board", "mac-address"):   "denied",
			filepath.Join(mnt, "env/nvmem"):            "read", // by owner
			cellFile(t, mnt, "env", "ethaddr"):         "read",
			filepath.Join(mnt, "plain/nvmem"):          "read", // the kernel's 0444
			filepath.Join(mnt, "plain/type"):           "read",
			filepath.Join(mnt, "board/force_ro"):       "read", // the kernel's 0644
		}
	}
	wantReads(t, u, "attached", files())

	// What ls says, and what stat says, agree with the SPECs.
	r := mustOK(t, nv(t, "ls", "--json", "-m", mnt))
	var list []lsAccess
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, d := range list {
		got[d.Name] = fmt.Sprintf("%s %s:%s", d.Mode, d.Owner, d.Group)
		for _, c := range d.Cells {
			got[d.Name+"/"+c.Name] = fmt.Sprintf("%s %s:%s", c.Mode, c.Owner, c.Group)
		}
	}
	for key, want := range map[string]string{
		"onie":                "0600 root:root",
		"onie/serial-number":  "0444 root:root",
		"onie/part-number":    "0400 root:root",
		"board":               "0640 root:" + u.name,
		"board/board-name":    "0640 root:" + u.name,
		"board/serial-number": "0660 root:" + u.name,
		"board/mac-address":   "0600 root:" + u.name,
		"env":                 "0600 " + u.name + ":root",
		"env/ethaddr":         "0400 " + u.name + ":root",
		"plain":               "0444 root:root",
	} {
		if got[key] != want {
			t.Errorf("ls --json: %s is %q, want %q", key, got[key], want)
		}
	}
	wantContains(t, "ls", mustOK(t, nv(t, "ls", "-m", mnt)).stdout, "OWNER", "GROUP", u.name)
	for path, want := range map[string]string{
		filepath.Join(mnt, "onie"):                 "755 0:0",
		filepath.Join(mnt, "board/nvmem"):          fmt.Sprintf("640 0:%d", u.gid),
		filepath.Join(mnt, "board/cells"):          fmt.Sprintf("755 0:%d", u.gid),
		filepath.Join(mnt, "env/type"):             fmt.Sprintf("444 %d:0", u.uid),
		cellFile(t, mnt, "onie", "serial-number"):  "444 0:0",
		cellFile(t, mnt, "board", "mac-address"):   fmt.Sprintf("600 0:%d", u.gid),
		cellFile(t, mnt, "board", "serial-number"): fmt.Sprintf("660 0:%d", u.gid),
	} {
		if r := runCmd(t, cmdOpts{}, "stat", "-c", "%a %u:%g", path); strings.TrimSpace(r.stdout) != want {
			t.Errorf("stat %s: %q, want %q", path, r.stdout, want)
		}
	}

	// The commands, as the user: cell and tlv read the cells they may.
	r = mustOK(t, u.run(t, nvmemfsBin, "cell", "-m", mnt, "--format", "string", "onie", "serial-number"))
	if r.stdout != "NVM2611250001\n" {
		t.Errorf("cell --format string as %s: %q", u.name, r.stdout)
	}
	mustFail(t, u.run(t, nvmemfsBin, "cell", "-m", mnt, "onie", "part-number"))
	r = mustOK(t, u.run(t, nvmemfsBin, "tlv", "-m", mnt, "onie"))
	wantContains(t, "tlv as the user", r.stdout, "Serial Number        0x23  13 NVM2611250001", "Product Name", "MAC Address")
	if strings.Contains(r.stdout, "Part Number") || strings.Contains(r.stdout, "CRC-32") {
		t.Errorf("tlv as %s shows fields it may not read:\n%s", u.name, r.stdout)
	}
	wantContains(t, "tlv as the user, stderr", r.stderr, "is not readable by you", "(3 of 9)", "part-number")
	// Nothing readable at all: the refusal, and why.
	wantContains(t, "tlv as the user, nothing readable", mustFail(t, u.run(t, nvmemfsBin, "tlv", "-m", mnt, "sealed")),
		"sealed/nvmem: permission denied; and none of its 9 cells is readable by you either")
	wantContains(t, "env set as the user on a read-only device", mustFail(t, u.run(t, nvmemfsBin, "env", "-m", mnt, "plain", "set", "a", "b")), "read-only")
	// Root sees it all, from nvmem.
	wantContains(t, "tlv as root", mustOK(t, nv(t, "tlv", "-m", mnt, "onie")).stdout, "Part Number", "Checksum is valid.")
	// env: nvmem is the owner's (0600): the owner reads and edits it.
	wantContains(t, "env as the owner", mustOK(t, u.run(t, nvmemfsBin, "env", "-m", mnt, "env")).stdout, "ethaddr=", "serial#=NVM2611250001")
	// Its SPEC (where the copies are) is root's to ask the server for: a
	// write without it would guess, and is refused; with it, it goes.
	wantContains(t, "env set as the owner, geometry unknown", mustFail(t, u.run(t, nvmemfsBin, "env", "-m", mnt, "env", "set", "owner", "yes")),
		"known only to root and the user who mounted it", "nothing written")
	mustOK(t, u.run(t, nvmemfsBin, "env", "-m", mnt, "--redundant", "--env-size", "0x2000", "env", "set", "owner", "yes"))
	// The owner may not undo the modes the SPEC gave: chmod and chgrp are
	// root's (and the server's user's), as on sysfs, where root owns all.
	for _, args := range [][]string{
		{"chmod", "0666", filepath.Join(mnt, "env/nvmem")},
		{"chmod", "0644", cellFile(t, mnt, "env", "ethaddr")},
		{"chgrp", u.name, filepath.Join(mnt, "env/force_ro")},
	} {
		wantContains(t, args[0]+" as the owner", mustFail(t, u.run(t, args[0], args[1:]...)), "Operation not permitted")
	}
	mustOK(t, runCmd(t, cmdOpts{}, "chmod", "0640", filepath.Join(mnt, "env/nvmem")))
	mustOK(t, runCmd(t, cmdOpts{}, "chmod", "0600", filepath.Join(mnt, "env/nvmem")))
	wantContains(t, "env after the owner's edit", mustOK(t, nv(t, "env", "-m", mnt, "env")).stdout, "owner=yes")
	// Writing needs write access: the user may not edit the ONIE EEPROM,
	// and the board's serial number only through the group's write bit.
	wantContains(t, "tlv set as the user", mustFail(t, u.run(t, nvmemfsBin, "tlv", "-m", mnt, "onie", "set", "serial-number", "X")), "permission denied")
	mustOK(t, u.run(t, nvmemfsBin, "cell", "-m", mnt, "--format", "string", "--set", "SN-BY-GROUP", "board", "serial-number"))
	wantContains(t, "cell written by the group", mustOK(t, nv(t, "cell", "-m", mnt, "--format", "string", "board", "serial-number")).stdout, "SN-BY-GROUP")
	wantContains(t, "cell set, no write bit", mustFail(t, u.run(t, nvmemfsBin, "cell", "-m", mnt, "--format", "hex", "--set", "000000000000", "board", "mac-address")), "permission denied")
	// And the control socket stays root's.
	mustFail(t, u.run(t, nvmemfsBin, "detach", "-m", mnt, "onie"))

	// A layout edit: service-tag comes (cell-mode gives it to everyone),
	// vendor comes (cells-mode: root's), product-name goes.
	mustOK(t, nv(t, "tlv", "-m", mnt, "onie", "set", "service-tag", "ST-42"))
	mustOK(t, nv(t, "tlv", "-m", mnt, "onie", "set", "vendor", "ACME"))
	oldProduct := cellFile(t, mnt, "onie", "product-name")
	mustOK(t, nv(t, "tlv", "-m", mnt, "onie", "delete", "product-name"))
	edited := files()
	edited[cellFile(t, mnt, "onie", "service-tag")] = "read"
	edited[cellFile(t, mnt, "onie", "vendor")] = "denied"
	edited[oldProduct] = "gone"
	wantReads(t, u, "after the layout edit", edited)
	wantContains(t, "service-tag as the user", mustOK(t, u.run(t, nvmemfsBin, "cell", "-m", mnt, "--format", "string", "onie", "service-tag")).stdout, "ST-42")

	// Detach and attach again: the same SPEC gives the same access.
	mustOK(t, nv(t, "detach", "-m", mnt, "onie", "board"))
	wantReads(t, u, "detached", map[string]string{filepath.Join(mnt, "onie/type"): "gone", filepath.Join(mnt, "board/nvmem"): "gone"})
	mustOK(t, nv(t, "attach", "-m", mnt, onie, strings.Replace(board, "cells=board.cells", "cells="+filepath.Join(shared, "board.cells"), 1)))
	again := files()
	again[cellFile(t, mnt, "onie", "service-tag")] = "read"
	again[cellFile(t, mnt, "onie", "vendor")] = "denied"
	wantReads(t, u, "attached again", again)
}

// TestAccessAttachRefused: attach is for the server's user and root only.
// A user may not have root's server attach anything, and a user's own
// server opens images as that user: one the user cannot read is refused
// with the reason, and nothing is attached.
func TestAccessAttachRefused(t *testing.T) {
	requireFUSE(t)
	u := makeTestUser(t, "nvmemfs-attacher")
	if _, err := exec.LookPath("fusermount3"); err != nil {
		skipOrFailInCI(t, "no fusermount3 (package fuse3): an unprivileged user cannot mount")
	}
	if st, err := os.Stat("/dev/fuse"); err != nil || st.Mode().Perm()&0o006 != 0o006 {
		skipOrFailInCI(t, "/dev/fuse is not open to other users")
	}
	if _, err := os.Stat(fmt.Sprintf("/run/user/%d", u.uid)); err == nil {
		t.Skipf("/run/user/%d exists", u.uid)
	}
	shared, bin, userMnt := userSandbox(t, u.uid)
	secret := writeFile(t, shared, "secret.bin", pattern(256, 1))
	if err := os.Chmod(secret, 0o600); err != nil {
		t.Fatal(err)
	}
	open := writeFile(t, shared, "open.bin", pattern(256, 2))

	// Root's mount: the user's attach is refused by the control socket.
	rootMnt := filepath.Join(shared, "root-mnt")
	if err := os.Mkdir(rootMnt, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cleanupMount(t, rootMnt) })
	mustOK(t, nv(t, "mount", "--allow-other", "--device", "file:"+open+",name=open", rootMnt))
	stderr := mustFail(t, u.run(t, bin, "attach", "-m", rootMnt, "file:"+secret+",name=secret"))
	wantContains(t, "attach to root's mount as the user", stderr, "permission denied")
	if _, err := os.Stat(filepath.Join(rootMnt, "secret")); err == nil {
		t.Error("the user's attach to root's mount attached")
	}

	// The user's own mount: the server opens the image as the user.
	folder := fmt.Sprintf("/tmp/nvmemfs-%d", u.uid)
	t.Cleanup(func() { os.RemoveAll(folder) })
	t.Cleanup(func() {
		if isMounted(t, userMnt) {
			u.run(t, bin, "unmount", userMnt)
		}
		if isMounted(t, userMnt) {
			runCmd(t, cmdOpts{}, "umount", "-l", userMnt)
			t.Errorf("%s was left mounted", userMnt)
		}
	})
	mustOK(t, u.run(t, bin, "mount", "--device", "file:"+open+",name=open,ro", userMnt))
	stderr = mustFail(t, u.run(t, bin, "attach", "-m", userMnt, "file:"+secret+",name=secret"))
	wantContains(t, "attach of an unreadable image", stderr, "attach file:"+secret, secret, "permission denied")
	r := mustOK(t, u.run(t, bin, "ls", "-m", userMnt))
	if strings.Contains(r.stdout, "secret") {
		t.Errorf("the refused image is listed:\n%s", r.stdout)
	}
	mustOK(t, u.run(t, bin, "unmount", userMnt))
}

// TestAccessWarning: without --allow-other only the mounting user enters,
// so mount and attach warn about a device whose options grant others
// access, and say nothing of the kernel's default modes.
func TestAccessWarning(t *testing.T) {
	requireFUSE(t)
	dir := t.TempDir()
	img := writeFile(t, dir, "img.bin", pattern(256, 3))
	writeFile(t, dir, "c.cells", []byte("serial 0 16 mode=0444\n"))
	mnt := t.TempDir()
	t.Cleanup(func() { cleanupMount(t, mnt) })
	r := mustOK(t, nv(t, "mount", "--device", "file:"+img+",name=shared,cells="+filepath.Join(dir, "c.cells")+",mode=0600",
		"--device", "file:"+img+",name=kernel,ro", mnt))
	wantContains(t, "mount without --allow-other", r.stderr,
		"warning: device shared: modes for other users, but the mount has no --allow-other: only uid "+strconv.Itoa(os.Getuid())+" can enter it")
	if strings.Contains(r.stderr, "device kernel") {
		t.Errorf("a device with the kernel's modes was warned about: %s", r.stderr)
	}
	r = mustOK(t, nv(t, "attach", "-m", mnt, "file:"+img+",name=given,ro,owner=12345,mode=0400"))
	wantContains(t, "attach without --allow-other", r.stderr, "warning: device given: owner 12345, but the mount has no --allow-other")
	r = mustOK(t, nv(t, "attach", "-m", mnt, "file:"+img+",name=mine,ro,mode=0400"))
	if r.stderr != "" {
		t.Errorf("attach of a device for the mounting user only: %q", r.stderr)
	}
	// A mirror keeps the kernel's modes (0644 here): the kernel's
	// defaults, no wish of the user's, so no warning.
	root := filepath.Join(t.TempDir(), "sys")
	if err := os.CopyFS(root, os.DirFS("backends/sysfs/testdata/sys")); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Join(root, "bus/nvmem/devices/0-00500/nvmem"), 0o644)
	mirrorMnt := t.TempDir()
	t.Cleanup(func() { cleanupMount(t, mirrorMnt) })
	if r := mustOK(t, nv(t, "mount", "--mirror", "--sysfs", root, mirrorMnt)); strings.Contains(r.stderr, "warning") {
		t.Errorf("mount --mirror warned: %s", r.stderr)
	}
	if r := runCmd(t, cmdOpts{}, "stat", "-c", "%a", filepath.Join(mirrorMnt, "0-00500/nvmem")); strings.TrimSpace(r.stdout) != "644" {
		t.Errorf("mirror of a 0644 kernel file: %q", r.stdout)
	}
	// The modes stand all the same, for the mounting user.
	if r := runCmd(t, cmdOpts{}, "stat", "-c", "%a %u", filepath.Join(mnt, "given/nvmem")); strings.TrimSpace(r.stdout) != "400 12345" {
		t.Errorf("stat given/nvmem: %q", r.stdout)
	}
}
