package nvcore_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
	"testing"

	"github.com/nvmemfs/nvmemfs/nvcore"
)

// sparse is a provider of any size that stores only the bytes written (the
// rest read as zero), and records every call, so a test can check the
// offsets the core hands down on a device larger than 4 GiB.
type sparse struct {
	size  int64
	xfer  int
	mu    sync.Mutex
	bytes map[int64]byte
	calls []string
}

func newSparse(size int64, xfer int) *sparse {
	return &sparse{size: size, xfer: xfer, bytes: map[int64]byte{}}
}

func (s *sparse) Size() int64       { return s.size }
func (s *sparse) TransferSize() int { return s.xfer }
func (s *sparse) Close() error      { return nil }

func (s *sparse) check(op string, n int, off int64) error {
	s.calls = append(s.calls, fmt.Sprintf("%s %#x+%d", op, off, n))
	if off < 0 || off > s.size || int64(n) > s.size-off {
		return fmt.Errorf("%s of %d bytes at %#x: outside the provider", op, n, off)
	}
	if n > s.xfer || off/int64(s.xfer) != (off+int64(n)-1)/int64(s.xfer) {
		return fmt.Errorf("%s of %d bytes at %#x: crosses a %d-byte transfer", op, n, off, s.xfer)
	}
	return nil
}

func (s *sparse) ReadAt(p []byte, off int64) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check("read", len(p), off); err != nil {
		return 0, err
	}
	for i := range p {
		p[i] = s.bytes[off+int64(i)]
	}
	return len(p), nil
}

func (s *sparse) WriteAt(p []byte, off int64) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check("write", len(p), off); err != nil {
		return 0, err
	}
	for i, b := range p {
		s.bytes[off+int64(i)] = b
	}
	return len(p), nil
}

func (s *sparse) takeCalls() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.calls
	s.calls = nil
	return c
}

// TestLargeOffsets runs reads and writes across 2 GiB, 4 GiB - 1 and the end
// of an 8 GiB device cut into 128-byte transfers, the offsets where a 32-bit
// int or uint32 would wrap: the provider must see exactly the chunks of the
// request, at their true offsets. backends/file has the same on a real
// sparse image, and fs/ through a mount.
func TestLargeOffsets(t *testing.T) {
	const size = 8 << 30
	const keepout = 1<<32 + 0x100
	p := newSparse(size, 128)
	reg := nvcore.NewRegistry()
	d, err := reg.Register(nvcore.Config{
		Name:     "large",
		Keepouts: []nvcore.Keepout{{Start: keepout, End: keepout + 16, Fill: 0xee}},
		Cells: []nvcore.CellInfo{
			{Name: "edge", Offset: math.MaxUint32 - 1, Bytes: 4},
			{Name: "last", Offset: size - 1, Bytes: 1, BitOffset: 4, NBits: 4},
		},
	}, p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.RemoveAll() })

	tests := []struct {
		name  string
		off   int64
		n     int
		calls []string // the provider calls of the write (reads mirror them)
	}{
		{"across 2 GiB", math.MaxInt32 - 3, 8, []string{"0x7ffffffc+4", "0x80000000+4"}},
		{"across 4 GiB - 1", math.MaxUint32 - 199, 400, []string{"0xffffff38+72", "0xffffff80+128", "0x100000000+128", "0x100000080+72"}},
		{"last chunk", size - 130, 130, []string{"0x1ffffff7e+2", "0x1ffffff80+128"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want := pattern(tc.n, byte(tc.off))
			if n, err := d.WriteAt(want, tc.off); n != tc.n || err != nil {
				t.Fatalf("write: %d, %v", n, err)
			}
			var wantCalls []string
			for _, c := range tc.calls {
				wantCalls = append(wantCalls, "write "+c)
			}
			if got := p.takeCalls(); fmt.Sprint(got) != fmt.Sprint(wantCalls) {
				t.Errorf("provider writes %v, want %v", got, wantCalls)
			}
			got := make([]byte, tc.n)
			if n, err := d.ReadAt(got, tc.off); n != tc.n || err != nil || !bytes.Equal(got, want) {
				t.Errorf("read: %d, %v, % x", n, err, got)
			}
			p.takeCalls()
		})
	}

	// The keepout just above 4 GiB: its bytes read as the fill, a write over
	// it reaches the provider on both sides only.
	buf := bytes.Repeat([]byte{0x5a}, 48)
	if _, err := d.WriteAt(buf, keepout-16); err != nil {
		t.Fatal(err)
	}
	if got, want := p.takeCalls(), []string{"write 0x1000000f0+16", "write 0x100000110+16"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("write over the keepout: provider writes %v, want %v", got, want)
	}
	if _, err := d.ReadAt(buf, keepout-16); err != nil {
		t.Fatal(err)
	}
	if want := append(append(bytes.Repeat([]byte{0x5a}, 16), bytes.Repeat([]byte{0xee}, 16)...), bytes.Repeat([]byte{0x5a}, 16)...); !bytes.Equal(buf, want) {
		t.Errorf("read over the keepout: % x", buf)
	}

	// Cells across 4 GiB - 1 and at the last byte.
	edge, _ := d.Cell("edge")
	if err := edge.Write([]byte{1, 2, 3, 4}); err != nil {
		t.Fatalf("edge cell: %v", err)
	}
	if v, err := edge.Read(); err != nil || !bytes.Equal(v, []byte{1, 2, 3, 4}) {
		t.Errorf("edge cell reads % x, %v", v, err)
	}
	if p.bytes[math.MaxUint32-1] != 1 || p.bytes[math.MaxUint32+2] != 4 {
		t.Errorf("edge cell landed elsewhere")
	}
	last, _ := d.Cell("last")
	if err := last.Write([]byte{0xc}); err != nil {
		t.Fatalf("last cell: %v", err)
	}
	if v := p.bytes[size-1]; v>>4 != 0xc {
		t.Errorf("last byte %#02x", v)
	}

	// The end of the device.
	if n, err := d.ReadAt(buf, size-8); n != 8 || err != io.EOF {
		t.Errorf("read crossing the end: %d, %v, want 8, EOF", n, err)
	}
	if n, err := d.SysfsRead(buf, size); n != 0 || err != nil {
		t.Errorf("sysfs read at the end: %d, %v", n, err)
	}
	if n, err := d.SysfsWrite(buf, size-8); n != 8 || err != nil {
		t.Errorf("sysfs write crossing the end: %d, %v", n, err)
	}
	for _, off := range []int64{size, math.MaxInt64} {
		if _, err := d.SysfsWrite(buf, off); !errors.Is(err, nvcore.ErrTooBig) {
			t.Errorf("sysfs write at %#x: %v, want ErrTooBig", off, err)
		}
		if _, err := d.WriteAt(buf, off); !errors.Is(err, nvcore.ErrTooBig) {
			t.Errorf("write at %#x: %v, want ErrTooBig", off, err)
		}
	}
}
