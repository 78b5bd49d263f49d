package fs

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nvmemfs/nvmemfs/nvcore"
)

// countLayout: byte 0 is a count N, and cell "c<i>" sits at 1+i, i+1 bytes
// long. 0xff does not parse.
type countLayout struct{}

func (countLayout) Name() string { return "count" }

func (countLayout) Cells(r io.ReaderAt, size int64) ([]nvcore.CellInfo, error) {
	var b [1]byte
	if _, err := r.ReadAt(b[:], 0); err != nil && err != io.EOF {
		return nil, err
	}
	if b[0] == 0xff {
		return nil, fmt.Errorf("count: 0xff is not a count")
	}
	cells := make([]nvcore.CellInfo, b[0])
	for i := range cells {
		cells[i] = nvcore.CellInfo{Name: fmt.Sprintf("c%d", i), Offset: int64(1 + i), Bytes: i + 1}
	}
	return cells, nil
}

func listDir(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("readdir %s: %v", dir, err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// TestCellsFollowContent: a write to nvmem that changes what the layout
// describes shows at the next listing of cells/; a cell file that stays
// keeps working with its new size, one opened before its cell left gets
// ENODEV (as a removed sysfs file), and cells/ leaves the device's listing when the last cell goes.
func TestCellsFollowContent(t *testing.T) {
	m := mountTest(t)
	data := make([]byte, 16)
	data[0] = 2
	copy(data[1:], "abcdef")
	m.attach(t, nvcore.Config{Name: "lay", Layout: countLayout{}}, data)

	cellsDir := m.path("lay", "cells")
	if got, want := listDir(t, cellsDir), []string{"c0@1,0", "c1@2,0"}; !slices.Equal(got, want) {
		t.Fatalf("cells %v, want %v", got, want)
	}
	if st, err := os.Stat(m.path("lay", "cells", "c1@2,0")); err != nil || st.Mode().Perm() != 0o444 {
		t.Errorf("a layout's cell: %v, %v; want mode 0444 (edited through the layout)", st, err)
	}
	if _, err := os.OpenFile(m.path("lay", "cells", "c1@2,0"), os.O_WRONLY, 0); errnoOf(err) != syscall.EACCES {
		t.Errorf("open a layout's cell for writing: %v, want EACCES", err)
	}
	kept, err := os.Open(m.path("lay", "cells", "c0@1,0"))
	if err != nil {
		t.Fatal(err)
	}
	defer kept.Close()
	leaving, err := os.Open(m.path("lay", "cells", "c1@2,0"))
	if err != nil {
		t.Fatal(err)
	}
	defer leaving.Close()

	nvmem := m.path("lay", "nvmem")
	writeAt := func(b byte) {
		t.Helper()
		f, err := os.OpenFile(nvmem, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteAt([]byte{b}, 0); err != nil {
			t.Fatal(err)
		}
	}

	writeAt(1)
	if got, want := listDir(t, cellsDir), []string{"c0@1,0"}; !slices.Equal(got, want) {
		t.Errorf("after the write: cells %v, want %v", got, want)
	}
	buf := make([]byte, 8)
	if _, err := leaving.ReadAt(buf, 0); errnoOf(err) != syscall.ENODEV {
		t.Errorf("read of a cell that left, through an earlier descriptor: %v, want ENODEV", err)
	}
	if n, err := kept.ReadAt(buf, 0); err != nil && err != io.EOF || !bytes.Equal(buf[:n], []byte("a")) {
		t.Errorf("read of a cell that stayed: %q, %v", buf[:n], err)
	}
	// The kernel may have cached the name: the notifier drops it soon.
	deadline := time.Now().Add(2 * time.Second)
	for {
		_, err := os.Stat(m.path("lay", "cells", "c1@2,0"))
		if errnoOf(err) == syscall.ENOENT {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stat of a cell that left: %v, want ENOENT", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// By now the kernel has dropped what it knew of the cell's file
	// (the notifier drops the size before the name): the descriptor gets
	// what one of a removed sysfs file gets, at the end too.
	t.Run("as-sysfs", func(t *testing.T) {
		want := kernfsAfterRemoval(t)
		if got := afterRemoval(int(leaving.Fd()), 1); got != want {
			t.Errorf("a cell that left, through an earlier descriptor:\n got  %s\n want %s (sysfs)", got, want)
		}
	})

	// Content that does not parse: no cells, and no cells/ either.
	writeAt(0xff)
	if got := listDir(t, m.path("lay")); slices.Contains(got, "cells") {
		t.Errorf("device listing %v still has cells/", got)
	}
	if _, err := os.Stat(cellsDir); errnoOf(err) != syscall.ENOENT {
		// the cached entry is dropped by the notifier; give it a moment
		time.Sleep(100 * time.Millisecond)
		if _, err := os.Stat(cellsDir); errnoOf(err) != syscall.ENOENT {
			t.Errorf("stat cells/ with no cells: %v, want ENOENT", err)
		}
	}

	if _, err := kept.ReadAt(buf, 0); errnoOf(err) != syscall.ENODEV {
		t.Errorf("c0 left with the rest: read through its descriptor: %v, want ENODEV", err)
	}

	// Back to three cells: they appear, found afresh by their paths.
	writeAt(3)
	if got, want := listDir(t, cellsDir), []string{"c0@1,0", "c1@2,0", "c2@3,0"}; !slices.Equal(got, want) {
		t.Errorf("cells %v, want %v", got, want)
	}
	if got, err := os.ReadFile(m.path("lay", "cells", "c2@3,0")); err != nil || string(got) != "cde" {
		t.Errorf("c2: %q, %v", got, err)
	}
	if got, err := os.ReadFile(m.path("lay", "cells", "c0@1,0")); err != nil || string(got) != "a" {
		t.Errorf("c0 through its path: %q, %v", got, err)
	}
}

// TestRemovalWhileCellsChange: devices come and go while another device's
// cells change under writers and listers. A removal must never wait for the
// kernel under the lock a cells/ lookup waits for (that hangs for good), so
// everything finishes within its bound.
func TestRemovalWhileCellsChange(t *testing.T) {
	m := mountTest(t)
	data := make([]byte, 64)
	data[0] = 3
	m.attach(t, nvcore.Config{Name: "lay", Layout: countLayout{}}, data)
	stop := make(chan struct{})
	done := make(chan struct{})
	var workers sync.WaitGroup
	for w := range 3 {
		workers.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				switch w {
				case 0: // the layout's content changes
					if f, err := os.OpenFile(m.path("lay", "nvmem"), os.O_WRONLY, 0); err == nil {
						f.WriteAt([]byte{byte(i % 5)}, 0)
						f.Close()
					}
				default: // cells/ is listed and its names looked up
					entries, _ := os.ReadDir(m.path("lay", "cells"))
					for _, e := range entries {
						os.ReadFile(m.path("lay", "cells", e.Name()))
					}
				}
			}
		})
	}
	go func() {
		defer close(done)
		for range 100 {
			d, _ := m.attach(t, nvcore.Config{Name: "churn", Cells: []nvcore.CellInfo{{Name: "x", Offset: 0, Bytes: 2}}}, make([]byte, 16))
			os.ReadDir(m.path("churn", "cells"))
			if err := m.reg.Remove(d); err != nil {
				t.Errorf("remove: %v", err)
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("attach/detach cycles hung while cells changed:\n%s", stackDump())
	}
	close(stop)
	workers.Wait()
}
