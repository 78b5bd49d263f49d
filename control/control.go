// Package control lets nvmemfs commands reach a running server: attach,
// detach, list and unmount travel as one JSON request and one JSON response
// over a unix socket named after the resolved mountpoint, in a folder only
// the server's user may write to (/run/nvmemfs for root). Only root and the
// user who runs the server may use it (SO_PEERCRED, checked on both ends).
package control

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nvmemfs/nvmemfs/backends/spec"
	"github.com/nvmemfs/nvmemfs/nvcore"
)

// Request is what a command sends.
type Request struct {
	// Op is attach, detach, detach-hardware (every device on the hardware
	// named, as "i2c-3"), ls or unmount.
	Op string `json:"op"`
	// Args are SPECs for attach, names for detach, hardware names for
	// detach-hardware.
	Args []string `json:"args,omitempty"`
	// Dir is the caller's working folder: relative paths in SPECs are
	// taken from there.
	Dir string `json:"dir,omitempty"`
	// Async asks for an answer before the work is done: the udev hook must
	// return at once, and attaching an EEPROM with a layout can take
	// seconds of bus time. Failures are logged by the server.
	Async bool `json:"async,omitempty"`
	// IgnoreMissing makes detach of a device that is already gone no
	// error: a udev remove event often comes after the core removed the
	// device for its vanished hardware.
	IgnoreMissing bool `json:"ignore_missing,omitempty"`
	// UnlessOn marks an attach that udev asked for, on the hardware named
	// ("loop0"), for an event that need not mean new hardware (a change
	// event, udevadm trigger). Each SPEC is attached unless its device
	// (same name=, or same SPEC) is on that hardware and still there (a
	// device there whose hardware is gone, a medium swapped, is detached
	// first), or a detach by hand took it and the hardware stays as it
	// was: same Medium, no removal since (udev's own change event, after
	// a detach closed the device, must not undo the detach).
	UnlessOn string `json:"unless_on,omitempty"`
	// Medium names the medium the event found on UnlessOn's hardware (its
	// diskseq), "" if the kernel does not say.
	Medium string `json:"medium,omitempty"`
}

// Response is what the server answers. Errors lists one message for each
// argument that failed; the others succeeded.
type Response struct {
	Errors []string `json:"errors,omitempty"`
	// Warnings are about devices that were attached (their modes grant
	// access the mount cannot give, say).
	Warnings []string     `json:"warnings,omitempty"`
	Devices  []DeviceInfo `json:"devices,omitempty"`
}

// DeviceInfo describes a device for ls.
type DeviceInfo struct {
	Name string `json:"name"`
	Type string `json:"type"`
	Size int64  `json:"size"`
	Mode string `json:"mode"`
	// Owner and Group of the device's files, as attached (a chmod or chown
	// in the mount since is not shown): names where this machine knows
	// them, else the numbers; UID and GID are the numbers.
	Owner   string `json:"owner"`
	Group   string `json:"group"`
	UID     int    `json:"uid"`
	GID     int    `json:"gid"`
	ForceRO bool   `json:"force_ro"`
	// Cached: nvmem and the cells are served from the kernel's page cache
	// (the SPEC's cache, or a mount with --cache-all).
	Cached   bool   `json:"cached"`
	WordSize int    `json:"word_size"`
	Stride   int    `json:"stride"`
	Source   string `json:"source"`
	// Hardware names what the device sits on ("i2c-3"), when known.
	Hardware string `json:"hardware"`
	// EraseSize is a flash device's erase block, 0 for other memories:
	// editing a U-Boot environment there needs it to place the copies.
	EraseSize int64 `json:"erase_size,omitempty"`
	// Layout is the layout named in the SPEC; LayoutError says why it
	// found no cells, if it did not.
	Layout      string     `json:"layout"`
	LayoutError string     `json:"layout_error"`
	Cells       []CellInfo `json:"cells"`
}

// CellInfo describes a cell for ls.
type CellInfo struct {
	Name      string `json:"name"`
	Offset    int64  `json:"offset"`
	Bytes     int    `json:"bytes"`
	BitOffset int    `json:"bit_offset"`
	NBits     int    `json:"nbits"`
	// Layout is the layout that found the cell; empty for a declared cell.
	Layout string `json:"layout"`
	// Mode, Owner and Group of the cell's file, as for the device.
	Mode  string `json:"mode"`
	Owner string `json:"owner"`
	Group string `json:"group"`
}

// runtimeDirs are the folders where a server run by uid may keep its
// control sockets, the one it uses first: /run/nvmemfs for root, else the
// user's runtime folder (/run/user/UID, made by systemd-logind at login)
// or /tmp/nvmemfs-UID. Each is the user's own, mode 0700, so no other user
// can take a server's name before it binds it (an abstract socket name
// belongs to whoever binds it first).
func runtimeDirs(uid int) []string {
	if uid == 0 {
		return []string{runtimeBase + "/run/nvmemfs"}
	}
	var dirs []string
	userRun := fmt.Sprintf("%s/run/user/%d", runtimeBase, uid)
	if st, err := os.Stat(userRun); err == nil && st.IsDir() && ownerOf(st) == uid {
		dirs = append(dirs, userRun+"/nvmemfs")
	}
	return append(dirs, fmt.Sprintf("%s/tmp/nvmemfs-%d", runtimeBase, uid))
}

// runtimeBase prefixes the folders above; tests point it elsewhere.
var runtimeBase = ""

func ownerOf(st os.FileInfo) int {
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		return int(sys.Uid)
	}
	return -1
}

// ensureRuntimeDir makes dir, or checks that the one there is a folder of
// uid's that no one else may write to: a folder another user made first
// (in /tmp, say) is refused, not used.
func ensureRuntimeDir(dir string, uid int) error {
	// /run itself may be missing in a minimal initramfs.
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return fmt.Errorf("control socket folder: %w", err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("control socket folder: %w", err)
	}
	st, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("control socket folder: %w", err)
	}
	switch {
	case !st.IsDir():
		return fmt.Errorf("control socket folder %s is not a folder: remove it", dir)
	case ownerOf(st) != uid:
		return fmt.Errorf("control socket folder %s belongs to uid %d, not to this server's uid %d: refusing to use it; remove it", dir, ownerOf(st), uid)
	case st.Mode().Perm()&0o077 != 0:
		return fmt.Errorf("control socket folder %s has mode %04o: others may write there; refusing to use it (chmod 700 it, or remove it)", dir, st.Mode().Perm())
	}
	return nil
}

// socketBase names the socket and lock file of the server mounted at the
// resolved mountpoint, inside a runtime folder.
func socketBase(mountpoint string) string {
	sum := sha256.Sum256([]byte(mountpoint))
	return hex.EncodeToString(sum[:16])
}

// Server answers requests for one mount.
type Server struct {
	reg         *nvcore.Registry
	shutdown    func() error
	ln          *net.UnixListener
	lock        *os.File // flock'd while mounted: one server a mountpoint
	releaseOnce sync.Once
	uid         int
	wg          sync.WaitGroup
	closing     atomic.Bool // set by StopListening: no more attaches

	mu      sync.Mutex
	sources map[*nvcore.Device]*spec.Spec
	// detached holds, by hardware, then by what a SPEC attaches (keyOf),
	// the devices an explicit detach took away, with the medium then on
	// the hardware ("" if unknown): udev's attaches of those SPECs wait
	// for another medium, a removal, or an attach by hand.
	detached map[string]map[string]string

	async orderedJobs // asynchronous requests, in order by device and hardware

	// Warn, when set before Serve, is asked about each device an attach
	// request attached, with its SPEC; what it says is logged and sent
	// back as a warning.
	Warn func(*spec.Spec, *nvcore.Device) string
}

// NewServer makes a server for reg. shutdown removes every device and
// unmounts; it is called for the unmount request.
func NewServer(reg *nvcore.Registry, shutdown func() error) *Server {
	s := &Server{reg: reg, shutdown: shutdown, uid: os.Geteuid(), sources: map[*nvcore.Device]*spec.Spec{}, detached: map[string]map[string]string{}}
	s.async.cond = sync.NewCond(&s.async.mu)
	// A device may go without a detach (its hardware vanished): forget its
	// SPEC whichever way it goes.
	reg.Subscribe(func(ev nvcore.Event) {
		if ev.Kind == nvcore.DeviceRemove {
			s.mu.Lock()
			delete(s.sources, ev.Device)
			s.mu.Unlock()
		}
	})
	return s
}

// Attach parses and attaches one SPEC, remembering it for ls.
func (s *Server) Attach(text, dir string) (*nvcore.Device, error) {
	sp, err := spec.Parse(text, dir)
	if err != nil {
		return nil, err
	}
	return s.AttachSpec(sp)
}

// AttachSpec attaches a parsed SPEC, remembering it for ls.
func (s *Server) AttachSpec(sp *spec.Spec) (*nvcore.Device, error) {
	if s.closing.Load() {
		return nil, errors.New("the server is unmounting")
	}
	d, err := sp.Attach(s.reg)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.sources[d] = sp
	// Gone already (its hardware vanished at once): the removal event
	// came before the entry, so forget it here.
	if d.Gone() {
		delete(s.sources, d)
	}
	s.mu.Unlock()
	return d, nil
}

// Listen claims the control socket of the mount at mountpoint (resolved,
// see Resolve): it takes the mountpoint's lock, so that a second server
// for it fails here, before it mounts anything, and binds the socket.
// Requests wait in the socket's backlog until Serve.
func (s *Server) Listen(mountpoint string) error {
	dir := runtimeDirs(s.uid)[0]
	if err := ensureRuntimeDir(dir, s.uid); err != nil {
		return err
	}
	base := filepath.Join(dir, socketBase(mountpoint))
	// The lock, not the socket, says whether a server is alive: the kernel
	// lets go of it when its holder dies, even by SIGKILL, where a socket
	// file would stay behind.
	lock, err := os.OpenFile(base+".lock", os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("control socket lock: %w", err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		pid, _ := io.ReadAll(io.LimitReader(lock, 32))
		lock.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return fmt.Errorf("another nvmemfs server (pid %s) already serves %s", strings.TrimSpace(string(pid)), mountpoint)
		}
		return fmt.Errorf("control socket lock: %w", err)
	}
	lock.Truncate(0)
	fmt.Fprintf(lock, "%d\n", os.Getpid())
	// A socket left by a server that was killed: the lock says it is dead.
	if err := os.Remove(base + ".sock"); err != nil && !errors.Is(err, os.ErrNotExist) {
		lock.Close()
		return fmt.Errorf("stale control socket: %w", err)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: base + ".sock", Net: "unix"})
	if err != nil {
		lock.Close()
		return err
	}
	s.ln, s.lock = ln, lock
	return nil
}

// Serve starts answering requests on the socket Listen bound.
func (s *Server) Serve() {
	s.wg.Add(1)
	go s.accept()
}

// StopListening refuses new requests; those in progress go on. It may be
// called from a request (unmount does).
func (s *Server) StopListening() {
	s.closing.Store(true)
	if s.ln != nil {
		s.ln.Close()
	}
}

// ReleaseMountpoint lets go of the mountpoint's lock, so that a new server
// may mount there: call it once this server's mount has left the name
// space (a lazily detached mount may keep this process serving open
// descriptors for a long while).
func (s *Server) ReleaseMountpoint() {
	s.releaseOnce.Do(func() {
		if s.lock != nil {
			s.lock.Close()
		}
	})
}

// Close stops listening, waits for the requests in progress, and lets go
// of the mountpoint's lock.
func (s *Server) Close() {
	s.StopListening()
	s.wg.Wait()
	s.ReleaseMountpoint()
}

// accept serves connections until StopListening. An accept that fails for
// want of descriptors or memory (EMFILE, ENFILE, ENOBUFS) or an aborted
// connection must not end the loop: later requests would hang. It waits a
// little, longer each time (5 ms up to 1 s, as net/http does), and tries
// again.
func (s *Server) accept() {
	defer s.wg.Done()
	var delay time.Duration
	for {
		conn, err := s.ln.AcceptUnix()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || s.closing.Load() {
				return
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			slog.Warn("control: accept failed; retrying", "err", err, "in", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer conn.Close()
			s.serve(conn)
		}()
	}
}

// maxRequest bounds a request: a few hundred SPECs fit; a client that
// sends more is refused, not buffered.
const maxRequest = 1 << 20

func (s *Server) serve(conn *net.UnixConn) {
	// The request is read even from a peer that will be refused, so that
	// its write succeeds and it reads the reason, not EPIPE.
	var req Request
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	decodeErr := json.NewDecoder(io.LimitReader(conn, maxRequest)).Decode(&req)
	var resp Response
	switch err := s.allowed(conn); {
	case err != nil:
		resp.Errors = []string{err.Error()}
	case decodeErr != nil:
		resp.Errors = []string{fmt.Sprintf("bad request (at most %d bytes of JSON): %v", maxRequest, decodeErr)}
	default:
		resp = s.handle(req)
	}
	if err := json.NewEncoder(conn).Encode(resp); err != nil {
		slog.Warn("control: reply lost", "err", err)
	}
}

func (s *Server) allowed(conn *net.UnixConn) error {
	uid, err := peerUID(conn)
	if err != nil {
		return err
	}
	if uid != 0 && uid != s.uid {
		return fmt.Errorf("permission denied: only root and uid %d may control this mount", s.uid)
	}
	return nil
}

// peerUID is the user of the process at the other end of conn.
func peerUID(conn *net.UnixConn) (int, error) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if credErr != nil {
		return 0, credErr
	}
	return int(cred.Uid), nil
}

func (s *Server) handle(req Request) Response {
	if req.Async && (req.Op == "attach" || req.Op == "detach" || req.Op == "detach-hardware") {
		s.wg.Add(1)
		s.async.run(requestKeys(req), func() {
			defer s.wg.Done()
			now := req
			now.Async = false
			for _, msg := range s.handle(now).Errors {
				slog.Warn("control: "+req.Op+" failed", "err", msg)
			}
		})
		return Response{}
	}
	var resp Response
	fail := func(err error) { resp.Errors = append(resp.Errors, err.Error()) }
	switch req.Op {
	case "attach":
		var present map[string]bool
		if req.UnlessOn != "" {
			present = s.presentOn(req.UnlessOn)
		}
		for _, text := range req.Args {
			if hw := req.UnlessOn; hw != "" {
				key := specKey(text, req.Dir)
				if present[key] {
					slog.Info("control: udev's attach skipped: its device is there, on the same medium", "spec", text)
					continue
				}
				if medium, held := s.heldDetached(hw, key, req.Medium); held {
					slog.Info("control: udev's attach skipped: detached by hand, with the same medium since", "spec", text, "hardware", hw, "medium", medium)
					continue
				}
			}
			d, err := s.Attach(text, req.Dir)
			if err != nil {
				fail(fmt.Errorf("attach %s: %w", text, err))
				continue
			}
			s.mu.Lock()
			sp := s.sources[d]
			if sp != nil && req.UnlessOn == "" && s.detached[sp.Hardware] != nil {
				// Attached by hand: udev may follow it again.
				delete(s.detached[sp.Hardware], keyOf(sp))
			}
			s.mu.Unlock()
			if s.Warn != nil {
				if w := s.Warn(sp, d); sp != nil && w != "" {
					slog.Warn(w)
					resp.Warnings = append(resp.Warnings, w)
				}
			}
		}
	case "detach":
		for _, name := range req.Args {
			// A detach by hand (udev's own asks IgnoreMissing) is marked
			// before the removal closes the device: the close may bring
			// udev's change event at once (see Request.UnlessOn).
			var hw, key, prev string
			var had bool
			if !req.IgnoreMissing {
				hw, key, prev, had = s.holdDetached(name)
			}
			// Unregister, not Device then Remove: a device already being
			// removed is found, and the detach returns once it is closed.
			err := s.reg.Unregister(name)
			if err != nil && hw != "" {
				s.mu.Lock()
				if had {
					s.detached[hw][key] = prev
				} else {
					delete(s.detached[hw], key)
				}
				s.mu.Unlock()
			}
			if err != nil && !(req.IgnoreMissing && errors.Is(err, nvcore.ErrNoDevice)) {
				// err names the device already.
				fail(fmt.Errorf("detach %w", err))
			}
		}
	case "detach-hardware":
		for _, hw := range req.Args {
			s.mu.Lock()
			delete(s.detached, hw) // gone: what comes back is new
			s.mu.Unlock()
			for _, d := range s.onHardware(hw) {
				if err := s.reg.Remove(d); err != nil && !errors.Is(err, nvcore.ErrNoDevice) {
					fail(fmt.Errorf("detach %s (on %s): %w", d.Name(), hw, err))
				}
			}
		}
	case "ls":
		resp.Devices = s.List()
	case "unmount":
		if err := s.shutdown(); err != nil {
			fail(err)
		}
	default:
		fail(fmt.Errorf("unknown request %q", req.Op))
	}
	return resp
}

// keyOf names what a SPEC attaches, to tell whether that is there: its
// device's name where the SPEC gives one, else the SPEC as written.
func keyOf(sp *spec.Spec) string {
	if name := sp.DeviceName(); name != "" {
		return "name:" + name
	}
	return "spec:" + sp.Text
}

// specKey is keyOf of a SPEC's text; one that does not parse is its text
// (the attach then says what is wrong).
func specKey(text, dir string) string {
	sp, err := spec.Parse(text, dir)
	if err != nil {
		return "spec:" + text
	}
	return keyOf(sp)
}

// holdDetached marks the device called name, about to be detached by
// hand, so that udev's attaches on its hardware leave its SPEC alone while
// the medium stays (Request.UnlessOn). It returns what it marked, and the
// mark it replaced, for the caller to undo should the detach fail.
func (s *Server) holdDetached(name string) (hw, key, prev string, had bool) {
	d, err := s.reg.Device(name)
	if err != nil {
		return "", "", "", false
	}
	medium := d.MediumID()
	s.mu.Lock()
	defer s.mu.Unlock()
	sp := s.sources[d]
	if sp == nil || sp.Hardware == "" {
		return "", "", "", false
	}
	hw, key = sp.Hardware, keyOf(sp)
	if s.detached[hw] == nil {
		s.detached[hw] = map[string]string{}
	}
	prev, had = s.detached[hw][key]
	s.detached[hw][key] = medium
	return hw, key, prev, had
}

// heldDetached reports whether a detach by hand holds the SPEC keyed key
// on hw against an attach udev asks for with medium: one was made, and
// the medium is the same, or either is unknown.
func (s *Server) heldDetached(hw, key, medium string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, held := s.detached[hw][key]
	return m, held && (m == "" || medium == "" || m == medium)
}

// presentOn returns the keys (keyOf) of the devices on hw that are there,
// with their hardware still the one they opened; it detaches, and waits
// for, the ones whose hardware is gone.
func (s *Server) presentOn(hw string) map[string]bool {
	present := map[string]bool{}
	for _, d := range s.onHardware(hw) {
		if d.CheckHardware() {
			s.mu.Lock()
			if sp := s.sources[d]; sp != nil {
				present[keyOf(sp)] = true
			}
			s.mu.Unlock()
			continue
		}
		if err := s.reg.Remove(d); err != nil && !errors.Is(err, nvcore.ErrNoDevice) {
			slog.Warn("control: detach of a device whose hardware is gone", "device", d.Name(), "hardware", hw, "err", err)
		}
	}
	return present
}

// onHardware returns the devices attached on hw ("i2c-3").
func (s *Server) onHardware(hw string) []*nvcore.Device {
	s.mu.Lock()
	defer s.mu.Unlock()
	var list []*nvcore.Device
	for d, sp := range s.sources {
		if sp.Hardware == hw {
			list = append(list, d)
		}
	}
	return list
}

// List describes the registered devices, by name.
func (s *Server) List() []DeviceInfo {
	var out []DeviceInfo
	for _, d := range s.reg.Devices() {
		// The content may have changed since the layout last looked.
		if err := d.RefreshCells(); errors.Is(err, nvcore.ErrNoDevice) {
			continue
		}
		s.mu.Lock()
		sp := s.sources[d]
		s.mu.Unlock()
		info := DeviceInfo{
			Name: d.Name(), Type: d.Type().String(), Size: d.Size(),
			Mode: nvcore.FormatMode(d.Mode()), ForceRO: d.ForceRO(), Cached: d.Cached(),
			WordSize: d.WordSize(), Stride: d.Stride(),
		}
		info.UID, info.GID = d.Owner()
		if info.UID < 0 {
			info.UID = os.Getuid()
		}
		if info.GID < 0 {
			info.GID = os.Getgid()
		}
		info.Owner, info.Group = userName(info.UID), groupName(info.GID)
		if sp != nil {
			info.Source, info.Hardware = displaySource(sp), sp.Hardware
			info.EraseSize = sp.Env.EraseSize
		}
		if l := d.Layout(); l != nil {
			info.Layout = l.Name()
		}
		if err := d.LayoutError(); err != nil {
			info.LayoutError = err.Error()
		}
		info.Cells = []CellInfo{}
		for _, c := range d.Cells() {
			ci := c.Info()
			info.Cells = append(info.Cells, CellInfo{
				Name: ci.Name, Offset: ci.Offset, Bytes: ci.Bytes, BitOffset: ci.BitOffset, NBits: ci.NBits, Layout: ci.Layout,
				Mode: nvcore.FormatMode(c.Mode()), Owner: info.Owner, Group: info.Group,
			})
		}
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// userName is a user's name in this machine's user database, else the
// number.
func userName(uid int) string {
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return u.Username
	}
	return strconv.Itoa(uid)
}

// groupName is a group's name, else the number.
func groupName(gid int) string {
	if g, err := user.LookupGroupId(strconv.Itoa(gid)); err == nil {
		return g.Name
	}
	return strconv.Itoa(gid)
}

// callTimeout bounds a request: a detach waits for one provider chunk, an
// attach reads a layout over a slow bus, neither for minutes.
const callTimeout = 2 * time.Minute

// Call sends req to the server mounted at mountpoint and returns its answer.
func Call(mountpoint string, req Request) (*Response, error) {
	mnt, err := Resolve(mountpoint)
	if err != nil {
		return nil, err
	}
	sock, err := findSocket(mnt)
	if err != nil {
		return nil, err
	}
	conn, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		// A server killed by SIGKILL leaves its socket file: nobody listens.
		return nil, noServer(mnt, err)
	}
	defer conn.Close()
	// The socket's folder is its owner's alone; talk only to a server run
	// by root or by this user all the same.
	if uid, err := peerUID(conn); err != nil {
		return nil, err
	} else if uid != 0 && uid != os.Geteuid() {
		return nil, fmt.Errorf("the socket of %s belongs to uid %d, not to an nvmemfs server of root or of this user", mnt, uid)
	}
	// A stuck server must not hang the caller (the udev hook above all).
	conn.SetDeadline(time.Now().Add(callTimeout))
	// A server that refuses the caller may answer before it has read the
	// whole request: its answer says why, where the write's error would
	// only say EPIPE.
	writeErr := json.NewEncoder(conn).Encode(req)
	conn.CloseWrite()
	var resp Response
	if err := json.NewDecoder(io.LimitReader(conn, 64<<20)).Decode(&resp); err != nil {
		if writeErr != nil {
			err = writeErr
		}
		// A server that died between our connect and its answer (killed:
		// its socket goes when its descriptors do) may have left its
		// mount dead: say so, as for a socket nobody listens on.
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, unix.ECONNRESET) || errors.Is(err, unix.EPIPE) {
			if dead := noServer(mnt, err); errors.Is(dead, ErrDeadMount) {
				return nil, dead
			}
		}
		return nil, fmt.Errorf("server for %s: %w", mnt, err)
	}
	return &resp, nil
}

// ErrNoServer is returned by Call when no server's socket serves the
// mountpoint; ErrDeadMount (which wraps it) when an nvmemfs mount is there
// but its server is gone.
var (
	ErrNoServer  = errors.New("no nvmemfs server")
	ErrDeadMount = fmt.Errorf("%w: the mount is dead (its server was killed; every access says \"transport endpoint is not connected\")", ErrNoServer)
)

// findSocket returns the control socket of the server of the resolved
// mountpoint. Its folder depends on the server's user, which may be this
// user, root, or the user the mount names (user_id=).
func findSocket(mnt string) (string, error) {
	uids := []int{os.Geteuid(), 0}
	mounts, _ := MountsAt(mnt)
	if n := len(mounts); n > 0 && mounts[n-1].FSType == FSType && mounts[n-1].UserID >= 0 {
		uids = append(uids, mounts[n-1].UserID)
	}
	base := socketBase(mnt)
	var denied error
	for _, uid := range uids {
		for _, dir := range runtimeDirs(uid) {
			path := filepath.Join(dir, base+".sock")
			st, err := os.Lstat(path)
			if err == nil && st.Mode()&os.ModeSocket != 0 {
				return path, nil
			}
			if errors.Is(err, os.ErrPermission) && denied == nil {
				denied = fmt.Errorf("permission denied: only uid %d (and root) may use the control socket folder %s", uid, dir)
			}
		}
	}
	if denied != nil {
		return "", denied
	}
	return "", noServer(mnt, nil)
}

// noServer says why no server answers for mnt: its mount is dead, or there
// is none (cause, if known, is what failed).
func noServer(mnt string, cause error) error {
	if mounts, _ := MountsAt(mnt); len(mounts) > 0 && mounts[len(mounts)-1].FSType == FSType && deadMount(mnt) {
		return fmt.Errorf("%s: %w", mnt, ErrDeadMount)
	}
	if cause != nil {
		return fmt.Errorf("%w for %s (is it mounted? %v)", ErrNoServer, mnt, cause)
	}
	return fmt.Errorf("%w for %s (is it mounted?)", ErrNoServer, mnt)
}

// requestKeys names what a request acts on: "name:" and the device name for
// each device it attaches or detaches, "hw:" and the hardware for each
// piece of hardware (an I2C adapter). A SPEC that does not parse has no
// key: its attach fails at once anyway.
func requestKeys(req Request) []string {
	var keys []string
	if req.UnlessOn != "" {
		keys = append(keys, "hw:"+req.UnlessOn)
	}
	for _, arg := range req.Args {
		switch req.Op {
		case "attach":
			sp, err := spec.Parse(arg, req.Dir)
			if err != nil {
				continue
			}
			if name := sp.DeviceName(); name != "" {
				keys = append(keys, "name:"+name)
			}
			if sp.Hardware != "" {
				keys = append(keys, "hw:"+sp.Hardware)
			}
		case "detach":
			keys = append(keys, "name:"+arg)
		case "detach-hardware":
			keys = append(keys, "hw:"+arg)
		}
	}
	return keys
}

// orderedJobs runs jobs on goroutines of their own, each after every job
// that came before it and shares one of its keys: udev's remove and add
// of one device, sent asynchronously a moment apart, take effect in that
// order, while jobs on different devices never wait for each other.
type orderedJobs struct {
	mu      sync.Mutex
	cond    *sync.Cond
	pending []*orderedJob // unfinished, in order of arrival
}

type orderedJob struct{ keys []string }

func (q *orderedJobs) run(keys []string, fn func()) {
	j := &orderedJob{keys: keys}
	q.mu.Lock()
	q.pending = append(q.pending, j)
	q.mu.Unlock()
	go func() {
		q.mu.Lock()
		for q.waitsLocked(j) {
			q.cond.Wait()
		}
		q.mu.Unlock()
		defer func() {
			q.mu.Lock()
			q.pending = slices.DeleteFunc(q.pending, func(x *orderedJob) bool { return x == j })
			q.cond.Broadcast()
			q.mu.Unlock()
		}()
		fn()
	}()
}

// waitsLocked reports whether an earlier unfinished job shares a key with j.
func (q *orderedJobs) waitsLocked(j *orderedJob) bool {
	for _, earlier := range q.pending {
		if earlier == j {
			return false
		}
		for _, k := range earlier.keys {
			if slices.Contains(j.keys, k) {
				return true
			}
		}
	}
	return false
}

// displaySource is the SPEC a device came from as ls shows it: as typed,
// but with the image and cells file of a file device as absolute paths, so
// that a user sees which image is in use (a demo's images, say, are
// copies in a temporary folder). A SPEC's PATH holds no comma.
func displaySource(sp *spec.Spec) string {
	if sp.Kind != "file" {
		return sp.Text
	}
	parts := strings.Split(sp.Text, ",")
	parts[0] = "file:" + sp.Path
	for i, opt := range parts[1:] {
		if strings.HasPrefix(opt, "cells=") && sp.CellsFile != "" {
			parts[i+1] = "cells=" + sp.CellsFile
		}
	}
	return strings.Join(parts, ",")
}
