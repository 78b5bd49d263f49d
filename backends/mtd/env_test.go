package mtd_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"strings"
	"testing"

	"github.com/nvmemfs/nvmemfs/backends/mtd"
	"github.com/nvmemfs/nvmemfs/backends/mtd/mtdtest"
	"github.com/nvmemfs/nvmemfs/nvcore"
	"github.com/nvmemfs/nvmemfs/nvcore/layouts"
)

// The redundant environment of these tests: 4 KiB erase blocks, copies of
// 6 KiB (a block and a half each) at non-default offsets, copy 2 well
// after copy 1, other data around them.
const (
	envErase = 0x1000
	envDev   = 16 * envErase
	envSize  = 0x1800
	envOff1  = 0x3000
	envOff2  = 0xa000
)

func envConfig(flags layouts.EnvFlags) layouts.EnvConfig {
	return layouts.EnvConfig{Size: envSize, Redundant: true, Flags: flags,
		Offset: envOff1, Offset2: envOff2, Offset2Set: true, EraseSize: envErase}
}

// envCopyBytes builds one redundant copy by hand, independently of the
// layouts package: CRC-32 of the data area, flags, the variables, 0xFF.
func envCopyBytes(flags byte, vars ...string) []byte {
	b := bytes.Repeat([]byte{0xff}, envSize)
	p := 5
	for _, v := range vars {
		p += copy(b[p:], v)
		b[p] = 0
		p++
	}
	b[p] = 0
	b[4] = flags
	binary.LittleEndian.PutUint32(b, crc32.ChecksumIEEE(b[5:]))
	return b
}

// envImage is a whole flash: other data in the blocks no copy uses, and the
// two copies (nil leaves a copy erased).
func envImage(c1, c2 []byte) []byte {
	img := pattern(13, envDev)
	for _, c := range []struct {
		off int64
		b   []byte
	}{{envOff1, c1}, {envOff2, c2}} {
		blk := img[c.off : c.off+2*envErase]
		for i := range blk {
			blk[i] = 0xff
		}
		copy(blk, c.b)
	}
	return img
}

// envBlocksOutside returns the bytes of the erase blocks no copy occupies.
func envBlocksOutside(img []byte) []byte {
	var out []byte
	for b := int64(0); b < envDev; b += envErase {
		if b >= envOff1 && b < envOff1+envSize || b >= envOff2 && b < envOff2+envSize {
			continue
		}
		out = append(out, img[b:b+envErase]...)
	}
	return out
}

// envAttach registers a NOR flash holding img, as attach does for
// mtd:DEV, and returns the simulator and the device.
func envAttach(t *testing.T, img []byte, cfg layouts.EnvConfig) (*mtdtest.Flash, *nvcore.Registry, *nvcore.Device) {
	t.Helper()
	sim := mtdtest.MustNew(mtdtest.Config{EraseSize: envErase, Size: envDev})
	sim.Load(0, img)
	p, err := mtd.Open(sim, mtd.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if es := p.(*mtd.Flash).Info().EraseSize; int64(es) != cfg.EraseSize {
		t.Fatalf("erase size %d", es)
	}
	reg := nvcore.NewRegistry()
	d, err := reg.Register(nvcore.Config{Name: "env", Layout: layouts.UBootEnv{Config: cfg}}, p)
	if err != nil {
		t.Fatal(err)
	}
	return sim, reg, d
}

// envSet is `nvmemfs env DEV set NAME VALUE` on a registered device:
// load, set, save.
func envSet(d *nvcore.Device, cfg layouts.EnvConfig, name, value string) error {
	e, err := layouts.LoadEnv(d, d.Size(), cfg)
	if err != nil {
		return fmt.Errorf("load: %w", err)
	}
	if err := e.Set(name, value); err != nil {
		return err
	}
	return e.Save(d, false)
}

// envRead loads the environment from flash bytes through a fresh device.
func envRead(t *testing.T, img []byte, cfg layouts.EnvConfig) (*layouts.Env, error) {
	t.Helper()
	_, reg, d := envAttach(t, img, cfg)
	defer reg.RemoveAll()
	e, err := layouts.LoadEnv(d, d.Size(), cfg)
	if err == nil && len(d.Cells()) == 0 {
		t.Fatalf("the layout found no cells: %v", d.LayoutError())
	}
	return e, err
}

// envErasesNeeded counts the erase blocks where some bit rises from before
// to after: the erases a write from one to the other cannot avoid.
func envErasesNeeded(before, after []byte) (n int, blocks []int64) {
	for b := 0; b < len(before); b += envErase {
		for i := b; i < b+envErase; i++ {
			if after[i]&^before[i] != 0 {
				n++
				blocks = append(blocks, int64(b))
				break
			}
		}
	}
	return n, blocks
}

// envCase is a starting flash and the env sets done on it in turn.
type envCase struct {
	name  string
	flags layouts.EnvFlags
	img   []byte
	sets  [][2]string
	// flagsAfter are the flags bytes of (copy 1, copy 2) after each set.
	flagsAfter [][2]byte
}

func envCases() []envCase {
	base := []string{"bootcmd=run distro_bootcmd", "ethaddr=00:11:22:33:44:55", "serial#=SN-0042",
		"blob=" + strings.Repeat("x", 4500)} // the data spans both erase blocks of a copy
	with := func(gen string) []string { return append([]string{"gen=" + gen}, base...) }
	sets := [][2]string{{"gen", "22"}, {"gen", "3"}, {"gen", "4444"}, {"gen", "5"}}
	return []envCase{
		{
			// Boolean flags (U-Boot's NOR scheme): copy 1 active.
			name: "boolean", flags: layouts.EnvFlagsBoolean,
			img:        envImage(envCopyBytes(1, with("1")...), envCopyBytes(0, with("0")...)),
			sets:       sets,
			flagsAfter: [][2]byte{{0, 1}, {1, 0}, {0, 1}, {1, 0}},
		},
		{
			// Boolean, the second copy still erased (as left by a
			// programmer that wrote one copy): the first save only clears
			// bits.
			name: "boolean-blank", flags: layouts.EnvFlagsBoolean,
			img:        envImage(envCopyBytes(1, with("1")...), nil),
			sets:       sets[:2],
			flagsAfter: [][2]byte{{0, 1}, {1, 0}},
		},
		{
			// The 8-bit counter (env-flags=counter): copy 2 at 254 is
			// active; the saves go to 255, 0 (the wrap), 1 and 2.
			name: "counter-wrap", flags: layouts.EnvFlagsCounter,
			img:        envImage(envCopyBytes(253, with("0")...), envCopyBytes(254, with("1")...)),
			sets:       sets,
			flagsAfter: [][2]byte{{255, 254}, {255, 0}, {1, 0}, {1, 2}},
		},
	}
}

// TestEnvSaveErasesOnNOR: each env set on a redundant environment at
// env-offset and env-offset2 costs exactly the erases it needs: the
// blocks of the copy it writes where a bit must rise, each once; marking
// the old copy obsolete, and writing over an erased copy, cost none. No
// erase touches the active copy or a block outside the copies.
func TestEnvSaveErasesOnNOR(t *testing.T) {
	for _, c := range envCases() {
		t.Run(c.name, func(t *testing.T) {
			cfg := envConfig(c.flags)
			sim, reg, d := envAttach(t, c.img, cfg)
			defer reg.RemoveAll()
			outside := envBlocksOutside(c.img)
			var erased []int64
			sim.SetHook(func(op mtdtest.Op, off, length int64) error {
				if op == mtdtest.OpErase {
					erased = append(erased, off)
				}
				return nil
			})
			for i, s := range c.sets {
				before := sim.Bytes()
				active := []int64{envOff1, envOff2}[i%2]
				if c.flags == layouts.EnvFlagsCounter {
					active = []int64{envOff2, envOff1}[i%2]
				}
				erased = erased[:0]
				sim.ResetStats()
				if err := envSet(d, cfg, s[0], s[1]); err != nil {
					t.Fatalf("set %d: %v", i, err)
				}
				after := sim.Bytes()
				need, blocks := envErasesNeeded(before, after)
				st := sim.Stats()
				t.Logf("set %s=%s: %d erases at %#x (needed %d), %d programs", s[0], s[1], st.Erases, erased, need, st.Programs)
				if st.Erases != need || fmt.Sprint(erased) != fmt.Sprint(blocks) {
					t.Errorf("set %d: erased %#x, the write needed %#x", i, erased, blocks)
				}
				for _, b := range erased {
					if b >= active && b < active+envSize {
						t.Errorf("set %d: erased block %#x of the active copy at %#x", i, b, active)
					}
				}
				if f := [2]byte{after[envOff1+4], after[envOff2+4]}; f != c.flagsAfter[i] {
					t.Errorf("set %d: flags %v, want %v", i, f, c.flagsAfter[i])
				}
				e, err := envRead(t, after, cfg)
				if err != nil {
					t.Fatal(err)
				}
				if v, _ := e.Get(s[0]); v != s[1] {
					t.Errorf("set %d: %s=%q", i, s[0], v)
				}
				if !bytes.Equal(envBlocksOutside(after), outside) {
					t.Fatalf("set %d: a block outside the copies changed", i)
				}
			}
		})
	}
}

// TestEnvPowerCutOnNOR: a power cut after every erase and every program
// step of each env set (the step completed, and the step torn half-way),
// through the core as nvmemfs env set writes: the flash then holds one
// valid copy, the old environment or the new one, never neither and never
// a mix; the environment loads, and the next env set works. Boolean flags,
// a blank second copy, and the 8-bit counter across its wrap.
func TestEnvPowerCutOnNOR(t *testing.T) {
	for _, c := range envCases() {
		t.Run(c.name, func(t *testing.T) {
			cfg := envConfig(c.flags)
			img := c.img
			outside := envBlocksOutside(img)
			cuts := 0
			for i, s := range c.sets {
				old, err := envRead(t, img, cfg)
				if err != nil {
					t.Fatal(err)
				}
				oldVal, _ := old.Get(s[0])
				var done []byte
				for n := 1; done == nil; n++ {
					for _, torn := range []bool{false, true} {
						sim, reg, d := envAttach(t, img, cfg)
						sim.CutPowerAfter(n, torn)
						saveErr := envSet(d, cfg, s[0], s[1])
						reg.RemoveAll()
						cut := sim.PowerCut()
						flash := sim.Bytes()
						if !cut {
							if saveErr != nil {
								t.Fatalf("set %d, no cut: %v", i, saveErr)
							}
							done = flash
							break
						}
						cuts++
						if saveErr == nil && torn {
							t.Fatalf("set %d: a torn step %d went unnoticed", i, n)
						}
						e, err := envRead(t, flash, cfg)
						if err != nil {
							t.Fatalf("set %d, cut at step %d (torn %v): %v", i, n, torn, err)
						}
						v, _ := e.Get(s[0])
						if v != oldVal && v != s[1] {
							t.Fatalf("set %d, cut at step %d (torn %v): %s=%q, neither %q nor %q", i, n, torn, s[0], v, oldVal, s[1])
						}
						if saveErr == nil && v != s[1] {
							t.Fatalf("set %d, cut at step %d after the save returned: %s=%q", i, n, s[0], v)
						}
						if !bytes.Equal(envBlocksOutside(flash), outside) {
							t.Fatalf("set %d, cut at step %d: a block outside the copies changed", i, n)
						}
						// Power back: the same env set again, from what is there.
						_, reg2, d2 := envAttach(t, flash, cfg)
						if err := envSet(d2, cfg, s[0], s[1]+"-again"); err != nil {
							t.Fatalf("set %d, cut at step %d: the next set fails: %v", i, n, err)
						}
						reg2.RemoveAll()
					}
				}
				img = done
			}
			t.Logf("%d power cuts, each left the old or the new environment", cuts)
		})
	}
}

// TestEnvSingleAtOffsetOnNOR: a single environment at env-offset: a set
// erases only its blocks, each once and only where a bit rises; a power
// cut leaves the old environment, the new one, or a copy whose CRC says it
// is torn, never another environment.
func TestEnvSingleAtOffsetOnNOR(t *testing.T) {
	cfg := layouts.EnvConfig{Size: envSize, Offset: envOff2, EraseSize: envErase}
	one := bytes.Repeat([]byte{0xff}, envSize)
	copy(one[4:], "a=1\x00b=2\x00\x00")
	binary.LittleEndian.PutUint32(one, crc32.ChecksumIEEE(one[4:]))
	img := envImage(nil, one)
	outside := envBlocksOutside(img)
	{
		sim, reg, d := envAttach(t, img, cfg)
		if err := envSet(d, cfg, "a", "22"); err != nil {
			t.Fatal(err)
		}
		reg.RemoveAll()
		need, blocks := envErasesNeeded(img, sim.Bytes())
		if st := sim.Stats(); st.Erases != need || need != 1 {
			t.Errorf("single set: %d erases, needed %d (%#x)", st.Erases, need, blocks)
		}
	}
	for n := 1; ; n++ {
		sim, reg, d := envAttach(t, img, cfg)
		sim.CutPowerAfter(n, true)
		err := envSet(d, cfg, "a", "22")
		reg.RemoveAll()
		flash := sim.Bytes()
		if !bytes.Equal(envBlocksOutside(flash), outside) {
			t.Fatalf("cut at step %d: a block outside the copy changed", n)
		}
		e, lerr := envRead(t, flash, cfg)
		if !sim.PowerCut() {
			if err != nil || lerr != nil {
				t.Fatalf("no cut: %v, %v", err, lerr)
			}
			if v, _ := e.Get("a"); v != "22" {
				t.Fatalf("a=%q", v)
			}
			break
		}
		if lerr != nil {
			if !errors.Is(lerr, layouts.ErrEnvBadCRC) {
				t.Fatalf("cut at step %d: %v", n, lerr)
			}
			continue
		}
		if v, _ := e.Get("a"); v != "1" && v != "22" {
			t.Fatalf("cut at step %d: a=%q", n, v)
		}
	}
}
