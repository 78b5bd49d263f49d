package nvcore

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// A reader counts on the slot of the core it runs on, as the kernel's SRCU
// uses this_cpu_inc, so two cores never write the same cache line.
// Lock finds the core: with the gc toolchain, the runtime's P through
// procPin (srcu_procpin.go); with another toolchain, or built with -tags
// nvmemfs_noprocpin, a number a sync.Pool keeps per P (srcu_nopin.go,
// poolSlotHint below). Either way it is only a hint: correctness never
// depends on it, and docs/PERFORMANCE.md gives what each costs.

// srcuSlots is the number of counter slots readers spread over. More slots
// than cores keeps two readers on different cores off the same cache line
// most of the time; the slot is only an affinity hint, never a correctness
// condition. Capped at 64 (8 KiB a device) so that thousands of devices on a
// big machine stay small.
var srcuSlots = nextPow2(min(64, max(4, 2*runtime.GOMAXPROCS(0))))

// cacheLine is generous on purpose: adjacent-line prefetch on x86 pulls
// pairs of 64-byte lines, so 128 bytes keeps neighbours truly apart.
const cacheLine = 128

// srcuSlot holds one shard of the reader counts. Lock and unlock counts are
// kept apart, one pair per epoch, as the kernel's SRCU does: a reader
// increments lock[e] on entry and unlock[e] on exit, and Synchronize compares
// the sums. The counts only grow (64 bits never wrap in practice), so a
// reader may leave on another goroutine than the one it entered on.
type srcuSlot struct {
	lock   [2]atomic.Uint64
	unlock [2]atomic.Uint64
	_      [cacheLine - 4*8]byte
}

// SRCU is a sleepable read-copy-update domain: readers pay two uncontended
// atomic increments on their own cache line, and only Synchronize waits.
//
// Readers that Lock after Synchronize has begun do not delay it: they count
// in the other epoch, so a steady stream of new readers cannot starve a
// writer. Synchronize blocks on a channel, woken by the last reader of the
// epoch it waits for; it does not spin.
type SRCU struct {
	slots []srcuSlot
	epoch atomic.Uint32 // low bit selects the epoch new readers count in

	syncMu  sync.Mutex    // one Synchronize at a time
	waiting atomic.Int32  // nonzero while Synchronize waits: Unlock then wakes it
	wake    chan struct{} // capacity 1: a wake-up is never lost and never blocks
}

// SRCUToken is what Lock returns and Unlock takes back: it records which
// slot and epoch the reader counted in.
type SRCUToken struct {
	slot  *srcuSlot
	epoch uint32
}

// NewSRCU returns a ready domain.
func NewSRCU() *SRCU {
	return &SRCU{slots: make([]srcuSlot, srcuSlots), wake: make(chan struct{}, 1)}
}

// Lock (in srcu_procpin.go and srcu_nopin.go) enters a read section
// counting on the slot of the reader's core; it never blocks.

// lockAt enters a read section counting on the slot hint selects. The
// goroutine may have moved to another core since the hint was taken: the
// token remembers the slot it used, and any slot is correct.
func (s *SRCU) lockAt(hint int) SRCUToken {
	slot := &s.slots[hint&(len(s.slots)-1)]
	e := s.epoch.Load() & 1
	slot.lock[e].Add(1)
	return SRCUToken{slot: slot, epoch: e}
}

// Unlock leaves the read section entered by the Lock that returned t.
func (s *SRCU) Unlock(t SRCUToken) {
	t.slot.unlock[t.epoch].Add(1)
	if s.waiting.Load() != 0 {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// Synchronize returns once every read section that had entered before the
// call has left. It may sleep; never call it inside a read section of the
// same domain (it would wait for itself).
func (s *SRCU) Synchronize() {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	cur := s.epoch.Load() & 1
	// Readers that loaded the previous epoch just before an earlier flip may
	// still be counting there: let them out first, then flip, then wait for
	// the epoch every earlier reader counted in.
	s.drain(cur ^ 1)
	s.epoch.Add(1)
	s.drain(cur)
}

// drain waits until the read sections counted in epoch e have all left.
func (s *SRCU) drain(e uint32) {
	if s.idle(e) {
		return
	}
	s.waiting.Add(1)
	defer s.waiting.Add(-1)
	// A short grace of yields covers the common case of a reader a few
	// nanoseconds from Unlock, without a sleep.
	for range 4 {
		runtime.Gosched()
		if s.idle(e) {
			return
		}
	}
	// The timer is a safety net only: every Unlock after waiting is set
	// sends a wake-up, so the loop normally wakes as soon as a reader leaves.
	t := time.NewTimer(time.Millisecond)
	defer t.Stop()
	for !s.idle(e) {
		select {
		case <-s.wake:
		case <-t.C:
			t.Reset(time.Millisecond)
		}
	}
}

// idle reports whether no read section counted in epoch e is open. Unlocks
// are summed before locks: every unlock seen then has its lock seen too (both
// are on the same slot, and the lock came first), so equal sums mean every
// counted reader has left. A reader whose lock is missed entered after the
// sums were read, and it will see whatever the caller published before
// Synchronize.
func (s *SRCU) idle(e uint32) bool {
	var unlocks, locks uint64
	for i := range s.slots {
		unlocks += s.slots[i].unlock[e].Load()
	}
	for i := range s.slots {
		locks += s.slots[i].lock[e].Load()
	}
	return locks == unlocks
}

// poolHints hands each P a number of its own: sync.Pool keeps one item per
// P and gives it back to the goroutine running there, so the number works
// as a core's slot hint without the runtime's help. Items dropped by a
// garbage collection (or at random by the race detector) are replaced by
// fresh numbers: the hint only spreads readers out.
var (
	poolHints = sync.Pool{New: func() any {
		n := int(poolHintNext.Add(1) - 1)
		return &n
	}}
	poolHintNext atomic.Uint32
)

// poolSlotHint is the slot hint without procPin.
func poolSlotHint() int {
	h := poolHints.Get().(*int)
	n := *h
	poolHints.Put(h)
	return n
}

func nextPow2(n int) int {
	p := 1
	for p < n {
		p <<= 1
	}
	return p
}
