package nvcore

// These tests are internal (package nvcore) only so that they can watch the
// epoch flip: "a reader that locks after Synchronize began" must lock after
// the flip, and only the epoch field shows when that is. They use nothing but
// the exported API otherwise.

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// settle is how long a test gives a goroutine to reach the point where it
// blocks. It is never an assertion by itself: a test only ever checks that
// something has NOT happened after it, so a slow machine can make such a
// test miss a bug, never fail a correct SRCU.
const settle = 50 * time.Millisecond

// deadline bounds every wait for something that must happen.
const deadline = 5 * time.Second

// goSynchronize runs s.Synchronize on its own goroutine and returns a
// channel closed when it returns.
func goSynchronize(s *SRCU) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		s.Synchronize()
		close(done)
	}()
	return done
}

func mustFinish(t *testing.T, done <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(deadline):
		t.Fatalf("%s did not return within %v", what, deadline)
	}
}

func mustNotFinish(t *testing.T, done <-chan struct{}, what string) {
	t.Helper()
	time.Sleep(settle)
	select {
	case <-done:
		t.Fatalf("%s returned while a reader that entered before it was still inside", what)
	default:
	}
}

// waitFlip waits until the epoch has moved past from: Synchronize has flipped
// it, so a Lock from now on counts in the new epoch.
func waitFlip(t *testing.T, s *SRCU, from uint32) {
	t.Helper()
	stop := time.Now().Add(deadline)
	for s.epoch.Load() == from {
		if time.Now().After(stop) {
			t.Fatalf("Synchronize never flipped the epoch")
		}
		runtime.Gosched()
	}
}

func TestSynchronizeNoReaders(t *testing.T) {
	s := NewSRCU()
	// Once on a fresh domain, then many times in a row: with nobody inside,
	// every call must return without waiting for anything.
	mustFinish(t, goSynchronize(s), "Synchronize on a fresh domain")
	done := make(chan struct{})
	go func() {
		for range 10000 {
			s.Synchronize()
		}
		close(done)
	}()
	mustFinish(t, done, "10000 Synchronize calls with no reader")

	// Readers that have all left count as no readers.
	for range 100 {
		s.Unlock(s.Lock())
	}
	mustFinish(t, goSynchronize(s), "Synchronize after every reader left")
}

func TestSynchronizeWaitsForEarlierReader(t *testing.T) {
	s := NewSRCU()
	tok := s.Lock()
	done := goSynchronize(s)
	mustNotFinish(t, done, "Synchronize")
	s.Unlock(tok)
	mustFinish(t, done, "Synchronize after the reader left")
}

func TestSynchronizeWaitsForEveryEarlierReader(t *testing.T) {
	// Several readers, possibly on several slots, leave one at a time;
	// Synchronize must wait for the last one.
	s := NewSRCU()
	const n = 8
	toks := make(chan SRCUToken, n)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() { defer wg.Done(); toks <- s.Lock() }()
	}
	wg.Wait()
	close(toks)
	done := goSynchronize(s)
	var held []SRCUToken
	for tok := range toks {
		held = append(held, tok)
	}
	for i, tok := range held {
		mustNotFinish(t, done, fmt.Sprintf("Synchronize with %d readers inside", n-i))
		s.Unlock(tok)
	}
	mustFinish(t, done, "Synchronize after the last reader left")
}

func TestLaterReaderDoesNotDelaySynchronize(t *testing.T) {
	s := NewSRCU()
	early := s.Lock()
	e := s.epoch.Load()
	done := goSynchronize(s)
	waitFlip(t, s, e)

	// This reader entered after Synchronize began, and holds on.
	late := s.Lock()
	mustNotFinish(t, done, "Synchronize")
	s.Unlock(early)
	mustFinish(t, done, "Synchronize, with only a later reader still inside,")

	// The late reader is earlier than the next Synchronize, which must wait
	// for it: the late reader counted in the other epoch.
	next := goSynchronize(s)
	mustNotFinish(t, next, "the next Synchronize")
	s.Unlock(late)
	mustFinish(t, next, "the next Synchronize after the late reader left")
}

func TestStreamOfNewReadersDoesNotStarveSynchronize(t *testing.T) {
	// While Synchronize waits for one early reader, goroutines keep entering
	// and leaving; some hold on for a while. Once the early reader leaves,
	// Synchronize must return although new readers never stop coming.
	s := NewSRCU()
	early := s.Lock()
	e := s.epoch.Load()
	done := goSynchronize(s)
	waitFlip(t, s, e)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				tok := s.Lock()
				runtime.Gosched()
				s.Unlock(tok)
			}
		}()
	}
	defer func() { close(stop); wg.Wait() }()
	mustNotFinish(t, done, "Synchronize")
	s.Unlock(early)
	mustFinish(t, done, "Synchronize under a stream of new readers")
}

func TestUnlockOnAnotherGoroutine(t *testing.T) {
	s := NewSRCU()
	toks := make(chan SRCUToken)
	go func() { toks <- s.Lock() }()
	tok := <-toks

	done := goSynchronize(s)
	mustNotFinish(t, done, "Synchronize")
	unlocked := make(chan struct{})
	go func() {
		s.Unlock(tok)
		close(unlocked)
	}()
	mustFinish(t, unlocked, "Unlock")
	mustFinish(t, done, "Synchronize after an Unlock on another goroutine")

	// Many readers handed over from goroutine to goroutine keep the counts
	// balanced: the domain ends idle.
	var wg sync.WaitGroup
	handoff := make(chan SRCUToken, 64)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 500 {
				handoff <- s.Lock()
			}
		}()
	}
	var uwg sync.WaitGroup
	uwg.Add(1)
	go func() {
		defer uwg.Done()
		for tok := range handoff {
			s.Unlock(tok)
		}
	}()
	wg.Wait()
	close(handoff)
	uwg.Wait()
	mustFinish(t, goSynchronize(s), "Synchronize after 2000 handed-over readers")
}

func TestConcurrentSynchronizeCalls(t *testing.T) {
	// Two Synchronize calls at once, both behind the same reader: neither
	// may return before it leaves, and both must return after.
	s := NewSRCU()
	tok := s.Lock()
	a, b := goSynchronize(s), goSynchronize(s)
	mustNotFinish(t, a, "first Synchronize")
	mustNotFinish(t, b, "second Synchronize")
	s.Unlock(tok)
	mustFinish(t, a, "first Synchronize")
	mustFinish(t, b, "second Synchronize")
}

// generation is one published version in the stress test. Readers find the
// current one through a pointer, inside a read section; a writer swaps in a
// new one, calls Synchronize, and then retires the old one. A correct SRCU
// guarantees no reader of the old one is left at that point.
type generation struct {
	active  atomic.Int64 // readers inside that found this generation
	retired atomic.Bool
}

func TestSRCUStress(t *testing.T) {
	s := NewSRCU()
	var cur atomic.Pointer[generation]
	cur.Store(new(generation))

	var violations atomic.Int64
	var firstViolation atomic.Value
	report := func(format string, args ...any) {
		if violations.Add(1) == 1 {
			firstViolation.Store(fmt.Sprintf(format, args...))
		}
	}

	readers := 2 * runtime.GOMAXPROCS(0)
	if readers < 4 {
		readers = 4
	}
	syncs := 2000
	if testing.Short() {
		syncs = 200
	}

	stop := make(chan struct{})
	var reads atomic.Int64
	var rwg sync.WaitGroup
	for r := range readers {
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				tok := s.Lock()
				g := cur.Load()
				g.active.Add(1)
				// Stay inside for a varying while, sometimes yielding so a
				// Synchronize can run meanwhile.
				if (i+r)%3 == 0 {
					runtime.Gosched()
				}
				if g.retired.Load() {
					report("reader %d found its generation retired while inside its read section", r)
				}
				g.active.Add(-1)
				s.Unlock(tok)
				reads.Add(1)
			}
		}()
	}

	// Two writers, so that Synchronize calls also overlap one another.
	var wwg sync.WaitGroup
	for w := range 2 {
		wwg.Add(1)
		go func() {
			defer wwg.Done()
			for i := range syncs / 2 {
				old := cur.Swap(new(generation))
				s.Synchronize()
				old.retired.Store(true)
				if n := old.active.Load(); n != 0 {
					report("writer %d, round %d: Synchronize returned with %d readers of the old generation inside", w, i, n)
				}
			}
		}()
	}

	writersDone := make(chan struct{})
	go func() { wwg.Wait(); close(writersDone) }()
	select {
	case <-writersDone:
	case <-time.After(4 * deadline):
		close(stop)
		t.Fatalf("writers did not finish %d Synchronize calls within %v", syncs, 4*deadline)
	}
	close(stop)
	rwg.Wait()

	if n := violations.Load(); n != 0 {
		t.Fatalf("%d violations; first: %s", n, firstViolation.Load())
	}
	if reads.Load() == 0 {
		t.Fatalf("no read section ran: the stress test tested nothing")
	}
	t.Logf("%d Synchronize calls against %d read sections from %d readers", syncs, reads.Load(), readers)
}
