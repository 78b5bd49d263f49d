package fs

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/nvmemfs/nvmemfs/nvcore"
)

// listLong does what `ls -l DIR` does: read the names, then stat each.
func listLong(b *testing.B, dir string, want int) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		b.Fatal(err)
	}
	if len(entries) != want {
		b.Fatalf("%s lists %d entries, want %d", dir, len(entries), want)
	}
	for _, e := range entries {
		if _, err := os.Lstat(filepath.Join(dir, e.Name())); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkListCells lists cells/ of a device with n one-byte cells as
// `ls -l` does (readdir, then a stat of every name), beside the same
// listing of a plain folder of as many files on the test machine's /tmp.
// Each listing is a READDIRPLUS (a lookup of every cell inside the server)
// and, for the names whose cached entry or attributes lapsed (they last a
// second), a LOOKUP or GETATTR each: linear in n, where a scan of the cell
// list in every lookup made it quadratic (100k cells: over ten minutes).
//
//	go test -run '^$' -bench BenchmarkListCells -benchtime 5x ./fs
func BenchmarkListCells(b *testing.B) {
	for _, n := range []int{1000, 10000, 100000} {
		cells := make([]nvcore.CellInfo, n)
		for i := range cells {
			cells[i] = nvcore.CellInfo{Name: fmt.Sprintf("c%d", i), Offset: int64(i), Bytes: 1}
		}
		b.Run(fmt.Sprintf("nvmemfs/cells=%d", n), func(b *testing.B) {
			m := mountTest(b)
			m.attach(b, nvcore.Config{Name: "d", Cells: cells}, make([]byte, n))
			for b.Loop() {
				listLong(b, m.path("d", "cells"), n)
			}
		})
		b.Run(fmt.Sprintf("plain-folder/files=%d", n), func(b *testing.B) {
			dir := b.TempDir()
			for _, c := range cells {
				f, err := os.Create(filepath.Join(dir, c.FileName()))
				if err != nil {
					b.Fatal(err)
				}
				f.Close()
			}
			for b.Loop() {
				listLong(b, dir, n)
			}
		})
	}
}
