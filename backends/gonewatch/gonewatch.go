// Package gonewatch polls for hardware that went away without telling
// anyone: a kernel device whose sysfs entry vanished while nobody read it.
// Providers that implement nvcore.GoneNotifier start a Watcher in
// NotifyGone and stop it in Close.
package gonewatch

import (
	"sync"
	"time"
)

// Watcher runs one poller at most. The zero value is ready to use.
type Watcher struct {
	mu      sync.Mutex
	stopped bool
	stop    chan struct{} // closed by Stop to end the poller
	done    chan struct{} // closed by the poller when it returns
}

// Start calls gone once, from a goroutine of its own, when gone() first
// reports true, asking every interval, until Stop. A second Start, or a
// Start after Stop, does nothing. gone must not wait for Stop (the
// registry calls Close, which calls Stop, on another goroutine).
func (w *Watcher) Start(interval time.Duration, isGone func() bool, gone func()) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped || w.stop != nil {
		return
	}
	w.stop, w.done = make(chan struct{}), make(chan struct{})
	go watch(interval, isGone, gone, w.stop, w.done)
}

func watch(interval time.Duration, isGone func() bool, gone func(), stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			if isGone() {
				gone()
				return
			}
		}
	}
}

// Stop ends the poller and waits for it to return. Later calls, and
// later Starts, do nothing.
func (w *Watcher) Stop() {
	w.mu.Lock()
	if w.stopped {
		w.mu.Unlock()
		return
	}
	w.stopped = true
	stop, done := w.stop, w.done
	w.mu.Unlock()
	if stop != nil {
		close(stop)
		<-done
	}
}

// Done is closed when the poller has returned: after it called gone, or
// after Stop. It is nil before Start.
func (w *Watcher) Done() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.done
}
