package mtd_test

import (
	"errors"
	"testing"

	"github.com/nvmemfs/nvmemfs/backends/mtd/mtdtest"
	"github.com/nvmemfs/nvmemfs/nvcore/layouts"
)

// TestRedundantEnvOnNOR: a redundant U-Boot environment with boolean flags,
// one copy an erase block, saved through the provider: each save erases
// only the copy it writes; marking the old copy obsolete (1 to 0) costs no
// erase. layouts.Env.Save writes the new copy's data, CRC and flags byte
// in three writes, each of which needs an erase of that block here (3
// erases a save, where U-Boot's one whole-copy write costs 1): correct and
// power-safe, but worth one write on erase-based media; see the log.
func TestRedundantEnvOnNOR(t *testing.T) {
	const blk = 4096
	sim, f := newFlash(t, mtdtest.Config{EraseSize: blk, Size: 2 * blk})
	cfg := layouts.EnvConfig{Size: blk, Redundant: true, Flags: layouts.EnvFlagsBoolean}
	load := func() *layouts.Env {
		t.Helper()
		e, err := layouts.LoadEnv(f, f.Size(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	e, err := layouts.LoadEnv(f, f.Size(), cfg) // blank flash: no good copy
	if !errors.Is(err, layouts.ErrEnvBadCRC) || e == nil {
		t.Fatalf("blank flash: %v", err)
	}
	if err := e.Set("a", "1"); err != nil {
		t.Fatal(err)
	}
	if err := e.Save(f, true); err != nil {
		t.Fatal(err)
	}
	for i, val := range []string{"2", "3", "4", "5"} {
		e := load()
		if err := e.Set("a", val); err != nil {
			t.Fatal(err)
		}
		var erased []int64
		sim.SetHook(func(op mtdtest.Op, off, length int64) error {
			if op == mtdtest.OpErase {
				erased = append(erased, off)
			}
			return nil
		})
		sim.ResetStats()
		if err := e.Save(f, false); err != nil {
			t.Fatal(err)
		}
		st := sim.Stats()
		t.Logf("save %d: %d erases (at %#x), %d programs", i+2, st.Erases, erased, st.Programs)
		if got, _ := load().Get("a"); got != val {
			t.Fatalf("a = %q after saving %q", got, val)
		}
		sim.SetHook(nil)
		old := int64(blk) // the active copy: the forced first save wrote copy 2, and saves alternate
		if i%2 == 1 {
			old = 0
		}
		for _, off := range erased {
			if off == old {
				t.Errorf("save %d erased the old copy at %#x", i+2, off)
			}
		}
		if st.Erases > 3 {
			t.Errorf("save %d: %d erases", i+2, st.Erases)
		}
	}
}
