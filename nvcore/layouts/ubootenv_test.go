package layouts

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/nvmemfs/nvmemfs/nvcore"
)

// envMem is a device in memory.
type envMem struct{ b []byte }

func (m *envMem) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off > int64(len(m.b)) {
		return 0, io.EOF
	}
	n := copy(p, m.b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (m *envMem) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(len(m.b)) {
		return 0, errors.New("write past the end")
	}
	return copy(m.b[off:], p), nil
}

var errEnvCut = errors.New("power cut")

// envCut is a device that loses power after budget bytes: it writes the
// first budget bytes of the whole sequence of writes, then fails every
// write. It counts what it wrote.
type envCut struct {
	envMem
	budget  int
	written int
}

func (c *envCut) WriteAt(p []byte, off int64) (int, error) {
	n := min(len(p), c.budget)
	if _, err := c.envMem.WriteAt(p[:n], off); err != nil {
		return 0, err
	}
	c.budget -= n
	c.written += n
	if n < len(p) {
		return n, errEnvCut
	}
	return n, nil
}

// envDeaf acknowledges writes and keeps nothing, as a write-protected
// EEPROM does.
type envDeaf struct{ envMem }

func (d *envDeaf) WriteAt(p []byte, off int64) (int, error) { return len(p), nil }

func envFill(n int, b byte) []byte { return bytes.Repeat([]byte{b}, n) }

// envCopy builds one copy by hand, independently of Encode.
func envCopy(size int, redundant bool, flags, fill byte, vars ...string) []byte {
	hdr := 4
	if redundant {
		hdr = 5
	}
	b := envFill(size, fill)
	p := hdr
	for _, v := range vars {
		p += copy(b[p:], v)
		b[p] = 0
		p++
	}
	b[p] = 0
	if redundant {
		b[4] = flags
	}
	binary.LittleEndian.PutUint32(b, crc32.ChecksumIEEE(b[hdr:]))
	return b
}

func envPairs(vars []EnvVar) string {
	var s []string
	for _, v := range vars {
		s = append(s, v.Name+"="+v.Value)
	}
	return strings.Join(s, " ")
}

func envLoad(t *testing.T, b []byte, cfg EnvConfig) *Env {
	t.Helper()
	e, err := LoadEnv(bytes.NewReader(b), int64(len(b)), cfg)
	if err != nil {
		t.Fatalf("LoadEnv: %v", err)
	}
	return e
}

func TestEnvVectors(t *testing.T) {
	hexs := func(s string, n int, fill string) []byte {
		b, err := hex.DecodeString(s + strings.Repeat(fill, n))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tests := []struct {
		name  string
		cfg   EnvConfig
		fill  byte
		flags byte
		vars  [][2]string
		want  []byte
		crc   uint32
		offs  []int64
	}{
		{"single 0xff", EnvConfig{Size: 32}, 0xFF, 0, [][2]string{{"a", "1"}, {"b", "2"}},
			hexs("44a1cb5a"+"613d3100"+"623d3200"+"00", 19, "ff"), 0x5acba144, []int64{6, 10}},
		{"single 0x00", EnvConfig{Size: 32}, 0x00, 0, [][2]string{{"a", "1"}, {"b", "2"}},
			hexs("4c2345a1"+"613d3100"+"623d3200"+"00", 19, "00"), 0xa145234c, []int64{6, 10}},
		{"redundant 0xff flags 1", EnvConfig{Size: 32, Redundant: true}, 0xFF, 1, [][2]string{{"a", "1"}, {"b", "2"}},
			hexs("272f14c1"+"01"+"613d3100"+"623d3200"+"00", 18, "ff"), 0xc1142f27, []int64{7, 11}},
		{"kernel example", EnvConfig{Size: 64}, 0x00, 0, [][2]string{{"ethaddr", "00:11:22:33:44:55"}, {"foo", "bar"}},
			hexs("d4b21ad4"+hex.EncodeToString([]byte("ethaddr=00:11:22:33:44:55\x00foo=bar\x00\x00")), 25, "00"), 0xd41ab2d4, []int64{0xc, 0x22}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := &Env{Config: tc.cfg, Fill: tc.fill, Copies: make([]EnvCopy, tc.cfg.copies())}
			e.Copies[0].Flags = tc.flags
			for _, v := range tc.vars {
				if err := e.Set(v[0], v[1]); err != nil {
					t.Fatal(err)
				}
			}
			got, err := e.Encode()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tc.want) {
				t.Fatalf("Encode:\n got %x\nwant %x", got, tc.want)
			}
			if crc := binary.LittleEndian.Uint32(got); crc != tc.crc {
				t.Errorf("CRC %#08x, want %#08x", crc, tc.crc)
			}
			dev := got
			if tc.cfg.Redundant { // copy 2 erased: copy 1 is the one
				dev = append(append([]byte{}, got...), envFill(len(got), 0xFF)...)
			}
			l := envLoad(t, dev, tc.cfg)
			if l.Active != 0 || !l.Copies[0].OK || l.Copies[0].Stored != tc.crc || l.Copies[0].Flags != tc.flags {
				t.Errorf("loaded copies %+v, active %d", l.Copies, l.Active)
			}
			if len(l.Vars) != len(tc.vars) {
				t.Fatalf("Vars %+v", l.Vars)
			}
			for i, v := range l.Vars {
				if v.Name != tc.vars[i][0] || v.Value != tc.vars[i][1] || v.Offset != tc.offs[i] {
					t.Errorf("var %d: %+v, want %s=%s at %#x", i, v, tc.vars[i][0], tc.vars[i][1], tc.offs[i])
				}
			}
		})
	}
}

func TestEnvKernelCells(t *testing.T) {
	dev := envCopy(64, false, 0, 0, "ethaddr=00:11:22:33:44:55", "foo=bar")
	u := UBootEnv{Config: EnvConfig{}}
	if u.Name() != "u-boot-env" {
		t.Errorf("Name %q", u.Name())
	}
	cells, err := u.Cells(bytes.NewReader(dev), int64(len(dev)))
	if err != nil {
		t.Fatal(err)
	}
	if len(cells) != 2 {
		t.Fatalf("cells %+v", cells)
	}
	eth, foo := cells[0], cells[1]
	if eth.Name != "ethaddr" || eth.Offset != 0xc || eth.Bytes != 17 || eth.DecodedSize != 6 || eth.Layout != "u-boot-env" || eth.Decode == nil {
		t.Errorf("ethaddr cell %+v", eth)
	}
	mac, err := eth.Decode(dev[eth.Offset : eth.Offset+int64(eth.Bytes)])
	if err != nil || hex.EncodeToString(mac) != "001122334455" {
		t.Errorf("ethaddr decodes to %x, %v", mac, err)
	}
	if foo.Name != "foo" || foo.Offset != 0x22 || foo.Bytes != 3 || foo.Decode != nil || foo.DecodedSize != 0 {
		t.Errorf("foo cell %+v", foo)
	}
	if got := string(dev[foo.Offset : foo.Offset+3]); got != "bar" {
		t.Errorf("foo reads %q", got)
	}
}

func TestEnvSelect(t *testing.T) {
	C, B := EnvFlagsCounter, EnvFlagsBoolean
	good, bad := true, false
	tests := []struct {
		kind  EnvFlags
		ok    [2]bool
		flags [2]byte
		want  int
	}{
		{C, [2]bool{good, bad}, [2]byte{0, 9}, 0},
		{C, [2]bool{bad, good}, [2]byte{9, 0}, 1},
		{C, [2]bool{bad, bad}, [2]byte{0, 9}, 0},
		{C, [2]bool{good, good}, [2]byte{0, 1}, 1},
		{C, [2]bool{good, good}, [2]byte{1, 0}, 0},
		{C, [2]bool{good, good}, [2]byte{255, 0}, 1}, // 0 follows 255
		{C, [2]bool{good, good}, [2]byte{0, 255}, 0},
		{C, [2]bool{good, good}, [2]byte{5, 5}, 0},
		{C, [2]bool{good, good}, [2]byte{254, 255}, 1},
		{C, [2]bool{good, good}, [2]byte{255, 254}, 0},
		{C, [2]bool{good, good}, [2]byte{255, 1}, 0}, // only 255 -> 0 wraps
		{B, [2]bool{good, bad}, [2]byte{0, 1}, 0},
		{B, [2]bool{bad, good}, [2]byte{1, 0}, 1},
		{B, [2]bool{good, good}, [2]byte{1, 0}, 0},
		{B, [2]bool{good, good}, [2]byte{0, 1}, 1},
		{B, [2]bool{good, good}, [2]byte{1, 1}, 0},
		{B, [2]bool{good, good}, [2]byte{0, 0}, 0},
		{B, [2]bool{good, good}, [2]byte{0xFF, 1}, 0}, // erased flags win
		{B, [2]bool{good, good}, [2]byte{1, 0xFF}, 1},
		{B, [2]bool{good, good}, [2]byte{0xFF, 0}, 0}, // counter would take copy 2
		{B, [2]bool{good, good}, [2]byte{0, 0xFF}, 1},
		{B, [2]bool{good, good}, [2]byte{0xFF, 0xFF}, 0}, // U-Boot; libubootenv: 1
		{B, [2]bool{good, good}, [2]byte{3, 7}, 1},
	}
	const size = 64
	for _, tc := range tests {
		name := fmt.Sprintf("%s/ok=%t,%t/flags=%d,%d", tc.kind, tc.ok[0], tc.ok[1], tc.flags[0], tc.flags[1])
		t.Run(name, func(t *testing.T) {
			if got := envSelect(tc.kind, tc.ok, tc.flags); got != tc.want {
				t.Fatalf("envSelect: copy %d, want %d", got+1, tc.want+1)
			}
			var dev []byte
			for i := range 2 {
				cp := envCopy(size, true, tc.flags[i], 0xFF, "copy="+strconv.Itoa(i+1))
				if !tc.ok[i] {
					cp[0] ^= 0x5a
				}
				dev = append(dev, cp...)
			}
			e, err := LoadEnv(bytes.NewReader(dev), int64(len(dev)), EnvConfig{Redundant: true, Flags: tc.kind})
			if !tc.ok[0] && !tc.ok[1] {
				if !errors.Is(err, ErrEnvBadCRC) || e == nil || len(e.Vars) != 0 {
					t.Fatalf("LoadEnv: %v, %+v", err, e)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if v, _ := e.Get("copy"); e.Active != tc.want || v != strconv.Itoa(tc.want+1) {
				t.Errorf("LoadEnv: active %d, copy=%s; want copy %d", e.Active, v, tc.want+1)
			}
		})
	}
}

// TestEnvGenerations saves a redundant environment many times over, past
// the counter's wrap from 255 to 0, and reloads it each time.
func TestEnvGenerations(t *testing.T) {
	for _, tc := range []struct {
		kind EnvFlags
		gens int
	}{{EnvFlagsCounter, 300}, {EnvFlagsBoolean, 40}} {
		t.Run(tc.kind.String(), func(t *testing.T) {
			const size = 256
			dev := &envMem{envFill(2*size, 0xFF)}
			cfg := EnvConfig{Size: size, Redundant: true, Flags: tc.kind}
			e, err := LoadEnv(dev, int64(len(dev.b)), cfg)
			if !errors.Is(err, ErrEnvBadCRC) {
				t.Fatalf("blank device: %v", err)
			}
			e.Set("serial", "SN0042")
			e.Set("gen", "0")
			if err := e.Save(dev, false); !errors.Is(err, ErrEnvBadCRC) {
				t.Fatalf("Save without force over a bad CRC: %v", err)
			}
			if err := e.Save(dev, true); err != nil {
				t.Fatal(err)
			}
			wrapped := false
			for g := 1; g <= tc.gens; g++ {
				fresh, err := LoadEnv(dev, int64(len(dev.b)), cfg)
				if err != nil {
					t.Fatalf("gen %d: %v", g, err)
				}
				if v, _ := fresh.Get("gen"); v != strconv.Itoa(g-1) {
					t.Fatalf("gen %d: loaded gen=%s", g, v)
				}
				if fresh.Active != e.Active || fresh.Copies[0] != e.Copies[0] || fresh.Copies[1] != e.Copies[1] {
					t.Fatalf("gen %d: reload %+v active %d, Save left %+v active %d", g, fresh.Copies, fresh.Active, e.Copies, e.Active)
				}
				if envPairs(fresh.Vars) != envPairs(e.Vars) || fresh.Vars[1].Offset != e.Vars[1].Offset {
					t.Fatalf("gen %d: reload %+v, Save left %+v", g, fresh.Vars, e.Vars)
				}
				if g%2 == 0 { // keep using the saved Env every other time
					e = fresh
				}
				before := e.Active
				prev := e.Copies[before].Flags
				e.Set("gen", strconv.Itoa(g))
				if err := e.Save(dev, false); err != nil {
					t.Fatalf("gen %d: %v", g, err)
				}
				if e.Active != 1-before {
					t.Fatalf("gen %d: active copy %d after a save from copy %d", g, e.Active+1, before+1)
				}
				now := e.Copies[e.Active].Flags
				switch tc.kind {
				case EnvFlagsCounter:
					if now != prev+1 {
						t.Fatalf("gen %d: flags %d after %d", g, now, prev)
					}
					if prev == 255 && now == 0 {
						wrapped = true
					}
					if dev.b[e.Copies[before].Offset+4] != prev {
						t.Fatalf("gen %d: the old copy's counter changed", g)
					}
				case EnvFlagsBoolean:
					if now != 1 || dev.b[e.Copies[before].Offset+4] != 0 || e.Copies[before].Flags != 0 {
						t.Fatalf("gen %d: flags new %d, old %d", g, now, dev.b[e.Copies[before].Offset+4])
					}
				}
			}
			if tc.kind == EnvFlagsCounter && !wrapped {
				t.Error("the counter never wrapped")
			}
			last := envLoad(t, dev.b, cfg)
			if v, _ := last.Get("gen"); v != strconv.Itoa(tc.gens) {
				t.Errorf("last gen=%s", v)
			}
			if v, _ := last.Get("serial"); v != "SN0042" {
				t.Errorf("serial=%s", v)
			}
		})
	}
}

// envCounterImage builds a redundant counter environment whose copies hold
// gen=a (flags fa) and gen=b (flags fb).
func envCounterImage(size int, fa, fb byte) []byte {
	dev := envCopy(size, true, fa, 0xFF, "serial=SN0042", "bootcmd=run a", "old=x", "gen=a")
	return append(dev, envCopy(size, true, fb, 0xFF, "serial=SN0042", "bootcmd=run b", "old=x", "gen=b")...)
}

// envGarbage fills the second copy with pseudo-random bytes.
func envGarbage(dev []byte, size int) []byte {
	x := uint32(2463534242)
	for i := size; i < 2*size; i++ {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		dev[i] = byte(x)
	}
	return dev
}

// TestEnvPowerCut cuts the power after every byte of a Save and checks what
// a reload finds.
func TestEnvPowerCut(t *testing.T) {
	const size = 256
	change := func(t *testing.T, e *Env) {
		t.Helper()
		for _, err := range []error{
			e.Set("bootcmd", "run distro_bootcmd; echo a longer value"),
			e.Unset("old"),
			e.Set("new", "value"),
		} {
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	// saved returns a device after gens saves from a blank one.
	saved := func(t *testing.T, cfg EnvConfig, devSize, gens int) []byte {
		dev := &envMem{envFill(devSize, 0xFF)}
		e, _ := LoadEnv(dev, int64(devSize), cfg)
		e.Set("serial", "SN0042")
		e.Set("bootcmd", "run a")
		e.Set("old", "x")
		for g := range gens {
			e.Set("gen", strconv.Itoa(g))
			if err := e.Save(dev, true); err != nil {
				t.Fatal(err)
			}
		}
		return dev.b
	}
	counter := EnvConfig{Size: size, Redundant: true, Flags: EnvFlagsCounter}
	boolean := EnvConfig{Size: size, Redundant: true, Flags: EnvFlagsBoolean}
	tests := []struct {
		name string
		cfg  EnvConfig
		dev  func(t *testing.T) []byte
	}{
		{"single", EnvConfig{Size: size}, func(t *testing.T) []byte { return saved(t, EnvConfig{Size: size}, size, 2) }},
		{"counter/older copy valid", counter, func(t *testing.T) []byte { return saved(t, counter, 2*size, 3) }},
		{"counter/other copy blank", counter, func(t *testing.T) []byte { return saved(t, counter, 2*size, 1) }},
		{"counter/wrap", counter, func(*testing.T) []byte { return envCounterImage(size, 254, 255) }},
		{"counter/after wrap", counter, func(*testing.T) []byte { return envCounterImage(size, 0, 255) }},
		{"counter/equal", counter, func(*testing.T) []byte { return envCounterImage(size, 7, 7) }},
		{"counter/other copy bad, high flags", counter, func(*testing.T) []byte {
			d := envCounterImage(size, 3, 200)
			d[size] ^= 1
			return d
		}},
		{"single/zero padding", EnvConfig{Size: size}, func(*testing.T) []byte {
			return envCopy(size, false, 0, 0x00, "serial=SN0042", "bootcmd=run a", "old=x")
		}},
		{"counter/other copy garbage", counter, func(*testing.T) []byte { return envGarbage(envCounterImage(size, 9, 0), size) }},
		{"boolean/other copy garbage", boolean, func(*testing.T) []byte { return envGarbage(envCounterImage(size, 1, 0), size) }},
		{"boolean/older copy valid", boolean, func(t *testing.T) []byte { return saved(t, boolean, 2*size, 3) }},
		{"boolean/other copy blank", boolean, func(t *testing.T) []byte { return saved(t, boolean, 2*size, 1) }},
		{"boolean/both active", boolean, func(*testing.T) []byte { return envCounterImage(size, 1, 1) }},
		{"boolean/erased flags", boolean, func(*testing.T) []byte { return envCounterImage(size, 0, 0xFF) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			base := tc.dev(t)
			n := int64(len(base))
			old := envLoad(t, base, tc.cfg)
			want := envLoad(t, base, tc.cfg)
			change(t, want)
			oldVars, newVars := envPairs(old.Vars), envPairs(want.Vars)

			count := &envCut{envMem: envMem{bytes.Clone(base)}, budget: 1 << 30}
			if err := want.Save(count, false); err != nil {
				t.Fatal(err)
			}
			total := count.written
			if total == 0 {
				t.Fatal("Save wrote nothing")
			}
			if got := envLoad(t, count.b, tc.cfg); envPairs(got.Vars) != newVars {
				t.Fatalf("after a full Save: %s, want %s", envPairs(got.Vars), newVars)
			}
			var sawOld, sawNew, sawBad int
			for cut := 0; cut <= total; cut++ {
				dev := &envCut{envMem: envMem{bytes.Clone(base)}, budget: cut}
				e, err := LoadEnv(dev, n, tc.cfg)
				if err != nil {
					t.Fatal(err)
				}
				change(t, e)
				err = e.Save(dev, false)
				if cut < total && !errors.Is(err, errEnvCut) {
					t.Fatalf("cut at %d of %d: Save returned %v", cut, total, err)
				}
				if cut == total && err != nil {
					t.Fatalf("no cut: %v", err)
				}
				got, err := LoadEnv(&dev.envMem, n, tc.cfg)
				if err != nil {
					if tc.cfg.Redundant || !errors.Is(err, ErrEnvBadCRC) {
						t.Fatalf("cut at %d of %d: %v", cut, total, err)
					}
					// A single copy cut mid-write: detected, and kept.
					sawBad++
					keep := bytes.Clone(dev.b)
					got.Set("x", "y")
					if err := got.Save(&dev.envMem, false); !errors.Is(err, ErrEnvBadCRC) || !strings.Contains(err.Error(), "--force") {
						t.Fatalf("cut at %d: Save over a bad CRC: %v", cut, err)
					}
					if !bytes.Equal(keep, dev.b) {
						t.Fatalf("cut at %d: a refused Save wrote", cut)
					}
					continue
				}
				switch envPairs(got.Vars) {
				case oldVars:
					sawOld++
				case newVars:
					sawNew++
				default:
					t.Fatalf("cut at %d of %d: loaded %s\nold %s\nnew %s", cut, total, envPairs(got.Vars), oldVars, newVars)
				}
				if cut == 0 && envPairs(got.Vars) != oldVars || cut == total && envPairs(got.Vars) != newVars {
					t.Fatalf("cut at %d of %d: loaded %s", cut, total, envPairs(got.Vars))
				}
				// Whatever survived can be saved again.
				got.Set("after", "cut")
				if err := got.Save(&dev.envMem, false); err != nil {
					t.Fatalf("cut at %d: next Save: %v", cut, err)
				}
				if v, ok := envLoad(t, dev.b, tc.cfg).Get("after"); !ok || v != "cut" {
					t.Fatalf("cut at %d: the next Save is not what loads", cut)
				}
			}
			t.Logf("%d bytes written; cuts: %d old, %d new, %d bad CRC", total, sawOld, sawNew, sawBad)
			if tc.cfg.Redundant && sawBad != 0 {
				t.Error("a redundant environment lost both copies")
			}
			if !tc.cfg.Redundant && sawBad == 0 {
				t.Error("a single copy never showed a torn write: is the test cutting?")
			}
		})
	}
}

func TestEnvSaveWritesOnlyChanges(t *testing.T) {
	const size = 512
	dev := &envCut{envMem: envMem{envCopy(size, false, 0, 0xFF, "a=1", "b=2", "c=3")}, budget: 1 << 30}
	e := envLoad(t, dev.b, EnvConfig{})
	if err := e.Save(dev, false); err != nil || dev.written != 0 {
		t.Fatalf("unchanged Save: %v, %d bytes written", err, dev.written)
	}
	e.Set("b", "9")
	if err := e.Save(dev, false); err != nil {
		t.Fatal(err)
	}
	if dev.written != 1+4 { // the value's byte, then the CRC
		t.Errorf("%d bytes written for a one-byte change", dev.written)
	}
	if v, _ := envLoad(t, dev.b, EnvConfig{}).Get("b"); v != "9" {
		t.Errorf("b=%s", v)
	}
}

func TestEnvAutoSize(t *testing.T) {
	const devSize, size = 0x10000, 0x2000
	single := envFill(devSize, 0xFF)
	copy(single, envCopy(size, false, 0, 0xFF, "bootdelay=3", "ethaddr=02:00:00:00:00:01"))
	redundant := envFill(devSize, 0xFF)
	copy(redundant, envCopy(size, true, 4, 0xFF, "gen=4"))
	copy(redundant[size:], envCopy(size, true, 5, 0xFF, "gen=5"))

	e, err := LoadEnv(bytes.NewReader(single), devSize, EnvConfig{AutoSize: true})
	if err != nil {
		t.Fatal(err)
	}
	if e.Config.Size != size || e.Config.AutoSize {
		t.Errorf("single: config %+v", e.Config)
	}
	if v, _ := e.Get("bootdelay"); v != "3" {
		t.Errorf("bootdelay=%s", v)
	}
	e, err = LoadEnv(bytes.NewReader(redundant), devSize, EnvConfig{Redundant: true, AutoSize: true})
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := e.Get("gen"); e.Config.Size != size || e.Active != 1 || v != "5" {
		t.Errorf("redundant: size %#x, active %d, gen=%s", e.Config.Size, e.Active, v)
	}

	// The whole device is the wrong size: the message says so.
	_, err = LoadEnv(bytes.NewReader(single), devSize, EnvConfig{})
	if !errors.Is(err, ErrEnvBadCRC) || !strings.Contains(err.Error(), "copy size 0x10000") || !strings.Contains(err.Error(), "size=auto") {
		t.Errorf("whole device: %v", err)
	}

	blank := envFill(devSize, 0xFF)
	e, err = LoadEnv(bytes.NewReader(blank), devSize, EnvConfig{AutoSize: true})
	want := "u-boot-env: bad CRC: no copy size gives a good CRC (tried 0x100, 0x200, 0x400, 0x800, 0x1000, 0x2000, 0x4000, 0x8000, 0x10000)"
	if e != nil || !errors.Is(err, ErrEnvBadCRC) || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("blank: %v, %v", e, err)
	}
	_, err = LoadEnv(bytes.NewReader(blank), devSize, EnvConfig{AutoSize: true, Redundant: true, Size: 0x3000})
	if want := "(tried 0x3000, 0x100,"; err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "0x8000)") {
		t.Errorf("blank, redundant, size first: %v", err)
	}

	for _, tc := range []struct {
		name string
		dev  []byte
		cfg  EnvConfig
		ok   bool
	}{
		{"single", single, EnvConfig{Size: size}, true},
		{"redundant", redundant, EnvConfig{Size: size, Redundant: true, Offset2: size, Offset2Set: true}, true},
		{"blank", blank, EnvConfig{}, false},
		{"small", envCopy(128, false, 0, 0, "a=1"), EnvConfig{Size: 128}, true},
		{"small redundant", append(envCopy(100, true, 1, 0, "a=1"), envFill(100, 0)...), EnvConfig{Size: 100, Redundant: true}, true}, // copy 2 not good: not pinned
	} {
		cfg, ok := EnvDetect(bytes.NewReader(tc.dev), int64(len(tc.dev)))
		if ok != tc.ok || cfg != tc.cfg {
			t.Errorf("EnvDetect %s: %+v %t, want %+v %t", tc.name, cfg, ok, tc.cfg, tc.ok)
		}
	}
}

// TestEnvDetectOnFlash: an environment found by its CRC, on flash, has its
// second copy where the content shows it (EnvOnFlash): right after copy 1
// (then, sharing copy 1's erase block, writes are refused, not moved to
// the next block, where a save wrote a copy nobody reads and marked the
// found one obsolete), or on the next erase block, where U-Boot keeps it
// on NOR. Where the content cannot tell (good copies at both places, or
// at neither) reading goes on and writing is refused; copies a whole
// erase block long need no settling.
func TestEnvDetectOnFlash(t *testing.T) {
	const es = 0x1000
	for _, tc := range []struct {
		name     string
		size     int64
		copy2    []int64 // where good second copies are, after copy 1 at 0
		read     string  // board= of what LoadEnv reads, with the erase size dropped
		writeErr string  // why EnvOnFlash refuses writes, or what LoadEnv with the erase size refuses
	}{
		{"right after, sharing a block", 0x800, []int64{0x800}, "second", "env-offset2 0x800 is not on an erase-block boundary"},
		{"a whole block each", es, []int64{es}, "second", ""},
		{"on the next erase block", 0x800, []int64{es}, "second", ""},
		{"at both places", 0x800, []int64{0x800, es}, "", "good second copies both right after the first (0x800) and on the next erase block (0x1000)"},
		{"at neither", 0x800, nil, "first", "no good second copy"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dev := envFill(4*es, 0xff)
			copy(dev, envCopy(int(tc.size), true, 1, 0, "board=first"))
			for _, off := range tc.copy2 {
				copy(dev[off:], envCopy(int(tc.size), true, 2, 0, "board=second"))
			}
			found, ok := EnvDetect(bytes.NewReader(dev), int64(len(dev)))
			if !ok {
				t.Fatal("not found")
			}
			cfg, unsure := EnvOnFlash(bytes.NewReader(dev), int64(len(dev)), found, es)
			_, loadErr := LoadEnv(bytes.NewReader(dev), int64(len(dev)), cfg)
			var refusal error
			switch {
			case unsure != nil:
				refusal = unsure
			case loadErr != nil:
				refusal = loadErr
			}
			if tc.writeErr == "" && refusal != nil || tc.writeErr != "" && (!errors.Is(refusal, nvcore.ErrInvalid) || !strings.Contains(fmt.Sprint(refusal), tc.writeErr)) {
				t.Errorf("writes: %v; want %q", refusal, tc.writeErr)
			}
			if tc.read == "" {
				return
			}
			cfg.EraseSize = 0
			e, err := LoadEnv(bytes.NewReader(dev), int64(len(dev)), cfg)
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			if v, _ := e.Get("board"); v != tc.read {
				t.Errorf("read board=%q, want %q", v, tc.read)
			}
			// layout=auto on mtd: finds the same, for its cells.
			cells, err := (&Auto{Env: EnvConfig{EraseSize: es}}).Cells(bytes.NewReader(dev), int64(len(dev)))
			if err != nil || len(cells) != 1 {
				t.Fatalf("auto: %v, %v", cells, err)
			}
			got := make([]byte, cells[0].Bytes)
			copy(got, dev[cells[0].Offset:])
			if string(got) != tc.read {
				t.Errorf("auto: cell %s at %#x reads %q, want %q", cells[0].Name, cells[0].Offset, got, tc.read)
			}
		})
	}
}

func TestEnvBadCRC(t *testing.T) {
	dev := &envMem{envCopy(64, false, 0, 0xFF, "a=1")}
	binary.LittleEndian.PutUint32(dev.b, 0x12345678)
	e, err := LoadEnv(dev, 64, EnvConfig{})
	want := fmt.Sprintf("u-boot-env: bad CRC: stored 0x12345678, computed 0x%08x (copy size 0x40", crc32.ChecksumIEEE(dev.b[4:]))
	if !errors.Is(err, ErrEnvBadCRC) || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("%v\nwant %s", err, want)
	}
	if e == nil || e.Valid() || e.Copies[0].Stored != 0x12345678 || len(e.Vars) != 0 {
		t.Fatalf("Env %+v", e)
	}
	if _, err := (UBootEnv{}).Cells(dev, 64); !errors.Is(err, ErrEnvBadCRC) {
		t.Errorf("Cells: %v", err)
	}
	keep := bytes.Clone(dev.b)
	e.Set("a", "2")
	if err := e.Save(dev, false); !errors.Is(err, ErrEnvBadCRC) || !strings.Contains(err.Error(), "--force") || !bytes.Equal(keep, dev.b) {
		t.Fatalf("Save without force: %v", err)
	}
	if err := e.Save(dev, true); err != nil {
		t.Fatal(err)
	}
	if v, _ := envLoad(t, dev.b, EnvConfig{}).Get("a"); v != "2" || !e.Valid() {
		t.Errorf("after a forced Save: a=%s", v)
	}

	red := append(envCopy(64, true, 1, 0xFF, "a=1"), envCopy(64, true, 2, 0xFF, "a=2")...)
	red[10] ^= 1
	red[64+10] ^= 1
	_, err = LoadEnv(bytes.NewReader(red), 128, EnvConfig{Redundant: true})
	if !errors.Is(err, ErrEnvBadCRC) || !strings.Contains(err.Error(), "u-boot-env-redundant: bad CRC: copy 1 at 0x0: stored 0x") || !strings.Contains(err.Error(), "; copy 2 at 0x40: stored 0x") {
		t.Errorf("redundant: %v", err)
	}
}

func TestEnvChangedUnderneath(t *testing.T) {
	dev := &envMem{append(envCopy(64, true, 1, 0xFF, "a=1"), envFill(64, 0xFF)...)}
	cfg := EnvConfig{Redundant: true}
	e1 := envLoad(t, dev.b, cfg)
	e2 := envLoad(t, dev.b, cfg)
	e2.Set("a", "2")
	if err := e2.Save(dev, false); err != nil {
		t.Fatal(err)
	}
	keep := bytes.Clone(dev.b)
	e1.Set("a", "3")
	if err := e1.Save(dev, false); !errors.Is(err, ErrEnvChanged) || !bytes.Equal(keep, dev.b) {
		t.Errorf("stale Save: %v", err)
	}
}

func TestEnvWriteProtected(t *testing.T) {
	for _, cfg := range []EnvConfig{{}, {Redundant: true}} {
		b := envCopy(64, cfg.Redundant, 1, 0xFF, "a=1")
		if cfg.Redundant {
			b = append(b, envFill(64, 0xFF)...)
		}
		dev := &envDeaf{envMem{b}}
		e := envLoad(t, b, cfg)
		e.Set("a", "2")
		if err := e.Save(dev, false); !errors.Is(err, nvcore.ErrIO) || !strings.Contains(err.Error(), "write-protected") {
			t.Errorf("%s: %v", cfg.name(), err)
		}
		if v, _ := e.Get("a"); v != "2" || e.Active != 0 {
			t.Errorf("%s: Env changed by a failed Save", cfg.name())
		}
	}
}

func TestEnvParse(t *testing.T) {
	tests := []struct {
		name, data, want string
	}{
		{"empty", "\x00", ""},
		{"stops at the empty string", "a=1\x00\x00b=2\x00\x00", "a=1"},
		{"no '=' is skipped", "a=1\x00junk\x00b=2\x00\x00", "a=1 b=2"},
		{"empty name is skipped", "=x\x00b=2\x00\x00", "b=2"},
		{"empty value is kept", "a=\x00b=2\x00\x00", "a= b=2"},
		{"'=' in the value", "a=b=c\x00\x00", "a=b=c"},
		{"twice", "a=1\x00a=2\x00\x00", "a=1 a=2"},
		{"cut off by the end", "a=1\x00bb=xyz", "a=1 bb=xyz"},
		{"full, no final empty string", "a=1\x00b=2\x00", "a=1 b=2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			vars := envParse([]byte(tc.data), 100)
			if got := envPairs(vars); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
			for _, v := range vars {
				if i := v.Offset - 100; tc.data[i-1] != '=' || !strings.HasPrefix(tc.data[i:], v.Value) {
					t.Errorf("%s at %d", v.Name, v.Offset)
				}
			}
		})
	}

	// A value cut off by the end of the area loads, but cannot be saved as
	// it is: it needs its NUL and the final empty string.
	b := []byte("\x00\x00\x00\x00a=1\x00bb=xyz")
	binary.LittleEndian.PutUint32(b, crc32.ChecksumIEEE(b[4:]))
	e := envLoad(t, b, EnvConfig{})
	if _, err := e.Encode(); !errors.Is(err, nvcore.ErrTooBig) {
		t.Errorf("Encode: %v", err)
	}
}

func TestEnvSetUnset(t *testing.T) {
	e := envLoad(t, envCopy(64, false, 0, 0xFF, "a=1", "b=2", "a=3", "c=4"), EnvConfig{})
	if v, ok := e.Get("a"); !ok || v != "3" {
		t.Errorf("Get a: %q %t (the later copy wins)", v, ok)
	}
	if _, ok := e.Get("z"); ok {
		t.Error("Get z")
	}
	for _, tc := range []struct{ name, value string }{{"", "x"}, {"a=b", "x"}, {"a\x00", "x"}, {"a", "x\x00y"}} {
		if err := e.Set(tc.name, tc.value); !errors.Is(err, nvcore.ErrInvalid) {
			t.Errorf("Set(%q, %q): %v", tc.name, tc.value, err)
		}
	}
	e.Set("a", "5")
	e.Set("d", "6")
	if got := envPairs(e.Vars); got != "a=5 b=2 c=4 d=6" {
		t.Errorf("after Set: %s", got)
	}
	for _, v := range e.Vars {
		if v.Offset != -1 {
			t.Errorf("%s: offset %d after Set", v.Name, v.Offset)
		}
	}
	e.Set("b", "")
	if err := e.Unset("c"); err != nil {
		t.Fatal(err)
	}
	if err := e.Unset("c"); !errors.Is(err, nvcore.ErrInvalid) {
		t.Errorf("Unset of nothing: %v", err)
	}
	if got := envPairs(e.Vars); got != "a=5 d=6" {
		t.Errorf("after Unset: %s", got)
	}
	var out bytes.Buffer
	e.Print(&out)
	if out.String() != "a=5\nd=6\n" {
		t.Errorf("Print: %q", out.String())
	}
	// 64 - 4 bytes of data: a=5 d=6 and the final NUL take 9.
	e.Set("big", strings.Repeat("x", 64-4-9-5))
	if _, err := e.Encode(); err != nil {
		t.Errorf("exact fit: %v", err)
	}
	e.Set("big", strings.Repeat("x", 64-4-9-4))
	if _, err := e.Encode(); !errors.Is(err, nvcore.ErrTooBig) {
		t.Errorf("one byte too many: %v", err)
	}
}

func TestEnvConfigErrors(t *testing.T) {
	dev := envFill(1024, 0xFF)
	tests := []struct {
		name    string
		devSize int64
		cfg     EnvConfig
		want    error
	}{
		{"tiny", 1024, EnvConfig{Size: 4}, nvcore.ErrInvalid},
		{"tiny redundant", 1024, EnvConfig{Size: 5, Redundant: true}, nvcore.ErrInvalid},
		{"negative", 1024, EnvConfig{Size: -1}, nvcore.ErrInvalid},
		{"too big", 1 << 40, EnvConfig{Size: 1 << 30}, nvcore.ErrTooBig},
		{"does not fit", 1024, EnvConfig{Size: 768, Redundant: true}, nvcore.ErrInvalid},
		{"flags", 1024, EnvConfig{Flags: 7}, nvcore.ErrInvalid},
		{"flags auto", 1024, EnvConfig{Flags: 7, AutoSize: true}, nvcore.ErrInvalid},
		{"no device", 0, EnvConfig{}, nvcore.ErrInvalid},
		{"no device auto", 0, EnvConfig{AutoSize: true}, nvcore.ErrInvalid},
		{"device too small auto", 4, EnvConfig{AutoSize: true}, nvcore.ErrInvalid},
		{"short read", 2048, EnvConfig{}, io.EOF},
	}
	for _, tc := range tests {
		e, err := LoadEnv(bytes.NewReader(dev), tc.devSize, tc.cfg)
		if e != nil || !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	if err := (&Env{}).Save(&envMem{dev}, true); !errors.Is(err, nvcore.ErrInvalid) {
		t.Errorf("Save of a zero Env: %v", err)
	}
	if _, err := (&Env{}).Encode(); !errors.Is(err, nvcore.ErrInvalid) {
		t.Errorf("Encode of a zero Env: %v", err)
	}
}

func TestUBootEnvRedundantCells(t *testing.T) {
	const size = 128
	dev := append(envCopy(size, true, 6, 0xFF, "ethaddr=00:00:00:00:00:01"),
		envCopy(size, true, 7, 0xFF, "ethaddr=AA:bb:CC:dd:EE:ff", "eth1addr=02:00:00:00:00:02", "empty=", "a/b=1", "foo=bar")...)
	u := UBootEnv{Config: EnvConfig{Redundant: true}}
	if u.Name() != "u-boot-env-redundant" {
		t.Errorf("Name %q", u.Name())
	}
	cells, err := u.Cells(bytes.NewReader(dev), int64(len(dev)))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range cells {
		names = append(names, c.Name)
		if c.Offset < size || c.Offset+int64(c.Bytes) > int64(len(dev)) || c.Layout != "u-boot-env-redundant" {
			t.Errorf("cell %+v", c)
		}
		if raw := string(dev[c.Offset : c.Offset+int64(c.Bytes)]); strings.IndexByte(raw, 0) >= 0 || dev[c.Offset-1] != '=' {
			t.Errorf("cell %s reads %q", c.Name, raw)
		}
		if (c.Decode != nil) != (c.Name == "ethaddr") {
			t.Errorf("cell %s: decode %t", c.Name, c.Decode != nil)
		}
	}
	if got := strings.Join(names, " "); got != "ethaddr eth1addr a/b foo" {
		t.Errorf("cells %s", got)
	}
	mac, err := cells[0].Decode(dev[cells[0].Offset : cells[0].Offset+17])
	if err != nil || hex.EncodeToString(mac) != "aabbccddeeff" {
		t.Errorf("ethaddr %x %v", mac, err)
	}
	for _, bad := range []string{"", "00:11:22:33:44:5G", "00-11-22-33-44-55", "00:11:22:33:44:55:", "0:11:22:33:44:555", "00:11:22:33:44:55 "} {
		if _, err := envDecodeMAC([]byte(bad)); !errors.Is(err, nvcore.ErrInvalid) {
			t.Errorf("decode %q: %v", bad, err)
		}
	}
}

// envSyncing counts Sync calls and the bytes written before each.
type envSyncing struct {
	envMem
	written int
	syncs   []int
}

func (s *envSyncing) WriteAt(p []byte, off int64) (int, error) {
	s.written += len(p)
	return s.envMem.WriteAt(p, off)
}

func (s *envSyncing) Sync() error {
	s.syncs = append(s.syncs, s.written)
	return nil
}

func TestEnvSaveSyncs(t *testing.T) {
	dev := &envSyncing{envMem: envMem{append(envCopy(64, true, 1, 0xFF, "a=1"), envFill(64, 0xFF)...)}}
	e := envLoad(t, dev.b, EnvConfig{Redundant: true, Flags: EnvFlagsBoolean})
	e.Set("a", "2")
	if err := e.Save(dev, false); err != nil {
		t.Fatal(err)
	}
	// Data ("a=2\0\0" over erased bytes: 5) and CRC (4), sync, new flags,
	// old flags, sync.
	if len(dev.syncs) != 2 || dev.syncs[0] != 9 || dev.syncs[1] != 11 {
		t.Errorf("syncs after %v bytes", dev.syncs)
	}
}

// TestEnvFile saves through an *os.File, as the file backend will.
func TestEnvFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "env.img")
	img := append(envCopy(0x1000, true, 41, 0xFF, "serial=SN0042", "bootdelay=3"), envFill(0x1000, 0xFF)...)
	if err := os.WriteFile(path, img, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cfg := EnvConfig{Redundant: true}
	e, err := LoadEnv(f, 0x2000, cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.Set("bootdelay", "0")
	if err := e.Save(f, false); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	got := envLoad(t, b, cfg)
	if v, _ := got.Get("bootdelay"); v != "0" || got.Active != 1 || got.Copies[1].Flags != 42 || !bytes.Equal(b[:0x1000], img[:0x1000]) {
		t.Errorf("after Save: bootdelay=%s, copy %d, flags %d", v, got.Active+1, got.Copies[1].Flags)
	}
}
