package mtd_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nvmemfs/nvmemfs/backends/mtd"
	"github.com/nvmemfs/nvmemfs/backends/mtd/mtdtest"
	"github.com/nvmemfs/nvmemfs/nvcore"
)

const es = 256 // erase size of most tests

func newFlash(t *testing.T, c mtdtest.Config) (*mtdtest.Flash, *mtd.Flash) {
	t.Helper()
	if c.EraseSize == 0 {
		c.EraseSize = es
	}
	if c.Size == 0 {
		c.Size = 8 * int64(c.EraseSize)
	}
	sim := mtdtest.MustNew(c)
	p, err := mtd.Open(sim, mtd.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f, ok := p.(*mtd.Flash)
	if !ok {
		t.Fatalf("Open gave a %T", p)
	}
	t.Cleanup(func() { f.Close() })
	return sim, f
}

func register(t *testing.T, p nvcore.Provider) (*nvcore.Registry, *nvcore.Device) {
	t.Helper()
	reg := nvcore.NewRegistry()
	t.Cleanup(func() { reg.RemoveAll() })
	d, err := reg.Register(nvcore.Config{Name: "fl"}, p)
	if err != nil {
		t.Fatal(err)
	}
	return reg, d
}

func pattern(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// TestEraseCost: through the core, a write costs exactly the erases its
// blocks need: none where bits are only cleared, none where nothing
// changes, one for each block where a bit must rise.
func TestEraseCost(t *testing.T) {
	zeros := func(n int) []byte { return make([]byte, n) }
	cases := []struct {
		name     string
		before   []byte // loaded at 0
		off      int64
		data     []byte
		erases   int
		programs int // program operations
	}{
		{name: "erased flash, one block", off: 0, data: pattern(1, es), erases: 0, programs: 1},
		{name: "erased flash, three blocks", off: es / 2, data: pattern(2, 2*es), erases: 0, programs: 3},
		{name: "clearing bits only", before: bytes.Repeat([]byte{0xf0}, es), off: 10, data: []byte{0x80, 0x00, 0x10}, erases: 0, programs: 1},
		{name: "the boolean flag 1 to 0", before: []byte{1}, off: 0, data: []byte{0}, erases: 0, programs: 1},
		{name: "the same bytes again", before: pattern(3, es), off: 0, data: pattern(3, es), erases: 0, programs: 0},
		{name: "one bit rises", before: zeros(es), off: 100, data: []byte{0x01}, erases: 1, programs: 1},
		{name: "a bit rises in one of two blocks", before: append(zeros(es), bytes.Repeat([]byte{0xff}, 2*es)...),
			off: es - 1, data: append([]byte{0xff}, zeros(es)...), erases: 1, programs: 2},
		{name: "whole flash over random content", before: pattern(4, 8*es), off: 0, data: pattern(5, 8*es), erases: 8, programs: 8},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sim, f := newFlash(t, mtdtest.Config{})
			sim.Load(0, tc.before)
			want := sim.Bytes()
			copy(want[tc.off:], tc.data)
			_, d := register(t, f)
			sim.ResetStats()
			if n, err := d.WriteAt(tc.data, tc.off); err != nil || n != len(tc.data) {
				t.Fatalf("write: %d, %v", n, err)
			}
			st := sim.Stats()
			if st.Erases != tc.erases || st.Programs != tc.programs {
				t.Errorf("%d erases, %d programs; want %d, %d", st.Erases, st.Programs, tc.erases, tc.programs)
			}
			if got := sim.Bytes(); !bytes.Equal(got, want) {
				t.Errorf("content differs at %#x", firstDiff(got, want))
			}
			got := make([]byte, len(want))
			if _, err := d.ReadAt(got, 0); err != nil || !bytes.Equal(got, want) {
				t.Errorf("read back through the device: %v", err)
			}
		})
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestUnalignedMerge: writes at odd offsets and lengths, on flash whose
// program unit is larger than a byte, keep every byte around them; only
// whole, aligned units reach the chip (the simulator refuses others).
func TestUnalignedMerge(t *testing.T) {
	for _, ws := range []int{1, 2, 16, 64} {
		t.Run(fmt.Sprintf("write size %d", ws), func(t *testing.T) {
			sim, f := newFlash(t, mtdtest.Config{WriteSize: ws})
			sim.Load(0, pattern(10, 8*es))
			want := sim.Bytes()
			writes := []struct {
				off int64
				n   int
			}{{3, 1}, {es - 37, 100}, {2*es + 5, 3*es - 11}, {8*es - 1, 1}, {7, 0}}
			for i, w := range writes {
				data := pattern(uint64(20+i), w.n)
				copy(want[w.off:], data)
				if n, err := f.WriteAt(data, w.off); err != nil || n != w.n {
					t.Fatalf("write of %d at %#x: %d, %v", w.n, w.off, n, err)
				}
				if got := sim.Bytes(); !bytes.Equal(got, want) {
					t.Fatalf("after write %d: content differs at %#x", i, firstDiff(got, want))
				}
			}
			if sim.Stats().Refused != 0 {
				t.Errorf("%d operations refused", sim.Stats().Refused)
			}
		})
	}
}

// TestLockedBlocks: locked blocks are unlocked for their write and locked
// again; the others are left alone.
func TestLockedBlocks(t *testing.T) {
	sim, f := newFlash(t, mtdtest.Config{})
	sim.Load(0, make([]byte, 8*es)) // zeros: every write below needs an erase
	if err := sim.Lock(es, 2*es); err != nil {
		t.Fatal(err)
	}
	sim.ResetStats()
	data := pattern(30, 4*es)
	if _, err := f.WriteAt(data, 0); err != nil {
		t.Fatal(err)
	}
	if got := sim.Bytes()[:4*es]; !bytes.Equal(got, data) {
		t.Errorf("content differs at %#x", firstDiff(got, data))
	}
	for b, want := range []bool{false, true, true, false, false} {
		if got := sim.Locked(int64(b) * es); got != want {
			t.Errorf("block %d: locked %v, want %v", b, got, want)
		}
	}
	st := sim.Stats()
	if st.Unlocks != 2 || st.Locks != 2 || st.Erases != 4 {
		t.Errorf("%d unlocks, %d locks, %d erases; want 2, 2, 4", st.Unlocks, st.Locks, st.Erases)
	}
}

// TestUnlockRefused: a locked block that cannot be unlocked fails the
// write as read-only, before any erase; the blocks before it were written.
func TestUnlockRefused(t *testing.T) {
	sim, f := newFlash(t, mtdtest.Config{})
	sim.Load(0, make([]byte, 8*es))
	if err := sim.Lock(es, es); err != nil {
		t.Fatal(err)
	}
	sim.SetHook(func(op mtdtest.Op, off, length int64) error {
		if op == mtdtest.OpUnlock {
			return fmt.Errorf("unlock: %w", syscall.EPERM)
		}
		return nil
	})
	sim.ResetStats()
	before := sim.Bytes()
	n, err := f.WriteAt(pattern(31, 3*es), 0)
	if !errors.Is(err, nvcore.ErrReadOnly) || !errors.Is(err, syscall.EPERM) || n != es {
		t.Fatalf("write over a block that stays locked: %d, %v", n, err)
	}
	t.Log(err)
	if got := sim.Bytes(); !bytes.Equal(got[es:], before[es:]) {
		t.Errorf("the locked block or one after it changed at %#x", es+firstDiff(got[es:], before[es:]))
	}
	if st := sim.Stats(); st.Erases != 1 {
		t.Errorf("%d erases, want 1 (the block before)", st.Erases)
	}
}

// TestVerifyFailure: a block that does not read back as written fails the
// write with EIO; the blocks after it are not touched, and the device stays.
func TestVerifyFailure(t *testing.T) {
	sim, f := newFlash(t, mtdtest.Config{})
	sim.Load(0, make([]byte, 8*es))
	sim.SetStuck(es+17, 0x04) // a worn cell in block 1
	_, d := register(t, f)
	before := sim.Bytes()
	data := bytes.Repeat([]byte{0x11}, 3*es) // bit 2 clear everywhere
	sim.ResetStats()
	n, err := d.WriteAt(data, 0)
	if !errors.Is(err, nvcore.ErrIO) || n != 0 {
		t.Fatalf("write over a worn cell: %d, %v", n, err)
	}
	t.Log(err)
	got := sim.Bytes()
	if !bytes.Equal(got[:es], data[:es]) {
		t.Error("the block before the worn one was not written")
	}
	if !bytes.Equal(got[2*es:], before[2*es:]) {
		t.Errorf("a block after the failed one changed at %#x", 2*es+firstDiff(got[2*es:], before[2*es:]))
	}
	if st := sim.Stats(); st.Erases != 2 {
		t.Errorf("%d erases, want 2", st.Erases)
	}
	time.Sleep(10 * time.Millisecond)
	if d.Gone() {
		t.Error("a verify failure removed the device")
	}
}

// TestDetachDuringLongWrite: a removal during a write of many blocks waits
// for the erase-block cycle under way, not for the write (DESIGN rule 4):
// with the first block's erase held in flight, the removal is marked; once
// the erase goes on, only the rest of that block's cycle reaches the chip,
// Unregister returns, the write fails with ENODEV, and the chip is never
// called again. Counted on the chip, so no clock decides it.
func TestDetachDuringLongWrite(t *testing.T) {
	const blocks = 16
	sim, f := newFlash(t, mtdtest.Config{Size: blocks * es})
	sim.Load(0, make([]byte, blocks*es)) // every block needs an erase
	reg, d := register(t, f)

	var (
		mu       sync.Mutex
		marked   bool     // the device is marked gone
		returned bool     // Unregister has returned
		after    []chipOp // chip operations begun after the mark
		late     []chipOp // chip operations begun after Unregister returned
	)
	erasing := make(chan struct{}) // the first erase is in flight
	release := make(chan struct{}) // lets it go on
	var held, releaseOnce sync.Once
	letGo := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(letGo)
	sim.SetHook(func(op mtdtest.Op, off, length int64) error {
		what := chipOp{op, off, length}
		mu.Lock()
		if marked {
			after = append(after, what)
		}
		if returned {
			late = append(late, what)
		}
		mu.Unlock()
		if op == mtdtest.OpErase {
			held.Do(func() {
				close(erasing)
				<-release
			})
		}
		return nil
	})

	data := bytes.Repeat([]byte{0xa5}, blocks*es)
	done := make(chan error, 1)
	go func() {
		_, err := d.WriteAt(data, 0)
		done <- err
	}()
	<-erasing // block 0's cycle is under way, held in the erase

	unregistered := make(chan error, 1)
	go func() {
		err := reg.Unregister("fl")
		mu.Lock()
		returned = true
		mu.Unlock()
		unregistered <- err
	}()
	// The mark comes before the wait for the calls in flight (DESIGN rule 2).
	for deadline := time.Now().Add(10 * time.Second); !d.Gone(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the removal did not mark the device gone (a hang)")
		}
	}
	mu.Lock()
	marked = true
	mu.Unlock()
	atMark := sim.Stats()
	select {
	case err := <-unregistered:
		t.Fatalf("Unregister returned (%v) while the erase was in flight", err)
	default:
	}
	letGo()

	if err := <-unregistered; err != nil {
		t.Fatal(err)
	}
	atReturn := sim.Stats()
	if !sim.Closed() {
		t.Error("the flash is not closed after the removal")
	}
	if err := <-done; !errors.Is(err, nvcore.ErrNoDevice) {
		t.Errorf("the write: %v, want ENODEV", err)
	}

	mu.Lock()
	defer mu.Unlock()
	// After the mark: the rest of block 0's cycle (its program and verify
	// read), nothing on another block.
	var outside []chipOp
	for _, op := range after {
		if op.off < 0 || op.off+op.length > es {
			outside = append(outside, op)
		}
	}
	if len(outside) > 0 {
		t.Errorf("after the removal began, %d operations outside the erase block under way [0, %#x), the first %v", len(outside), es, outside[0])
	}
	if n := atReturn.Erases - atMark.Erases; n != 1 {
		t.Errorf("%d erases completed after the removal began, want 1 (the block under way)", n)
	}
	if len(late) > 0 {
		t.Errorf("the chip was called after Unregister returned: %v", late)
	}
	if end := sim.Stats(); end != atReturn {
		t.Errorf("the chip's counters moved after Unregister returned: %+v, then %+v", atReturn, end)
	}
	got := sim.Bytes()
	if !bytes.Equal(got[:es], data[:es]) {
		t.Error("the block under way was not written whole")
	}
	if !bytes.Equal(got[es:], make([]byte, (blocks-1)*es)) {
		t.Errorf("a block after the one under way changed at %#x", es+firstDiff(got[es:], make([]byte, (blocks-1)*es)))
	}
	t.Logf("after the removal began: %v", after[:min(len(after), 4)])
}

// chipOp is one operation on the simulated chip, as its hook sees it.
type chipOp struct {
	op          mtdtest.Op
	off, length int64
}

func (c chipOp) String() string { return fmt.Sprintf("%s of %#x bytes at %#x", c.op, c.length, c.off) }

// TestPowerCutStopsTheWrite: a chip that loses power during a write fails
// it with EIO, and the write goes no further.
func TestPowerCutStopsTheWrite(t *testing.T) {
	sim, f := newFlash(t, mtdtest.Config{})
	sim.Load(0, make([]byte, 8*es))
	sim.CutPowerAfter(1, false) // after the first erase
	_, err := f.WriteAt(bytes.Repeat([]byte{0x5a}, 2*es), 0)
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("write through a power cut: %v", err)
	}
	got := sim.Bytes()
	if !bytes.Equal(got[:es], bytes.Repeat([]byte{0xff}, es)) || !bytes.Equal(got[es:], make([]byte, 7*es)) {
		t.Error("content after the cut: want block 0 erased, the rest as it was")
	}
}

// TestHardwareGone: an error wrapping ENODEV from the chip removes the
// device, as from any provider.
func TestHardwareGone(t *testing.T) {
	sim, f := newFlash(t, mtdtest.Config{})
	_, d := register(t, f)
	sim.SetHook(func(mtdtest.Op, int64, int64) error { return fmt.Errorf("gone: %w", syscall.ENODEV) })
	if _, err := d.ReadAt(make([]byte, 4), 0); !errors.Is(err, syscall.ENODEV) {
		t.Fatalf("read: %v", err)
	}
	for deadline := time.Now().Add(5 * time.Second); !d.Gone(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the device was not removed")
		}
	}
}

// TestMtdramLike: MTD_RAM without locking and with plain copies is served
// as NOR.
func TestMtdramLike(t *testing.T) {
	sim, f := newFlash(t, mtdtest.Config{Type: mtd.TypeRAM, Flags: 0x1c00, NoLocking: true, PlainWrites: true, EraseSize: 1024, Size: 4096})
	data := pattern(40, 1500)
	if _, err := f.WriteAt(data, 700); err != nil {
		t.Fatal(err)
	}
	if got := sim.Bytes()[700:2200]; !bytes.Equal(got, data) {
		t.Error("content differs")
	}
}

func TestOpenKinds(t *testing.T) {
	cases := []struct {
		name     string
		c        mtdtest.Config
		o        mtd.Options
		canWrite bool
		err      error
		msg      string
	}{
		{name: "nor", c: mtdtest.Config{}, canWrite: true},
		{name: "ram", c: mtdtest.Config{Type: mtd.TypeRAM}, canWrite: true},
		{name: "nor read-only by option", c: mtdtest.Config{}, o: mtd.Options{ReadOnly: true}},
		{name: "nor without MTD_WRITEABLE", c: mtdtest.Config{Flags: mtd.FlagBitWriteable}},
		{name: "rom", c: mtdtest.Config{Type: mtd.TypeROM}},
		{name: "nand", c: mtdtest.Config{Type: mtd.TypeNANDFlash, WriteSize: 64}, err: nvcore.ErrNotSupported, msg: "bad-block"},
		{name: "mlc nand", c: mtdtest.Config{Type: mtd.TypeMLCNANDFlash}, err: nvcore.ErrNotSupported, msg: "NAND"},
		{name: "ubi", c: mtdtest.Config{Type: mtd.TypeUBIVolume}, err: nvcore.ErrNotSupported, msg: "UBI"},
		{name: "dataflash", c: mtdtest.Config{Type: mtd.TypeDataFlash}, err: nvcore.ErrNotSupported, msg: "DataFlash"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.c.EraseSize, tc.c.Size = es, 4*es
			sim := mtdtest.MustNew(tc.c)
			p, err := mtd.Open(sim, tc.o)
			if tc.err != nil {
				if !errors.Is(err, tc.err) || !bytes.Contains([]byte(err.Error()), []byte(tc.msg)) {
					t.Fatalf("err = %v, want %v mentioning %q", err, tc.err, tc.msg)
				}
				if sim.Closed() {
					t.Error("a refused chip was closed")
				}
				t.Log(err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			_, w := p.(io.WriterAt)
			if w != tc.canWrite {
				t.Errorf("%T: writer %v, want %v", p, w, tc.canWrite)
			}
			if p.(nvcore.TransferSizer).TransferSize() != es {
				t.Error("transfer size is not the erase size")
			}
			if _, ok := p.(nvcore.Exclusive); !ok {
				t.Error("not Exclusive")
			}
		})
	}
}

// fakeChip reports any geometry.
type fakeChip struct {
	mtd.Chip
	info mtd.Info
}

func (c fakeChip) Info() mtd.Info { return c.info }

func TestBadGeometry(t *testing.T) {
	for _, info := range []mtd.Info{
		{Type: mtd.TypeNORFlash, Flags: 0xc00, Size: 0, EraseSize: 256, WriteSize: 1},
		{Type: mtd.TypeNORFlash, Flags: 0xc00, Size: 1000, EraseSize: 256, WriteSize: 1},
		{Type: mtd.TypeNORFlash, Flags: 0xc00, Size: 1024, EraseSize: 0, WriteSize: 1},
		{Type: mtd.TypeNORFlash, Flags: 0xc00, Size: 1024, EraseSize: 256, WriteSize: 0},
		{Type: mtd.TypeNORFlash, Flags: 0xc00, Size: 1024, EraseSize: 256, WriteSize: 3},
		{Type: 42, Flags: 0xc00, Size: 1024, EraseSize: 256, WriteSize: 1},
	} {
		if _, err := mtd.Open(fakeChip{info: info}, mtd.Options{}); err == nil {
			t.Errorf("%+v accepted", info)
		}
	}
}

// TestConcurrentWriters: writers of different blocks and readers through
// the core, at once; every write lands whole.
func TestConcurrentWriters(t *testing.T) {
	sim, f := newFlash(t, mtdtest.Config{})
	sim.Load(0, make([]byte, 8*es))
	_, d := register(t, f)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			data := bytes.Repeat([]byte{byte(0x10 + i)}, es)
			for range 5 {
				if _, err := d.WriteAt(data, int64(i)*es); err != nil {
					t.Error(err)
					return
				}
				buf := make([]byte, es)
				if _, err := d.ReadAt(buf, int64(i)*es); err != nil || !bytes.Equal(buf, data) {
					t.Errorf("block %d: %v", i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
}
