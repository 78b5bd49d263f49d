package fault

import (
	"bytes"
	"errors"
	"io"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nvmemfs/nvmemfs/nvcore"
)

// TestContent: reads return Truth, at any offset and length, cut at the
// end with io.EOF; the content depends on the seed.
func TestContent(t *testing.T) {
	p := New(Options{Size: 1000, Seed: 42})
	if p.Size() != 1000 || p.TransferSize() != 0 {
		t.Fatalf("size %d, transfer size %d", p.Size(), p.TransferSize())
	}
	whole := Truth(42, 0, 1000)
	for _, c := range []struct {
		off int64
		n   int
	}{{0, 1000}, {0, 1}, {7, 1}, {7, 9}, {13, 300}, {999, 1}, {990, 20}, {1000, 4}, {5000, 4}, {3, 0}} {
		b := make([]byte, c.n)
		n, err := p.ReadAt(b, c.off)
		want := 0
		if c.off < 1000 {
			want = int(min(int64(c.n), 1000-c.off))
		}
		if n != want || !bytes.Equal(b[:n], whole[min(c.off, 1000):min(c.off, 1000)+int64(n)]) {
			t.Errorf("ReadAt(%d bytes at %d) = %d, %v; want %d bytes of the truth", c.n, c.off, n, err, want)
		}
		if wantEOF := n < c.n; wantEOF != (err == io.EOF) || (!wantEOF && err != nil) {
			t.Errorf("ReadAt(%d bytes at %d): err %v", c.n, c.off, err)
		}
	}
	for i := range int64(1000) {
		if Byte(42, i) != whole[i] {
			t.Fatalf("Byte(42, %d) = %#x, Truth says %#x", i, Byte(42, i), whole[i])
		}
	}
	if bytes.Equal(Truth(43, 0, 64), whole[:64]) {
		t.Error("seeds 42 and 43 give the same content")
	}
	if !bytes.Equal(Truth(42, 100, 50), whole[100:150]) {
		t.Error("Truth at an offset differs from the whole content")
	}
	// No runs of one value: a reader that returned a constant would pass.
	seen := map[byte]bool{}
	for _, c := range whole {
		seen[c] = true
	}
	if len(seen) < 200 {
		t.Errorf("the content uses only %d byte values", len(seen))
	}
	if s := p.Stats(); s.Errors+s.Delays+s.Shorts+s.Panics != 0 || s.Reads != 10 {
		t.Errorf("stats with no faults: %+v", s)
	}
}

// TestFaultsAlways: each fault at rate 1, on its own.
func TestFaultsAlways(t *testing.T) {
	truth := Truth(7, 0, 256)

	t.Run("errors", func(t *testing.T) {
		p := New(Options{Size: 256, Seed: 7, ErrorRate: 1})
		b := make([]byte, 64)
		n, err := p.ReadAt(b, 16)
		var fe *Error
		if n != 0 || !errors.Is(err, syscall.EIO) || !errors.As(err, &fe) || fe.Off != 16 || fe.N != 64 {
			t.Errorf("ReadAt = %d, %v; want 0 and an *Error wrapping EIO", n, err)
		}
		for i := range b {
			if b[i] == truth[16+i] {
				t.Fatalf("byte %d of a failed read holds the truth: the buffer must be scribbled on", i)
			}
		}
		if s := p.Stats(); s.Errors != 1 || s.Reads != 1 {
			t.Errorf("stats %+v", s)
		}
	})

	t.Run("shorts", func(t *testing.T) {
		p := New(Options{Size: 256, Seed: 7, ShortRate: 1})
		for range 50 {
			b := make([]byte, 100)
			n, err := p.ReadAt(b, 10)
			if err != nil || n >= 100 || n < 0 {
				t.Fatalf("ReadAt = %d, %v; want fewer than 100 bytes and no error", n, err)
			}
			if !bytes.Equal(b[:n], truth[10:10+n]) {
				t.Fatalf("the %d bytes of a short read are wrong", n)
			}
			for i := n; i < 100; i++ {
				if b[i] == truth[10+i] {
					t.Fatalf("byte %d past a short read of %d holds the truth", i, n)
				}
			}
		}
		if s := p.Stats(); s.Shorts != 50 {
			t.Errorf("stats %+v", s)
		}
	})

	t.Run("panics", func(t *testing.T) {
		p := New(Options{Size: 256, Seed: 7, PanicRate: 1, ErrorRate: 1})
		func() {
			defer func() {
				r := recover()
				if s, ok := r.(string); !ok || !strings.Contains(s, "injected panic") {
					t.Errorf("recovered %v, want the injected panic", r)
				}
			}()
			p.ReadAt(make([]byte, 8), 0)
			t.Error("no panic")
		}()
		if s := p.Stats(); s.Panics != 1 || s.Errors != 0 {
			t.Errorf("stats %+v: the panic comes before the error", s)
		}
		if err := p.Close(); err != nil || p.Stats().InsideAtClose != 0 {
			t.Errorf("close after a panic: %v, %+v", err, p.Stats())
		}
	})

	t.Run("delays", func(t *testing.T) {
		const maxDelay = 20 * time.Millisecond
		p := New(Options{Size: 256, Seed: 7, DelayRate: 1, MaxDelay: maxDelay})
		for i := range uint64(5) {
			if d := p.Delay(i); d <= 0 || d > maxDelay {
				t.Errorf("call %d is delayed %v, want (0, %v]", i, d, maxDelay)
			}
			if n, err := p.ReadAt(make([]byte, 8), 0); n != 8 || err != nil {
				t.Fatalf("a delayed read: %d, %v", n, err)
			}
		}
		if s := p.Stats(); s.Delays != 5 {
			t.Errorf("stats %+v", s)
		}
		// Without delays drawn, none is counted.
		q := New(Options{Size: 256, Seed: 7, DelayRate: 0, MaxDelay: maxDelay})
		if d := q.Delay(0); d != 0 {
			t.Errorf("DelayRate 0: call 0 is delayed %v", d)
		}
		q.ReadAt(make([]byte, 8), 0)
		if s := q.Stats(); s.Delays != 0 {
			t.Errorf("DelayRate 0: stats %+v", s)
		}
	})
}

// TestDeterministic: the same seed gives the same faults, call after call.
func TestDeterministic(t *testing.T) {
	o := Options{Size: 512, Seed: 99, ErrorRate: 0.2, ShortRate: 0.2, PanicRate: 0.1, DelayRate: 0.3, MaxDelay: time.Microsecond}
	outcome := func(p *Provider) string {
		var sb strings.Builder
		for i := range 300 {
			func() {
				defer func() {
					if recover() != nil {
						sb.WriteString("P")
					}
				}()
				n, err := p.ReadAt(make([]byte, 64), int64(i%8)*64)
				switch {
				case err != nil:
					sb.WriteString("E")
				case n < 64:
					sb.WriteString("S")
				default:
					sb.WriteString(".")
				}
			}()
		}
		return sb.String()
	}
	a, b := outcome(New(o)), outcome(New(o))
	if a != b {
		t.Errorf("two providers with one seed differ:\n%s\n%s", a, b)
	}
	o.Seed++
	if c := outcome(New(o)); c == a {
		t.Errorf("seeds 99 and 100 give the same faults")
	}
	for _, k := range "EPS." {
		if !strings.ContainsRune(a, k) {
			t.Errorf("no %q in 300 calls: %s", k, a)
		}
	}
	// The rates hold roughly: a panic 10%, then an error 20% of the rest.
	if n := strings.Count(a, "P"); n < 10 || n > 60 {
		t.Errorf("%d panics in 300 calls at 10%%", n)
	}
}

// TestConcurrent: many goroutines, run with -race; every successful read
// is right and the counters add up.
func TestConcurrent(t *testing.T) {
	p := New(Options{Size: 4096, Seed: 5, ErrorRate: 0.05, ShortRate: 0.05, PanicRate: 0.02, DelayRate: 0.05, MaxDelay: 100 * time.Microsecond})
	truth := Truth(5, 0, 4096)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var ok, bad, panics, fails, shorts int
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := make([]byte, 100)
			for i := range 500 {
				off := int64((g*500+i)*37) % 3996
				func() {
					defer func() {
						if recover() != nil {
							mu.Lock()
							panics++
							mu.Unlock()
						}
					}()
					n, err := p.ReadAt(b, off)
					mu.Lock()
					defer mu.Unlock()
					switch {
					case err != nil:
						fails++
					case n < len(b):
						shorts++
						if !bytes.Equal(b[:n], truth[off:off+int64(n)]) {
							bad++
						}
					case !bytes.Equal(b, truth[off:off+100]):
						bad++
					default:
						ok++
					}
				}()
			}
		}()
	}
	wg.Wait()
	s := p.Stats()
	if bad != 0 || s.Reads != 4000 || int64(panics) != s.Panics || int64(fails) != s.Errors || int64(shorts) != s.Shorts {
		t.Errorf("bad %d; counted %d panics, %d errors, %d shorts; stats %+v", bad, panics, fails, shorts, s)
	}
	if ok == 0 || panics == 0 || fails == 0 || shorts == 0 {
		t.Errorf("ok %d, panics %d, errors %d, shorts %d: want some of each", ok, panics, fails, shorts)
	}
}

// TestClose: calls after Close fail and are counted; a second Close fails.
func TestClose(t *testing.T) {
	p := New(Options{Size: 16})
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.ReadAt(make([]byte, 4), 0); !errors.Is(err, ErrClosed) {
		t.Errorf("read after close: %v", err)
	}
	if p.Close() == nil {
		t.Error("a second Close succeeded")
	}
	if s := p.Stats(); !s.Closed || s.CallsAfterClose != 1 || s.Reads != 0 {
		t.Errorf("stats %+v", s)
	}
}

// TestLive: a provider nobody holds is reclaimed, and Live says so.
func TestLive(t *testing.T) {
	before := Live()
	func() {
		p := New(Options{Size: 16})
		if Live() != before+1 {
			t.Fatalf("Live() = %d after New, want %d", Live(), before+1)
		}
		p.Close()
	}()
	for i := 0; Live() > before; i++ {
		if i == 100 {
			t.Fatalf("Live() = %d: an unreferenced provider was never reclaimed (want %d)", Live(), before)
		}
		runtime.GC()
		time.Sleep(time.Millisecond)
	}
}

// TestCheck: options out of range are refused by Check and bent by New.
func TestCheck(t *testing.T) {
	if err := (Options{Size: 1, ErrorRate: 1, MaxDelay: time.Second}).Check(); err != nil {
		t.Errorf("good options: %v", err)
	}
	for _, o := range []Options{{}, {Size: -1}, {Size: 1, ErrorRate: 1.5}, {Size: 1, PanicRate: -0.1},
		{Size: 1, MaxDelay: -time.Second}, {Size: 1, TransferSize: -1}} {
		if o.Check() == nil {
			t.Errorf("Check(%+v) accepted", o)
		}
	}
	got := New(Options{Size: -5, ErrorRate: 3, ShortRate: -1, MaxDelay: -1}).Options()
	if got.Size != 1 || got.ErrorRate != 1 || got.ShortRate != 0 || got.MaxDelay != 0 {
		t.Errorf("New bent the options into %+v", got)
	}
}

// TestThroughCore: behind an nvcore device, an injected error is EIO, a
// short transfer and a panic are ErrIO, and a read that draws no fault is
// right. Removal closes the provider with nothing inside.
func TestThroughCore(t *testing.T) {
	reg := nvcore.NewRegistry()
	attach := func(name string, o Options) (*nvcore.Device, *Provider) {
		o.Size, o.Seed, o.TransferSize, o.Name = 1024, 3, 64, name
		p := New(o)
		d, err := reg.Register(nvcore.Config{Name: name}, p)
		if err != nil {
			t.Fatal(err)
		}
		return d, p
	}
	b := make([]byte, 200)
	for _, c := range []struct {
		name string
		o    Options
		want error
	}{
		{"errors", Options{ErrorRate: 1}, syscall.EIO},
		{"shorts", Options{ShortRate: 1}, nvcore.ErrIO},
		{"panics", Options{PanicRate: 1}, nvcore.ErrIO},
	} {
		d, p := attach(c.name, c.o)
		if _, err := d.SysfsRead(b, 10); !errors.Is(err, c.want) {
			t.Errorf("%s: read: %v, want %v", c.name, err, c.want)
		}
		if d.Gone() {
			t.Errorf("%s: an injected fault removed the device", c.name)
		}
		if err := reg.Remove(d); err != nil {
			t.Errorf("%s: remove: %v", c.name, err)
		}
		if s := p.Stats(); !s.Closed || s.InsideAtClose != 0 || s.CallsAfterClose != 0 {
			t.Errorf("%s: stats after removal %+v", c.name, s)
		}
	}
	d, p := attach("good", Options{})
	if n, err := d.SysfsRead(b, 900); err != nil || n != 124 || !bytes.Equal(b[:n], Truth(3, 900, 124)) {
		t.Errorf("good read: %d, %v", n, err)
	}
	if s := p.Stats(); s.Reads != 2 { // 900-959 and 960-1023: chunks of 64
		t.Errorf("%d provider calls for 124 bytes in chunks of 64, want 2", s.Reads)
	}
	reg.Remove(d)
	if _, err := d.SysfsRead(b, 0); !errors.Is(err, nvcore.ErrNoDevice) {
		t.Errorf("read after removal: %v", err)
	}
	if p.Stats().CallsAfterClose != 0 {
		t.Error("the core called a closed provider")
	}
}
