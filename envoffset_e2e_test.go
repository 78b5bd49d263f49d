package main

// End-to-end tests of U-Boot environments at env-offset and env-offset2:
// nvmemfs and libubootenv's fw_printenv/fw_setenv, configured with the
// fw_env.config lines that correspond to the SPEC, read what the other
// wrote, through the mount and on the image file.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"path/filepath"
	"slices"
	"testing"
)

// envCopyAt builds one redundant copy by hand: CRC-32 of the data area,
// the flags byte, the variables, 0xFF to the end.
func envCopyAt(size int, flags byte, vars ...string) []byte {
	b := bytes.Repeat([]byte{0xff}, size)
	p := 5
	for _, v := range vars {
		p += copy(b[p:], v) + 1
		b[p-1] = 0
	}
	b[p] = 0
	b[4] = flags
	binary.LittleEndian.PutUint32(b, crc32.ChecksumIEEE(b[5:]))
	return b
}

// TestEnvOffsetInterop: a redundant environment whose second copy lies
// before the first (env-offset=0x8000, env-offset2=0x2000) in a 64 KiB
// image holding other data, and a single one at env-offset=0x3000.
// fw_env.config says the same with one line a copy,
// DEVICE OFFSET SIZE SECTOR-SIZE. The 8-bit counter wraps on the way
// (libubootenv counts on files, as nvmemfs does there by default). Bytes
// outside the copies never change.
func TestEnvOffsetInterop(t *testing.T) {
	requireTool(t, "fw_setenv")
	const (
		size = 0x2000
		off1 = 0x8000
		off2 = 0x2000
	)
	dir := t.TempDir()
	data := make([]byte, 0x10000)
	for i := range data {
		data[i] = byte(i*7 + i>>8)
	}
	copy(data[off1:], envCopyAt(size, 254, "gen=0", "ethaddr=00:11:22:33:44:55"))
	copy(data[off2:], envCopyAt(size, 253, "gen=old"))
	img := writeFile(t, dir, "flash.bin", data)
	outside := func(b []byte) []byte {
		return slices.Concat(b[:off2], b[off2+size:off1], b[off1+size:])
	}
	fwConfig := func(dev string) string {
		return writeFile(t, t.TempDir(), "fw_env.config",
			[]byte(fmt.Sprintf("# nvmemfs: env-offset=%#x,env-offset2=%#x,env-size=%#x\n%s %#x %#x 0x1000\n%s %#x %#x 0x1000\n",
				off1, off2, size, dev, off1, size, dev, off2, size)))
	}
	imgConfig := fwConfig(img)
	if got := envLines(mustOK(t, runCmd(t, cmdOpts{}, "fw_printenv", "-c", imgConfig)).stdout); !slices.Equal(got, []string{"ethaddr=00:11:22:33:44:55", "gen=0"}) {
		t.Fatalf("fw_printenv of the hand-made image: %q", got)
	}

	mnt := mountImages(t, fmt.Sprintf("file:%s,name=env,layout=u-boot-env-redundant,env-size=%#x,env-offset=%#x,env-offset2=%#x", img, size, off1, off2))
	nvmem := filepath.Join(mnt, "env", "nvmem")
	mntConfig := fwConfig(nvmem)
	flags := func() [2]byte {
		b := readFile(t, img)
		return [2]byte{b[off1+4], b[off2+4]}
	}
	check := func(what string, want ...string) {
		t.Helper()
		slices.Sort(want)
		if got := envLines(mustOK(t, nv(t, "env", "-m", mnt, "env")).stdout); !slices.Equal(got, want) {
			t.Errorf("%s: nvmemfs env: %q, want %q", what, got, want)
		}
		if got := envLines(mustOK(t, runCmd(t, cmdOpts{}, "fw_printenv", "-c", mntConfig)).stdout); !slices.Equal(got, want) {
			t.Errorf("%s: fw_printenv through the mount: %q, want %q", what, got, want)
		}
		if got := envLines(mustOK(t, runCmd(t, cmdOpts{}, "fw_printenv", "-c", imgConfig)).stdout); !slices.Equal(got, want) {
			t.Errorf("%s: fw_printenv of the image: %q, want %q", what, got, want)
		}
		if !bytes.Equal(outside(readFile(t, img)), outside(data)) {
			t.Fatalf("%s: bytes outside the copies changed", what)
		}
	}
	check("start", "ethaddr=00:11:22:33:44:55", "gen=0")
	mustOK(t, nv(t, "env", "-m", mnt, "env", "set", "gen", "1"))
	check("nvmemfs env set", "ethaddr=00:11:22:33:44:55", "gen=1")
	if f := flags(); f != [2]byte{254, 255} {
		t.Errorf("flags after nvmemfs env set: %v, want [254 255]", f)
	}
	mustOK(t, runCmd(t, cmdOpts{}, "fw_setenv", "-c", mntConfig, "gen", "2"))
	check("fw_setenv, the counter wraps", "ethaddr=00:11:22:33:44:55", "gen=2")
	if f := flags(); f != [2]byte{0, 255} {
		t.Errorf("flags after fw_setenv: %v, want [0 255]", f)
	}
	mustOK(t, nv(t, "env", "-m", mnt, "env", "set", "gen", "3"))
	check("nvmemfs env set after the wrap", "ethaddr=00:11:22:33:44:55", "gen=3")
	if f := flags(); f != [2]byte{0, 1} {
		t.Errorf("flags after the wrap: %v, want [0 1]", f)
	}
	mustOK(t, nv(t, "unmount", mnt))

	// The image itself, with the offsets given as flags.
	mustOK(t, nv(t, "env", "--redundant", "--env-size", "0x2000", "--env-offset", "0x8000", "--env-offset2", "0x2000", img, "set", "gen", "4"))
	if got := envLines(mustOK(t, runCmd(t, cmdOpts{}, "fw_printenv", "-c", imgConfig)).stdout); !slices.Equal(got, []string{"ethaddr=00:11:22:33:44:55", "gen=4"}) {
		t.Errorf("fw_printenv after nvmemfs env on the image: %q", got)
	}
	stderr := mustFail(t, nv(t, "env", "--env-size", "0x2000", "--env-offset2", "0x2000", img))
	wantContains(t, "--env-offset2 without --redundant", stderr, "--redundant")
	stderr = mustFail(t, nv(t, "env", "--redundant", "--env-size", "0x2000", "--env-offset", "0x8000", "--env-offset2", "0x9000", img))
	wantContains(t, "overlapping copies", stderr, "env-offset 0x8000 and env-offset2 0x9000 overlap")

	// A single environment at env-offset: fw_setenv makes it, nvmemfs
	// edits it, fw_printenv reads it back.
	single := writeFile(t, dir, "single.bin", data)
	conf := writeFile(t, dir, "single.config", []byte(single+" 0x3000 0x1000 0x1000\n"))
	defaults := writeFile(t, dir, "defaults.txt", []byte("bootdelay=3\n"))
	mustOK(t, runCmd(t, cmdOpts{}, "fw_setenv", "-c", conf, "-f", defaults, "board", "demo"))
	mnt = mountImages(t, "file:"+single+",name=one,layout=u-boot-env,env-size=0x1000,env-offset=0x3000")
	if got := envLines(mustOK(t, nv(t, "env", "-m", mnt, "one")).stdout); !slices.Equal(got, []string{"board=demo", "bootdelay=3"}) {
		t.Errorf("nvmemfs env of fw_setenv's single environment: %q", got)
	}
	mustOK(t, nv(t, "env", "-m", mnt, "one", "set", "board", "other"))
	mustOK(t, nv(t, "unmount", mnt))
	if got := envLines(mustOK(t, runCmd(t, cmdOpts{}, "fw_printenv", "-c", conf)).stdout); !slices.Equal(got, []string{"board=other", "bootdelay=3"}) {
		t.Errorf("fw_printenv after nvmemfs env set: %q", got)
	}
	b := readFile(t, single)
	if !bytes.Equal(b[:0x3000], data[:0x3000]) || !bytes.Equal(b[0x4000:], data[0x4000:]) {
		t.Error("bytes outside the single copy changed")
	}
}
