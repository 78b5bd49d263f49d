package nvcore_test

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nvmemfs/nvmemfs/nvcore"
	"github.com/nvmemfs/nvmemfs/nvcore/nvcoretest"
)

// blockedRead registers a device named name whose next read blocks until
// the returned release is called, and starts that read; it returns once
// the read is inside the provider.
func blockedRead(t *testing.T, reg *nvcore.Registry, name string) (*nvcore.Device, *nvcoretest.Memory, func()) {
	t.Helper()
	mem := nvcoretest.NewMemory(make([]byte, 64))
	inside, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	mem.SetHook(func(op string, off int64, n int) error {
		if op == "read" {
			once.Do(func() { close(inside) })
			<-release
		}
		return nil
	})
	d, err := reg.Register(nvcore.Config{Name: name}, mem)
	if err != nil {
		t.Fatal(err)
	}
	go d.ReadAt(make([]byte, 8), 0)
	<-inside
	var releaseOnce sync.Once
	return d, mem, func() { releaseOnce.Do(func() { close(release) }) }
}

// done reports whether ch is closed within d.
func done(ch <-chan struct{}, d time.Duration) bool {
	select {
	case <-ch:
		return true
	case <-time.After(d):
		return false
	}
}

// A second removal, by name or by handle, returns only once the first has
// closed the provider, and says the device is gone.
func TestSecondRemoveWaitsForTheFirst(t *testing.T) {
	reg := nvcore.NewRegistry()
	d, mem, release := blockedRead(t, reg, "x")
	defer release()

	first := make(chan struct{})
	go func() { reg.Unregister("x"); close(first) }()
	// Wait until the first removal has marked the device gone.
	for !d.Gone() {
		time.Sleep(time.Millisecond)
	}
	var errs [2]error
	seconds := make(chan struct{})
	go func() {
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); errs[0] = reg.Unregister("x") }()
		go func() { defer wg.Done(); errs[1] = reg.Remove(d) }()
		wg.Wait()
		close(seconds)
	}()
	if done(seconds, 100*time.Millisecond) {
		t.Fatalf("a second removal returned (%v) while the first waits for a read inside the provider", errs)
	}
	release()
	if !done(first, 5*time.Second) || !done(seconds, 5*time.Second) {
		t.Fatal("removals did not finish after the read returned")
	}
	if !mem.Closed() {
		t.Error("the provider is not closed after every removal returned")
	}
	for i, err := range errs {
		if !errors.Is(err, nvcore.ErrNoDevice) {
			t.Errorf("second removal %d: %v, want ErrNoDevice", i, err)
		}
	}
}

// Registering a name whose device is still being removed waits for that
// removal and then succeeds; a live device's name is refused at once.
func TestRegisterWaitsForRemovalOfItsName(t *testing.T) {
	reg := nvcore.NewRegistry()
	var events []string
	var mu sync.Mutex
	reg.Subscribe(func(ev nvcore.Event) {
		if ev.Cell == nil {
			mu.Lock()
			events = append(events, ev.Kind.String())
			mu.Unlock()
		}
	})
	old, oldMem, release := blockedRead(t, reg, "x")
	defer release()
	if _, err := reg.Register(nvcore.Config{Name: "x"}, nvcoretest.NewMemory(make([]byte, 8))); !errors.Is(err, nvcore.ErrExist) {
		t.Fatalf("register over a live device: %v, want ErrExist", err)
	}

	go reg.Remove(old)
	for !old.Gone() {
		time.Sleep(time.Millisecond)
	}
	registered := make(chan struct{})
	var d *nvcore.Device
	var err error
	go func() {
		d, err = reg.Register(nvcore.Config{Name: "x"}, nvcoretest.NewMemory(make([]byte, 16)))
		close(registered)
	}()
	if done(registered, 100*time.Millisecond) {
		t.Fatalf("register returned (%v) while the old device still drains", err)
	}
	release()
	if !done(registered, 5*time.Second) {
		t.Fatal("register did not return after the old device was removed")
	}
	if err != nil {
		t.Fatalf("register after the removal: %v", err)
	}
	if !oldMem.Closed() {
		t.Error("the new device was registered before the old provider was closed")
	}
	if got, _ := reg.Device("x"); got != d || d.Size() != 16 {
		t.Errorf("x is %v, want the new device", got)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{"NVMEM_ADD", "NVMEM_REMOVE", "NVMEM_ADD"}
	if len(events) != len(want) || events[0] != want[0] || events[1] != want[1] || events[2] != want[2] {
		t.Errorf("events %v, want %v", events, want)
	}
}

// Close waits for removals already under way.
func TestCloseWaitsForRemovalsUnderWay(t *testing.T) {
	reg := nvcore.NewRegistry()
	d, mem, release := blockedRead(t, reg, "x")
	go reg.Remove(d)
	for !d.Gone() {
		time.Sleep(time.Millisecond)
	}
	closed := make(chan struct{})
	go func() { reg.Close(); close(closed) }()
	if done(closed, 100*time.Millisecond) {
		t.Fatal("Close returned while a removal waits for a read")
	}
	release()
	if !done(closed, 5*time.Second) {
		t.Fatal("Close did not return")
	}
	if !mem.Closed() {
		t.Error("Close returned before the provider was closed")
	}
}

// panicky panics in Size or Close.
type panicky struct {
	*nvcoretest.Memory
	inSize, inClose bool
}

func (p *panicky) Size() int64 {
	if p.inSize {
		panic("size")
	}
	return p.Memory.Size()
}

func (p *panicky) Close() error {
	if p.inClose {
		panic("close")
	}
	return p.Memory.Close()
}

// A provider that panics in Size or Close costs an error, not the process.
func TestProviderPanicInSizeAndClose(t *testing.T) {
	reg := nvcore.NewRegistry()
	_, err := reg.Register(nvcore.Config{Name: "s"}, &panicky{Memory: nvcoretest.NewMemory(make([]byte, 8)), inSize: true})
	if !errors.Is(err, nvcore.ErrProviderPanic) {
		t.Errorf("register of a provider whose Size panics: %v", err)
	}
	d, err := reg.Register(nvcore.Config{Name: "c"}, &panicky{Memory: nvcoretest.NewMemory(make([]byte, 8)), inClose: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.Remove(d); !errors.Is(err, nvcore.ErrProviderPanic) {
		t.Errorf("remove of a provider whose Close panics: %v", err)
	}
	if _, err := reg.Device("c"); !errors.Is(err, nvcore.ErrNoDevice) {
		t.Errorf("after the removal: %v", err)
	}
	if _, err := reg.Register(nvcore.Config{Name: "c"}, nvcoretest.NewMemory(make([]byte, 8))); err != nil {
		t.Errorf("the name is not free after a removal whose Close panicked: %v", err)
	}
}

// A removal stuck behind a provider call is logged with the device and
// what it waits for, again and again until it ends; removing everything
// does not keep the other devices waiting for it.
func TestSlowRemovalLoggedOthersNotHeld(t *testing.T) {
	var logged syncBuffer
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&logged, nil)))
	defer slog.SetDefault(old)
	oldAfter, oldEvery := nvcore.RemovalWarnAfter, nvcore.RemovalWarnEvery
	nvcore.RemovalWarnAfter, nvcore.RemovalWarnEvery = 20*time.Millisecond, 20*time.Millisecond
	defer func() { nvcore.RemovalWarnAfter, nvcore.RemovalWarnEvery = oldAfter, oldEvery }()

	reg := nvcore.NewRegistry()
	_, _, release := blockedRead(t, reg, "stuck")
	defer release()
	other := nvcoretest.NewMemory(make([]byte, 8))
	if _, err := reg.Register(nvcore.Config{Name: "other"}, other); err != nil {
		t.Fatal(err)
	}
	closed := make(chan struct{})
	go func() { reg.Close(); close(closed) }()
	deadline := time.Now().Add(5 * time.Second)
	for !other.Closed() || strings.Count(logged.String(), "device=stuck") < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("other closed: %v; log:\n%s", other.Closed(), logged.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if !strings.Contains(logged.String(), `waiting_for="calls inside the provider to return"`) {
		t.Errorf("the log does not say what the removal waits for:\n%s", logged.String())
	}
	if done(closed, 50*time.Millisecond) {
		t.Fatal("Close returned while a removal is stuck")
	}
	release()
	if !done(closed, 5*time.Second) {
		t.Fatal("Close did not return once the call returned")
	}
	n := strings.Count(logged.String(), "device=stuck")
	time.Sleep(100 * time.Millisecond)
	if strings.Count(logged.String(), "device=stuck") != n {
		t.Error("still logging after the removal ended")
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
