// Package control lets nvmemfs commands reach a running server: attach,
// detach, list and unmount travel as one JSON request and one JSON response
// over a unix socket in the abstract name space, named after the mountpoint.
// Only root and the user who runs the server may use it (SO_PEERCRED).
package control

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
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
}

// Response is what the server answers. Errors lists one message for each
// argument that failed; the others succeeded.
type Response struct {
	Errors  []string     `json:"errors,omitempty"`
	Devices []DeviceInfo `json:"devices,omitempty"`
}

// DeviceInfo describes a device for ls.
type DeviceInfo struct {
	Name     string `json:"name"`
	Type     string `json:"type"`
	Size     int64  `json:"size"`
	Mode     string `json:"mode"`
	ForceRO  bool   `json:"force_ro"`
	WordSize int    `json:"word_size"`
	Stride   int    `json:"stride"`
	Source   string `json:"source,omitempty"`
	// Hardware names what the device sits on ("i2c-3"), when known.
	Hardware string `json:"hardware,omitempty"`
	// Layout is the layout named in the SPEC; LayoutError says why it
	// found no cells, if it did not.
	Layout      string     `json:"layout,omitempty"`
	LayoutError string     `json:"layout_error,omitempty"`
	Cells       []CellInfo `json:"cells,omitempty"`
}

// CellInfo describes a cell for ls.
type CellInfo struct {
	Name      string `json:"name"`
	Offset    int64  `json:"offset"`
	Bytes     int    `json:"bytes"`
	BitOffset int    `json:"bit_offset,omitempty"`
	NBits     int    `json:"nbits,omitempty"`
	// Layout is the layout that found the cell; empty for a declared cell.
	Layout string `json:"layout,omitempty"`
}

// SocketName is the abstract socket name of the server mounted at
// mountpoint: a hash of its absolute, cleaned path.
func SocketName(mountpoint string) (string, error) {
	abs, err := filepath.Abs(mountpoint)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256([]byte(abs))
	return "@nvmemfs-" + hex.EncodeToString(sum[:16]), nil
}

// Server answers requests for one mount.
type Server struct {
	reg      *nvcore.Registry
	shutdown func() error
	ln       *net.UnixListener
	uid      int
	wg       sync.WaitGroup
	closing  atomic.Bool // set by StopListening: no more attaches

	mu      sync.Mutex
	sources map[*nvcore.Device]*spec.Spec
}

// NewServer makes a server for reg. shutdown removes every device and
// unmounts; it is called for the unmount request.
func NewServer(reg *nvcore.Registry, shutdown func() error) *Server {
	s := &Server{reg: reg, shutdown: shutdown, uid: os.Geteuid(), sources: map[*nvcore.Device]*spec.Spec{}}
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

// Listen starts answering on the mount's socket.
func (s *Server) Listen(mountpoint string) error {
	name, err := SocketName(mountpoint)
	if err != nil {
		return err
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: name, Net: "unix"})
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("another nvmemfs server already serves %s", mountpoint)
		}
		return err
	}
	s.ln = ln
	s.wg.Add(1)
	go s.accept()
	return nil
}

// StopListening refuses new requests; those in progress go on. It may be
// called from a request (unmount does).
func (s *Server) StopListening() {
	s.closing.Store(true)
	if s.ln != nil {
		s.ln.Close()
	}
}

// Close stops listening and waits for the requests in progress.
func (s *Server) Close() {
	s.StopListening()
	s.wg.Wait()
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		conn, err := s.ln.AcceptUnix()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer conn.Close()
			s.serve(conn)
		}()
	}
}

func (s *Server) serve(conn *net.UnixConn) {
	var resp Response
	if err := s.allowed(conn); err != nil {
		resp.Errors = []string{err.Error()}
	} else {
		var req Request
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		if err := json.NewDecoder(conn).Decode(&req); err != nil {
			resp.Errors = []string{"bad request: " + err.Error()}
		} else {
			resp = s.handle(req)
		}
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
	if req.Async && (req.Op == "attach" || req.Op == "detach") {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			now := req
			now.Async = false
			for _, msg := range s.handle(now).Errors {
				slog.Warn("control: "+req.Op+" failed", "err", msg)
			}
		}()
		return Response{}
	}
	var resp Response
	fail := func(err error) { resp.Errors = append(resp.Errors, err.Error()) }
	switch req.Op {
	case "attach":
		for _, text := range req.Args {
			if _, err := s.Attach(text, req.Dir); err != nil {
				fail(fmt.Errorf("attach %s: %w", text, err))
			}
		}
	case "detach":
		for _, name := range req.Args {
			d, err := s.reg.Device(name)
			if err == nil {
				err = s.reg.Remove(d)
			}
			if err != nil && !(req.IgnoreMissing && errors.Is(err, nvcore.ErrNoDevice)) {
				fail(fmt.Errorf("detach %s: %w", name, err))
			}
		}
	case "detach-hardware":
		for _, hw := range req.Args {
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
			Mode: fmt.Sprintf("%04o", d.Mode()), ForceRO: d.ForceRO(),
			WordSize: d.WordSize(), Stride: d.Stride(),
		}
		if sp != nil {
			info.Source, info.Hardware = sp.Text, sp.Hardware
		}
		if l := d.Layout(); l != nil {
			info.Layout = l.Name()
		}
		if err := d.LayoutError(); err != nil {
			info.LayoutError = err.Error()
		}
		for _, c := range d.Cells() {
			ci := c.Info()
			info.Cells = append(info.Cells, CellInfo{ci.Name, ci.Offset, ci.Bytes, ci.BitOffset, ci.NBits, ci.Layout})
		}
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// callTimeout bounds a request: a detach waits for one provider chunk, an
// attach reads a layout over a slow bus, neither for minutes.
const callTimeout = 2 * time.Minute

// Call sends req to the server mounted at mountpoint and returns its answer.
func Call(mountpoint string, req Request) (*Response, error) {
	name, err := SocketName(mountpoint)
	if err != nil {
		return nil, err
	}
	conn, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: name, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("no nvmemfs server for %s (is it mounted? %v)", mountpoint, err)
	}
	defer conn.Close()
	// Abstract socket names belong to whoever binds them first: talk only
	// to a server run by root or by this user.
	if uid, err := peerUID(conn); err != nil {
		return nil, err
	} else if uid != 0 && uid != os.Geteuid() {
		return nil, fmt.Errorf("the socket of %s belongs to uid %d, not to an nvmemfs server of root or of this user", mountpoint, uid)
	}
	// A stuck server must not hang the caller (the udev hook above all).
	conn.SetDeadline(time.Now().Add(callTimeout))
	if err := json.NewEncoder(conn).Encode(req); err != nil {
		return nil, err
	}
	var resp Response
	if err := json.NewDecoder(conn).Decode(&resp); err != nil {
		return nil, fmt.Errorf("server for %s: %w", mountpoint, err)
	}
	return &resp, nil
}
