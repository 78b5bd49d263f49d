// Package fault is a provider that misbehaves on purpose, for soak and
// stress tests: its reads fail, stall, come back short or panic at random,
// at rates the caller chooses.
//
// Its content is computed, not stored: byte i of a provider with seed S is
// Byte(S, i). Any process that knows the seed can check a read without
// talking to the provider. The provider is read-only (it has no WriteAt), so
// that content never changes.
//
// Faults are drawn per ReadAt call (per chunk, since the core cuts reads
// into transfers of TransferSize bytes). The k-th call, counting in the
// order calls arrive, draws from (Seed, k) alone, so a single reader sees
// the same faults on every run; concurrent readers share the sequence in
// whatever order they arrive. Before failing, the provider scribbles over
// the caller's buffer, so a core that passed on the bytes of a failed or
// short call would hand out wrong bytes, which a test then sees.
package fault

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"runtime"
	"sync/atomic"
	"syscall"
	"time"
)

// Options configure a provider. Rates are probabilities per ReadAt call,
// from 0 (never) to 1 (every call).
type Options struct {
	// Size of the memory in bytes; at least 1.
	Size int64
	// Seed selects the content (Byte) and the sequence of faults.
	Seed uint64
	// ErrorRate: the call fails with an error that wraps syscall.EIO.
	ErrorRate float64
	// DelayRate: the call first sleeps a time drawn evenly from
	// (0, MaxDelay]. It then goes on, and may still fail.
	DelayRate float64
	MaxDelay  time.Duration
	// ShortRate: the call returns fewer bytes than asked with a nil error,
	// breaking the io.ReaderAt contract as a buggy driver would.
	ShortRate float64
	// PanicRate: the call panics.
	PanicRate float64
	// TransferSize, when not zero, is the provider's transfer size: the
	// core reads at most that many bytes per call.
	TransferSize int
	// Name labels the provider's log lines (the device name, usually).
	Name string
}

// Check reports options New would have to bend.
func (o Options) Check() error {
	if o.Size <= 0 {
		return fmt.Errorf("fault: size %d: want at least one byte", o.Size)
	}
	for _, r := range []struct {
		name string
		v    float64
	}{{"errors", o.ErrorRate}, {"delays", o.DelayRate}, {"shorts", o.ShortRate}, {"panics", o.PanicRate}} {
		if math.IsNaN(r.v) || r.v < 0 || r.v > 1 {
			return fmt.Errorf("fault: %s rate %v: want a probability from 0 to 1", r.name, r.v)
		}
	}
	if o.MaxDelay < 0 {
		return fmt.Errorf("fault: max-delay %v is negative", o.MaxDelay)
	}
	if o.TransferSize < 0 {
		return fmt.Errorf("fault: transfer size %d is negative", o.TransferSize)
	}
	return nil
}

// Provider is the misbehaving memory. It is safe for concurrent use.
type Provider struct {
	o    Options
	key  uint64 // the content's stream
	fkey uint64 // the faults' stream

	calls  atomic.Uint64 // ReadAt calls so far: the index of the next draw
	inside atomic.Int64  // ReadAt calls under way
	closed atomic.Bool

	delays, errs, shorts, panics atomic.Int64
	afterClose, insideAtClose    atomic.Int64
}

// New returns a provider. Options that Check refuses are bent into range:
// rates are clamped to [0, 1], a negative delay or transfer size is 0, a
// size under 1 is 1.
func New(o Options) *Provider {
	clamp := func(v float64) float64 {
		if math.IsNaN(v) || v < 0 {
			return 0
		}
		return min(v, 1)
	}
	o.ErrorRate, o.DelayRate = clamp(o.ErrorRate), clamp(o.DelayRate)
	o.ShortRate, o.PanicRate = clamp(o.ShortRate), clamp(o.PanicRate)
	o.Size = max(o.Size, 1)
	o.MaxDelay = max(o.MaxDelay, 0)
	o.TransferSize = max(o.TransferSize, 0)
	p := &Provider{o: o, key: splitmix(o.Seed), fkey: splitmix(o.Seed ^ 0xfa17fa17fa17fa17)}
	live.Add(1)
	runtime.AddCleanup(p, func(struct{}) { live.Add(-1) }, struct{}{})
	return p
}

// live counts the providers New made that the garbage collector has not
// reclaimed yet.
var live atomic.Int64

// Live returns how many providers are in memory: made by New and not yet
// garbage-collected (as of the last collection). Closed providers that stay
// in memory, collection after collection, are held by something that kept
// their device after its removal.
func Live() int64 { return live.Load() }

// Options returns the options in force.
func (p *Provider) Options() Options { return p.o }

// Size is Options.Size.
func (p *Provider) Size() int64 { return p.o.Size }

// TransferSize is Options.TransferSize; 0 leaves the core's default.
func (p *Provider) TransferSize() int { return p.o.TransferSize }

// Error is an injected failure. It wraps syscall.EIO: the FUSE layer
// answers EIO, and the core does not take it for vanished hardware.
type Error struct {
	Call uint64 // the index of the ReadAt call
	Off  int64
	N    int
}

func (e *Error) Error() string {
	return fmt.Sprintf("fault: injected I/O error (call %d, %d bytes at %#x)", e.Call, e.N, e.Off)
}

// Unwrap returns syscall.EIO.
func (e *Error) Unwrap() error { return syscall.EIO }

// ErrClosed is returned by calls that arrive after Close. The core must
// never make them; the provider logs each one.
var ErrClosed = errors.New("fault: read after Close")

// draw is the decision of one call.
type draw struct {
	delay                time.Duration
	panics, fails, short bool
	keep                 float64 // the part of a short transfer kept, [0, 1)
}

// Delay is how long the call-th ReadAt (counting from 0) sleeps before it
// goes on: a test picks a seed whose first call stalls as long as it needs.
func (p *Provider) Delay(call uint64) time.Duration { return p.draw(call).delay }

func (p *Provider) draw(call uint64) draw {
	u := func(j uint64) float64 {
		return float64(splitmix(p.fkey+(call*8+j)*golden)>>11) / (1 << 53)
	}
	var d draw
	if u(0) < p.o.DelayRate && p.o.MaxDelay > 0 {
		// (0, MaxDelay]: 1-u is in (0, 1].
		d.delay = max(time.Duration((1-u(1))*float64(p.o.MaxDelay)), 1)
	}
	d.panics = u(2) < p.o.PanicRate
	d.fails = u(3) < p.o.ErrorRate
	d.short = u(4) < p.o.ShortRate
	d.keep = u(5)
	return d
}

// ReadAt reads the computed content, unless a fault is drawn. Faults apply
// in this order: the delay, then a panic, then an error, then a short
// transfer; each has its own draw.
func (p *Provider) ReadAt(b []byte, off int64) (int, error) {
	if p.closed.Load() {
		p.afterClose.Add(1)
		slog.Error("fault provider called after Close", "device", p.o.Name, "off", off, "len", len(b))
		return 0, ErrClosed
	}
	p.inside.Add(1)
	defer p.inside.Add(-1)
	call := p.calls.Add(1) - 1
	if off < 0 {
		return 0, fmt.Errorf("fault: negative offset %d", off)
	}
	d := p.draw(call)
	if d.delay > 0 {
		p.delays.Add(1)
		time.Sleep(d.delay)
	}
	if d.panics {
		p.panics.Add(1)
		poison(b, p.key, off)
		panic(fmt.Sprintf("fault: injected panic (call %d, %d bytes at %#x)", call, len(b), off))
	}
	if d.fails {
		p.errs.Add(1)
		poison(b, p.key, off)
		return 0, &Error{Call: call, Off: off, N: len(b)}
	}
	if off >= p.o.Size {
		return 0, io.EOF
	}
	n := int(min(int64(len(b)), p.o.Size-off))
	if d.short {
		p.shorts.Add(1)
		k := int(d.keep * float64(n)) // 0 to n-1
		fill(b[:k], p.key, off)
		poison(b[k:], p.key, off+int64(k))
		return k, nil
	}
	fill(b[:n], p.key, off)
	if n < len(b) {
		return n, io.EOF
	}
	return n, nil
}

// Close marks the provider closed and logs its counters, and how many
// providers are in memory (Live). Calls that arrive later fail with
// ErrClosed, and so does a second Close.
func (p *Provider) Close() error {
	if p.closed.Swap(true) {
		slog.Error("fault provider closed twice", "device", p.o.Name)
		return errors.New("fault: closed twice")
	}
	inside := p.inside.Load()
	p.insideAtClose.Store(inside)
	if inside != 0 {
		slog.Error("fault provider closed with calls inside", "device", p.o.Name, "inside", inside)
	}
	s := p.Stats()
	slog.Info("fault provider closed", "device", p.o.Name, "seed", p.o.Seed, "reads", s.Reads,
		"errors", s.Errors, "delays", s.Delays, "shorts", s.Shorts, "panics", s.Panics, "live", Live())
	return nil
}

// Stats counts what the provider did.
type Stats struct {
	Reads                          int64 // ReadAt calls before Close
	Errors, Delays, Shorts, Panics int64 // faults injected
	// CallsAfterClose and InsideAtClose must stay 0: the core never calls
	// a closed provider, and closes it only once every call has returned.
	CallsAfterClose, InsideAtClose int64
	Closed                         bool
}

// Stats returns the counters so far.
func (p *Provider) Stats() Stats {
	return Stats{
		Reads:           int64(p.calls.Load()),
		Errors:          p.errs.Load(),
		Delays:          p.delays.Load(),
		Shorts:          p.shorts.Load(),
		Panics:          p.panics.Load(),
		CallsAfterClose: p.afterClose.Load(),
		InsideAtClose:   p.insideAtClose.Load(),
		Closed:          p.closed.Load(),
	}
}

// golden is the increment of the splitmix64 sequence.
const golden = 0x9e3779b97f4a7c15

// splitmix is the splitmix64 finaliser: a good 64-bit mix of x.
func splitmix(x uint64) uint64 {
	x += golden
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// word is the 8 bytes of content block i (bytes 8i to 8i+7), little-endian.
func word(key uint64, block uint64) uint64 { return splitmix(key + block*golden) }

// fill writes the content from off into b.
func fill(b []byte, key uint64, off int64) {
	for i := 0; i < len(b); {
		pos := uint64(off) + uint64(i)
		w := word(key, pos>>3) >> (8 * (pos & 7))
		for j := pos & 7; j < 8 && i < len(b); j++ {
			b[i] = byte(w)
			w >>= 8
			i++
		}
	}
}

// poison writes into b bytes that all differ from the content at off.
func poison(b []byte, key uint64, off int64) {
	fill(b, key, off)
	for i := range b {
		b[i] = ^b[i]
	}
}

// Byte returns byte i of the content of a provider with this seed.
func Byte(seed uint64, i int64) byte {
	var b [1]byte
	fill(b[:], splitmix(seed), i)
	return b[0]
}

// Truth returns the n bytes at off of the content of a provider with this
// seed: what every successful read there must return.
func Truth(seed uint64, off int64, n int) []byte {
	b := make([]byte, n)
	fill(b, splitmix(seed), off)
	return b
}
