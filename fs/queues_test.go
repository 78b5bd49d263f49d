package fs

import (
	"os"
	"sync"
	"testing"
	"time"

	"github.com/nvmemfs/nvmemfs/nvcore"
	"github.com/nvmemfs/nvmemfs/nvcore/nvcoretest"
)

// One device's notifications never hold up another's removal. A cached
// device whose provider is stuck in a read holds the page the kernel is
// filling locked, so dropping its pages (NotifyContent, after a cell
// write) waits for that read; an idle device detached meanwhile must not
// wait behind it. With one notifier goroutine for the whole mount, it
// waited until the stuck read returned (2.75 s in the issue, for ever with
// a hung provider).
func TestSlowDeviceDoesNotStallOtherRemovals(t *testing.T) {
	m := mountTest(t)
	mem := nvcoretest.NewMemory(pattern(8192, 1))
	inside, release := make(chan struct{}), make(chan struct{})
	var once, releaseOnce sync.Once
	unblock := func() { releaseOnce.Do(func() { close(release) }) }
	defer unblock()
	mem.SetHook(func(op string, off int64, n int) error {
		if op == "read" && off >= 4096 {
			once.Do(func() { close(inside) })
			<-release
		}
		return nil
	})
	slow, err := m.reg.Register(nvcore.Config{Name: "slow", Cache: true, Cells: []nvcore.CellInfo{{Name: "id", Offset: 0, Bytes: 4}}}, mem)
	if err != nil {
		t.Fatal(err)
	}
	idle, _ := m.attach(t, nvcore.Config{Name: "idle"}, pattern(64, 2))

	// A read of the second page sticks in the provider.
	f, err := os.Open(m.path("slow", "nvmem"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	go f.ReadAt(make([]byte, 4096), 4096)
	<-inside
	// A cell write posts a NotifyContent for the slow device, which waits
	// for the locked page; the write waits for it (a read in flight would
	// otherwise put bytes older than the write in the cache).
	written := make(chan error, 1)
	go func() { written <- os.WriteFile(m.path("slow", "cells", "id@0,0"), []byte("ABCD"), 0) }()
	time.Sleep(50 * time.Millisecond) // let the notify reach the kernel

	removed := make(chan error, 1)
	go func() { removed <- m.reg.Remove(idle) }()
	select {
	case err := <-removed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("removing an idle device waited for another device's notification")
	}
	if _, err := os.Stat(m.path("idle")); !os.IsNotExist(err) {
		t.Errorf("idle after its removal: %v", err)
	}
	unblock()
	if err := <-written; err != nil {
		t.Fatal(err)
	}
	if err := m.reg.Remove(slow); err != nil {
		t.Fatal(err)
	}
}
