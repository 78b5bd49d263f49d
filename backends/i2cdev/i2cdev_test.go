package i2cdev

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"unsafe"

	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/physic"
)

// fakeAdapter simulates an adapter behind i2c-dev with 256-byte EEPROMs
// with 8-bit word addresses at some addresses, decoding the ioctl arguments
// as the kernel does. It counts the ioctls and fails if two overlap.
type fakeAdapter struct {
	funcs uint64
	chips map[uint16]*[256]byte
	busy  map[uint16]bool // I2C_SLAVE answers EBUSY: a driver owns it
	fail  error           // when set, every transfer fails with it

	mu      sync.Mutex // guards the fields below, not the ioctl sequence
	ptr     map[uint16]byte
	slave   int
	calls   map[uintptr]int
	closed  bool
	inside  atomic.Int32
	overlap atomic.Bool
}

func newFake(funcs uint64, addrs ...uint16) *fakeAdapter {
	f := &fakeAdapter{funcs: funcs, chips: map[uint16]*[256]byte{}, busy: map[uint16]bool{},
		ptr: map[uint16]byte{}, slave: -1, calls: map[uintptr]int{}}
	for _, a := range addrs {
		f.chips[a] = new([256]byte)
	}
	return f
}

func (f *fakeAdapter) enter(req uintptr) func() {
	if f.inside.Add(1) != 1 {
		f.overlap.Store(true)
	}
	f.mu.Lock()
	f.calls[req]++
	return func() {
		f.mu.Unlock()
		f.inside.Add(-1)
	}
}

func (f *fakeAdapter) count(req uintptr) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[req]
}

func (f *fakeAdapter) ioctlInt(req, arg uintptr) (int, error) {
	defer f.enter(req)()
	if req != ioctlSlave {
		return -1, syscall.ENOTTY
	}
	if arg > 0x7f {
		return -1, syscall.EINVAL
	}
	if f.busy[uint16(arg)] {
		return -1, syscall.EBUSY
	}
	f.slave = int(arg)
	return 0, nil
}

func (f *fakeAdapter) ioctlPtr(req uintptr, arg unsafe.Pointer) (int, error) {
	defer f.enter(req)()
	switch req {
	case ioctlFuncs:
		*(*uint)(arg) = uint(f.funcs)
		return 0, nil
	case ioctlRdwr:
		if f.funcs&FuncI2C == 0 {
			return -1, syscall.EOPNOTSUPP
		}
		a := (*rdwrIoctlData)(arg)
		if a.nmsgs > rdwrMaxMsgs {
			return -1, syscall.EINVAL
		}
		msgs := unsafe.Slice((*i2cMsg)(a.msgs), a.nmsgs)
		if f.fail != nil {
			return -1, f.fail
		}
		for _, m := range msgs {
			if m.len > MaxMsgLen {
				return -1, syscall.EINVAL
			}
			chip := f.chips[m.addr]
			if chip == nil {
				return -1, syscall.ENXIO // no ACK to the address
			}
			buf := unsafe.Slice((*byte)(m.buf), m.len)
			if m.flags&msgRead != 0 {
				for i := range buf {
					buf[i] = chip[f.ptr[m.addr]]
					f.ptr[m.addr]++
				}
				continue
			}
			if len(buf) > 0 {
				f.ptr[m.addr] = buf[0]
				for _, b := range buf[1:] {
					chip[f.ptr[m.addr]] = b
					f.ptr[m.addr]++
				}
			}
		}
		return len(msgs), nil
	case ioctlSMBus:
		a := (*smbusIoctlData)(arg)
		if f.slave < 0 {
			return -1, syscall.EINVAL
		}
		if f.fail != nil {
			return -1, f.fail
		}
		addr := uint16(f.slave)
		chip := f.chips[addr]
		if chip == nil {
			return -1, syscall.ENXIO
		}
		switch {
		case a.size == smbusQuick && f.funcs&FuncSMBusQuick != 0:
			return 0, nil
		case a.size == smbusByte && a.readWrite == smbusWrite && f.funcs&FuncSMBusWriteByte != 0:
			if a.data != nil {
				return -1, syscall.EINVAL // i2c-dev ignores it; the plan must not send one
			}
			f.ptr[addr] = a.command
			return 0, nil
		}
		if a.data == nil {
			return -1, syscall.EINVAL // "data is NULL pointer in ioctl I2C_SMBUS"
		}
		d := (*smbusData)(a.data)
		switch {
		case a.size == smbusByteData && a.readWrite == smbusRead && f.funcs&FuncSMBusReadByteData != 0:
			d[0] = chip[a.command]
		case a.size == smbusByteData && a.readWrite == smbusWrite && f.funcs&FuncSMBusWriteByteData != 0:
			chip[a.command] = d[0]
		case a.size == smbusI2CBlockData && a.readWrite == smbusRead && f.funcs&FuncSMBusReadI2CBlock != 0:
			n := int(d[0])
			if n < 1 || n > SMBusBlockMax {
				return -1, syscall.EINVAL
			}
			for i := 0; i < n; i++ {
				d[1+i] = chip[a.command+byte(i)]
			}
		case a.size == smbusI2CBlockData && a.readWrite == smbusWrite && f.funcs&FuncSMBusWriteI2CBlock != 0:
			n := int(d[0])
			if n < 1 || n > SMBusBlockMax {
				return -1, syscall.EINVAL
			}
			for i := 0; i < n; i++ {
				chip[a.command+byte(i)] = d[1+i]
			}
		default:
			return -1, syscall.EOPNOTSUPP
		}
		return 0, nil
	}
	return -1, syscall.ENOTTY
}

func (f *fakeAdapter) close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return syscall.EBADF
	}
	f.closed = true
	return nil
}

func fakeBus(f *fakeAdapter) *Bus {
	return newBus(adapter{nr: 4, path: "/dev/i2c-4", name: "fake adapter"}, f.funcs, f)
}

// eepromRoundTrip writes, reads back and probes as an EEPROM driver with
// 8-bit word addresses would, through the i2c.Bus interface.
func eepromRoundTrip(t *testing.T, bus i2c.Bus) {
	t.Helper()
	dev := &i2c.Dev{Bus: bus, Addr: 0x50}
	page := []byte{0x10, 'h', 'e', 'l', 'l', 'o', '!', '!', '!'}
	if err := dev.Tx(page, nil); err != nil {
		t.Fatalf("page write: %v", err)
	}
	if err := dev.Tx([]byte{0x20, 0x5a}, nil); err != nil {
		t.Fatalf("byte write: %v", err)
	}
	if err := dev.Tx([]byte{0x10}, nil); err != nil { // ACK polling
		t.Fatalf("write byte (poll): %v", err)
	}
	if err := dev.Tx(nil, nil); err != nil {
		t.Fatalf("probe: %v", err)
	}
	got := make([]byte, 8)
	if err := dev.Tx([]byte{0x10}, got); err != nil {
		t.Fatalf("read: %v", err)
	}
	if string(got) != "hello!!!" {
		t.Errorf("read back %q", got)
	}
	one := make([]byte, 1)
	if err := dev.Tx([]byte{0x20}, one); err != nil || one[0] != 0x5a {
		t.Errorf("read one: %v, % x", err, one)
	}
	full := make([]byte, 32)
	if err := dev.Tx([]byte{0x00}, full); err != nil || !bytes.Equal(full[0x10:0x18], []byte("hello!!!")) {
		t.Errorf("read 32: %v, % x", err, full)
	}
	if err := bus.Tx(0x51, nil, nil); !errors.Is(err, syscall.ENXIO) {
		t.Errorf("probe of an empty address: %v, want ENXIO", err)
	}
}

func TestTxPlainI2C(t *testing.T) {
	f := newFake(FuncI2C|FuncSMBusQuick|FuncSMBusByte|FuncSMBusByteData|FuncSMBusI2CBlock, 0x50)
	b := fakeBus(f)
	if b.SMBusOnly() {
		t.Fatal("SMBusOnly with I2C_FUNC_I2C")
	}
	eepromRoundTrip(t, b)
	if n := f.count(ioctlSMBus) + f.count(ioctlSlave); n != 0 {
		t.Errorf("%d SMBus/I2C_SLAVE ioctls on a plain I2C adapter", n)
	}
	if n := f.count(ioctlRdwr); n != 8 {
		t.Errorf("%d I2C_RDWR ioctls, want one a Tx (8)", n)
	}
	// A 16-bit word address read, and a long read: plain I2C only.
	if err := b.Tx(0x50, []byte{0x00, 0x10}, make([]byte, 300)); err != nil {
		t.Errorf("two-byte address, 300-byte read: %v", err)
	}
	if err := b.Tx(0x50, nil, make([]byte, MaxMsgLen+1)); !errors.Is(err, syscall.EINVAL) {
		t.Errorf("8193-byte read: %v, want EINVAL", err)
	}
	if err := b.Tx(0x150, []byte{0}, nil); !errors.Is(err, syscall.EINVAL) {
		t.Errorf("10-bit address: %v, want EINVAL", err)
	}
}

func TestTxSMBusOnly(t *testing.T) {
	f := newFake(funcsStub, 0x50, 0x52)
	b := fakeBus(f)
	if !b.SMBusOnly() {
		t.Fatal("not SMBusOnly without I2C_FUNC_I2C")
	}
	eepromRoundTrip(t, b)
	if n := f.count(ioctlRdwr); n != 0 {
		t.Errorf("%d I2C_RDWR ioctls on an SMBus-only adapter", n)
	}
	// Seven transfers to 0x50, one to 0x51: the address is set when it
	// changes, not for every transfer.
	if n := f.count(ioctlSlave); n != 2 {
		t.Errorf("%d I2C_SLAVE ioctls, want 2", n)
	}
	if err := b.Tx(0x52, []byte{0}, make([]byte, 2)); err != nil {
		t.Fatal(err)
	}
	if err := b.Tx(0x52, []byte{2}, make([]byte, 2)); err != nil {
		t.Fatal(err)
	}
	if n := f.count(ioctlSlave); n != 3 {
		t.Errorf("%d I2C_SLAVE ioctls, want 3", n)
	}

	refused := []struct {
		w    []byte
		rlen int
		want string
	}{
		{[]byte{0x00, 0x10}, 16, "16-bit word address needs a plain I2C adapter"},
		{[]byte{0x00}, 33, "at most 32 bytes"},
		{make([]byte, 34), 0, "at most 32 data bytes"},
		{nil, 1, "current-address read"},
	}
	for _, tc := range refused {
		err := b.Tx(0x50, tc.w, make([]byte, tc.rlen))
		if !errors.Is(err, errors.ErrUnsupported) || !errors.Is(err, syscall.EOPNOTSUPP) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Tx(% x, %d): %v, want EOPNOTSUPP with %q", tc.w, tc.rlen, err, tc.want)
		}
		if !strings.Contains(err.Error(), "i2c-4 (fake adapter): 0x50") {
			t.Errorf("error lacks the bus and address: %v", err)
		}
	}
}

func TestTxSMBusByteOnly(t *testing.T) {
	f := newFake(funcsByteOnly, 0x50)
	b := fakeBus(f)
	if err := b.Tx(0x50, []byte{0x07, 0xee}, nil); err != nil {
		t.Fatalf("write byte data: %v", err)
	}
	r := make([]byte, 1)
	if err := b.Tx(0x50, []byte{0x07}, r); err != nil || r[0] != 0xee {
		t.Fatalf("read byte data: %v, % x", err, r)
	}
	err := b.Tx(0x50, []byte{0x07, 1, 2}, nil)
	if !errors.Is(err, syscall.EOPNOTSUPP) || !strings.Contains(err.Error(), "I2C_FUNC_SMBUS_WRITE_I2C_BLOCK") {
		t.Errorf("two-byte write: %v", err)
	}
	err = b.Tx(0x50, []byte{0x07}, make([]byte, 2))
	if !errors.Is(err, syscall.EOPNOTSUPP) || !strings.Contains(err.Error(), "I2C_FUNC_SMBUS_READ_I2C_BLOCK") {
		t.Errorf("two-byte read: %v", err)
	}
}

func TestTxErrors(t *testing.T) {
	for _, mode := range []struct {
		name  string
		funcs uint64
	}{{"i2c", FuncI2C}, {"smbus", funcsStub}} {
		for _, errno := range []syscall.Errno{syscall.ENXIO, syscall.EREMOTEIO, syscall.ETIMEDOUT,
			syscall.ENODEV, syscall.ESHUTDOWN, syscall.EAGAIN} {
			t.Run(fmt.Sprintf("%s/%v", mode.name, errno), func(t *testing.T) {
				f := newFake(mode.funcs, 0x50)
				f.fail = errno
				b := fakeBus(f)
				err := b.Tx(0x50, []byte{0}, make([]byte, 4))
				if !errors.Is(err, errno) {
					t.Fatalf("err = %v, want %v", err, errno)
				}
				if !strings.Contains(err.Error(), "i2c-4 (fake adapter): 0x50: write 1, read 4 bytes") {
					t.Errorf("err = %q lacks context", err)
				}
			})
		}
	}

	f := newFake(funcsStub, 0x50)
	f.busy[0x50] = true
	b := fakeBus(f)
	err := b.Tx(0x50, []byte{0}, make([]byte, 4))
	if !errors.Is(err, syscall.EBUSY) || !strings.Contains(err.Error(), "kernel driver owns the address") {
		t.Errorf("busy address: %v", err)
	}
	t.Log(err)
	// A refused I2C_SLAVE leaves no address set: the next Tx sets it again.
	delete(f.busy, 0x50)
	if err := b.Tx(0x50, []byte{0}, make([]byte, 4)); err != nil {
		t.Errorf("after the driver let go: %v", err)
	}
}

func TestClose(t *testing.T) {
	for _, funcs := range []uint64{FuncI2C, funcsStub} {
		f := newFake(funcs, 0x50)
		b := fakeBus(f)
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		if err := b.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
		err := b.Tx(0x50, []byte{0}, make([]byte, 1))
		if !errors.Is(err, os.ErrClosed) || !errors.Is(err, syscall.ENODEV) {
			t.Errorf("Tx after Close: %v, want os.ErrClosed and ENODEV", err)
		}
	}
}

// TestConcurrentTx runs transfers from many goroutines; the fake fails if
// two ioctls overlap, and -race watches the rest.
func TestConcurrentTx(t *testing.T) {
	for _, funcs := range []uint64{FuncI2C, funcsStub} {
		f := newFake(funcs, 0x50, 0x51, 0x52, 0x53)
		b := fakeBus(f)
		var wg sync.WaitGroup
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				addr := uint16(0x50 + g%4)
				for i := 0; i < 50; i++ {
					w := []byte{byte(i), byte(g), byte(i)}
					if err := b.Tx(addr, w, nil); err != nil {
						t.Error(err)
						return
					}
					r := make([]byte, 2)
					if err := b.Tx(addr, []byte{byte(i)}, r); err != nil {
						t.Error(err)
						return
					}
				}
			}(g)
		}
		wg.Wait()
		if f.overlap.Load() {
			t.Errorf("funcs %#x: two ioctls ran at once", funcs)
		}
		b.Close()
	}
}

func TestBusInfo(t *testing.T) {
	b := fakeBus(newFake(funcsStub))
	if b.Number() != 4 || b.Name() != "fake adapter" || b.Funcs() != funcsStub {
		t.Errorf("Number %d Name %q Funcs %#x", b.Number(), b.Name(), b.Funcs())
	}
	if s := b.String(); s != "i2c-4 (fake adapter)" {
		t.Errorf("String() = %q", s)
	}
	nb := newBus(adapter{nr: -1, path: "/dev/eeprom-bus"}, FuncI2C, newFake(FuncI2C))
	if s := nb.String(); s != "/dev/eeprom-bus" {
		t.Errorf("String() = %q", s)
	}
	err := b.SetSpeed(400 * physic.KiloHertz)
	if !errors.Is(err, errors.ErrUnsupported) || !strings.Contains(err.Error(), "i2c-dev") {
		t.Errorf("SetSpeed: %v", err)
	}
}

func TestOpenErrors(t *testing.T) {
	tmp := t.TempDir()
	dev := filepath.Join(tmp, "dev")
	sys := filepath.Join(tmp, "sys")
	for _, p := range []string{dev, filepath.Join(sys, "bus/i2c/devices/i2c-2")} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(sys, "bus/i2c/devices/i2c-2/name"), []byte("CP2112 SMBus Bridge\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A regular file where the node should be: I2C_FUNCS fails.
	if err := os.WriteFile(filepath.Join(dev, "i2c-2"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	o := Options{SysfsRoot: sys, DevRoot: dev}

	_, err := Open("7", o)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "modprobe i2c-dev") ||
		!strings.Contains(err.Error(), filepath.Join(dev, "i2c-7")) {
		t.Errorf("missing node: %v", err)
	}
	t.Log(err)

	// The kernel says ENOTTY; qemu-user, which runs the arm and mips
	// builds here, refuses an ioctl it does not know with ENOSYS before
	// the kernel sees it.
	_, err = Open("CP2112 SMBus Bridge", o)
	if !(errors.Is(err, syscall.ENOTTY) || errors.Is(err, syscall.ENOSYS)) || !strings.Contains(err.Error(), "I2C_FUNCS") ||
		!strings.Contains(err.Error(), filepath.Join(dev, "i2c-2")) {
		t.Errorf("not an i2c-dev node: %v", err)
	}
	t.Log(err)

	_, err = Open("nothing like it", o)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), `i2c-2 "CP2112 SMBus Bridge"`) {
		t.Errorf("unknown name: %v", err)
	}
	t.Log(err)
}

// TestSmoke opens the machine's real adapters, if it has any and lets us:
// Open, I2C_FUNCS, Close. It sends nothing on the buses.
func TestSmoke(t *testing.T) {
	nodes, _ := filepath.Glob("/dev/i2c-*")
	if len(nodes) == 0 {
		t.Skip("no /dev/i2c-* on this machine (modprobe i2c-dev, or i2c-stub chip_addr=0x50 for a fake chip)")
	}
	opened := 0
	for _, n := range nodes {
		b, err := Open(n, Options{})
		if errors.Is(err, fs.ErrPermission) {
			t.Logf("%s: %v", n, err)
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", n, err)
			continue
		}
		opened++
		t.Logf("%s: %s, funcs %#08x, SMBus only %v", n, b, b.Funcs(), b.SMBusOnly())
		if b.Funcs() == 0 {
			t.Errorf("%s: no functionality at all", n)
		}
		if err := b.Close(); err != nil {
			t.Errorf("%s: close: %v", n, err)
		}
	}
	if opened == 0 {
		t.Skip("no /dev/i2c-* we may open")
	}
}
