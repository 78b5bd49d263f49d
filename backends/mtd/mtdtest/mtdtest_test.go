package mtdtest

import (
	"bytes"
	"errors"
	"os"
	"syscall"
	"testing"
	"time"
)

func ff(n int) []byte { return bytes.Repeat([]byte{0xff}, n) }

func TestNORRules(t *testing.T) {
	f := MustNew(Config{Size: 4 * 256, EraseSize: 256, WriteSize: 4})
	if got := f.Bytes(); !bytes.Equal(got, ff(1024)) {
		t.Fatal("a new flash is not erased")
	}
	// Programming ANDs.
	if _, err := f.WriteAt([]byte{0xf0, 0x0f, 0x55, 0xff}, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{0xcc, 0xcc, 0xff, 0x00}, 0); err != nil {
		t.Fatal(err)
	}
	if got := f.Bytes()[:4]; !bytes.Equal(got, []byte{0xc0, 0x0c, 0x55, 0x00}) {
		t.Errorf("after two programs: % x", got)
	}
	// Erase sets the block to 0xFF and nothing else.
	f.Load(256, []byte{1, 2, 3})
	if err := f.Erase(0, 256); err != nil {
		t.Fatal(err)
	}
	if got := f.Bytes(); !bytes.Equal(got[:256], ff(256)) || !bytes.Equal(got[256:259], []byte{1, 2, 3}) {
		t.Errorf("erase: block 0 % x..., block 1 % x...", got[:4], got[256:260])
	}
	st := f.Stats()
	if st.Erases != 1 || st.Programs != 2 || st.BytesProgrammed != 8 {
		t.Errorf("stats %+v", st)
	}

	// Alignment.
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"program off a unit", func() error { _, err := f.WriteAt(make([]byte, 4), 2); return err }()},
		{"program part of a unit", func() error { _, err := f.WriteAt(make([]byte, 3), 0); return err }()},
		{"erase off a block", f.Erase(128, 256)},
		{"erase part of a block", f.Erase(0, 128)},
		{"erase past the end", f.Erase(1024, 256)},
		{"lock part of a block", f.Lock(0, 100)},
	} {
		if !errors.Is(tc.err, syscall.EINVAL) {
			t.Errorf("%s: %v, want EINVAL", tc.name, tc.err)
		}
	}
}

func TestLocks(t *testing.T) {
	f := MustNew(Config{Size: 4 * 256, EraseSize: 256})
	if err := f.Lock(256, 512); err != nil {
		t.Fatal(err)
	}
	for b, want := range []bool{false, true, true, false} {
		if got := f.Locked(int64(b) * 256); got != want {
			t.Errorf("block %d locked %v", b, got)
		}
	}
	if l, err := f.IsLocked(0, 512); err != nil || !l {
		t.Errorf("IsLocked(blocks 0-1) = %v, %v", l, err)
	}
	if l, err := f.IsLocked(768, 256); err != nil || l {
		t.Errorf("IsLocked(block 3) = %v, %v", l, err)
	}
	if err := f.Erase(0, 512); !errors.Is(err, syscall.EROFS) {
		t.Errorf("erase over a locked block: %v", err)
	}
	if _, err := f.WriteAt([]byte{0}, 300); !errors.Is(err, syscall.EROFS) {
		t.Errorf("program of a locked block: %v", err)
	}
	if got := f.Bytes(); !bytes.Equal(got, ff(1024)) || f.Stats().Erases != 0 || f.Stats().Programs != 0 {
		t.Error("a refused operation changed the flash")
	}
	if err := f.Unlock(256, 256); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{0}, 300); err != nil {
		t.Errorf("program after unlock: %v", err)
	}

	n := MustNew(Config{Size: 256, EraseSize: 256, NoLocking: true})
	if _, err := n.IsLocked(0, 256); !errors.Is(err, syscall.EOPNOTSUPP) {
		t.Errorf("IsLocked without locking: %v", err)
	}
}

func TestTiming(t *testing.T) {
	f := MustNew(Config{Size: 4 * 256, EraseSize: 256, WriteSize: 16, EraseTime: 20 * time.Millisecond, ProgramTime: time.Millisecond})
	start := time.Now()
	if err := f.Erase(0, 512); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < 40*time.Millisecond {
		t.Errorf("two blocks erased in %v, want 40 ms", el)
	}
	start = time.Now()
	if _, err := f.WriteAt(make([]byte, 160), 0); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < 10*time.Millisecond {
		t.Errorf("ten units programmed in %v, want 10 ms", el)
	}
}

func TestStuckBits(t *testing.T) {
	f := MustNew(Config{Size: 256, EraseSize: 256})
	f.SetStuck(5, 0x81)
	if _, err := f.WriteAt(make([]byte, 8), 0); err != nil {
		t.Fatal(err)
	}
	if got := f.Bytes()[:8]; !bytes.Equal(got, []byte{0, 0, 0, 0, 0, 0x81, 0, 0}) {
		t.Errorf("after programming zeros: % x", got)
	}
}

func TestPlainWrites(t *testing.T) {
	f := MustNew(Config{Size: 256, EraseSize: 256, PlainWrites: true})
	f.Load(0, []byte{0x00})
	if _, err := f.WriteAt([]byte{0xa5}, 0); err != nil {
		t.Fatal(err)
	}
	if got := f.Bytes()[0]; got != 0xa5 {
		t.Errorf("mtdram-like program: %#x", got)
	}
}

func TestPowerCut(t *testing.T) {
	old := bytes.Repeat([]byte{0x12}, 256)
	setup := func() *Flash {
		f := MustNew(Config{Size: 2 * 256, EraseSize: 256, WriteSize: 4})
		f.Load(0, old)
		return f
	}
	t.Run("after an erase", func(t *testing.T) {
		f := setup()
		f.CutPowerAfter(1, false)
		if err := f.Erase(0, 256); err != nil {
			t.Fatalf("the last erase: %v", err)
		}
		if !f.PowerCut() {
			t.Fatal("no cut")
		}
		if _, err := f.WriteAt(make([]byte, 4), 0); !errors.Is(err, ErrPowerCut) || !errors.Is(err, syscall.EIO) {
			t.Errorf("program after the cut: %v", err)
		}
		if _, err := f.ReadAt(make([]byte, 4), 0); !errors.Is(err, ErrPowerCut) {
			t.Errorf("read after the cut: %v", err)
		}
		if !bytes.Equal(f.Bytes()[:256], ff(256)) {
			t.Error("the erase before the cut did not hold")
		}
		f.PowerOn()
		if _, err := f.ReadAt(make([]byte, 4), 0); err != nil {
			t.Errorf("read after power on: %v", err)
		}
	})
	t.Run("torn erase", func(t *testing.T) {
		f := setup()
		f.CutPowerAfter(1, true)
		if err := f.Erase(0, 256); !errors.Is(err, ErrPowerCut) {
			t.Fatalf("torn erase: %v", err)
		}
		got := f.Bytes()
		if !bytes.Equal(got[:128], ff(128)) || !bytes.Equal(got[128:256], old[128:]) {
			t.Errorf("torn erase left % x ... % x", got[:4], got[128:132])
		}
	})
	t.Run("second program torn", func(t *testing.T) {
		f := setup()
		if err := f.Erase(256, 256); err != nil {
			t.Fatal(err)
		}
		f.CutPowerAfter(2, true)
		if _, err := f.WriteAt(make([]byte, 8), 256); err != nil {
			t.Fatalf("first program: %v", err)
		}
		n, err := f.WriteAt(make([]byte, 40), 300)
		if !errors.Is(err, ErrPowerCut) || n != 20 {
			t.Fatalf("torn program: %d, %v", n, err)
		}
		got := f.Bytes()
		if !bytes.Equal(got[300:320], make([]byte, 20)) || !bytes.Equal(got[320:340], ff(20)) {
			t.Errorf("torn program left % x | % x", got[300:320], got[320:340])
		}
		if err := f.Erase(256, 256); !errors.Is(err, ErrPowerCut) {
			t.Errorf("erase after the cut: %v", err)
		}
	})
}

func TestClose(t *testing.T) {
	f := MustNew(Config{Size: 256, EraseSize: 256})
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.ReadAt(make([]byte, 1), 0); !errors.Is(err, os.ErrClosed) {
		t.Errorf("read after close: %v", err)
	}
	if err := f.Close(); err == nil {
		t.Error("second close accepted")
	}
}

func TestBadConfig(t *testing.T) {
	for _, c := range []Config{
		{Size: 1000, EraseSize: 256},
		{Size: 256, EraseSize: 256, WriteSize: 3},
		{Size: 0, EraseSize: 256},
	} {
		if _, err := New(c); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}
