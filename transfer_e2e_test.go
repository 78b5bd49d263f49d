package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
)

// TestDumpFlash: dump copies a device to a file, flash writes a file back
// and verifies it; both are quiet off a terminal; bad inputs change nothing.
func TestDumpFlash(t *testing.T) {
	requireFUSE(t)
	dir := t.TempDir()
	orig := pattern(8192, 0x21)
	img := writeFile(t, dir, "ee.bin", orig)
	ro := writeFile(t, dir, "ro.bin", pattern(256, 3))
	mnt := mountImages(t, "file:"+img+",name=ee", "file:"+ro+",name=ro,ro")

	out := filepath.Join(dir, "dump.bin")
	r := mustOK(t, nv(t, "dump", "-m", mnt, "ee", out))
	if r.stderr != "" || r.stdout != "" {
		t.Errorf("dump off a terminal printed %q %q", r.stdout, r.stderr)
	}
	mustOK(t, runCmd(t, cmdOpts{}, "cmp", out, img))

	next := pattern(8192, 0x77)
	src := writeFile(t, dir, "next.bin", next)
	mustOK(t, nv(t, "flash", "-m", mnt, "ee", src))
	if got := readFile(t, img); !bytes.Equal(got, next) {
		t.Error("flash: the image does not hold the file")
	}
	// A shorter file writes its own length and leaves the rest.
	short := writeFile(t, dir, "short.bin", []byte("hello"))
	mustOK(t, nv(t, "flash", "-m", mnt, "ee", short))
	if got := readFile(t, img); string(got[:5]) != "hello" || !bytes.Equal(got[5:], next[5:]) {
		t.Error("flash of a short file changed the wrong bytes")
	}

	before := readFile(t, img)
	big := writeFile(t, dir, "big.bin", pattern(8193, 1))
	wantContains(t, "flash of a bigger file", mustFail(t, nv(t, "flash", "-m", mnt, "ee", big)), "8193 bytes", "nothing written")
	wantContains(t, "flash of a read-only device", mustFail(t, nv(t, "flash", "-m", mnt, "ro", src)), "is read-only")
	wantContains(t, "dump of no device", mustFail(t, nv(t, "dump", "-m", mnt, "nope", out)), `no device "nope"`)
	if !bytes.Equal(before, readFile(t, img)) {
		t.Error("a refused flash changed the image")
	}
}

// TestProgressOnATerminal: on a terminal, dump shows bytes, rate and time
// left (script(1) gives it a pseudo-terminal).
func TestProgressOnATerminal(t *testing.T) {
	requireFUSE(t)
	requireTool(t, "script")
	dir := t.TempDir()
	img := writeFile(t, dir, "ee.bin", pattern(65536, 0x21))
	mnt := mountImages(t, "file:"+img+",name=ee")
	out := filepath.Join(dir, "dump.bin")
	cmd := strings.Join([]string{nvmemfsBin, "dump", "-m", mnt, "ee", out}, " ")
	r := mustOK(t, runCmd(t, cmdOpts{}, "script", "-qec", cmd, "/dev/null"))
	wantContains(t, "dump on a terminal", r.stdout, "dump 65536/65536 bytes (100%)", "kB/s", "left")
	mustOK(t, runCmd(t, cmdOpts{}, "cmp", out, img))
}
