package nvcore_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"

	"github.com/nvmemfs/nvmemfs/nvcore"
	"github.com/nvmemfs/nvmemfs/nvcore/nvcoretest"
)

// pattern is n bytes that differ from their neighbours and from their offset,
// so a misplaced read or write shows.
func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) ^ seed
	}
	return b
}

// face selects which faces of a Memory the registered provider shows.
type face int

const (
	readWrite face = iota
	readOnly       // nvcoretest.ReadOnly: no WriteAt
	writeOnly      // nvcoretest.WriteOnly: no ReadAt
)

func (f face) String() string { return [...]string{"read-write", "read-only", "write-only"}[f] }

func provider(m *nvcoretest.Memory, f face) nvcore.Provider {
	switch f {
	case readOnly:
		return nvcoretest.ReadOnly(m)
	case writeOnly:
		return nvcoretest.WriteOnly(m)
	}
	return m
}

// register registers mem under cfg in a fresh registry and removes it when
// the test ends.
func register(t testing.TB, cfg nvcore.Config, p nvcore.Provider) (*nvcore.Registry, *nvcore.Device) {
	t.Helper()
	reg := nvcore.NewRegistry()
	d, err := reg.Register(cfg, p)
	if err != nil {
		t.Fatalf("register %+v: %v", cfg, err)
	}
	t.Cleanup(func() {
		if err := reg.Remove(d); err != nil && !errors.Is(err, nvcore.ErrNoDevice) {
			t.Errorf("remove %s: %v", d.Name(), err)
		}
	})
	return reg, d
}

// newDevice registers a Memory holding data, shown with face f.
func newDevice(t testing.TB, cfg nvcore.Config, f face, data []byte) (*nvcore.Device, *nvcoretest.Memory) {
	t.Helper()
	mem := nvcoretest.NewMemory(data)
	_, d := register(t, cfg, provider(mem, f))
	return d, mem
}

// errIs reports whether err matches want; want nil means no error.
func errIs(err, want error) bool {
	if want == nil {
		return err == nil
	}
	return errors.Is(err, want)
}

// timeout bounds every wait for something that must happen.
const timeout = 5 * time.Second

// finishes runs fn on its own goroutine and fails the test if it has not
// returned within d.
func finishes(t *testing.T, d time.Duration, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); fn() }()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s did not return within %v", what, d)
	}
}

var (
	ws4 = nvcore.Config{WordSize: 4, Stride: 4}
	ws2 = nvcore.Config{WordSize: 2, Stride: 4}
)

// TestSysfsRead walks every row of the read column of SPEC section 3.
func TestSysfsRead(t *testing.T) {
	tests := []struct {
		name    string
		cfg     nvcore.Config
		size    int
		face    face
		off     int64
		count   int
		wantN   int
		wantErr error
	}{
		// step 1: count 0 -> 0, before anything else is looked at
		{"count 0", nvcore.Config{}, 16, readWrite, 3, 0, 0, nil},
		{"count 0 misaligned", ws4, 16, readWrite, 2, 0, 0, nil},
		{"count 0 past end", ws4, 16, readWrite, 40, 0, 0, nil},
		{"count 0 write-only", nvcore.Config{}, 16, writeOnly, 0, 0, 0, nil},
		// step 2: pos >= size -> 0 (EOF), before the alignment checks
		{"at end", nvcore.Config{}, 16, readWrite, 16, 4, 0, nil},
		{"past end", nvcore.Config{}, 16, readWrite, 100, 4, 0, nil},
		{"at end ws4", ws4, 16, readWrite, 16, 4, 0, nil},
		{"past end misaligned ws4", ws4, 16, readWrite, 18, 3, 0, nil},
		{"at end write-only", nvcore.Config{}, 16, writeOnly, 16, 4, 0, nil},
		// step 3: count cut to the end
		{"whole", nvcore.Config{}, 16, readWrite, 0, 16, 16, nil},
		{"middle", nvcore.Config{}, 16, readWrite, 5, 7, 7, nil},
		{"crossing end", nvcore.Config{}, 16, readWrite, 10, 10, 6, nil},
		{"crossing end ws4", ws4, 16, readWrite, 12, 8, 4, nil},
		{"last byte", nvcore.Config{}, 16, readWrite, 15, 100, 1, nil},
		// step 4: pos off the stride -> EINVAL
		{"misaligned ws4", ws4, 16, readWrite, 2, 4, 0, nvcore.ErrInvalid},
		{"misaligned ws4 by 1", ws4, 16, readWrite, 1, 8, 0, nvcore.ErrInvalid},
		{"misaligned ws2 stride 4", ws2, 16, readWrite, 2, 4, 0, nvcore.ErrInvalid},
		{"misaligned before count check", ws4, 16, readWrite, 2, 1, 0, nvcore.ErrInvalid},
		// step 5: count under the word size -> EINVAL, after the cut of step 3
		{"count 3 ws4", ws4, 16, readWrite, 0, 3, 0, nvcore.ErrInvalid},
		{"count 1 ws2", ws2, 16, readWrite, 4, 1, 0, nvcore.ErrInvalid},
		{"cut under word size", ws4, 18, readWrite, 16, 8, 0, nvcore.ErrInvalid},
		// step 6: count rounded down to the word size
		{"count 6 ws4", ws4, 16, readWrite, 0, 6, 4, nil},
		{"count 7 ws4", ws4, 16, readWrite, 4, 7, 4, nil},
		{"count 3 ws2", ws2, 16, readWrite, 4, 3, 2, nil},
		{"crossing end ws4 rounded", ws4, 18, readWrite, 8, 20, 8, nil},
		// step 7: provider cannot read -> EPERM
		{"write-only", nvcore.Config{}, 16, writeOnly, 0, 4, 0, nvcore.ErrReadOnly},
		{"write-only misaligned", ws4, 16, writeOnly, 2, 4, 0, nvcore.ErrInvalid},
		// a read-only device reads
		{"read-only provider", nvcore.Config{}, 16, readOnly, 4, 4, 4, nil},
		{"read-only config", nvcore.Config{ReadOnly: true}, 16, readWrite, 4, 4, 4, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := pattern(tt.size, 0x5a)
			d, mem := newDevice(t, tt.cfg, tt.face, data)
			p := bytes.Repeat([]byte{0xee}, tt.count)
			n, err := d.SysfsRead(p, tt.off)
			if n != tt.wantN || !errIs(err, tt.wantErr) {
				t.Fatalf("SysfsRead(%d bytes at %d) = %d, %v; want %d, %v", tt.count, tt.off, n, err, tt.wantN, tt.wantErr)
			}
			if err != nil {
				if mem.Reads() != 0 {
					t.Errorf("a failed read called the provider %d times", mem.Reads())
				}
				return
			}
			if tt.wantN > 0 && !bytes.Equal(p[:n], data[tt.off:tt.off+int64(n)]) {
				t.Errorf("read % x, want % x", p[:n], data[tt.off:tt.off+int64(n)])
			}
			if rest := p[n:]; !bytes.Equal(rest, bytes.Repeat([]byte{0xee}, len(rest))) {
				t.Errorf("bytes past the %d read were changed: % x", n, rest)
			}
			if tt.wantN == 0 && mem.Reads() != 0 {
				t.Errorf("an empty read called the provider %d times", mem.Reads())
			}
		})
	}
}

// TestSysfsWrite walks every row of the write column of SPEC section 3.
func TestSysfsWrite(t *testing.T) {
	tests := []struct {
		name    string
		cfg     nvcore.Config
		size    int
		face    face
		forceRO bool
		off     int64
		count   int
		wantN   int
		wantErr error
	}{
		// step 1: pos >= size -> EFBIG, even for 0 bytes, misaligned, read-only
		{"at end", nvcore.Config{}, 16, readWrite, false, 16, 4, 0, nvcore.ErrTooBig},
		{"past end", nvcore.Config{}, 16, readWrite, false, 100, 4, 0, nvcore.ErrTooBig},
		{"at end count 0", nvcore.Config{}, 16, readWrite, false, 16, 0, 0, nvcore.ErrTooBig},
		{"past end misaligned ws4", ws4, 16, readWrite, false, 18, 4, 0, nvcore.ErrTooBig},
		{"past end force_ro", nvcore.Config{}, 16, readWrite, true, 16, 4, 0, nvcore.ErrTooBig},
		{"past end no writer", nvcore.Config{}, 16, readOnly, false, 20, 4, 0, nvcore.ErrTooBig},
		// step 2: count cut to the end
		{"whole", nvcore.Config{}, 16, readWrite, false, 0, 16, 16, nil},
		{"middle", nvcore.Config{}, 16, readWrite, false, 5, 7, 7, nil},
		{"crossing end", nvcore.Config{}, 16, readWrite, false, 12, 8, 4, nil},
		{"crossing end ws4", ws4, 16, readWrite, false, 8, 12, 8, nil},
		// step 3: count 0 -> 0, before alignment and read-only checks
		{"count 0", nvcore.Config{}, 16, readWrite, false, 3, 0, 0, nil},
		{"count 0 misaligned", ws4, 16, readWrite, false, 2, 0, 0, nil},
		{"count 0 force_ro", nvcore.Config{}, 16, readWrite, true, 0, 0, 0, nil},
		{"count 0 no writer", nvcore.Config{}, 16, readOnly, false, 0, 0, 0, nil},
		// step 4: pos off the stride -> EINVAL, before the read-only check
		{"misaligned ws4", ws4, 16, readWrite, false, 2, 4, 0, nvcore.ErrInvalid},
		{"misaligned ws2 stride 4", ws2, 16, readWrite, false, 6, 2, 0, nvcore.ErrInvalid},
		{"misaligned force_ro", ws4, 16, readWrite, true, 2, 4, 0, nvcore.ErrInvalid},
		// step 5: count under the word size -> EINVAL
		{"count 3 ws4", ws4, 16, readWrite, false, 0, 3, 0, nvcore.ErrInvalid},
		{"count 1 ws2", ws2, 16, readWrite, false, 4, 1, 0, nvcore.ErrInvalid},
		{"cut under word size", ws4, 18, readWrite, false, 16, 4, 0, nvcore.ErrInvalid},
		{"count 3 ws4 force_ro", ws4, 16, readWrite, true, 0, 3, 0, nvcore.ErrInvalid},
		// step 6: count rounded down to the word size (a short write)
		{"count 6 ws4", ws4, 16, readWrite, false, 0, 6, 4, nil},
		{"count 7 ws4", ws4, 16, readWrite, false, 4, 7, 4, nil},
		{"count 3 ws2", ws2, 16, readWrite, false, 8, 3, 2, nil},
		// step 7: cannot write, or force_ro -> EPERM
		{"force_ro", nvcore.Config{}, 16, readWrite, true, 0, 4, 0, nvcore.ErrReadOnly},
		{"read-only config", nvcore.Config{ReadOnly: true}, 16, readWrite, false, 0, 4, 0, nvcore.ErrReadOnly},
		{"no writer", nvcore.Config{}, 16, readOnly, false, 0, 4, 0, nvcore.ErrReadOnly},
		// a write-only device writes
		{"write-only provider", nvcore.Config{}, 16, writeOnly, false, 4, 4, 4, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := pattern(tt.size, 0x5a)
			cfg := tt.cfg
			d, mem := newDevice(t, cfg, tt.face, data)
			if tt.forceRO {
				d.SetForceRO(true)
			}
			p := pattern(tt.count, 0xa5)
			n, err := d.SysfsWrite(p, tt.off)
			if n != tt.wantN || !errIs(err, tt.wantErr) {
				t.Fatalf("SysfsWrite(%d bytes at %d) = %d, %v; want %d, %v", tt.count, tt.off, n, err, tt.wantN, tt.wantErr)
			}
			want := append([]byte(nil), data...)
			if n > 0 {
				copy(want[tt.off:], p[:n])
			}
			if got := mem.Bytes(); !bytes.Equal(got, want) {
				t.Errorf("memory after the write:\n got % x\nwant % x", got, want)
			}
			if n == 0 && mem.Writes() != 0 {
				t.Errorf("a write of nothing called the provider %d times", mem.Writes())
			}
		})
	}
}

func TestForceROToggle(t *testing.T) {
	d, mem := newDevice(t, nvcore.Config{}, readWrite, make([]byte, 8))
	if d.ForceRO() {
		t.Fatalf("a writable device starts with force_ro 1")
	}
	mode := d.Mode()
	d.SetForceRO(true)
	if _, err := d.SysfsWrite([]byte{1}, 0); !errors.Is(err, nvcore.ErrReadOnly) {
		t.Fatalf("SysfsWrite with force_ro: %v, want ErrReadOnly", err)
	}
	if _, err := d.WriteAt([]byte{1}, 0); !errors.Is(err, nvcore.ErrReadOnly) {
		t.Fatalf("WriteAt with force_ro: %v, want ErrReadOnly", err)
	}
	if d.Mode() != mode {
		t.Errorf("force_ro changed the mode from %#o to %#o", mode, d.Mode())
	}
	d.SetForceRO(false)
	if n, err := d.SysfsWrite([]byte{1}, 0); n != 1 || err != nil {
		t.Fatalf("SysfsWrite after force_ro 0: %d, %v", n, err)
	}
	if got := mem.Bytes()[0]; got != 1 {
		t.Errorf("byte 0 = %#x after the write, want 1", got)
	}

	// A provider without a write callback stays unwritable whatever the
	// switch says, and says why differently through the two APIs.
	ro, _ := newDevice(t, nvcore.Config{}, readOnly, make([]byte, 8))
	ro.SetForceRO(false)
	if _, err := ro.SysfsWrite([]byte{1}, 0); !errors.Is(err, nvcore.ErrReadOnly) {
		t.Errorf("SysfsWrite without a writer: %v, want ErrReadOnly", err)
	}
	if _, err := ro.WriteAt([]byte{1}, 0); !errors.Is(err, nvcore.ErrNotSupported) {
		t.Errorf("WriteAt without a writer: %v, want ErrNotSupported", err)
	}
}

func TestReadAt(t *testing.T) {
	tests := []struct {
		name    string
		cfg     nvcore.Config
		face    face
		off     int64
		len     int
		wantN   int
		wantErr error
	}{
		{"whole", nvcore.Config{}, readWrite, 0, 32, 32, nil},
		{"middle", nvcore.Config{}, readWrite, 3, 6, 6, nil},
		{"empty", nvcore.Config{}, readWrite, 3, 0, 0, nil},
		{"crossing end", nvcore.Config{}, readWrite, 28, 8, 4, io.EOF},
		{"at end", nvcore.Config{}, readWrite, 32, 1, 0, io.EOF},
		{"past end", nvcore.Config{}, readWrite, 40, 1, 0, io.EOF},
		{"negative", nvcore.Config{}, readWrite, -1, 1, 0, nvcore.ErrInvalid},
		{"ws4 aligned", ws4, readWrite, 8, 8, 8, nil},
		{"ws4 crossing end", ws4, readWrite, 24, 16, 8, io.EOF},
		// ReadAt is strict where the sysfs file rounds: no silent rounding.
		{"ws4 misaligned", ws4, readWrite, 2, 4, 0, nvcore.ErrInvalid},
		{"ws4 length 6", ws4, readWrite, 0, 6, 0, nvcore.ErrInvalid},
		{"ws4 length 3", ws4, readWrite, 0, 3, 0, nvcore.ErrInvalid},
		{"write-only", nvcore.Config{}, writeOnly, 0, 4, 0, nvcore.ErrNotSupported},
		{"read-only", nvcore.Config{}, readOnly, 4, 4, 4, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := pattern(32, 0x33)
			d, _ := newDevice(t, tt.cfg, tt.face, data)
			p := make([]byte, tt.len)
			n, err := d.ReadAt(p, tt.off)
			if n != tt.wantN || !errIs(err, tt.wantErr) {
				t.Fatalf("ReadAt(%d bytes at %d) = %d, %v; want %d, %v", tt.len, tt.off, n, err, tt.wantN, tt.wantErr)
			}
			if n < tt.len && err == nil {
				t.Errorf("io.ReaderAt contract: %d of %d bytes with a nil error", n, tt.len)
			}
			if n > 0 && !bytes.Equal(p[:n], data[tt.off:tt.off+int64(n)]) {
				t.Errorf("read % x, want % x", p[:n], data[tt.off:tt.off+int64(n)])
			}
		})
	}
}

func TestReadAtAsReaderAt(t *testing.T) {
	// The standard library's reader checks, through a SectionReader (which
	// exercises ReadAt at many offsets and lengths, including at the end).
	data := pattern(300, 0x11)
	d, _ := newDevice(t, nvcore.Config{}, readWrite, data)
	if err := iotest.TestReader(io.NewSectionReader(d, 0, d.Size()), data); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(io.NewSectionReader(d, 0, 1<<20))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("ReadAll through a section larger than the device: %d bytes, %v", len(got), err)
	}
}

func TestWriteAt(t *testing.T) {
	tests := []struct {
		name    string
		cfg     nvcore.Config
		face    face
		forceRO bool
		off     int64
		len     int
		wantN   int
		wantErr error
	}{
		{"whole", nvcore.Config{}, readWrite, false, 0, 32, 32, nil},
		{"middle", nvcore.Config{}, readWrite, false, 3, 6, 6, nil},
		{"empty", nvcore.Config{}, readWrite, false, 3, 0, 0, nil},
		{"crossing end", nvcore.Config{}, readWrite, false, 28, 8, 4, nvcore.ErrTooBig},
		{"at end", nvcore.Config{}, readWrite, false, 32, 1, 0, nvcore.ErrTooBig},
		{"past end", nvcore.Config{}, readWrite, false, 40, 1, 0, nvcore.ErrTooBig},
		{"negative", nvcore.Config{}, readWrite, false, -1, 1, 0, nvcore.ErrInvalid},
		{"ws4 aligned", ws4, readWrite, false, 8, 8, 8, nil},
		{"ws4 crossing end", ws4, readWrite, false, 24, 16, 8, nvcore.ErrTooBig},
		{"ws4 misaligned", ws4, readWrite, false, 2, 4, 0, nvcore.ErrInvalid},
		{"ws4 length 6", ws4, readWrite, false, 0, 6, 0, nvcore.ErrInvalid},
		{"force_ro", nvcore.Config{}, readWrite, true, 0, 4, 0, nvcore.ErrReadOnly},
		{"read-only config", nvcore.Config{ReadOnly: true}, readWrite, false, 0, 4, 0, nvcore.ErrReadOnly},
		{"no writer", nvcore.Config{}, readOnly, false, 0, 4, 0, nvcore.ErrNotSupported},
		{"write-only", nvcore.Config{}, writeOnly, false, 4, 4, 4, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := pattern(32, 0x33)
			d, mem := newDevice(t, tt.cfg, tt.face, data)
			if tt.forceRO {
				d.SetForceRO(true)
			}
			p := pattern(tt.len, 0xc4)
			n, err := d.WriteAt(p, tt.off)
			if n != tt.wantN || !errIs(err, tt.wantErr) {
				t.Fatalf("WriteAt(%d bytes at %d) = %d, %v; want %d, %v", tt.len, tt.off, n, err, tt.wantN, tt.wantErr)
			}
			if n < tt.len && err == nil {
				t.Errorf("io.WriterAt contract: %d of %d bytes with a nil error", n, tt.len)
			}
			want := append([]byte(nil), data...)
			if n > 0 {
				copy(want[tt.off:], p[:n])
			}
			if got := mem.Bytes(); !bytes.Equal(got, want) {
				t.Errorf("memory after the write:\n got % x\nwant % x", got, want)
			}
		})
	}
}

func TestTypedReads(t *testing.T) {
	data := []byte{0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10}
	d, _ := newDevice(t, nvcore.Config{}, readWrite, data)
	tests := []struct {
		name    string
		read    func(int64) (uint64, error)
		off     int64
		want    uint64
		wantErr error
	}{
		{"u8", u8(d.ReadU8), 0, 0x01, nil},
		{"u8 last", u8(d.ReadU8), 15, 0x10, nil},
		{"u8 at end", u8(d.ReadU8), 16, 0, nvcore.ErrInvalid},
		{"u16", u16(d.ReadU16), 0, 0x0201, nil},
		{"u16 odd offset", u16(d.ReadU16), 3, 0x0504, nil},
		{"u16 last", u16(d.ReadU16), 14, 0x100f, nil},
		{"u16 crossing end", u16(d.ReadU16), 15, 0, nvcore.ErrInvalid},
		{"u32", u32(d.ReadU32), 0, 0x04030201, nil},
		{"u32 middle", u32(d.ReadU32), 5, 0x09080706, nil},
		{"u32 crossing end", u32(d.ReadU32), 13, 0, nvcore.ErrInvalid},
		{"u64", d.ReadU64, 0, 0x0807060504030201, nil},
		{"u64 last", d.ReadU64, 8, 0x100f0e0d0c0b0a09, nil},
		{"u64 crossing end", d.ReadU64, 9, 0, nvcore.ErrInvalid},
		{"u64 past end", d.ReadU64, 100, 0, nvcore.ErrInvalid},
		{"u8 negative", u8(d.ReadU8), -1, 0, nvcore.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.read(tt.off)
			if !errIs(err, tt.wantErr) {
				t.Fatalf("read at %d: %v, want %v", tt.off, err, tt.wantErr)
			}
			if err == nil && got != tt.want {
				t.Fatalf("read at %d = %#x, want %#x", tt.off, got, tt.want)
			}
		})
	}

	// Word size and stride still apply to typed reads.
	w, _ := newDevice(t, ws4, readWrite, data)
	if _, err := w.ReadU8(0); !errors.Is(err, nvcore.ErrInvalid) {
		t.Errorf("ReadU8 on a word-size-4 device: %v, want ErrInvalid", err)
	}
	if _, err := w.ReadU32(2); !errors.Is(err, nvcore.ErrInvalid) {
		t.Errorf("ReadU32 off the stride: %v, want ErrInvalid", err)
	}
	if v, err := w.ReadU32(4); v != 0x08070605 || err != nil {
		t.Errorf("ReadU32(4) on a word-size-4 device = %#x, %v", v, err)
	}
	if v, err := w.ReadU64(8); v != 0x100f0e0d0c0b0a09 || err != nil {
		t.Errorf("ReadU64(8) on a word-size-4 device = %#x, %v", v, err)
	}
	wo, _ := newDevice(t, nvcore.Config{}, writeOnly, data)
	if _, err := wo.ReadU32(0); !errors.Is(err, nvcore.ErrNotSupported) {
		t.Errorf("ReadU32 on a write-only device: %v, want ErrNotSupported", err)
	}
}

func u8(f func(int64) (uint8, error)) func(int64) (uint64, error) {
	return func(off int64) (uint64, error) { v, err := f(off); return uint64(v), err }
}
func u16(f func(int64) (uint16, error)) func(int64) (uint64, error) {
	return func(off int64) (uint64, error) { v, err := f(off); return uint64(v), err }
}
func u32(f func(int64) (uint32, error)) func(int64) (uint64, error) {
	return func(off int64) (uint64, error) { v, err := f(off); return uint64(v), err }
}

func TestMode(t *testing.T) {
	tests := []struct {
		name      string
		cfg       nvcore.Config
		face      face
		want      uint32
		canRead   bool
		canWrite  bool
		wantForce bool
	}{
		{"default", nvcore.Config{}, readWrite, 0o644, true, true, false},
		{"read-only", nvcore.Config{ReadOnly: true}, readWrite, 0o444, true, true, true},
		{"root-only", nvcore.Config{RootOnly: true}, readWrite, 0o600, true, true, false},
		{"root-only read-only", nvcore.Config{RootOnly: true, ReadOnly: true}, readWrite, 0o400, true, true, true},
		{"no writer", nvcore.Config{}, readOnly, 0o444, true, false, true},
		{"no writer root-only", nvcore.Config{RootOnly: true}, readOnly, 0o400, true, false, true},
		{"no reader", nvcore.Config{}, writeOnly, 0o200, false, true, false},
		{"no reader root-only", nvcore.Config{RootOnly: true}, writeOnly, 0o200, false, true, false},
		{"no reader read-only", nvcore.Config{ReadOnly: true}, writeOnly, 0o000, false, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, _ := newDevice(t, tt.cfg, tt.face, make([]byte, 8))
			if got := d.Mode(); got != tt.want {
				t.Errorf("Mode() = %#o, want %#o", got, tt.want)
			}
			if d.CanRead() != tt.canRead || d.CanWrite() != tt.canWrite {
				t.Errorf("CanRead, CanWrite = %v, %v; want %v, %v", d.CanRead(), d.CanWrite(), tt.canRead, tt.canWrite)
			}
			if d.ForceRO() != tt.wantForce {
				t.Errorf("ForceRO() = %v at start, want %v", d.ForceRO(), tt.wantForce)
			}
			d.SetForceRO(!d.ForceRO())
			if got := d.Mode(); got != tt.want {
				t.Errorf("toggling force_ro changed the mode to %#o", got)
			}
		})
	}
}

func TestDeviceAccessors(t *testing.T) {
	cfg := nvcore.Config{
		Name: "acc", Type: nvcore.TypeFRAM, WordSize: 2, Stride: 4,
		Keepouts: []nvcore.Keepout{{Start: 4, End: 8, Fill: 0xff}},
		Cells:    []nvcore.CellInfo{{Name: "a", Offset: 0, Bytes: 2}, {Name: "b", Offset: 8, Bytes: 4}},
	}
	d, _ := newDevice(t, cfg, readWrite, make([]byte, 64))
	if d.Name() != "acc" || d.Type() != nvcore.TypeFRAM || d.Size() != 64 || d.WordSize() != 2 || d.Stride() != 4 {
		t.Errorf("Name, Type, Size, WordSize, Stride = %q, %v, %d, %d, %d", d.Name(), d.Type(), d.Size(), d.WordSize(), d.Stride())
	}
	ko := d.Keepouts()
	if len(ko) != 1 || ko[0] != cfg.Keepouts[0] {
		t.Errorf("Keepouts() = %+v", ko)
	}
	ko[0].Fill = 0 // a copy: changing it changes nothing
	cfg.Keepouts[0].Fill = 0
	if d.Keepouts()[0].Fill != 0xff {
		t.Errorf("Keepouts() shares memory with the device or the config")
	}
	cells := d.Cells()
	if len(cells) != 2 || cells[0].Name() != "a" || cells[1].Name() != "b" {
		t.Fatalf("Cells() = %v", cells)
	}
	cells[0] = nil
	if d.Cells()[0] == nil {
		t.Errorf("Cells() shares its slice with the device")
	}
	if _, err := d.Cell("zz"); !errors.Is(err, nvcore.ErrNoCell) {
		t.Errorf("Cell(zz): %v, want ErrNoCell", err)
	}
	if d.Gone() {
		t.Errorf("a registered device says it is gone")
	}
}

func TestTypeNames(t *testing.T) {
	for _, tt := range []struct {
		typ  nvcore.Type
		text string
		word string
	}{
		{nvcore.TypeUnknown, "Unknown", "unknown"},
		{nvcore.TypeEEPROM, "EEPROM", "eeprom"},
		{nvcore.TypeOTP, "OTP", "otp"},
		{nvcore.TypeBatteryBacked, "Battery backed", "battery-backed"},
		{nvcore.TypeFRAM, "FRAM", "fram"},
	} {
		if got := tt.typ.String(); got != tt.text {
			t.Errorf("%d.String() = %q, want %q", int(tt.typ), got, tt.text)
		}
		for _, s := range []string{tt.word, strings.ToUpper(tt.word), tt.text} {
			if got, err := nvcore.ParseType(s); got != tt.typ || err != nil {
				t.Errorf("ParseType(%q) = %v, %v; want %v", s, got, err, tt.typ)
			}
		}
	}
	if _, err := nvcore.ParseType("flash"); !errors.Is(err, nvcore.ErrInvalid) {
		t.Errorf("ParseType(flash): %v, want ErrInvalid", err)
	}
	if got := nvcore.Type(42).String(); got != "Unknown" {
		t.Errorf("Type(42).String() = %q", got)
	}
}

func TestKeepouts(t *testing.T) {
	cfg := nvcore.Config{Keepouts: []nvcore.Keepout{
		{Start: 8, End: 16, Fill: 0xff},
		{Start: 24, End: 28, Fill: 0x00},
	}}
	data := pattern(32, 0x77)
	// What a read of the whole device returns: the fills in the keepouts.
	view := append([]byte(nil), data...)
	for i := 8; i < 16; i++ {
		view[i] = 0xff
	}
	for i := 24; i < 28; i++ {
		view[i] = 0x00
	}

	t.Run("read inside", func(t *testing.T) {
		d, mem := newDevice(t, cfg, readWrite, data)
		for _, r := range []struct{ off, n int }{{8, 8}, {10, 3}, {24, 4}, {15, 1}} {
			p := make([]byte, r.n)
			if n, err := d.ReadAt(p, int64(r.off)); n != r.n || err != nil {
				t.Fatalf("ReadAt(%d at %d) = %d, %v", r.n, r.off, n, err)
			}
			if !bytes.Equal(p, view[r.off:r.off+r.n]) {
				t.Errorf("ReadAt(%d at %d) = % x, want the fill % x", r.n, r.off, p, view[r.off:r.off+r.n])
			}
			if n, err := d.SysfsRead(p, int64(r.off)); n != r.n || err != nil || !bytes.Equal(p, view[r.off:r.off+r.n]) {
				t.Errorf("SysfsRead(%d at %d) = %d, %v, % x", r.n, r.off, n, err, p)
			}
		}
		if n := mem.Reads(); n != 0 {
			t.Errorf("reads inside keepouts called the provider %d times, want 0", n)
		}
	})

	t.Run("read spanning", func(t *testing.T) {
		d, mem := newDevice(t, cfg, readWrite, data)
		p := make([]byte, 32)
		if n, err := d.ReadAt(p, 0); n != 32 || err != nil {
			t.Fatalf("ReadAt whole = %d, %v", n, err)
		}
		if !bytes.Equal(p, view) {
			t.Errorf("whole read:\n got % x\nwant % x", p, view)
		}
		// The provider sees [0,8), [16,24) and [28,32): three calls.
		if n := mem.Reads(); n != 3 {
			t.Errorf("whole read made %d provider reads, want 3", n)
		}
		for _, r := range []struct{ off, n int }{{4, 8}, {12, 8}, {6, 22}, {20, 10}, {27, 5}} {
			p := make([]byte, r.n)
			if n, err := d.ReadAt(p, int64(r.off)); n != r.n || err != nil || !bytes.Equal(p, view[r.off:r.off+r.n]) {
				t.Errorf("ReadAt(%d at %d) = %d, %v, % x; want % x", r.n, r.off, n, err, p, view[r.off:r.off+r.n])
			}
		}
	})

	t.Run("provider never sees keepouts", func(t *testing.T) {
		mem := nvcoretest.NewMemory(data)
		var bad atomic.Value
		mem.SetHook(func(op string, off int64, n int) error {
			for _, k := range cfg.Keepouts {
				if off < k.End && off+int64(n) > k.Start {
					bad.Store(fmt.Sprintf("%s of %d at %d overlaps keepout [%d,%d)", op, n, off, k.Start, k.End))
				}
			}
			return nil
		})
		_, d := register(t, cfg, mem)
		for off := 0; off < 32; off++ {
			for n := 1; off+n <= 32; n++ {
				p := make([]byte, n)
				if _, err := d.ReadAt(p, int64(off)); err != nil || !bytes.Equal(p, view[off:off+n]) {
					t.Fatalf("ReadAt(%d at %d): % x, %v", n, off, p, err)
				}
				if _, err := d.WriteAt(view[off:off+n], int64(off)); err != nil {
					t.Fatalf("WriteAt(%d at %d): %v", n, off, err)
				}
			}
		}
		if b := bad.Load(); b != nil {
			t.Errorf("the provider was called on a keepout: %s", b)
		}
		if got := mem.Bytes(); !bytes.Equal(got, data) {
			t.Errorf("writing back what was read changed the memory:\n got % x\nwant % x", got, data)
		}
	})

	t.Run("write inside", func(t *testing.T) {
		d, mem := newDevice(t, cfg, readWrite, data)
		p := bytes.Repeat([]byte{0x42}, 8)
		if n, err := d.WriteAt(p, 8); n != 8 || err != nil {
			t.Fatalf("WriteAt into a keepout = %d, %v; want 8, nil", n, err)
		}
		if n, err := d.SysfsWrite(p[:4], 24); n != 4 || err != nil {
			t.Fatalf("SysfsWrite into a keepout = %d, %v; want 4, nil", n, err)
		}
		if n := mem.Writes(); n != 0 {
			t.Errorf("writes inside keepouts called the provider %d times", n)
		}
		if got := mem.Bytes(); !bytes.Equal(got, data) {
			t.Errorf("a write inside a keepout changed the memory")
		}
	})

	t.Run("write spanning", func(t *testing.T) {
		d, mem := newDevice(t, cfg, readWrite, data)
		p := pattern(16, 0x99)
		if n, err := d.SysfsWrite(p, 4); n != 16 || err != nil {
			t.Fatalf("SysfsWrite(16 at 4) = %d, %v", n, err)
		}
		want := append([]byte(nil), data...)
		copy(want[4:8], p[0:4])
		copy(want[16:20], p[12:16])
		if got := mem.Bytes(); !bytes.Equal(got, want) {
			t.Errorf("memory after a write across a keepout:\n got % x\nwant % x", got, want)
		}
		if n := mem.Writes(); n != 2 {
			t.Errorf("write across one keepout made %d provider writes, want 2", n)
		}
	})
}

func TestConfigValidation(t *testing.T) {
	good := []nvcore.CellInfo{{Name: "ok", Offset: 0, Bytes: 4}}
	tests := []struct {
		name string
		cfg  nvcore.Config
		want string // a piece of the message that names the problem
	}{
		{"bad name slash", nvcore.Config{Name: "a/b"}, "not allowed"},
		{"bad name dot", nvcore.Config{Name: ".hidden"}, "dot"},
		{"word size 3", nvcore.Config{WordSize: 3}, "word-size 3"},
		{"word size 16", nvcore.Config{WordSize: 16}, "word-size 16"},
		{"word size -2", nvcore.Config{WordSize: -2}, "word-size -2"},
		{"stride 3", nvcore.Config{Stride: 3}, "stride 3"},
		{"type", nvcore.Config{Type: nvcore.Type(9)}, "type 9"},
		{"keepout empty", nvcore.Config{Keepouts: []nvcore.Keepout{{Start: 4, End: 4}}}, "end must be after start"},
		{"keepout reversed", nvcore.Config{Keepouts: []nvcore.Keepout{{Start: 8, End: 4}}}, "end must be after start"},
		{"keepout past end", nvcore.Config{Keepouts: []nvcore.Keepout{{Start: 60, End: 68}}}, "past the device size"},
		{"keepouts unsorted", nvcore.Config{Keepouts: []nvcore.Keepout{{Start: 16, End: 20}, {Start: 0, End: 4}}}, "sorted"},
		{"keepouts overlapping", nvcore.Config{Keepouts: []nvcore.Keepout{{Start: 0, End: 8}, {Start: 4, End: 12}}}, "overlap"},
		{"keepout misaligned start", nvcore.Config{Stride: 4, Keepouts: []nvcore.Keepout{{Start: 2, End: 8}}}, "stride 4"},
		{"keepout misaligned end", nvcore.Config{Stride: 4, Keepouts: []nvcore.Keepout{{Start: 0, End: 6}}}, "stride 4"},
		{"keepout short", nvcore.Config{WordSize: 4, Stride: 2, Keepouts: []nvcore.Keepout{{Start: 0, End: 2}}}, "shorter than the word size 4"},
		{"keepout second bad", nvcore.Config{Keepouts: []nvcore.Keepout{{Start: 0, End: 4}, {Start: 8, End: 70}}}, "keepout 2"},
		{"cell past end", nvcore.Config{Cells: []nvcore.CellInfo{{Name: "c", Offset: 60, Bytes: 8}}}, "past the end"},
		{"cell past end by one", nvcore.Config{Cells: []nvcore.CellInfo{{Name: "c", Offset: 63, Bytes: 2}}}, "past the end"},
		{"cell misaligned", nvcore.Config{Stride: 4, Cells: []nvcore.CellInfo{{Name: "c", Offset: 2, Bytes: 4}}}, "stride 4"},
		{"cell not whole words", nvcore.Config{WordSize: 4, Stride: 4, Cells: []nvcore.CellInfo{{Name: "c", Offset: 0, Bytes: 6}}}, "word size 4"},
		{"cell no bytes", nvcore.Config{Cells: []nvcore.CellInfo{{Name: "c", Offset: 0}}}, "at least one byte"},
		{"cell negative offset", nvcore.Config{Cells: []nvcore.CellInfo{{Name: "c", Offset: -1, Bytes: 1}}}, "negative offset"},
		{"cell bits need more bytes", nvcore.Config{Cells: []nvcore.CellInfo{{Name: "c", Bytes: 1, BitOffset: 4, NBits: 8}}}, "spans 2 bytes, not 1"},
		{"cell bits need fewer bytes", nvcore.Config{Cells: []nvcore.CellInfo{{Name: "c", Bytes: 2, BitOffset: 0, NBits: 4}}}, "spans 1 bytes, not 2"},
		{"cell bit offset without bits", nvcore.Config{Cells: []nvcore.CellInfo{{Name: "c", Bytes: 1, BitOffset: 3}}}, "at least one bit"},
		{"cell negative bits", nvcore.Config{Cells: []nvcore.CellInfo{{Name: "c", Bytes: 1, NBits: -1}}}, "at least one bit"},
		{"cell no name", nvcore.Config{Cells: []nvcore.CellInfo{{Offset: 0, Bytes: 1}}}, "non-empty"},
		{"cell name with slash", nvcore.Config{Cells: []nvcore.CellInfo{{Name: "a/b", Bytes: 1}}}, "without / or @"},
		{"cell name with at", nvcore.Config{Cells: []nvcore.CellInfo{{Name: "a@1", Bytes: 1}}}, "without / or @"},
		{"second cell bad", nvcore.Config{Cells: append(good, nvcore.CellInfo{Name: "c", Offset: 62, Bytes: 4})}, "cell 2"},
		{"cell twice", nvcore.Config{Cells: []nvcore.CellInfo{{Name: "c", Bytes: 1}, {Name: "c", Bytes: 2}}}, "declared twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mem := nvcoretest.NewMemory(make([]byte, 64))
			reg := nvcore.NewRegistry()
			d, err := reg.Register(tt.cfg, mem)
			if err == nil {
				reg.Remove(d)
				t.Fatalf("Register(%+v) succeeded, want an error naming %q", tt.cfg, tt.want)
			}
			if !errors.Is(err, nvcore.ErrInvalid) {
				t.Errorf("error %q is not ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
			if mem.Closed() {
				t.Errorf("a refused provider was closed; the caller still owns it")
			}
			if len(reg.Devices()) != 0 {
				t.Errorf("a refused device is listed")
			}
		})
	}

	// The boundaries that are fine.
	okCfgs := []nvcore.Config{
		{WordSize: 8, Stride: 8},
		{Keepouts: []nvcore.Keepout{{Start: 0, End: 4}, {Start: 4, End: 8}, {Start: 60, End: 64}}},
		{Cells: []nvcore.CellInfo{{Name: "last", Offset: 63, Bytes: 1}}},
		{Cells: []nvcore.CellInfo{{Name: "same", Offset: 0, Bytes: 1}, {Name: "same", Offset: 1, Bytes: 1}, {Name: "same", Offset: 1, Bytes: 1, BitOffset: 4, NBits: 4}}},
		{Cells: []nvcore.CellInfo{{Name: "bits", Offset: 0, Bytes: 2, BitOffset: 12, NBits: 4}}},
	}
	for i, cfg := range okCfgs {
		mem := nvcoretest.NewMemory(make([]byte, 64))
		if _, err := nvcore.NewRegistry().Register(cfg, mem); err != nil {
			t.Errorf("good config %d (%+v) refused: %v", i, cfg, err)
		}
	}

	// CellInfo.Validate is exported for parsers: same rules, no registry.
	if err := (nvcore.CellInfo{Name: "x", Offset: 6, Bytes: 4}).Validate(8, 1, 1); !errors.Is(err, nvcore.ErrInvalid) {
		t.Errorf("Validate of a cell past the end: %v", err)
	}
	if err := (nvcore.CellInfo{Name: "x", Offset: 4, Bytes: 4}).Validate(8, 4, 4); err != nil {
		t.Errorf("Validate of a good cell: %v", err)
	}
}

// emptyProvider has neither a read nor a write face.
type emptyProvider struct{}

func (emptyProvider) Size() int64  { return 8 }
func (emptyProvider) Close() error { return nil }

// sizedMemory gives a Memory a size of its own, to test a provider size the
// core must refuse.
type sizedMemory struct {
	*nvcoretest.Memory
	size int64
}

func (s sizedMemory) Size() int64 { return s.size }

func TestRegisterRefusesProviders(t *testing.T) {
	reg := nvcore.NewRegistry()
	if _, err := reg.Register(nvcore.Config{}, nil); !errors.Is(err, nvcore.ErrInvalid) {
		t.Errorf("nil provider: %v, want ErrInvalid", err)
	}
	if _, err := reg.Register(nvcore.Config{}, emptyProvider{}); !errors.Is(err, nvcore.ErrInvalid) || !strings.Contains(err.Error(), "neither read nor write") {
		t.Errorf("provider with no face: %v, want ErrInvalid naming it", err)
	}
	if _, err := reg.Register(nvcore.Config{}, sizedMemory{nvcoretest.NewMemory(nil), 0}); !errors.Is(err, nvcore.ErrInvalid) {
		t.Errorf("size 0: %v, want ErrInvalid", err)
	}
	if len(reg.Devices()) != 0 {
		t.Errorf("refused devices are listed: %v", reg.Devices())
	}
}

func TestChunking(t *testing.T) {
	data := pattern(1024, 0x3c)
	mem := nvcoretest.NewMemory(data)
	mem.Xfer = 128
	var mu sync.Mutex
	var sizes []int
	mem.SetHook(func(op string, off int64, n int) error {
		mu.Lock()
		sizes = append(sizes, n)
		mu.Unlock()
		return nil
	})
	_, d := register(t, nvcore.Config{}, mem)

	p := make([]byte, 1000)
	if n, err := d.ReadAt(p, 0); n != 1000 || err != nil {
		t.Fatalf("ReadAt(1000) = %d, %v", n, err)
	}
	if !bytes.Equal(p, data[:1000]) {
		t.Errorf("chunked read returned the wrong bytes")
	}
	if n := mem.Reads(); n != 8 {
		t.Errorf("a 1000-byte read with Xfer 128 made %d provider reads, want 8", n)
	}
	for _, n := range sizes {
		if n > 128 {
			t.Errorf("a provider call moved %d bytes, more than the transfer size 128", n)
		}
	}

	// Unaligned start, through the sysfs path: 1000 bytes at 24 still cut in
	// chunks of at most 128, ceil(1000/128) = 8 calls.
	before := mem.Reads()
	if n, err := d.SysfsRead(p, 24); n != 1000 || err != nil || !bytes.Equal(p, data[24:1024]) {
		t.Fatalf("SysfsRead(1000 at 24) = %d, %v", n, err)
	}
	if n := mem.Reads() - before; n != 8 {
		t.Errorf("SysfsRead of 1000 bytes made %d provider reads, want 8", n)
	}

	w := pattern(300, 0xc3)
	if n, err := d.WriteAt(w, 100); n != 300 || err != nil {
		t.Fatalf("WriteAt(300) = %d, %v", n, err)
	}
	// Chunks are aligned to the transfer size: [100,128) [128,256)
	// [256,384) [384,400).
	if n := mem.Writes(); n != 4 {
		t.Errorf("a 300-byte write at 100 with Xfer 128 made %d provider writes, want 4", n)
	}
	if got := mem.Bytes()[100:400]; !bytes.Equal(got, w) {
		t.Errorf("chunked write stored the wrong bytes")
	}
	mu.Lock()
	for _, n := range sizes {
		if n > 128 {
			t.Errorf("a provider call moved %d bytes, more than the transfer size 128", n)
		}
	}
	mu.Unlock()
}

// failingProvider returns what its fields say, to test how the core reports
// provider failures.
type failingProvider struct {
	size  int64
	readN int
	err   error
}

func (f *failingProvider) Size() int64  { return f.size }
func (f *failingProvider) Close() error { return nil }
func (f *failingProvider) ReadAt(p []byte, off int64) (int, error) {
	return min(f.readN, len(p)), f.err
}
func (f *failingProvider) WriteAt(p []byte, off int64) (int, error) {
	return min(f.readN, len(p)), f.err
}

func TestProviderErrors(t *testing.T) {
	errBus := errors.New("i2c bus stuck")
	tests := []struct {
		name string
		prov *failingProvider
		want error
	}{
		{"error", &failingProvider{size: 16, err: errBus}, errBus},
		{"short with error", &failingProvider{size: 16, readN: 2, err: errBus}, errBus},
		{"short without error", &failingProvider{size: 16, readN: 2}, nvcore.ErrIO},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, d := register(t, nvcore.Config{}, tt.prov)
			p := make([]byte, 8)
			if n, err := d.ReadAt(p, 0); n != 0 || !errors.Is(err, tt.want) {
				t.Errorf("ReadAt = %d, %v; want 0, %v", n, err, tt.want)
			}
			if n, err := d.SysfsRead(p, 0); n != 0 || !errors.Is(err, tt.want) {
				t.Errorf("SysfsRead = %d, %v; want 0, %v", n, err, tt.want)
			}
			if n, err := d.WriteAt(p, 0); n != 0 || !errors.Is(err, tt.want) {
				t.Errorf("WriteAt = %d, %v; want 0, %v", n, err, tt.want)
			}
			if n, err := d.SysfsWrite(p, 0); n != 0 || !errors.Is(err, tt.want) {
				t.Errorf("SysfsWrite = %d, %v; want 0, %v", n, err, tt.want)
			}
		})
	}

	// A short read that says io.EOF inside the device is a provider failure.
	_, d := register(t, nvcore.Config{}, &failingProvider{size: 16, readN: 2, err: io.EOF})
	if n, err := d.ReadAt(make([]byte, 8), 0); n != 0 || !errors.Is(err, nvcore.ErrIO) {
		t.Errorf("ReadAt from a provider that reads short with io.EOF = %d, %v; want 0, ErrIO", n, err)
	}

	// A full read that also says EOF is a full read (io.ReaderAt allows it).
	eof := &failingProvider{size: 16, readN: 1 << 20, err: io.EOF}
	_, d = register(t, nvcore.Config{}, eof)
	if n, err := d.ReadAt(make([]byte, 16), 0); n != 16 || err != nil {
		t.Errorf("ReadAt from a provider that returns n == len(p) with io.EOF = %d, %v", n, err)
	}

	// A hook error reaches the caller, wrapped.
	mem := nvcoretest.NewMemory(make([]byte, 16))
	mem.SetHook(func(string, int64, int) error { return errBus })
	_, d = register(t, nvcore.Config{}, mem)
	if _, err := d.ReadAt(make([]byte, 4), 4); !errors.Is(err, errBus) || !strings.Contains(err.Error(), d.Name()) {
		t.Errorf("ReadAt with a failing provider: %v, want errBus with the device name", err)
	}
}

func TestProviderPanic(t *testing.T) {
	mem := nvcoretest.NewMemory(pattern(64, 1))
	mem.SetHook(func(op string, off int64, n int) error {
		if op == "read" && off == 0 {
			panic("provider bug")
		}
		return nil
	})
	reg := nvcore.NewRegistry()
	d, err := reg.Register(nvcore.Config{Name: "p"}, mem)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		n, err := d.ReadAt(make([]byte, 8), 0)
		if n != 0 || !errors.Is(err, nvcore.ErrIO) || !strings.Contains(err.Error(), "provider bug") {
			t.Fatalf("ReadAt through a panicking provider = %d, %v; want ErrIO with the panic value", n, err)
		}
	}
	// The device still works where the provider does not panic.
	if n, err := d.ReadAt(make([]byte, 8), 8); n != 8 || err != nil {
		t.Fatalf("ReadAt after a panic = %d, %v", n, err)
	}
	// And the read sections the panics left were closed: removal does not hang.
	finishes(t, timeout, "Unregister after provider panics", func() {
		if err := reg.Unregister("p"); err != nil {
			t.Errorf("Unregister: %v", err)
		}
	})
	if !mem.Closed() {
		t.Errorf("provider not closed after Unregister")
	}
}

func TestSync(t *testing.T) {
	d, mem := newDevice(t, nvcore.Config{}, readWrite, make([]byte, 8))
	if err := d.Sync(); err != nil || mem.Syncs() != 1 {
		t.Fatalf("Sync = %v, provider syncs %d; want nil, 1", err, mem.Syncs())
	}
	// A provider without Sync: nothing to do, no error.
	ro, _ := newDevice(t, nvcore.Config{}, readOnly, make([]byte, 8))
	if err := ro.Sync(); err != nil {
		t.Fatalf("Sync on a provider that does not buffer: %v", err)
	}
}

// swappable is a memory whose hardware a test can replace (GoneChecker).
type swappable struct {
	*nvcoretest.Memory
	swapped atomic.Bool
}

func (s *swappable) HardwareGone() bool { return s.swapped.Load() }

// TestCheckHardware: CheckHardware reports a device whose provider's
// hardware is still the one it opened, and one that cannot tell, as
// there; a swapped one as not, and its removal starts, as after a call
// that found the hardware gone: the calls fail with ErrNoDevice, and
// Remove waits for the removal. A removed device is not there.
func TestCheckHardware(t *testing.T) {
	mem := &swappable{Memory: nvcoretest.NewMemory(make([]byte, 32))}
	reg, d := register(t, nvcore.Config{Name: "disk"}, mem)
	if !d.CheckHardware() {
		t.Fatal("CheckHardware: not there, with the hardware in place")
	}
	mem.swapped.Store(true)
	if d.CheckHardware() {
		t.Fatal("CheckHardware: there, with the hardware swapped")
	}
	if _, err := d.SysfsRead(make([]byte, 4), 0); !errors.Is(err, nvcore.ErrNoDevice) {
		t.Errorf("a read after CheckHardware found it gone: %v, want ErrNoDevice", err)
	}
	if err := reg.Remove(d); err != nil && !errors.Is(err, nvcore.ErrNoDevice) {
		t.Fatal(err)
	}
	if _, err := reg.Device("disk"); !errors.Is(err, nvcore.ErrNoDevice) {
		t.Errorf("the device after its removal: %v, want ErrNoDevice", err)
	}

	reg2, plain := register(t, nvcore.Config{Name: "plain"}, nvcoretest.NewMemory(make([]byte, 32)))
	if !plain.CheckHardware() {
		t.Error("CheckHardware of a provider that cannot tell: not there")
	}
	if err := reg2.Remove(plain); err != nil {
		t.Fatal(err)
	}
	if plain.CheckHardware() {
		t.Error("CheckHardware of a removed device: there")
	}
}
