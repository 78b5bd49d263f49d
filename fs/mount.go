// Package fs presents an nvcore registry as a FUSE file system laid out like
// /sys/bus/nvmem/devices: <mnt>/<dev>/nvmem, type, force_ro and cells/.
package fs

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"os"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/nvmemfs/nvmemfs/nvcore"
)

// Options tune the mount.
type Options struct {
	// AllowOther lets other users in; the kernel enforces the file modes
	// (default_permissions is always on).
	AllowOther bool
	// Debug logs every FUSE request.
	Debug bool
	// OnPanic, if set, is told of a panic in a FUSE handler (which then
	// fails with EIO). Tests use it to fail on any panic.
	OnPanic func(any)
	// CacheAll serves every file from the kernel's page cache, with no
	// OPEN, FLUSH or RELEASE round trip (fs/cache.go): every device is
	// cached (nvcore.Registry.CacheAll), and the checks sysfs makes at
	// open are made on each read and write that reaches us.
	CacheAll bool
	// Flush keeps, outside CacheAll, the FLUSH round trip of every close(2)
	// (no FOPEN_NOFLUSH), which answers nothing but 0: what nvmemfs did
	// before; the benchmark harness measures the difference.
	Flush bool
}

// FS is a mounted nvmemfs tree.
type FS struct {
	reg    *nvcore.Registry
	dir    string
	root   *rootDir
	server *fuse.Server
	born   time.Time
	// cacheAll, flush: Options.CacheAll, Options.Flush.
	cacheAll, flush bool

	// Tree changes that notify the kernel are posted to a queue of their
	// device's: a notify must never run inside a FUSE handler, nor under a
	// lock a handler may wait for (DESIGN rule 5), and the registry's event
	// callbacks run under its event lock, sometimes inside a handler. So
	// they post, and never wait. Each device's queue runs in order on a
	// goroutine of its own while it has work: a notify that waits for the
	// kernel (NotifyContent waits for pages a slow provider is filling)
	// holds up that device only, never another's removal.
	postMu      sync.Mutex
	queues      map[*nvcore.Device]*notifyQueue
	stopped     bool           // unmounted: post runs fn on a goroutine of its own
	draining    sync.WaitGroup // the queues' goroutines
	served      chan struct{}  // closed when the kernel has let go of the mount
	unsubscribe func()
}

// notifyQueue is one device's notifications, in the order they were posted.
type notifyQueue struct {
	fns     []queued
	current *queued // the one running, nil between two
	running bool    // a goroutine is draining the queue
}

// queued is a notification, and what to close once it has run (or nil).
type queued struct {
	fn   func()
	done chan struct{}
	// only, if set, is the one inode whose pages fn drops: a write to
	// another file of the device may wait behind it (postFirst).
	only *gofs.Inode
	// self is the file whose write posted fn and may wait for it.
	self *gofs.Inode
}

// derefQueued is the notification running, as a list of none or one.
func derefQueued(e *queued) []queued {
	if e == nil {
		return nil
	}
	return []queued{*e}
}

// entryTimeout lets the kernel cache names and attributes briefly; removal
// invalidates them explicitly with NotifyDelete, and lookups that fail are
// never cached (NegativeTimeout 0), so a device that comes back is found
// at once.
const entryTimeout = time.Second

// Mount mounts the registry's devices at dir and follows the registry as
// devices come and go. It returns once the kernel serves the mount.
func Mount(dir string, reg *nvcore.Registry, o Options) (*FS, error) {
	// Check the folder first: a failed mount(2) falls back to fusermount,
	// whose exit status would hide the reason.
	if fi, err := os.Stat(dir); err != nil {
		if pe, ok := err.(*os.PathError); ok {
			err = pe.Err
		}
		return nil, fmt.Errorf("mount %s: %w", dir, err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("mount %s: not a directory", dir)
	}
	// Not root: fusermount3 mounts, and its reasons would be lost.
	if os.Geteuid() != 0 {
		if err := checkFuseDevice(fuseDevice); err != nil {
			return nil, fmt.Errorf("mount %s: %w", dir, err)
		}
	}
	if o.CacheAll {
		if err := reg.CacheAll(); err != nil {
			return nil, fmt.Errorf("mount %s: %w", dir, err)
		}
	}
	f := &FS{
		reg:      reg,
		dir:      dir,
		born:     time.Now(),
		cacheAll: o.CacheAll,
		flush:    o.Flush,
		queues:   map[*nvcore.Device]*notifyQueue{},
		served:   make(chan struct{}),
	}
	f.root = &rootDir{dirNode{born: f.born}}

	timeout, negative := entryTimeout, time.Duration(0)
	opts := &gofs.Options{
		EntryTimeout:    &timeout,
		AttrTimeout:     &timeout,
		NegativeTimeout: &negative,
		// Every node states its mode; chmod 0 means 0, as on sysfs.
		NullPermissions: true,
		UID:             uint32(os.Getuid()),
		GID:             uint32(os.Getgid()),
		MountOptions: fuse.MountOptions{
			AllowOther: o.AllowOther,
			FsName:     "nvmemfs",
			Name:       "nvmemfs",
			Options:    []string{"default_permissions"},
			// As root, mount(2) itself: its errno is the reason a user needs,
			// which a fallback to fusermount would hide.
			DirectMountStrict: os.Geteuid() == 0,
			Debug:             o.Debug,
			MaxWrite:          128 << 10,
			// Extended attributes stay on: the nodes keep them as kernfs
			// does (meta.go). A write to a cached device then costs the
			// kernel's GETXATTR of security.capability too.
			// Every reply comes from memory: splice would only cost a pipe
			// pair per READ and keep the pipes open.
			DisableSplice: true,
		},
	}
	if o.OnPanic != nil {
		opts.PanicHandler = func(v any) fuse.Status {
			o.OnPanic(v)
			return fuse.EIO
		}
	}
	if !o.Debug {
		opts.Logger = log.New(slogWriter{}, "", 0)
	}
	server, err := serve(dir, f.root, opts)
	if err != nil {
		f.stopNotifier()
		return nil, fmt.Errorf("mount %s: %w", dir, fusermountError(err))
	}
	f.server = server
	go func() {
		server.Wait()
		close(f.served)
	}()
	// Subscribe before listing, so no device slips between the two; adding
	// is idempotent.
	f.unsubscribe = reg.Subscribe(f.onEvent)
	for _, d := range reg.Devices() {
		f.addDevice(d)
	}
	return f, nil
}

// Wait returns when the file system is unmounted, by Unmount or from
// outside, and the kernel has let go of it: after a lazy unmount, once the
// last descriptor under it is closed.
func (f *FS) Wait() { <-f.served }

// Unmount stops following the registry and unmounts. A mount still in use
// is detached lazily: it leaves the name space at once, and the kernel
// drops it when the last descriptor closes (those get ENODEV meanwhile, if
// the devices were removed first).
func (f *FS) Unmount() error {
	f.unsubscribe()
	select {
	case <-f.served: // unmounted from outside already
		f.stopNotifier()
		return nil
	default:
	}
	err := f.server.Unmount()
	if err != nil {
		mnt := f.dir
		if lazyErr := syscall.Unmount(mnt, syscall.MNT_DETACH); lazyErr != nil {
			f.stopNotifier()
			return fmt.Errorf("unmount %s: %v (lazy: %v)", mnt, err, lazyErr)
		}
		slog.Warn("mount busy: detached lazily", "mountpoint", mnt)
	}
	f.stopNotifier()
	return nil
}

// stopNotifier refuses new work to the queues and waits for the work
// already posted.
func (f *FS) stopNotifier() {
	f.postMu.Lock()
	f.stopped = true
	f.postMu.Unlock()
	f.draining.Wait()
}

// post queues fn behind the earlier notifications of device d without ever
// blocking: it may be called inside a FUSE handler, where waiting (for a
// notify, which may wait for the kernel, which may wait for that handler)
// would hang. Once the mount is gone, fn runs on a goroutine of its own.
func (f *FS) post(d *nvcore.Device, fn func()) { f.postQueued(d, queued{fn: fn}) }

// queueBusy reports whether d's notification queue has work queued or
// running (tests use it to order a step after a notification).
func (f *FS) queueBusy(d *nvcore.Device) bool {
	f.postMu.Lock()
	defer f.postMu.Unlock()
	q := f.queues[d]
	return q != nil && (q.current != nil || len(q.fns) > 0)
}

// postOnly is post for a notification that drops the pages of one inode
// and touches nothing else.
func (f *FS) postOnly(d *nvcore.Device, in *gofs.Inode, fn func()) {
	f.postQueued(d, queued{fn: fn, only: in})
}

// postFirst is post, and returns a channel closed once fn has run, and
// whether a write through self may wait for it: nothing is queued or
// running before it but drops of single inodes other than self, none of
// which can wait for the pages that write holds.
func (f *FS) postFirst(d *nvcore.Device, self *gofs.Inode, fn func()) (done <-chan struct{}, first bool) {
	ch := make(chan struct{})
	return ch, f.postQueued(d, queued{fn: fn, done: ch, self: self})
}

func (f *FS) postQueued(d *nvcore.Device, e queued) (first bool) {
	f.postMu.Lock()
	defer f.postMu.Unlock()
	if f.stopped {
		go func() {
			e.fn()
			if e.done != nil {
				close(e.done)
			}
		}()
		return false
	}
	q := f.queues[d]
	if q == nil {
		q = &notifyQueue{}
		f.queues[d] = q
	}
	first = e.done != nil
	for _, ahead := range append(q.fns, derefQueued(q.current)...) {
		if ahead.only == nil || ahead.only == e.self {
			first = false
		}
	}
	q.fns = append(q.fns, e)
	if !q.running {
		q.running = true
		f.draining.Add(1)
		go f.drain(d, q)
	}
	return first
}

// drain runs d's queue until it is empty, then forgets it.
func (f *FS) drain(d *nvcore.Device, q *notifyQueue) {
	defer f.draining.Done()
	for {
		f.postMu.Lock()
		// Closed under the lock, with current cleared: whoever the
		// notification released finds it over when it posts again.
		if q.current != nil && q.current.done != nil {
			close(q.current.done)
		}
		q.current = nil
		if len(q.fns) == 0 {
			q.running = false
			delete(f.queues, d)
			f.postMu.Unlock()
			return
		}
		e := q.fns[0]
		q.fns[0] = queued{}
		q.fns = q.fns[1:]
		q.current = &e
		f.postMu.Unlock()
		e.fn()
	}
}

// onEvent runs on the goroutine that registered or removed the device.
// Adding touches only go-fuse's tree, so it runs here. Removal must notify
// the kernel, so it runs on the device's notification queue, and Remove waits for it
// (Event.Await): when Unregister returns, the device is out of the tree and out of the
// kernel's caches.
func (f *FS) onEvent(ev nvcore.Event) {
	switch ev.Kind {
	case nvcore.DeviceAdd:
		f.addDevice(ev.Device)
	case nvcore.CellRemove:
		if !ev.Device.Gone() {
			f.cellLeft(ev.Device, ev.Cell)
		}
	case nvcore.DeviceRemove:
		// Waiting here, under the registry's event lock, could hang: a
		// handler of cells/ may hold the kernel's directory lock the
		// notify needs while it waits for the event lock. Remove waits
		// once it has let go of the lock.
		done := make(chan struct{})
		f.post(ev.Device, func() {
			defer close(done)
			f.removeDevice(ev.Device)
		})
		ev.Await(func() { <-done })
	}
}

func (f *FS) addDevice(d *nvcore.Device) {
	ctx := context.Background()
	if f.deviceInode(d) != nil {
		return
	}
	own := deviceOwner(d) // of every file and folder of the device
	dir := &deviceDir{dirNode: dirNode{meta: meta{own: own}, born: f.born}, dev: d}
	dirIn := f.root.NewPersistentInode(ctx, dir, gofs.StableAttr{Mode: syscall.S_IFDIR})
	df := &devFiles{fs: f, dev: d, dir: dirIn}
	dir.files = df
	add := func(parent *gofs.Inode, name string, node gofs.InodeEmbedder) {
		parent.AddChild(name, parent.NewPersistentInode(ctx, node, gofs.StableAttr{Mode: syscall.S_IFREG}), false)
	}
	add(dirIn, "nvmem", &nvmemFile{meta: meta{own: own}, dev: d, files: df, born: f.born})
	add(dirIn, "type", &attrFile{meta: meta{own: own}, dev: d, files: df, mode: 0o444, show: showType, born: f.born})
	if d.CanWrite() {
		add(dirIn, "force_ro", &attrFile{meta: meta{own: own}, dev: d, files: df, mode: 0o644, show: showForceRO, store: storeForceRO, born: f.born})
	}
	// cells/ is there for every device that has or may get cells; the
	// device directory hides it while it is empty.
	if d.Layout() != nil || len(d.Cells()) > 0 {
		cellsIn := dirIn.NewPersistentInode(ctx, newCellsDir(d, f.born, df), gofs.StableAttr{Mode: syscall.S_IFDIR})
		dirIn.AddChild("cells", cellsIn, false)
	}
	// The registry publishes a name's add only once the removal of its
	// previous holder is over, tree included: a name still taken here is a
	// broken rule, which would leave a registered device unreachable.
	if !f.root.AddChild(d.Name(), dirIn, false) {
		slog.Error("device directory not added: the name is still taken in the tree", "device", d.Name())
	}
}

// removeDevice takes the device's directory out of the tree, then tells the
// kernel to drop its cached entry. Runs on the device's queue only.
func (f *FS) removeDevice(d *nvcore.Device) {
	child := f.deviceInode(d)
	if child == nil {
		return
	}
	// Pages of a cached device, and the sizes of every file, would go on
	// answering reads after the device is gone.
	f.revokeFiles(child.Operations().(*deviceDir).files)
	// The kernel would keep the inodes of nvmem, type and the cell files
	// cached (and go-fuse their nodes, and through them the device and its
	// provider) until memory ran short: tell it each one is deleted, and
	// let go-fuse drop the nodes once the kernel forgets them.
	dropSubtree(child)
	dropChild(f.root.EmbeddedInode(), d.Name(), child)
}

// dropSubtree deletes dir's children, deepest first, from the kernel's
// caches and go-fuse's tree.
func dropSubtree(dir *gofs.Inode) {
	for name, child := range dir.Children() {
		dropSubtree(child)
		dropChild(dir, name, child)
	}
}

// dropChild deletes one name of a going device: first from the kernel's
// cache, then from go-fuse's tree, which a listing reads. In this order a
// name that a listing no longer shows never still answers stat from the
// kernel's cache (the other order let it for up to the entry timeout).
// Lookups in between are refused (rootDir and deviceDir refuse a going
// device), so nothing caches the name again; NotifyDelete itself waits
// for the lookups already in the kernel. ENOENT from it means the kernel
// had no entry cached; before the mount is served, or after it is gone,
// it fails harmlessly.
func dropChild(parent *gofs.Inode, name string, child *gofs.Inode) {
	parent.NotifyDelete(name, child)
	parent.RmChild(name)
	child.ForgetPersistent()
}

// deviceInode returns the root's child for d, or nil if the name is absent
// or belongs to another device.
func (f *FS) deviceInode(d *nvcore.Device) *gofs.Inode {
	child := f.root.GetChild(d.Name())
	if child == nil {
		return nil
	}
	if dir, ok := child.Operations().(*deviceDir); ok && dir.dev == d {
		return child
	}
	return nil
}

// slogWriter sends go-fuse's log lines to slog.
type slogWriter struct{}

func (slogWriter) Write(p []byte) (int, error) {
	slog.Warn("go-fuse: " + string(p))
	return len(p), nil
}
