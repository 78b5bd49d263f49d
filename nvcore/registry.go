package nvcore

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// EventKind names what happened, after the kernel's nvmem notifier events.
type EventKind int

// The events, in the order a device produces them: NVMEM_ADD, then one
// CELL_ADD per cell; on removal one CELL_REMOVE per cell, then NVMEM_REMOVE.
const (
	DeviceAdd EventKind = iota
	DeviceRemove
	CellAdd
	CellRemove
)

func (k EventKind) String() string {
	switch k {
	case DeviceAdd:
		return "NVMEM_ADD"
	case DeviceRemove:
		return "NVMEM_REMOVE"
	case CellAdd:
		return "NVMEM_CELL_ADD"
	case CellRemove:
		return "NVMEM_CELL_REMOVE"
	}
	return "EventKind(" + strconv.Itoa(int(k)) + ")"
}

// Event tells a subscriber that a device or cell came or went. Cell is nil
// for device events.
type Event struct {
	Kind   EventKind
	Device *Device
	Cell   *Cell

	awaits *[]func() // where Await puts its waits; nil when nobody waits
}

// Await asks the goroutine that publishes the event to call wait before
// Register or Remove returns, once it has let go of the event lock. A
// subscriber that hands work to another goroutine uses it to make the
// caller wait for that work without waiting under the lock. Events of
// RefreshCells have no one to wait: wait is not called for them.
func (e Event) Await(wait func()) {
	if e.awaits != nil {
		*e.awaits = append(*e.awaits, wait)
	}
}

// Registry holds the registered devices by name.
//
// Lock order: eventMu, then mu. Subscribers run with eventMu held (so they
// see events in order) and mu free, so a subscriber may look devices up but
// must not register or unregister.
type Registry struct {
	mu      sync.Mutex
	devices map[string]*Device
	closed  bool

	eventMu sync.Mutex
	subs    []*subscription

	cacheAll atomic.Bool // every device is cached (CacheAll)
}

type subscription struct{ fn func(Event) }

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{devices: make(map[string]*Device)}
}

// CacheAll makes every device registered from now on a cached one
// (Config.Cache), whatever its configuration says, and refuses, with the
// reason, one that cannot be (a word size or stride above 1, a writable
// device with keepouts). A file system whose every file the kernel keeps
// in its page cache asks for it: there, no device can opt out. It fails,
// and changes nothing, while a device attached without cache is in the
// registry; the check and the change are one step under the registry's
// lock, and Register checks again as it publishes, so no uncached device
// slips in between.
func (r *Registry) CacheAll() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for name, d := range r.devices {
		if !d.Cached() {
			return fmt.Errorf("%w: every device is cached, and %s was attached without cache", ErrInvalid, name)
		}
	}
	r.cacheAll.Store(true)
	return nil
}

// Register validates cfg against p, makes a device of them and publishes it.
// On error the provider is left open: the caller still owns it.
func (r *Registry) Register(cfg Config, p Provider) (*Device, error) {
	if p == nil {
		return nil, fmt.Errorf("%w: no provider", ErrInvalid)
	}
	size, err := providerSize(p)
	if err != nil {
		return nil, err
	}
	forced := r.cacheAll.Load() && !cfg.Cache
	if forced {
		cfg.Cache = true
	}
	if err := cfg.validate(size); err != nil {
		if forced {
			err = fmt.Errorf("%w (every device of this mount is cached)", err)
		}
		return nil, err
	}
	_, canRead := p.(interface {
		ReadAt([]byte, int64) (int, error)
	})
	_, canWrite := p.(interface {
		WriteAt([]byte, int64) (int, error)
	})
	if !canRead && !canWrite {
		return nil, fmt.Errorf("%w: provider can neither read nor write", ErrInvalid)
	}
	if err := checkCacheKeepouts(cfg, canWrite); err != nil {
		if forced {
			err = fmt.Errorf("%w (every device of this mount is cached)", err)
		}
		return nil, err
	}
	if err := checkAccess(cfg, canRead, canWrite); err != nil {
		return nil, err
	}

	if cfg.Name != "" {
		if _, err := r.Device(cfg.Name); err == nil {
			return nil, fmt.Errorf("%w: %q", ErrExist, cfg.Name)
		}
	}
	// The memory is write-protected from the start (SPEC 3).
	if cfg.WriteProtect != nil {
		if err := cfg.WriteProtect.Protect(); err != nil {
			return nil, fmt.Errorf("%w: cannot assert the write-protect line: %v", ErrIO, err)
		}
	}
	// The layout parses before the device is published, with no lock held:
	// it reads the provider, which may be slow. The name is checked again
	// below, under the lock.
	d := newDevice(cfg.Name, cfg, p, size)
	d.initLayout()

	// A name still held by a device being removed is free once that
	// removal is over: wait for it (with no lock held), so that a quick
	// detach and attach of one name (udev's unbind and rebind) attaches,
	// and the old device's files are gone before the new ones appear.
	for {
		r.eventMu.Lock()
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			r.eventMu.Unlock()
			return nil, fmt.Errorf("%w: the registry is closed", ErrNoDevice)
		}
		if d.name == "" {
			d.name = r.freeNameLocked()
			break
		}
		old, taken := r.devices[d.name]
		if !taken {
			break
		}
		r.mu.Unlock()
		r.eventMu.Unlock()
		if !old.Gone() {
			return nil, fmt.Errorf("%w: %q", ErrExist, d.name)
		}
		<-old.removed
	}
	if r.cacheAll.Load() && !d.Cached() {
		// CacheAll came after the check at the top.
		r.mu.Unlock()
		r.eventMu.Unlock()
		return nil, fmt.Errorf("%w: every device is cached from now on, and this one was made without cache while that began: attach it again", ErrInvalid)
	}
	defer r.eventMu.Unlock()
	// Only a published device belongs to the registry: hardware that
	// vanishes while the layout parses removes nothing half-made (the
	// next call on the device finds it gone again).
	d.reg = r
	r.devices[d.name] = d
	r.mu.Unlock()

	r.publishLocked(Event{Kind: DeviceAdd, Device: d})
	for _, c := range d.Cells() {
		r.publishLocked(Event{Kind: CellAdd, Device: d, Cell: c})
	}
	if gn, ok := p.(GoneNotifier); ok {
		// Inside a read section: a detach may already be under way.
		d.call(func() error {
			gn.NotifyGone(func() { d.hardwareGone(fmt.Errorf("%w: the provider reports its hardware gone", ErrNoDevice)) })
			return nil
		})
	}
	return d, nil
}

// freeNameLocked returns nvmem<N> with the lowest N not in use.
func (r *Registry) freeNameLocked() string {
	for n := 0; ; n++ {
		name := "nvmem" + strconv.Itoa(n)
		if _, taken := r.devices[name]; !taken {
			return name
		}
	}
}

// Unregister removes the named device: it marks the device gone (new calls
// fail with ErrNoDevice at once), waits for the calls already inside the
// provider to return, closes the provider, frees the name, and publishes the
// removal. When it returns, the provider will never be called again. It never
// waits for anyone to let go of the *Device.
//
// It must not be called from inside a provider callback, nor from a FUSE
// handler (subscribers may notify the kernel, which can wait on a handler).
func (r *Registry) Unregister(name string) error {
	r.mu.Lock()
	d, ok := r.devices[name]
	r.mu.Unlock()
	if !ok {
		return fmt.Errorf("%s: %w", name, ErrNoDevice)
	}
	return r.Remove(d)
}

// Remove is Unregister for a device already in hand. Whoever removes a
// device second (a detach racing another, or the removal its vanished
// hardware started) gets ErrNoDevice, but only once the first removal is
// over: the provider is closed whenever Remove returns.
//
// The device keeps its name in the registry until the end, so that a
// Register of the name waits for the whole removal (see Register).
func (r *Registry) Remove(d *Device) error {
	if d.reg != r {
		return fmt.Errorf("%w: %s belongs to another registry", ErrInvalid, d.name)
	}
	if !d.gone.CompareAndSwap(false, true) {
		<-d.removed
		return d.errGone()
	}
	defer close(d.removed)
	var stage atomic.Int32
	defer watchRemoval(d, &stage)()
	d.srcu.Synchronize()
	stage.Store(stageClose)
	closeErr := closeProvider(d.provider)
	if c, ok := d.wp.(io.Closer); ok {
		closeErr = errors.Join(closeErr, c.Close())
	}

	stage.Store(stageSubscribers)
	var awaits []func()
	r.eventMu.Lock()
	for _, c := range slices.Backward(d.Cells()) {
		r.publishLocked(Event{Kind: CellRemove, Device: d, Cell: c, awaits: &awaits})
	}
	r.publishLocked(Event{Kind: DeviceRemove, Device: d, awaits: &awaits})
	r.eventMu.Unlock()
	for _, wait := range awaits {
		wait()
	}
	r.mu.Lock()
	if r.devices[d.name] == d {
		delete(r.devices, d.name)
	}
	r.mu.Unlock()
	if closeErr != nil {
		return fmt.Errorf("%s: removed, but closing the provider failed: %w", d.name, closeErr)
	}
	return nil
}

// Close refuses every later Register, then removes every device: nothing
// attached while a server shuts down is left open.
func (r *Registry) Close() error {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	return r.RemoveAll()
}

// RemoveAll removes every device, all at once, and joins their errors. It
// also waits for the removals already under way.
func (r *Registry) RemoveAll() error {
	r.mu.Lock()
	all := make([]*Device, 0, len(r.devices))
	for _, d := range r.devices {
		all = append(all, d)
	}
	r.mu.Unlock()
	// At once, not one after another: a device whose provider hangs must
	// not keep the others open.
	errs := make([]error, len(all))
	var wg sync.WaitGroup
	for i, d := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.Remove(d); err != nil && !errors.Is(err, ErrNoDevice) {
				errs[i] = err
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// What a removal may wait for, in order.
const (
	stageDrain int32 = iota
	stageClose
	stageSubscribers
)

var stageNames = [...]string{
	stageDrain:       "calls inside the provider to return",
	stageClose:       "the provider's Close",
	stageSubscribers: "the file system to drop the device",
}

// RemovalWarnAfter is how long a removal may take before it is logged, with
// the device and what it waits for; it is logged again every
// RemovalWarnEvery until it ends. A provider stuck in a call keeps its
// removal waiting for ever: the log says which one.
var (
	RemovalWarnAfter = 2 * time.Second
	RemovalWarnEvery = 30 * time.Second
)

// watchRemoval logs d's removal while it lasts too long; the returned
// function ends the watch. The timer's function logs under mu, so once
// stop has returned no line comes: a timer that fired just before stop
// either logged before it or finds stopped set.
func watchRemoval(d *Device, stage *atomic.Int32) (stop func()) {
	start := time.Now()
	var mu sync.Mutex
	stopped := false
	var t *time.Timer
	mu.Lock() // t is read by the timer's function
	defer mu.Unlock()
	t = time.AfterFunc(RemovalWarnAfter, func() {
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			return
		}
		slog.Warn("removal is slow", "device", d.name, "waiting_for", stageNames[stage.Load()],
			"since", time.Since(start).Round(time.Millisecond))
		t.Reset(RemovalWarnEvery)
	})
	return func() {
		mu.Lock()
		stopped = true
		t.Stop()
		mu.Unlock()
	}
}

// Device finds a registered device by name.
func (r *Registry) Device(name string) (*Device, error) {
	r.mu.Lock()
	d, ok := r.devices[name]
	r.mu.Unlock()
	if !ok || d.Gone() {
		return nil, fmt.Errorf("%s: %w", name, ErrNoDevice)
	}
	return d, nil
}

// Cell finds a cell by "device/cell", the form consumers use to name one.
func (r *Registry) Cell(path string) (*Cell, error) {
	dev, cell, ok := strings.Cut(path, "/")
	if !ok {
		return nil, fmt.Errorf("%w: cell %q: want DEVICE/CELL", ErrInvalid, path)
	}
	d, err := r.Device(dev)
	if err != nil {
		return nil, err
	}
	if err := d.RefreshCells(); err != nil {
		return nil, err
	}
	return d.Cell(cell)
}

// Devices lists the registered devices that are not being removed, by name.
func (r *Registry) Devices() []*Device {
	r.mu.Lock()
	list := make([]*Device, 0, len(r.devices))
	for _, d := range r.devices {
		if !d.Gone() {
			list = append(list, d)
		}
	}
	r.mu.Unlock()
	slices.SortFunc(list, func(a, b *Device) int { return strings.Compare(a.name, b.name) })
	return list
}

// Subscribe calls fn for every event from now on, in order, until cancel is
// called. fn runs on the goroutine that registers, removes or re-parses,
// with no registry lock but the event lock held: it may call Device,
// Devices, and a device's Cells and Cell, and must return promptly. It must
// not call Registry.Cell or Device.RefreshCells, which publish events
// themselves and would wait for the lock fn runs under.
func (r *Registry) Subscribe(fn func(Event)) (cancel func()) {
	s := &subscription{fn: fn}
	r.eventMu.Lock()
	r.subs = append(r.subs, s)
	r.eventMu.Unlock()
	return func() {
		r.eventMu.Lock()
		r.subs = slices.DeleteFunc(r.subs, func(x *subscription) bool { return x == s })
		r.eventMu.Unlock()
	}
}

func (r *Registry) publishLocked(ev Event) {
	for _, s := range r.subs {
		s.fn(ev)
	}
}

// providerSize asks p its size, turning a panic into an error: Size is
// called at registration, outside any read section's recover.
func providerSize(p Provider) (size int64, err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("%w: provider Size: %v", ErrProviderPanic, v)
			slog.Error("provider panic in Size", "panic", v, "stack", string(debug.Stack()))
		}
	}()
	return p.Size(), nil
}

// closeProvider closes p, turning a panic into an error: a provider that
// panics while closing must not take the server with it.
func closeProvider(p Provider) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("%w: provider Close: %v", ErrProviderPanic, v)
			slog.Error("provider panic in Close", "panic", v, "stack", string(debug.Stack()))
		}
	}()
	return p.Close()
}
