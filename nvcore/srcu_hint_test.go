package nvcore

import (
	"sync"
	"testing"
	"unsafe"
)

// The slot hint and the counters' layout. Run with and without the
// fallback, and on 32-bit builds, where a uint64 is aligned to 8 bytes only
// when its type says so:
//
//	go test -race -run 'SRCU|Synchronize|Reader|Unlock|Slot' ./nvcore/
//	go test -race -tags nvmemfs_noprocpin ./nvcore/
//	GOARCH=386 go test -tags nvmemfs_noprocpin ./nvcore/

// TestSlotLayout: every counter is 8-byte aligned, which 64-bit atomics
// need on 386, arm and mips (they panic, or tear, otherwise), and one slot
// fills its cache line, so neighbours never share one. atomic.Uint64
// carries its alignment in its type; a plain uint64 field would be
// aligned to 4 on those ports.
func TestSlotLayout(t *testing.T) {
	if got := unsafe.Sizeof(srcuSlot{}); got != cacheLine {
		t.Errorf("sizeof(srcuSlot) = %d, want %d", got, cacheLine)
	}
	if got := unsafe.Alignof(srcuSlot{}); got < 8 {
		t.Errorf("alignof(srcuSlot) = %d, want at least 8", got)
	}
	s := NewSRCU()
	for i := range s.slots {
		for e := range 2 {
			for _, p := range []*uint64{(*uint64)(unsafe.Pointer(&s.slots[i].lock[e])), (*uint64)(unsafe.Pointer(&s.slots[i].unlock[e]))} {
				if uintptr(unsafe.Pointer(p))%8 != 0 {
					t.Fatalf("slot %d epoch %d: counter at %p, not 8-byte aligned", i, e, p)
				}
			}
		}
	}
	// The counters are exercised too: a misaligned 64-bit atomic panics
	// on 386 and arm.
	for i := range 4 * len(s.slots) {
		s.Unlock(s.lockAt(i))
	}
	s.Synchronize()
}

// TestSlotHint: with the hint this build uses, and with the pool fallback
// whatever the build, every read section of readers on several cores is
// counted and left: a reader may count on any slot, Synchronize sums them.
func TestSlotHint(t *testing.T) {
	t.Logf("this build's slot hint: %s", slotHintKind)
	for _, h := range []struct {
		name string
		fn   func() int
	}{{slotHintKind, slotHint}, {"pool", poolSlotHint}} {
		t.Run(h.name, func(t *testing.T) {
			s := NewSRCU()
			var wg sync.WaitGroup
			for range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range 1000 {
						s.Unlock(s.lockAt(h.fn()))
					}
				}()
			}
			wg.Wait()
			s.Synchronize()
			var locks, unlocks uint64
			for i := range s.slots {
				for e := range 2 {
					locks += s.slots[i].lock[e].Load()
					unlocks += s.slots[i].unlock[e].Load()
				}
			}
			if locks != 8000 || unlocks != 8000 {
				t.Errorf("counted %d locks, %d unlocks, want 8000 each", locks, unlocks)
			}
		})
	}
}
