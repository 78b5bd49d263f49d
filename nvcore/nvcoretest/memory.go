// Package nvcoretest provides test doubles for nvcore providers: an
// in-memory provider that can be slowed, gated, failed and inspected, and
// wrappers that take its read or write face away.
package nvcoretest

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Memory is a provider backed by a byte slice. Every call checks that the
// provider is still open and counts itself, so a test can prove that the
// core never calls a closed provider.
type Memory struct {
	mu   sync.Mutex
	data []byte

	// Xfer, when not zero, is reported as the transfer size. Set it before
	// registering.
	Xfer int

	delay atomic.Int64 // nanoseconds slept inside every read and write
	hook  atomic.Pointer[func(op string, off int64, n int) error]

	closed          atomic.Bool
	inside          atomic.Int64 // calls under way
	insideAtClose   atomic.Int64
	reads, writes   atomic.Int64
	callsAfterClose atomic.Int64
	syncs           atomic.Int64
}

// NewMemory returns a provider holding a copy of data.
func NewMemory(data []byte) *Memory {
	return &Memory{data: append([]byte(nil), data...)}
}

// Size is len(data).
func (m *Memory) Size() int64 { return int64(len(m.data)) }

// TransferSize returns Xfer.
func (m *Memory) TransferSize() int { return m.Xfer }

func (m *Memory) enter(op string, off int64, n int) error {
	if m.closed.Load() {
		m.callsAfterClose.Add(1)
		return fmt.Errorf("nvcoretest: %s after Close", op)
	}
	if h := m.hook.Load(); h != nil {
		if err := (*h)(op, off, n); err != nil {
			return err
		}
	}
	if d := m.delay.Load(); d > 0 {
		time.Sleep(time.Duration(d))
	}
	return nil
}

// SetDelay makes every later read and write sleep d inside the provider.
func (m *Memory) SetDelay(d time.Duration) { m.delay.Store(int64(d)) }

// SetHook makes hook run at the start of every later call, inside the
// core's read section; a non-nil error fails the call. It may block. nil
// removes the hook. Safe to call while the provider is in use.
func (m *Memory) SetHook(hook func(op string, off int64, n int) error) {
	if hook == nil {
		m.hook.Store(nil)
		return
	}
	m.hook.Store(&hook)
}

// ReadAt copies from the memory.
func (m *Memory) ReadAt(p []byte, off int64) (int, error) {
	m.reads.Add(1)
	m.inside.Add(1)
	defer m.inside.Add(-1)
	if err := m.enter("read", off, len(p)); err != nil {
		return 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if off < 0 || off+int64(len(p)) > int64(len(m.data)) {
		return 0, fmt.Errorf("nvcoretest: read of %d at %d out of range", len(p), off)
	}
	return copy(p, m.data[off:]), nil
}

// WriteAt copies into the memory.
func (m *Memory) WriteAt(p []byte, off int64) (int, error) {
	m.writes.Add(1)
	m.inside.Add(1)
	defer m.inside.Add(-1)
	if err := m.enter("write", off, len(p)); err != nil {
		return 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if off < 0 || off+int64(len(p)) > int64(len(m.data)) {
		return 0, fmt.Errorf("nvcoretest: write of %d at %d out of range", len(p), off)
	}
	return copy(m.data[off:], p), nil
}

// Sync counts itself.
func (m *Memory) Sync() error {
	if err := m.enter("sync", 0, 0); err != nil {
		return err
	}
	m.syncs.Add(1)
	return nil
}

// Close marks the provider closed; a second Close is an error.
func (m *Memory) Close() error {
	m.insideAtClose.Store(m.inside.Load())
	if m.closed.Swap(true) {
		return fmt.Errorf("nvcoretest: closed twice")
	}
	return nil
}

// Bytes returns a copy of the memory.
func (m *Memory) Bytes() []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]byte(nil), m.data...)
}

// Closed reports whether Close was called.
func (m *Memory) Closed() bool { return m.closed.Load() }

// Reads, Writes and Syncs count the calls made, Syncs only the successful ones.
func (m *Memory) Reads() int64  { return m.reads.Load() }
func (m *Memory) Writes() int64 { return m.writes.Load() }
func (m *Memory) Syncs() int64  { return m.syncs.Load() }

// InsideAtClose is how many calls were still running when Close was
// called: always 0 in a correct core.
func (m *Memory) InsideAtClose() int64 { return m.insideAtClose.Load() }

// CallsAfterClose counts calls made after Close: always 0 in a correct core.
func (m *Memory) CallsAfterClose() int64 { return m.callsAfterClose.Load() }

// ReadOnly hides the write face of m: the core sees a provider that cannot
// write.
func ReadOnly(m *Memory) *ReadOnlyMemory { return &ReadOnlyMemory{m} }

// ReadOnlyMemory is a Memory without WriteAt.
type ReadOnlyMemory struct{ m *Memory }

func (r *ReadOnlyMemory) Size() int64                             { return r.m.Size() }
func (r *ReadOnlyMemory) Close() error                            { return r.m.Close() }
func (r *ReadOnlyMemory) ReadAt(p []byte, off int64) (int, error) { return r.m.ReadAt(p, off) }

// WriteOnly hides the read face of m, as a write-only OTP programmer would.
func WriteOnly(m *Memory) *WriteOnlyMemory { return &WriteOnlyMemory{m} }

// WriteOnlyMemory is a Memory without ReadAt.
type WriteOnlyMemory struct{ m *Memory }

func (w *WriteOnlyMemory) Size() int64                              { return w.m.Size() }
func (w *WriteOnlyMemory) Close() error                             { return w.m.Close() }
func (w *WriteOnlyMemory) WriteAt(p []byte, off int64) (int, error) { return w.m.WriteAt(p, off) }
