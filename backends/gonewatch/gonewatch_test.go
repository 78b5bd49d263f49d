package gonewatch

import (
	"sync/atomic"
	"testing"
	"time"
)

// TestWatcher: gone is called once, when the check first says so, and the
// poller returns then; Stop waits for it; a Start after Stop, or a second
// Start, starts nothing.
func TestWatcher(t *testing.T) {
	var w Watcher
	if w.Done() != nil {
		t.Error("Done before Start is not nil")
	}
	var checks, calls atomic.Int32
	called := make(chan struct{})
	w.Start(time.Millisecond, func() bool { return checks.Add(1) >= 3 }, func() {
		if calls.Add(1) == 1 {
			close(called)
		}
	})
	w.Start(time.Millisecond, func() bool { return true }, func() { t.Error("a second Start ran") })
	<-called
	<-w.Done()
	if c, n := checks.Load(), calls.Load(); c != 3 || n != 1 {
		t.Errorf("%d checks, %d calls; want 3, 1", c, n)
	}
	w.Stop()
	w.Stop()

	var stopped Watcher
	stopped.Start(time.Millisecond, func() bool { return false }, func() {})
	stopped.Stop()
	select {
	case <-stopped.Done():
	default:
		t.Error("Stop returned with the poller running")
	}
	stopped.Start(time.Millisecond, func() bool { return true }, func() { t.Error("Start after Stop ran") })
	var never Watcher
	never.Stop()
	never.Start(time.Millisecond, func() bool { return true }, func() { t.Error("Start after Stop ran") })
	time.Sleep(10 * time.Millisecond)
}
