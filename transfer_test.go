package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestFlashSource: flash reads a file in place, whatever its size (an image
// may be larger than a 32-bit process can hold), and a pipe into memory.
func TestFlashSource(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big.img")
	if err := os.WriteFile(big, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(big, 3<<30); err != nil {
		t.Skipf("no sparse file: %v", err)
	}
	src, n, err := openSource(big)
	if err != nil || n != 3<<30 {
		t.Fatalf("open a 3 GiB file: %d, %v", n, err)
	}
	if _, ok := src.(*os.File); !ok {
		t.Errorf("a regular file is read in place, not %T", src)
	}
	b := make([]byte, 4)
	if err := readChunk(src, b, 3<<30-4); err != nil {
		t.Errorf("read the last bytes: %v", err)
	}
	if err := readChunk(src, b, 3<<30-2); err == nil || !strings.Contains(err.Error(), "read at 0xc0000000") {
		t.Errorf("read across the end: %v", err)
	}
	src.Close()

	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	go func() {
		if f, err := os.OpenFile(fifo, os.O_WRONLY, 0); err == nil {
			f.Write([]byte("from a pipe"))
			f.Close()
		}
	}()
	src, n, err = openSource(fifo)
	if err != nil || n != 11 {
		t.Fatalf("open a pipe: %d, %v", n, err)
	}
	defer src.Close()
	got := make([]byte, n)
	if err := readChunk(src, got, 0); err != nil || string(got) != "from a pipe" {
		t.Errorf("pipe content %q, %v", got, err)
	}
}

// TestVerifyRange: the first byte that differs is named by its offset, in
// any chunk.
func TestVerifyRange(t *testing.T) {
	want := pattern(3*transferChunk+100, 9)
	got := bytes.Clone(want)
	p := &progress{}
	if err := verifyRange(bytes.NewReader(got), bytes.NewReader(want), int64(len(want)), p); err != nil {
		t.Errorf("equal: %v", err)
	}
	got[2*transferChunk+7] ^= 0x10
	err := verifyRange(bytes.NewReader(got), bytes.NewReader(want), int64(len(want)), p)
	if err == nil || !strings.Contains(err.Error(), "byte 0x2007 reads") {
		t.Errorf("one byte off: %v", err)
	}
	if err := verifyRange(bytes.NewReader(got[:100]), bytes.NewReader(want), int64(len(want)), p); err == nil || !strings.Contains(err.Error(), "read at 0x64") {
		t.Errorf("short device: %v", err)
	}
}
