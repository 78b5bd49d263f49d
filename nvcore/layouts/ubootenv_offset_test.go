package layouts

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/nvmemfs/nvmemfs/nvcore"
)

// TestEnvOffsetsPlacement: where the copies go for env-offset, env-offset2
// and an erase size, and every placement refused, with the option named.
func TestEnvOffsetsPlacement(t *testing.T) {
	const dev = 0x10000
	good := []struct {
		cfg  EnvConfig
		want []int64 // copy offsets
		size int64
	}{
		{EnvConfig{Size: 0x100}, []int64{0}, 0x100},
		{EnvConfig{Size: 0x100, Offset: 0x300}, []int64{0x300}, 0x100},
		{EnvConfig{Offset: 0x8000}, []int64{0x8000}, 0x8000}, // the rest of the device
		{EnvConfig{Size: 0x100, Redundant: true}, []int64{0, 0x100}, 0x100},
		{EnvConfig{Size: 0x100, Redundant: true, Offset: 0x300}, []int64{0x300, 0x400}, 0x100},
		{EnvConfig{Size: 0x100, Redundant: true, Offset: 0x300, Offset2: 0x7000, Offset2Set: true}, []int64{0x300, 0x7000}, 0x100},
		{EnvConfig{Size: 0x100, Redundant: true, Offset: 0x7000, Offset2: 0, Offset2Set: true}, []int64{0x7000, 0}, 0x100},
		// Flash: copy 2 on the erase block after copy 1.
		{EnvConfig{Size: 0x100, Redundant: true, EraseSize: 0x1000}, []int64{0, 0x1000}, 0x100},
		{EnvConfig{Size: 0x1800, Redundant: true, Offset: 0x4000, EraseSize: 0x1000}, []int64{0x4000, 0x6000}, 0x1800},
		{EnvConfig{Redundant: true, Offset: 0xd000, EraseSize: 0x1000}, []int64{0xd000, 0xe000}, 0x1000}, // 3 blocks left: one each
		{EnvConfig{Redundant: true, EraseSize: 0x1000}, []int64{0, 0x8000}, 0x8000},
		{EnvConfig{Size: 0x1000, Redundant: true, Offset: 0x2000, Offset2: 0x3000, Offset2Set: true, EraseSize: 0x1000}, []int64{0x2000, 0x3000}, 0x1000},
	}
	for _, g := range good {
		c, err := g.cfg.resolve(dev)
		if err != nil {
			t.Errorf("%+v: %v", g.cfg, err)
			continue
		}
		if got := c.offsets(); c.Size != g.size || !slicesEqual(got, g.want) {
			t.Errorf("%+v: size %#x at %#x, want %#x at %#x", g.cfg, c.Size, got, g.size, g.want)
		}
	}
	bad := []struct {
		cfg  EnvConfig
		want string
	}{
		{EnvConfig{Size: 0x100, Offset: dev}, "env-offset 0x10000 is outside the device (size 0x10000)"},
		{EnvConfig{Size: 0x100, Offset: dev - 0x80}, "the copy at env-offset 0xff80 with env-size 0x100 runs past the end of the device"},
		{EnvConfig{Size: 0x100, Redundant: true, Offset2: dev + 1, Offset2Set: true}, "env-offset2 0x10001 is outside the device"},
		{EnvConfig{Size: 0x100, Redundant: true, Offset: dev - 0x100}, "env-offset2 (by default right after copy 1: 0x10000)"},
		{EnvConfig{Size: 0x100, Offset2: 0x100, Offset2Set: true}, "env-offset2 places the second copy of a redundant environment"},
		{EnvConfig{Size: 0x100, Redundant: true, Offset: 0x300, Offset2: 0x380, Offset2Set: true}, "the copies at env-offset 0x300 and env-offset2 0x380 overlap (env-size 0x100)"},
		{EnvConfig{Size: 0x100, Redundant: true, Offset: 0x380, Offset2: 0x300, Offset2Set: true}, "overlap"},
		{EnvConfig{Size: 0x100, Redundant: true, Offset: 0x300, Offset2: 0x300, Offset2Set: true}, "overlap"},
		// Flash.
		{EnvConfig{Size: 0x100, Offset: 0x800, EraseSize: 0x1000}, "env-offset 0x800 is not on an erase-block boundary (erase size 0x1000)"},
		{EnvConfig{Size: 0x100, Redundant: true, Offset2: 0x1100, Offset2Set: true, EraseSize: 0x1000}, "env-offset2 0x1100 is not on an erase-block boundary"},
		{EnvConfig{Size: 0x1800, Redundant: true, Offset: 0x2000, Offset2: 0x3000, Offset2Set: true, EraseSize: 0x1000},
			"the copies at env-offset 0x2000 and env-offset2 0x3000 (env-size 0x1800) share an erase block (erase size 0x1000): a save of one would erase the other; put env-offset2 at 0x4000 or beyond"},
		{EnvConfig{Size: 0x100, Redundant: true, Offset: 0x1000, Offset2: 0x1000, Offset2Set: true, EraseSize: 0x1000}, "share an erase block"},
		{EnvConfig{Redundant: true, Offset: 0xf000, EraseSize: 0x1000}, "a copy needs at least 6 bytes"},
		{EnvConfig{Size: 0x100, EraseSize: -1}, "erase size -1"},
	}
	for _, b := range bad {
		_, err := b.cfg.resolve(dev)
		if err == nil || !errors.Is(err, nvcore.ErrInvalid) || !strings.Contains(err.Error(), b.want) {
			t.Errorf("%+v: %v, want ErrInvalid with %q", b.cfg, err, b.want)
		}
		// Check, what attach asks, says the same.
		if err := b.cfg.Check(dev); err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("Check %+v: %v, want %q", b.cfg, err, b.want)
		}
	}
}

func slicesEqual(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestEnvAtOffsets: a redundant environment at two offsets of a device,
// copy 2 before copy 1: loads pick the copy by flags, saves alternate, the
// counter wraps, and nothing outside the copies is ever written.
func TestEnvAtOffsets(t *testing.T) {
	const size = 0x40
	cfg := EnvConfig{Size: size, Redundant: true, Offset: 0x180, Offset2: 0x40, Offset2Set: true}
	dev := &envMem{b: envFill(0x200, 0xA5)}
	copy(dev.b[0x180:], envCopy(size, true, 254, 0xFF, "a=1"))
	copy(dev.b[0x40:], envCopy(size, true, 253, 0xFF, "a=0"))
	outside := func() []byte {
		var b []byte
		b = append(b, dev.b[:0x40]...)
		b = append(b, dev.b[0x80:0x180]...)
		b = append(b, dev.b[0x1c0:]...)
		return b
	}
	before := outside()
	wantFlags := []byte{255, 0, 1} // through the wrap
	for i, val := range []string{"2", "3", "4"} {
		e := envLoad(t, dev.b, cfg)
		if got, _ := e.Get("a"); got != string(rune('1'+i)) {
			t.Fatalf("save %d: a = %q before", i, got)
		}
		if err := e.Set("a", val); err != nil {
			t.Fatal(err)
		}
		if err := e.Save(dev, false); err != nil {
			t.Fatal(err)
		}
		e = envLoad(t, dev.b, cfg)
		if got, _ := e.Get("a"); got != val {
			t.Fatalf("a = %q after saving %q", got, val)
		}
		wantAt := []int64{0x40, 0x180}[i%2]
		if act := e.Copies[e.Active]; act.Offset != wantAt || act.Flags != wantFlags[i] {
			t.Errorf("save %d: active copy at %#x flags %d, want %#x flags %d", i, act.Offset, act.Flags, wantAt, wantFlags[i])
		}
		cells, err := UBootEnv{Config: cfg}.Cells(bytes.NewReader(dev.b), int64(len(dev.b)))
		if err != nil || len(cells) != 1 || cells[0].Offset != wantAt+5+2 {
			t.Errorf("save %d: cells %+v, %v; want a at %#x", i, cells, err, wantAt+7)
		}
	}
	if !bytes.Equal(outside(), before) {
		t.Error("bytes outside the copies changed")
	}
	// A single environment at env-offset.
	single := EnvConfig{Size: size, Offset: 0x100}
	copy(dev.b[0x100:], envCopy(size, false, 0, 0xFF, "s=1"))
	e := envLoad(t, dev.b, single)
	if err := e.Set("s", "2"); err != nil {
		t.Fatal(err)
	}
	if err := e.Save(dev, false); err != nil {
		t.Fatal(err)
	}
	if got := dev.b[0x100 : 0x100+size]; !bytes.Equal(got, envCopy(size, false, 0, 0xFF, "s=2")) {
		t.Errorf("single copy at 0x100: % x", got)
	}
}
