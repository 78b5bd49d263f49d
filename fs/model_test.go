package fs

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
	"time"

	"github.com/nvmemfs/nvmemfs/control"
	"github.com/nvmemfs/nvmemfs/nvcore"
	"github.com/nvmemfs/nvmemfs/nvcore/nvcoretest"
)

// The model-based test of a device's lifecycle: random sequences of
// attach, detach, re-attach of a name still being removed, hardware that
// vanishes, detach in the middle of a slow read, writes, and listings,
// with readers on every device all along and the unmount at the end. An
// oracle holds what must be: after every step the mount's listing, the
// registry, what `nvmemfs ls` answers (control.Server.List), every
// device's bytes and its cells/ agree with it.
//
//	NVMEMFS_MODEL_STEPS=N    steps (default 400; 100 under an emulator)
//	NVMEMFS_MODEL_SEED=S     replay a run (its seed is logged)
//
// CI runs 3000 steps under -race besides; a longer run:
// NVMEMFS_MODEL_STEPS=50000 go test -race -timeout 60m -run TestLifecycleModel ./fs

// modelDevice is what the oracle knows of one device.
type modelDevice struct {
	data  []byte
	cells []nvcore.CellInfo
	mem   *nvcoretest.Memory
}

func (d *modelDevice) cellFiles() []string {
	var names []string
	for _, c := range d.cells {
		names = append(names, c.FileName())
	}
	sort.Strings(names)
	return names
}

type lifecycleModel struct {
	t     *testing.T
	rng   *rand.Rand
	m     *mounted
	ctl   *control.Server
	devs  map[string]*modelDevice
	names []string
}

func envInt(name string, def uint64) uint64 {
	if v, err := strconv.ParseUint(os.Getenv(name), 10, 64); err == nil {
		return v
	}
	return def
}

func TestLifecycleModel(t *testing.T) {
	defaultSteps := uint64(400)
	if os.Getenv("NVMEMFS_EMULATED") != "" {
		defaultSteps = 100
	}
	steps := envInt("NVMEMFS_MODEL_STEPS", defaultSteps)
	seed := envInt("NVMEMFS_MODEL_SEED", uint64(time.Now().UnixNano()))
	t.Logf("seed %d, %d steps (NVMEMFS_MODEL_SEED=%d replays this run)", seed, steps, seed)

	// Readers run on every name from the start to after the unmount: their
	// cleanup is registered first, so it runs last.
	stop := make(chan struct{})
	var readers sync.WaitGroup
	var unexpected atomic.Value
	t.Cleanup(func() {
		close(stop)
		readers.Wait()
		if v := unexpected.Load(); v != nil {
			t.Errorf("a concurrent reader saw %v", v)
		}
	})

	mdl := &lifecycleModel{
		t:     t,
		rng:   rand.New(rand.NewPCG(seed, 0x6e766d656d)),
		m:     mountTest(t),
		devs:  map[string]*modelDevice{},
		names: []string{"a", "b", "c", "eeprom0"},
	}
	mdl.ctl = control.NewServer(mdl.m.reg, func() error { return nil })

	for _, name := range mdl.names {
		readers.Add(1)
		go func() {
			defer readers.Done()
			buf := make([]byte, 4096)
			for {
				select {
				case <-stop:
					return
				default:
				}
				f, err := os.Open(mdl.m.path(name, "nvmem"))
				if err == nil {
					_, err = f.Read(buf)
					f.Close()
				}
				// Present, absent, or going: nothing else.
				if e := errnoOf(err); err != nil && e != syscall.ENOENT && e != syscall.ENODEV {
					unexpected.CompareAndSwap(nil, fmt.Errorf("%s: %w", name, err))
				}
			}
		}()
	}

	actions := []struct {
		name   string
		weight int
		run    func(string)
	}{
		{"attach", 5, mdl.attach},
		{"detach", 3, mdl.detach},
		{"reattach", 3, mdl.reattach},
		{"hardware-gone", 2, mdl.hardwareGone},
		{"detach-mid-read", 2, mdl.detachMidRead},
		{"write", 3, mdl.write},
	}
	total := 0
	for _, a := range actions {
		total += a.weight
	}
	counts := map[string]int{}
	for step := range int(steps) {
		k := mdl.rng.IntN(total)
		for _, a := range actions {
			if k -= a.weight; k < 0 {
				name := mdl.names[mdl.rng.IntN(len(mdl.names))]
				a.run(name)
				counts[a.name]++
				if t.Failed() {
					t.Fatalf("step %d (%s %s) broke the model; seed %d", step, a.name, name, seed)
				}
				break
			}
		}
		mdl.check(step)
		if t.Failed() {
			t.Fatalf("after step %d the views disagree; seed %d", step, seed)
		}
	}
	t.Logf("steps by action: %v", counts)
}

// newDevice draws a device: a size, content, and up to three cells.
func (mdl *lifecycleModel) newDevice() *modelDevice {
	size := []int{64, 256, 1024}[mdl.rng.IntN(3)]
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(mdl.rng.Uint32())
	}
	d := &modelDevice{data: data}
	for i := range mdl.rng.IntN(4) {
		n := 1 + mdl.rng.IntN(8)
		d.cells = append(d.cells, nvcore.CellInfo{Name: fmt.Sprintf("cell%d", i), Offset: int64(mdl.rng.IntN(size - n)), Bytes: n})
	}
	d.mem = nvcoretest.NewMemory(slices.Clone(data))
	return d
}

func (mdl *lifecycleModel) register(name string, d *modelDevice) error {
	_, err := mdl.m.reg.Register(nvcore.Config{Name: name, Cells: d.cells}, d.mem)
	return err
}

func (mdl *lifecycleModel) attach(name string) {
	d := mdl.newDevice()
	err := mdl.register(name, d)
	if _, present := mdl.devs[name]; present {
		if !errors.Is(err, nvcore.ErrExist) {
			mdl.t.Errorf("attach %s over a live one: %v, want ErrExist", name, err)
		}
		return
	}
	if err != nil {
		mdl.t.Errorf("attach %s: %v", name, err)
		return
	}
	mdl.devs[name] = d
}

func (mdl *lifecycleModel) detach(name string) {
	err := mdl.m.reg.Unregister(name)
	d, present := mdl.devs[name]
	if !present {
		if !errors.Is(err, nvcore.ErrNoDevice) {
			mdl.t.Errorf("detach of absent %s: %v, want ErrNoDevice", name, err)
		}
		return
	}
	if err != nil {
		mdl.t.Errorf("detach %s: %v", name, err)
	}
	if !d.mem.Closed() {
		mdl.t.Errorf("detach %s returned before the provider was closed", name)
	}
	delete(mdl.devs, name)
}

// reattach removes a device and, while the removal runs, attaches a new
// one of the same name (udev's unbind and rebind): the attach waits for
// the removal and succeeds.
func (mdl *lifecycleModel) reattach(name string) {
	old, present := mdl.devs[name]
	if !present {
		mdl.attach(name)
		return
	}
	removed := make(chan error, 1)
	go func() { removed <- mdl.m.reg.Unregister(name) }()
	time.Sleep(time.Duration(mdl.rng.IntN(200)) * time.Microsecond)
	d := mdl.newDevice()
	err := mdl.register(name, d)
	if rmErr := <-removed; rmErr != nil {
		mdl.t.Errorf("re-attach %s: the detach: %v", name, rmErr)
	}
	if errors.Is(err, nvcore.ErrExist) {
		// The attach came before the removal began: a live name is
		// refused. Attach again, now that the removal is over.
		err = mdl.register(name, d)
	}
	if err != nil {
		mdl.t.Errorf("re-attach %s: %v", name, err)
		delete(mdl.devs, name)
		return
	}
	if !old.mem.Closed() {
		mdl.t.Errorf("re-attach %s: the new device came before the old provider was closed", name)
	}
	mdl.devs[name] = d
}

// hardwareGone makes the provider fail as unplugged hardware does; a read
// through the mount fails, and the device removes itself.
func (mdl *lifecycleModel) hardwareGone(name string) {
	d, present := mdl.devs[name]
	if !present {
		return
	}
	d.mem.SetHook(func(string, int64, int) error { return syscall.ENODEV })
	_, err := os.ReadFile(mdl.m.path(name, "nvmem"))
	// A read served from the page cache does not ask the hardware: drop
	// the pages and read again. FADV_DONTNEED skips pages in use (a
	// reader's page in flight), so it may take a few tries. (The device
	// may be going already: then there is nothing to drop.)
	for try := 0; mode.cached && err == nil && try < 100; try++ {
		if fd, err := syscall.Open(mdl.m.path(name, "nvmem"), syscall.O_RDONLY|syscall.O_CLOEXEC, 0); err == nil {
			unix.Fadvise(fd, 0, 0, unix.FADV_DONTNEED)
			syscall.Close(fd)
		}
		_, err = os.ReadFile(mdl.m.path(name, "nvmem"))
	}
	if e := errnoOf(err); e != syscall.ENODEV && e != syscall.ENOENT {
		mdl.t.Errorf("read of %s as its hardware goes: %v, want ENODEV", name, err)
	}
	delete(mdl.devs, name)
	// The removal runs on a goroutine of its own: wait for what is checked.
	deadline := time.Now().Add(5 * time.Second)
	for !d.mem.Closed() || slices.Contains(mdl.registered(), name) || slices.Contains(mdl.listed(), name) {
		if time.Now().After(deadline) {
			mdl.t.Errorf("%s not removed after its hardware went", name)
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// detachMidRead detaches a device while a slow read of it runs: the read
// returns all the bytes or ENODEV, never a hang or other bytes.
func (mdl *lifecycleModel) detachMidRead(name string) {
	d, present := mdl.devs[name]
	if !present {
		return
	}
	d.mem.SetDelay(200 * time.Microsecond)
	type result struct {
		data []byte
		err  error
	}
	done := make(chan result, 1)
	go func() {
		b, err := os.ReadFile(mdl.m.path(name, "nvmem"))
		done <- result{b, err}
	}()
	time.Sleep(time.Duration(mdl.rng.IntN(3000)) * time.Microsecond)
	mdl.detach(name)
	select {
	case r := <-done:
		if r.err == nil && !bytes.Equal(r.data, d.data) {
			mdl.t.Errorf("a read of %s across its detach returned other bytes", name)
		}
		if e := errnoOf(r.err); r.err != nil && e != syscall.ENODEV && e != syscall.ENOENT {
			mdl.t.Errorf("a read of %s across its detach: %v, want its bytes or ENODEV", name, r.err)
		}
	case <-time.After(10 * time.Second):
		mdl.t.Errorf("a read of %s hangs after its detach", name)
	}
}

func (mdl *lifecycleModel) write(name string) {
	d, present := mdl.devs[name]
	if !present {
		return
	}
	off := mdl.rng.IntN(len(d.data))
	p := make([]byte, 1+mdl.rng.IntN(min(32, len(d.data)-off)))
	for i := range p {
		p[i] = byte(mdl.rng.Uint32())
	}
	f, err := os.OpenFile(mdl.m.path(name, "nvmem"), os.O_WRONLY, 0)
	if err != nil {
		mdl.t.Errorf("open %s for writing: %v", name, err)
		return
	}
	defer f.Close()
	if _, err := f.WriteAt(p, int64(off)); err != nil {
		mdl.t.Errorf("write %s at %d: %v", name, off, err)
		return
	}
	copy(d.data[off:], p)
}

func (mdl *lifecycleModel) expected() []string {
	names := make([]string, 0, len(mdl.devs))
	for name := range mdl.devs {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

func (mdl *lifecycleModel) listed() []string {
	entries, err := os.ReadDir(mdl.m.dir)
	if err != nil {
		mdl.t.Fatalf("list the mount: %v", err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func (mdl *lifecycleModel) registered() []string {
	var names []string
	for _, d := range mdl.m.reg.Devices() {
		names = append(names, d.Name())
	}
	return names
}

// check compares every view with the oracle.
func (mdl *lifecycleModel) check(step int) {
	t := mdl.t
	want := mdl.expected()
	if got := mdl.listed(); !slices.Equal(got, want) {
		t.Errorf("step %d: the mount lists %q, want %q", step, got, want)
	}
	if got := mdl.registered(); !slices.Equal(got, want) {
		t.Errorf("step %d: the registry holds %q, want %q", step, got, want)
	}
	var ls []string
	for _, info := range mdl.ctl.List() {
		ls = append(ls, info.Name)
		if d := mdl.devs[info.Name]; d != nil && (info.Size != int64(len(d.data)) || len(info.Cells) != len(d.cells)) {
			t.Errorf("step %d: ls says %s has %d bytes and %d cells, want %d and %d", step, info.Name, info.Size, len(info.Cells), len(d.data), len(d.cells))
		}
	}
	if !slices.Equal(ls, want) {
		t.Errorf("step %d: ls lists %q, want %q", step, ls, want)
	}
	for _, name := range want {
		d := mdl.devs[name]
		got, err := os.ReadFile(mdl.m.path(name, "nvmem"))
		if err != nil || !bytes.Equal(got, d.data) {
			t.Errorf("step %d: %s/nvmem: %v, or other bytes than the device holds", step, name, err)
		}
		cells, err := os.ReadDir(mdl.m.path(name, "cells"))
		var files []string
		for _, c := range cells {
			files = append(files, c.Name())
		}
		switch {
		case len(d.cells) == 0 && !os.IsNotExist(err):
			t.Errorf("step %d: %s has no cells, but cells/ lists %q (%v)", step, name, files, err)
		case len(d.cells) > 0 && !slices.Equal(files, d.cellFiles()):
			t.Errorf("step %d: %s/cells lists %q (%v), want %q", step, name, files, err, d.cellFiles())
		}
		for _, c := range d.cells {
			b, err := os.ReadFile(mdl.m.path(name, "cells", c.FileName()))
			if err != nil || !bytes.Equal(b, d.data[c.Offset:c.Offset+int64(c.Bytes)]) {
				t.Errorf("step %d: %s/cells/%s: %v, %x, want %x", step, name, c.FileName(), err, b, d.data[c.Offset:c.Offset+int64(c.Bytes)])
			}
		}
	}
}
