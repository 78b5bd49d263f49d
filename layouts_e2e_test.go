package main

// End-to-end tests of the layouts: cells found in the content, edited with
// nvmemfs env, tlv and cell, and with the real fw_printenv and fw_setenv
// from libubootenv-tool, all through the mount.

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nvmemfs/nvmemfs/nvcore/layouts"
)

// requireTool skips without a program, except in CI, which installs it.
func requireTool(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI needs %s: %v", name, err)
		}
		t.Skipf("no %s: %v", name, err)
	}
}

// fwEnvConfig writes an fw_env.config for libubootenv: one line a copy,
// DEVICE OFFSET SIZE.
func fwEnvConfig(t *testing.T, path string, size int64, redundant bool) string {
	t.Helper()
	text := fmt.Sprintf("%s 0x0 %#x\n", path, size)
	if redundant {
		text += fmt.Sprintf("%s %#x %#x\n", path, size, size)
	}
	return writeFile(t, t.TempDir(), "fw_env.config", []byte(text))
}

// envLines returns fw_printenv-style output as sorted lines.
func envLines(out string) []string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	slices.Sort(lines)
	return lines
}

// cellFiles lists <dev>/cells, or nothing if it is absent.
func cellFiles(t *testing.T, mnt, dev string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(mnt, dev, "cells"))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// TestEnvInterop: nvmemfs and libubootenv's fw_printenv/fw_setenv read what
// the other wrote, through the mount, for single and redundant
// environments; the cells follow every edit.
func TestEnvInterop(t *testing.T) {
	requireTool(t, "fw_setenv")
	for _, redundant := range []bool{false, true} {
		name := "single"
		layout := "u-boot-env"
		if redundant {
			name, layout = "redundant", "u-boot-env-redundant"
		}
		t.Run(name, func(t *testing.T) {
			const copySize = 0x2000
			dir := t.TempDir()
			img := writeFile(t, dir, "env.bin", make([]byte, 2*copySize))
			// The real tool makes the first environment, from defaults.
			defaults := writeFile(t, dir, "defaults.txt", []byte("bootdelay=3\nethaddr=00:11:22:33:44:55\n"))
			imgConfig := fwEnvConfig(t, img, copySize, redundant)
			mustOK(t, runCmd(t, cmdOpts{}, "fw_setenv", "-c", imgConfig, "-f", defaults, "board", "demo"))

			mnt := mountImages(t, "file:"+img+",name=env,layout="+layout+",env-size=0x2000")
			nvmem := filepath.Join(mnt, "env", "nvmem")
			mntConfig := fwEnvConfig(t, nvmem, copySize, redundant)

			want := []string{"board=demo", "bootdelay=3", "ethaddr=00:11:22:33:44:55"}
			if got := envLines(mustOK(t, nv(t, "env", "-m", mnt, "env")).stdout); !slices.Equal(got, want) {
				t.Errorf("nvmemfs env: %q, want %q", got, want)
			}
			if got := envLines(mustOK(t, runCmd(t, cmdOpts{}, "fw_printenv", "-c", mntConfig)).stdout); !slices.Equal(got, want) {
				t.Errorf("fw_printenv through the mount: %q, want %q", got, want)
			}
			cells := cellFiles(t, mnt, "env")
			if len(cells) != 3 {
				t.Errorf("cells %q, want one per variable", cells)
			}
			// ethaddr reads as 6 binary bytes.
			for _, c := range cells {
				if strings.HasPrefix(c, "ethaddr@") {
					got := readFile(t, filepath.Join(mnt, "env", "cells", c))
					if hex.EncodeToString(got) != "001122334455" {
						t.Errorf("ethaddr cell: %x, want 001122334455", got)
					}
				}
			}

			// nvmemfs writes, fw_printenv reads.
			mustOK(t, nv(t, "env", "-m", mnt, "env", "set", "serial#", "SN-0042"))
			mustOK(t, nv(t, "env", "-m", mnt, "env", "unset", "bootdelay"))
			want = []string{"board=demo", "ethaddr=00:11:22:33:44:55", "serial#=SN-0042"}
			if got := envLines(mustOK(t, runCmd(t, cmdOpts{}, "fw_printenv", "-c", mntConfig)).stdout); !slices.Equal(got, want) {
				t.Errorf("fw_printenv after nvmemfs env set/unset: %q, want %q", got, want)
			}
			// fw_setenv writes through the mount, nvmemfs reads.
			mustOK(t, runCmd(t, cmdOpts{}, "fw_setenv", "-c", mntConfig, "bootcmd", "run distro_bootcmd"))
			want = []string{"board=demo", "bootcmd=run distro_bootcmd", "ethaddr=00:11:22:33:44:55", "serial#=SN-0042"}
			if got := envLines(mustOK(t, nv(t, "env", "-m", mnt, "env")).stdout); !slices.Equal(got, want) {
				t.Errorf("nvmemfs env after fw_setenv: %q, want %q", got, want)
			}
			// The cells follow: bootdelay left, serial# and bootcmd came.
			cells = cellFiles(t, mnt, "env")
			var names []string
			for _, c := range cells {
				names = append(names, c[:strings.Index(c, "@")])
			}
			slices.Sort(names)
			if !slices.Equal(names, []string{"board", "bootcmd", "ethaddr", "serial#"}) {
				t.Errorf("cells after the edits: %q", cells)
			}
			for _, c := range cells {
				if strings.HasPrefix(c, "bootcmd@") {
					if got := string(readFile(t, filepath.Join(mnt, "env", "cells", c))); got != "run distro_bootcmd" {
						t.Errorf("bootcmd cell: %q", got)
					}
				}
			}
			// And the image the mount wrote is one U-Boot reads.
			mustOK(t, nv(t, "unmount", mnt))
			if got := envLines(mustOK(t, runCmd(t, cmdOpts{}, "fw_printenv", "-c", imgConfig)).stdout); !slices.Equal(got, want) {
				t.Errorf("fw_printenv of the image after unmount: %q, want %q", got, want)
			}
			// nvmemfs env works on the image without a mount, too.
			if got := envLines(mustOK(t, nv(t, "env", "--env-size", "0x2000", "--redundant="+boolText(redundant), img)).stdout); !slices.Equal(got, want) {
				t.Errorf("nvmemfs env on the image: %q, want %q", got, want)
			}
		})
	}
}

func boolText(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

// TestEnvBadCRC: an environment whose CRC is bad is reported, never
// replaced: env set refuses and changes no byte; --force writes anew.
func TestEnvBadCRC(t *testing.T) {
	requireFUSE(t)
	dir := t.TempDir()
	data := bytes.Repeat([]byte{0xa5}, 0x1000) // no CRC matches this
	img := writeFile(t, dir, "env.bin", data)
	mnt := mountImages(t, "file:"+img+",name=env,layout=u-boot-env")

	dev := lsJSON(t, cmdOpts{}, "-m", mnt)["env"]
	if !strings.Contains(dev.LayoutError, "CRC") || len(dev.Cells) != 0 {
		t.Errorf("ls of a bad environment: layout error %q, cells %v; want a CRC message and no cells", dev.LayoutError, dev.Cells)
	}
	wantContains(t, "ls", mustOK(t, nv(t, "ls", "-m", mnt)).stdout, "env: u-boot-env:", "CRC")
	stderr := mustFail(t, nv(t, "env", "-m", mnt, "env"))
	wantContains(t, "env of a bad environment", stderr, "CRC")
	stderr = mustFail(t, nv(t, "env", "-m", mnt, "env", "set", "a", "1"))
	wantContains(t, "env set on a bad environment", stderr, "CRC", "--force", "nothing written")
	if got := readFile(t, filepath.Join(mnt, "env", "nvmem")); !bytes.Equal(got, data) {
		t.Fatal("a refused env set changed the device")
	}
	mustOK(t, nv(t, "env", "-m", mnt, "env", "--force", "set", "a", "1"))
	if got := mustOK(t, nv(t, "env", "-m", mnt, "env")).stdout; got != "a=1\n" {
		t.Errorf("after --force: %q, want a=1", got)
	}
	if files := cellFiles(t, mnt, "env"); !slices.Equal(files, []string{"a@6,0"}) {
		t.Errorf("cells after --force: %q, want [a@6,0] (the value, after the CRC and \"a=\")", files)
	}
}

// onieImage is the SPEC 5 vector, in a 256-byte EEPROM filled with 0xff.
func onieImage(t *testing.T) []byte {
	t.Helper()
	vec, _ := hex.DecodeString("546c76496e666f00010021210641434d452d312305534e3132332406001122334455" + "2a020002fe04a1694470")
	img := bytes.Repeat([]byte{0xff}, 256)
	copy(img, vec)
	return img
}

// TestTLVEdit: tlv prints like onie-syseeprom, set and delete keep the CRC
// valid, and cells/ follows.
func TestTLVEdit(t *testing.T) {
	requireFUSE(t)
	img := writeFile(t, t.TempDir(), "onie.bin", onieImage(t))
	mnt := mountImages(t, "file:"+img+",name=onie,type=eeprom,layout=onie-tlv")

	out := mustOK(t, nv(t, "tlv", "-m", mnt, "onie")).stdout
	wantContains(t, "tlv", out, "TlvInfo", "Product Name", "ACME-1", "SN123", "00:11:22:33:44:55", "Checksum is valid")
	if files := cellFiles(t, mnt, "onie"); !slices.Equal(files, []string{"crc32@28,0", "mac-address@1c,0", "num-macs@24,0", "product-name@d,0", "serial-number@15,0"}) {
		t.Errorf("cells %q", files)
	}
	if got := readFile(t, filepath.Join(mnt, "onie", "cells", "serial-number@15,0")); string(got) != "SN123" {
		t.Errorf("serial-number: %q", got)
	}

	mustOK(t, nv(t, "tlv", "-m", mnt, "onie", "set", "serial-number", "SN-20261125-7"))
	mustOK(t, nv(t, "tlv", "-m", mnt, "onie", "delete", "num-macs"))
	mustOK(t, nv(t, "tlv", "-m", mnt, "onie", "set", "0x2b", "Acme Corp"))
	out = mustOK(t, nv(t, "tlv", "-m", mnt, "onie")).stdout
	wantContains(t, "tlv after edits", out, "SN-20261125-7", "Acme Corp", "Checksum is valid")
	if strings.Contains(out, "MAC Addresses") {
		t.Errorf("num-macs still printed after delete:\n%s", out)
	}
	files := cellFiles(t, mnt, "onie")
	if slices.ContainsFunc(files, func(s string) bool { return strings.HasPrefix(s, "num-macs@") }) {
		t.Errorf("num-macs cell still there: %q", files)
	}
	var serial, manufacturer string
	for _, f := range files {
		switch {
		case strings.HasPrefix(f, "serial-number@"):
			serial = string(readFile(t, filepath.Join(mnt, "onie", "cells", f)))
		case strings.HasPrefix(f, "manufacturer@"):
			manufacturer = string(readFile(t, filepath.Join(mnt, "onie", "cells", f)))
		}
	}
	if serial != "SN-20261125-7" || manufacturer != "Acme Corp" {
		t.Errorf("cells after edits: serial %q, manufacturer %q (files %q)", serial, manufacturer, files)
	}
	// The device content decodes with a good CRC, and the bytes past the
	// TlvInfo were left alone.
	content := readFile(t, filepath.Join(mnt, "onie", "nvmem"))
	info, err := layouts.DecodeTLVInfo(content)
	if err != nil {
		t.Fatalf("content after edits: %v", err)
	}
	if tlv, ok := info.Get(0x23); !ok || string(tlv.Value) != "SN-20261125-7" {
		t.Errorf("serial TLV %q", tlv.Value)
	}
	if content[255] != 0xff {
		t.Error("the edit wrote past the TlvInfo")
	}
	// A write cut short leaves a bad CRC: edits refuse it, --force repairs.
	nvmem := filepath.Join(mnt, "onie", "nvmem")
	torn := readFile(t, nvmem)
	torn[info.TLVs[0].Offset] ^= 0x20 // a letter of the product name changes case
	if err := os.WriteFile(nvmem, torn, 0); err != nil {
		t.Fatal(err)
	}
	wantContains(t, "tlv set on a bad CRC", mustFail(t, nv(t, "tlv", "-m", mnt, "onie", "set", "serial-number", "SN-1")), "CRC", "nothing written", "--force")
	if !bytes.Equal(torn, readFile(t, nvmem)) {
		t.Error("a refused tlv set changed the device")
	}
	mustOK(t, nv(t, "tlv", "-m", mnt, "onie", "--force", "set", "serial-number", "SN-20261125-7"))
	wantContains(t, "tlv after the repair", mustOK(t, nv(t, "tlv", "-m", mnt, "onie")).stdout, "Checksum is valid")

	// Errors change nothing.
	before := readFile(t, filepath.Join(mnt, "onie", "nvmem"))
	wantContains(t, "bad MAC", mustFail(t, nv(t, "tlv", "-m", mnt, "onie", "set", "mac-address", "00:11:22")), "mac")
	mustFail(t, nv(t, "tlv", "-m", mnt, "onie", "delete", "vendor"))
	if !bytes.Equal(before, readFile(t, filepath.Join(mnt, "onie", "nvmem"))) {
		t.Error("a refused tlv edit changed the device")
	}
}

// TestCellCommand: nvmemfs cell reads in every format and writes plain
// cells; a layout's cell refuses a write.
func TestCellCommand(t *testing.T) {
	requireFUSE(t)
	dir := t.TempDir()
	data := make([]byte, 64)
	copy(data[0x10:], []byte{0x02, 0x00, 0x11, 0x22, 0x33, 0x44, 0x55})
	copy(data[0x20:], "SN42")
	img := writeFile(t, dir, "cells.bin", data)
	cells := writeFile(t, dir, "c.cells", []byte("count 0x10 1\nmac 0x11 6\nserial 0x20 8\nword 0x30 2\nflags 0x38 1 2 3\n"))
	mnt := mountImages(t, "file:"+img+",name=c,cells="+cells, "file:"+writeFile(t, dir, "onie.bin", onieImage(t))+",name=onie,layout=onie-tlv")

	for _, c := range []struct{ cell, format, want string }{
		{"count", "u8", "2\n"},
		{"mac", "mac", "00:11:22:33:44:55\n"},
		{"mac", "hex", "001122334455\n"},
		{"serial", "string", "SN42\n"},
		{"serial", "raw", "SN42\x00\x00\x00\x00"},
		{"word", "u16", "0\n"},
	} {
		if got := mustOK(t, nv(t, "cell", "-m", mnt, "--format", c.format, "c", c.cell)).stdout; got != c.want {
			t.Errorf("cell %s --format %s: %q, want %q", c.cell, c.format, got, c.want)
		}
	}
	// Flags may follow the arguments, as the usage line shows them.
	mustOK(t, nv(t, "cell", "-m", mnt, "c", "mac", "--format", "mac", "--set", "02:00:00:aa:bb:cc"))
	mustOK(t, nv(t, "cell", "-m", mnt, "--format", "u16", "--set", "0x1234", "c", "word"))
	mustOK(t, nv(t, "cell", "-m", mnt, "--format", "string", "--set", "SN43", "c", "serial"))
	mustOK(t, nv(t, "cell", "-m", mnt, "--format", "u8", "--set", "5", "c", "flags"))
	got := readFile(t, filepath.Join(mnt, "c", "nvmem"))
	if !bytes.Equal(got[0x11:0x17], []byte{2, 0, 0, 0xaa, 0xbb, 0xcc}) || !bytes.Equal(got[0x30:0x32], []byte{0x34, 0x12}) ||
		string(got[0x20:0x28]) != "SN43\x00\x00\x00\x00" || got[0x38] != 5<<2 {
		t.Errorf("content after cell writes: %x", got)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--format", "u16", "c", "count"}, "u16 needs a 2-byte cell"},
		{[]string{"--format", "mac", "--set", "zz", "c", "mac"}, "not a MAC"},
		{[]string{"--format", "u8", "--set", "8", "c", "flags"}, "invalid argument"},
		{[]string{"--format", "hex", "--set", "00", "c", "mac"}, "whole cell"},
		{[]string{"c", "nope"}, `no cell "nope"`},
		{[]string{"--format", "string", "--set", "X", "onie", "serial-number"}, "permission denied"},
	} {
		stderr := mustFail(t, nv(t, append([]string{"cell", "-m", mnt}, c.args...)...))
		wantContains(t, "cell "+strings.Join(c.args, " "), stderr, c.want)
	}
}
