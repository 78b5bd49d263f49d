package nvcore_test

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/nvmemfs/nvmemfs/nvcore"
	"github.com/nvmemfs/nvmemfs/nvcore/nvcoretest"
)

func cellNames(d *nvcore.Device) []string {
	var names []string
	for _, c := range d.Cells() {
		names = append(names, fmt.Sprintf("%s@%x/%d", c.Name(), c.Offset(), c.Size()))
	}
	return names
}

// TestLayoutCellsFollowContent: a write that changes what the layout
// describes changes the cells at the next RefreshCells, with the events to
// match; a cell that stays keeps its *Cell, one that leaves is retired.
func TestLayoutCellsFollowContent(t *testing.T) {
	data := make([]byte, 16)
	data[0] = 2
	mem := nvcoretest.NewMemory(data)
	reg := nvcore.NewRegistry()
	var mu sync.Mutex
	var events []string
	reg.Subscribe(func(ev nvcore.Event) {
		mu.Lock()
		defer mu.Unlock()
		name := ""
		if ev.Cell != nil {
			name = " " + ev.Cell.Name()
		}
		events = append(events, ev.Kind.String()+name)
	})
	takeEvents := func() string {
		mu.Lock()
		defer mu.Unlock()
		s := strings.Join(events, ",")
		events = nil
		return s
	}
	d, err := reg.Register(nvcore.Config{
		Name:   "dev",
		Cells:  []nvcore.CellInfo{{Name: "declared", Offset: 8, Bytes: 2}},
		Layout: countLayout{},
	}, mem)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := takeEvents(), "NVMEM_ADD,NVMEM_CELL_ADD declared,NVMEM_CELL_ADD c0,NVMEM_CELL_ADD c1"; got != want {
		t.Errorf("register events %q, want %q", got, want)
	}
	if got, want := cellNames(d), []string{"declared@8/2", "c0@1/1", "c1@2/2"}; !slices.Equal(got, want) {
		t.Fatalf("cells %v, want %v", got, want)
	}
	c1, _ := d.Cell("c1")
	if c1.Plain() || c1.Layout() != "count" {
		t.Errorf("c1: layout %q, plain %t", c1.Layout(), c1.Plain())
	}
	if err := c1.Write([]byte{1, 2}); !errors.Is(err, nvcore.ErrNotSupported) {
		t.Errorf("write of a layout cell: %v, want ErrNotSupported", err)
	}

	// Nothing written: nothing parsed again, nothing published.
	if err := d.RefreshCells(); err != nil || takeEvents() != "" {
		t.Fatalf("refresh without a write: %v, events %q", err, takeEvents())
	}

	// Down to one cell.
	if _, err := d.WriteAt([]byte{1}, 0); err != nil {
		t.Fatal(err)
	}
	if err := d.RefreshCells(); err != nil {
		t.Fatal(err)
	}
	if got, want := takeEvents(), "NVMEM_CELL_REMOVE c1"; got != want {
		t.Errorf("events %q, want %q", got, want)
	}
	if !c1.Retired() {
		t.Error("c1 left but is not retired")
	}
	if _, err := c1.Read(); !errors.Is(err, nvcore.ErrNoCell) {
		t.Errorf("read of a retired cell: %v, want ErrNoCell", err)
	}
	c0, _ := d.Cell("c0")

	// Up to three: c0 is the same cell, c1 and c2 are new.
	d.WriteAt([]byte{3}, 0)
	if err := d.RefreshCells(); err != nil {
		t.Fatal(err)
	}
	if got, want := takeEvents(), "NVMEM_CELL_ADD c1,NVMEM_CELL_ADD c2"; got != want {
		t.Errorf("events %q, want %q", got, want)
	}
	if again, _ := d.Cell("c0"); again != c0 {
		t.Error("c0 is a new *Cell; an open cell file would lose it")
	}
	if got, want := cellNames(d), []string{"declared@8/2", "c0@1/1", "c1@2/2", "c2@3/3"}; !slices.Equal(got, want) {
		t.Errorf("cells %v, want %v", got, want)
	}

	// Content that does not parse: no layout cells, the reason kept, the
	// declared cell untouched.
	d.WriteAt([]byte{0xff}, 0)
	d.RefreshCells()
	if got, want := cellNames(d), []string{"declared@8/2"}; !slices.Equal(got, want) {
		t.Errorf("cells %v, want %v", got, want)
	}
	if err := d.LayoutError(); err == nil || !strings.Contains(err.Error(), "not a count") {
		t.Errorf("LayoutError %v", err)
	}
	// Registry.Cell refreshes by itself.
	d.WriteAt([]byte{1}, 0)
	if c, err := reg.Cell("dev/c0"); err != nil || c.Size() != 1 {
		t.Errorf("reg.Cell after a write: %v, %v", c, err)
	}
	if d.LayoutError() != nil {
		t.Errorf("LayoutError after a good parse: %v", d.LayoutError())
	}
	takeEvents()

	if err := reg.Remove(d); err != nil {
		t.Fatal(err)
	}
	if got, want := takeEvents(), "NVMEM_CELL_REMOVE c0,NVMEM_CELL_REMOVE declared,NVMEM_REMOVE"; got != want {
		t.Errorf("removal events %q, want %q", got, want)
	}
	if err := d.RefreshCells(); err != nil && !errors.Is(err, nvcore.ErrNoDevice) {
		t.Errorf("refresh after removal: %v", err)
	}
}

// TestLayoutBadAtRegister: a content that does not parse still registers.
func TestLayoutBadAtRegister(t *testing.T) {
	data := make([]byte, 8)
	data[0] = 0xff
	_, d := register(t, nvcore.Config{Layout: countLayout{}}, nvcoretest.NewMemory(data))
	if len(d.Cells()) != 0 || d.LayoutError() == nil {
		t.Errorf("cells %v, layout error %v", cellNames(d), d.LayoutError())
	}
	// A cell past the end is left out, and said so.
	data[0] = 9
	_, d = register(t, nvcore.Config{Layout: countLayout{}}, nvcoretest.NewMemory(data))
	if len(d.Cells()) != 4 || d.LayoutError() == nil || !strings.Contains(d.LayoutError().Error(), "cell left out") {
		t.Errorf("cells %v, layout error %v", cellNames(d), d.LayoutError())
	}
}

// TestRefreshRacesRemoval: refreshes and writes running while the device
// is removed never call the closed provider and never deadlock.
func TestRefreshRacesRemoval(t *testing.T) {
	for range 50 {
		data := make([]byte, 32)
		data[0] = 3
		mem := nvcoretest.NewMemory(data)
		reg := nvcore.NewRegistry()
		d, err := reg.Register(nvcore.Config{Layout: countLayout{}}, mem)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for i := range 4 {
			wg.Go(func() {
				for j := range 50 {
					d.WriteAt([]byte{byte((i + j) % 5)}, 0)
					d.RefreshCells()
				}
			})
		}
		reg.Remove(d)
		wg.Wait()
		if n := mem.CallsAfterClose(); n != 0 {
			t.Fatalf("%d provider calls after close", n)
		}
	}
}

// countLayout is a layout small enough to reason about in tests: byte 0 is
// a count N, and the content holds N cells "c0" ... "c<N-1>"; cell i sits
// at offset 1+i and is i+1 bytes long (they overlap, which cells may). A
// count of 0xff does not parse. It reads through r like a real layout.
type countLayout struct{}

// Name is "count".
func (countLayout) Name() string { return "count" }

// Cells parses the content.
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

// TestCacheAllIsOneStep: CacheAll refuses, and changes nothing, while an
// uncached device is registered; and a device whose registration began
// before CacheAll and publishes after it (here: while its layout parses)
// is refused, not published uncached into a registry that caches all.
func TestCacheAllIsOneStep(t *testing.T) {
	reg := nvcore.NewRegistry()
	if _, err := reg.Register(nvcore.Config{Name: "plain"}, nvcoretest.NewMemory(make([]byte, 16))); err != nil {
		t.Fatal(err)
	}
	if err := reg.CacheAll(); !errors.Is(err, nvcore.ErrInvalid) || !strings.Contains(err.Error(), "plain was attached without cache") {
		t.Fatalf("CacheAll with an uncached device: %v; want ErrInvalid naming it", err)
	}
	if d, err := reg.Register(nvcore.Config{Name: "after"}, nvcoretest.NewMemory(make([]byte, 16))); err != nil || d.Cached() {
		t.Fatalf("a refused CacheAll changed the registry: %v, cached %v", err, d != nil && d.Cached())
	}
	for _, name := range []string{"plain", "after"} {
		if err := reg.Unregister(name); err != nil {
			t.Fatal(err)
		}
	}

	// A registration caught between its check and its publication.
	data := make([]byte, 16)
	data[0] = 1
	mem := nvcoretest.NewMemory(data)
	inside, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	mem.SetHook(func(op string, off int64, n int) error {
		once.Do(func() {
			close(inside)
			<-release
		})
		return nil
	})
	done := make(chan error, 1)
	go func() {
		_, err := reg.Register(nvcore.Config{Name: "late", Layout: countLayout{}}, mem)
		done <- err
	}()
	<-inside
	if err := reg.CacheAll(); err != nil {
		t.Fatalf("CacheAll with no device published: %v", err)
	}
	close(release)
	if err := <-done; !errors.Is(err, nvcore.ErrInvalid) || !strings.Contains(err.Error(), "attach it again") {
		t.Errorf("a registration begun before CacheAll, published after: %v; want ErrInvalid", err)
	}
	if d, err := reg.Register(nvcore.Config{Name: "late", Layout: countLayout{}}, nvcoretest.NewMemory(data)); err != nil || !d.Cached() {
		t.Errorf("attached again: %v, cached %v; want a cached device", err, d != nil && d.Cached())
	}
}
