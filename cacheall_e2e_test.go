package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestCacheAllMount: `nvmemfs mount --cache-all` serves every file from the
// page cache, and what changes for a user is what docs/CLI.md says: a
// write-open of a read-only nvmem succeeds for root and its first write is
// EACCES (and env says the device is read-only, nothing written); env,
// flash and cell writes show at once through every file, cells included;
// a detach gives earlier descriptors ENODEV.
func TestCacheAllMount(t *testing.T) {
	requireTool(t, "fw_setenv")
	const copySize = 0x2000
	dir := t.TempDir()
	img := writeFile(t, dir, "env.bin", make([]byte, copySize))
	defaults := writeFile(t, dir, "defaults.txt", []byte("board=demo\nbootdelay=3\n"))
	mustOK(t, runCmd(t, cmdOpts{}, "fw_setenv", "-c", fwEnvConfig(t, img, copySize, false), "-f", defaults, "serial#", "SN-1"))
	ro := writeFile(t, dir, "ro.bin", bytes.Repeat([]byte{0x5a}, 256))
	mnt := mountNV(t, "--cache-all",
		"--device", "file:"+img+",name=env,layout=u-boot-env,env-size=0x2000",
		"--device", "file:"+ro+",name=ro,ro")

	if ls := lsJSON(t, cmdOpts{}, "-m", mnt); !ls["env"].Cached || !ls["ro"].Cached {
		t.Errorf("ls --json of a --cache-all mount: cached %t and %t, want true", ls["env"].Cached, ls["ro"].Cached)
	}

	cell := func(name string) string {
		t.Helper()
		return strings.TrimSpace(mustOK(t, nv(t, "cell", "-m", mnt, "env", name, "--format", "string")).stdout)
	}
	if got := cell("board"); got != "demo" {
		t.Fatalf("board: %q", got)
	}
	// Cached now: an edit through env shows at once, in the cell and in
	// nvmem.
	held, err := os.Open(filepath.Join(mnt, "env", "nvmem"))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	buf := make([]byte, copySize)
	held.ReadAt(buf, 0)
	mustOK(t, nv(t, "env", "-m", mnt, "env", "set", "board", "other"))
	if got := cell("board"); got != "other" {
		t.Errorf("board after env set: %q, want other", got)
	}
	if _, err := held.ReadAt(buf, 0); err != nil || !bytes.Contains(buf, []byte("board=other")) {
		t.Errorf("nvmem through a descriptor held across env set: %v, has board=other: %v", err, bytes.Contains(buf, []byte("board=other")))
	}
	// flash: the next reads show the new image.
	next := bytes.Clone(buf)
	copy(next[bytes.Index(next, []byte("board=other")):], "board=flash")
	fixEnvCRC(next)
	newImg := writeFile(t, dir, "next.bin", next)
	mustOK(t, nv(t, "flash", "-m", mnt, "env", newImg))
	if got := cell("board"); got != "flash" {
		t.Errorf("board after flash: %q, want flash", got)
	}

	// The read-only device: root opens it for writing (no open reaches
	// nvmemfs), the first write is EACCES, and the image is unchanged.
	roPath := filepath.Join(mnt, "ro", "nvmem")
	fd, err := syscall.Open(roPath, syscall.O_WRONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("--cache-all: write-open of a read-only nvmem: %v, want success (EACCES moves to the write)", err)
	}
	if _, err := syscall.Write(fd, []byte("x")); err != syscall.EACCES {
		t.Errorf("first write to a read-only nvmem: %v, want EACCES", err)
	}
	syscall.Close(fd)
	if r := nv(t, "env", "-m", mnt, "ro", "set", "a", "1"); r.code == 0 || !strings.Contains(r.stderr, "read-only") {
		t.Errorf("env set on a read-only device: %v %q, want a read-only refusal", r, r.stderr)
	}
	if b, _ := os.ReadFile(ro); !bytes.Equal(b, bytes.Repeat([]byte{0x5a}, 256)) {
		t.Error("the read-only image changed")
	}

	// Detach: the descriptor held on cached pages gets ENODEV, a fresh
	// lookup ENOENT.
	mustOK(t, nv(t, "detach", "-m", mnt, "env"))
	if _, err := held.ReadAt(buf, 0); !errors.Is(err, syscall.ENODEV) {
		t.Errorf("read of cached pages after detach: %v, want ENODEV", err)
	}
	if _, err := os.Stat(filepath.Join(mnt, "env")); !os.IsNotExist(err) {
		t.Errorf("stat after detach: %v, want ENOENT", err)
	}
}

// fixEnvCRC sets a single U-Boot environment's CRC (SPEC 5): CRC-32 of
// the data, little-endian, in the first 4 bytes.
func fixEnvCRC(env []byte) {
	binary.LittleEndian.PutUint32(env, crc32.ChecksumIEEE(env[4:]))
}
