package fs

import (
	"bytes"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/nvmemfs/nvmemfs/nvcore"
	"github.com/nvmemfs/nvmemfs/nvcore/nvcoretest"
)

// Detach and at once attach the same name, 300 times, with a reader on
// the device throughout: every time, once Register returns, the new
// device is in the mount with its own bytes, and the mount lists what the
// registry holds. (The old directory used to be taken out after the new
// one was added, which then never appeared: 18 to 31 rounds in 300.)
func TestReattachSameName(t *testing.T) {
	m := mountTest(t)
	stop := make(chan struct{})
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		buf := make([]byte, 64)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if f, err := os.Open(m.path("x", "nvmem")); err == nil {
				f.Read(buf)
				f.Close()
			}
		}
	}()
	defer func() { close(stop); <-readerDone }()

	d, _ := m.attach(t, nvcore.Config{Name: "x"}, pattern(64, 0))
	for round := 1; round <= 300; round++ {
		removed := make(chan error, 1)
		go func() { removed <- m.reg.Remove(d) }()
		for !d.Gone() {
			time.Sleep(10 * time.Microsecond)
		}
		data := pattern(64, byte(round))
		var err error
		d, err = m.reg.Register(nvcore.Config{Name: "x"}, nvcoretest.NewMemory(data))
		if err != nil {
			t.Fatalf("round %d: register while the old x is being removed: %v", round, err)
		}
		if err := <-removed; err != nil {
			t.Fatalf("round %d: remove: %v", round, err)
		}
		got, err := os.ReadFile(m.path("x", "nvmem"))
		if err != nil {
			t.Fatalf("round %d: the new x is registered but not in the mount: %v", round, err)
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("round %d: x reads the old device's bytes", round)
		}
		entries, err := os.ReadDir(m.dir)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		if !slices.Equal(names, []string{"x"}) {
			t.Fatalf("round %d: the mount lists %q, the registry x", round, names)
		}
	}
}
