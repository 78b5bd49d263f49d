package main

// The command around the edges: help anywhere, what ls shows, the
// messages a user reads, and the reference docs against the commands.

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
)

// --help and -h after arguments print the command's help and do nothing
// else, as flags after arguments do.
func TestHelpAfterArguments(t *testing.T) {
	img := writeFile(t, t.TempDir(), "x.bin", pattern(64, 1))
	mnt := mountImages(t, "file:"+img+",name=x")
	for _, args := range [][]string{
		{"attach", "-m", mnt, "file:" + img + ",name=y", "--help"},
		{"attach", "file:" + img + ",name=y", "-m", mnt, "-h"},
		{"cell", "-m", mnt, "x", "--help"},
		{"detach", "-m", mnt, "x", "-h"},
	} {
		r := mustOK(t, nv(t, args...))
		if !strings.Contains(r.stdout, "nvmemfs "+args[0]+" - ") || !strings.Contains(r.stdout, "USAGE:") {
			t.Errorf("%q: not the help of %s:\n%s", args, args[0], r.stdout)
		}
	}
	if got := lsJSON(t, cmdOpts{}, "-m", mnt); len(got) != 1 || got["x"].Name != "x" {
		t.Errorf("a help request changed the devices: %v", got)
	}
}

// ls shows the image and cells file of a file device as absolute paths,
// however they were typed, and --json has every field the docs promise,
// zero or not.
func TestLsSourceAndFields(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "rel.bin", pattern(64, 2))
	writeFile(t, dir, "rel.cells", []byte("serial 0x10 4\n"))
	mnt := mountNV(t)
	mustOK(t, runCmd(t, cmdOpts{dir: dir}, nvmemfsBin, "attach", "-m", mnt, "file:rel.bin,name=rel,cells=rel.cells"))

	want := "file:" + filepath.Join(dir, "rel.bin") + ",name=rel,cells=" + filepath.Join(dir, "rel.cells")
	if got := lsJSON(t, cmdOpts{}, "-m", mnt)["rel"]; got.Source != want || got.Cached {
		t.Errorf("ls --json source %q, cached %t; want %q, false", got.Source, got.Cached, want)
	}
	r := mustOK(t, nv(t, "ls", "-m", mnt))
	wantContains(t, "ls", r.stdout, want)

	r = mustOK(t, nv(t, "ls", "-m", mnt, "--json"))
	var raw []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &raw); err != nil || len(raw) != 1 {
		t.Fatalf("ls --json: %v\n%s", err, r.stdout)
	}
	for _, key := range []string{"name", "type", "size", "mode", "force_ro", "cached", "word_size", "stride", "source", "hardware", "layout", "layout_error", "cells"} {
		if _, ok := raw[0][key]; !ok {
			t.Errorf("ls --json: the device has no %q", key)
		}
	}
	cells, _ := raw[0]["cells"].([]any)
	if len(cells) != 1 {
		t.Fatalf("ls --json cells: %v", raw[0]["cells"])
	}
	for _, key := range []string{"name", "offset", "bytes", "bit_offset", "nbits", "layout"} {
		if _, ok := cells[0].(map[string]any)[key]; !ok {
			t.Errorf("ls --json: the cell has no %q", key)
		}
	}
}

// Messages say what happened, once: a missing device is named once, a
// read-only device is called read-only, and on a terminal the commands
// that change something say what they changed (nothing on a pipe).
func TestMessages(t *testing.T) {
	img := writeFile(t, t.TempDir(), "x.bin", pattern(64, 3))
	ro := writeFile(t, t.TempDir(), "ro.bin", pattern(64, 4))
	mnt := mountImages(t, "file:"+img+",name=x", "file:"+ro+",name=ro,ro")

	stderr := mustFail(t, nv(t, "detach", "-m", mnt, "nosuchdev"))
	if strings.TrimSpace(stderr) != "nvmemfs: detach nosuchdev: no such device" {
		t.Errorf("detach of a missing device: %q", stderr)
	}
	src := writeFile(t, t.TempDir(), "src.bin", pattern(64, 5))
	stderr = mustFail(t, nv(t, "flash", "-m", mnt, "ro", src))
	wantContains(t, "flash to a read-only device", stderr, "is read-only (mode 0444)")
	if err := os.WriteFile(filepath.Join(mnt, "x", "force_ro"), []byte("1"), 0); err != nil {
		t.Fatal(err)
	}
	stderr = mustFail(t, nv(t, "flash", "-m", mnt, "x", src))
	wantContains(t, "flash with force_ro set", stderr, "is read-only: force_ro is set")
	if err := os.WriteFile(filepath.Join(mnt, "x", "force_ro"), []byte("0"), 0); err != nil {
		t.Fatal(err)
	}

	// Quiet on a pipe.
	r := mustOK(t, nv(t, "detach", "-m", mnt, "x"))
	if r.stderr != "" || r.stdout != "" {
		t.Errorf("detach on a pipe said %q %q", r.stdout, r.stderr)
	}
	// On a terminal (script(1) gives the command one), a line each.
	shell := func(args ...string) string {
		q := []string{nvmemfsBin}
		for _, a := range args {
			q = append(q, "'"+a+"'")
		}
		r := mustOK(t, runCmd(t, cmdOpts{}, "script", "-qec", strings.Join(q, " "), "/dev/null"))
		return strings.ReplaceAll(r.stdout, "\r", "")
	}
	if out := shell("attach", "-m", mnt, "file:"+img+",name=x"); !strings.Contains(out, "attached file:"+img+",name=x") {
		t.Errorf("attach on a terminal said %q", out)
	}
	if out := shell("detach", "-m", mnt, "x"); !strings.Contains(out, "detached x") {
		t.Errorf("detach on a terminal said %q", out)
	}
}

// docs/CLI.md documents every command and every flag of each, as the
// binary's own help lists them.
func TestCLIDocsComplete(t *testing.T) {
	doc, err := os.ReadFile("docs/CLI.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(doc)
	headings := strings.Join(regexp.MustCompile(`(?m)^#+ .*$`).FindAllString(text, -1), "\n")
	for _, cmd := range newApp().Commands {
		if !regexp.MustCompile(`(?m)^#+ .*\b` + regexp.QuoteMeta(cmd.Name) + `\b`).MatchString(headings) {
			t.Errorf("docs/CLI.md has no section for the command %q", cmd.Name)
		}
		for _, f := range cmd.Flags {
			name := f.Names()[0]
			if !strings.Contains(text, "--"+name) {
				t.Errorf("docs/CLI.md does not mention %s --%s", cmd.Name, name)
			}
		}
	}
}

// env, tlv, dump and flash given a FIFO (or a character device) where an
// image belongs refuse it at once, instead of waiting in open(2) for a
// writer that never comes.
func TestCommandsRefuseFIFO(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	src := writeFile(t, dir, "src.bin", pattern(64, 6))
	for _, args := range [][]string{
		{"env", fifo},
		{"env", fifo, "set", "a", "1"},
		{"tlv", fifo},
		{"dump", fifo, filepath.Join(dir, "out.bin")},
		{"flash", fifo, src},
		{"env", "/dev/null"},
	} {
		stderr := mustFail(t, nv(t, args...))
		if !strings.Contains(stderr, "not a regular file or a block device") {
			t.Errorf("%q: %q", args, stderr)
		}
	}
}
