package layouts

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"slices"
	"strings"
	"testing"

	"github.com/nvmemfs/nvmemfs/nvcore"
)

// envSame compares names and values.
func envSame(a, b []EnvVar) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Name != b[i].Name || a[i].Value != b[i].Value {
			return false
		}
	}
	return true
}

// FuzzUBootEnv loads random bytes as an environment, with a configuration
// taken from mode (bit 0 redundant, bit 1 boolean flags, bit 2 AutoSize,
// bit 3 Size = size, bit 4 a device size that claims size bytes more than
// there are, bit 5 fix the CRCs first, so that random content reaches the
// parser, bit 6 env-offset = the low byte of size, bit 7 env-offset2 = its
// high byte), and, when it loads, saves it back with one more variable and
// loads it again. The seeds are in testdata/fuzz/FuzzUBootEnv.
func FuzzUBootEnv(f *testing.F) {
	f.Add(envCopy(32, false, 0, 0xFF, "a=1", "b=2"), uint8(0), uint16(0))
	f.Add(append(envCopy(32, true, 1, 0xFF, "a=1", "b=2"), envFill(32, 0xFF)...), uint8(1), uint16(0))
	// Copy 2 at 0x10, copy 1 at 0x40, 32 bytes each.
	f.Add(slices.Concat(envFill(16, 0xA5), envCopy(32, true, 2, 0xFF, "a=2"), envFill(16, 0xA5), envCopy(32, true, 1, 0xFF, "a=1")),
		uint8(1|64|128), uint16(0x1040))
	f.Fuzz(envFuzzOne)
}

// envFuzzOne is one run of FuzzUBootEnv.
func envFuzzOne(t *testing.T, data []byte, mode uint8, size uint16) {
	if len(data) > 1<<17 {
		return
	}
	cfg := EnvConfig{Redundant: mode&1 != 0, AutoSize: mode&4 != 0}
	if mode&2 != 0 {
		cfg.Flags = EnvFlagsBoolean
	}
	if mode&8 != 0 {
		cfg.Size = int64(size)
	}
	if mode&64 != 0 {
		cfg.Offset = int64(size & 0xff)
	}
	if mode&128 != 0 {
		cfg.Offset2, cfg.Offset2Set = int64(size>>8), true
	}
	devSize := int64(len(data))
	if mode&16 != 0 {
		devSize += int64(size)
	}

	if mode&32 != 0 { // make the CRCs good, to reach the parser
		data = bytes.Clone(data)
		c := cfg
		c.AutoSize = false
		if c, err := c.resolve(devSize); err == nil && envInside(c, int64(len(data))) {
			for _, off := range c.offsets() {
				cp := data[off : off+c.Size]
				binary.LittleEndian.PutUint32(cp, crc32.ChecksumIEEE(cp[c.header():]))
			}
		}
	}
	if c, ok := EnvDetect(bytes.NewReader(data), devSize); ok {
		if _, err := LoadEnv(bytes.NewReader(data), devSize, c); err != nil {
			t.Fatalf("EnvDetect found %+v, LoadEnv: %v", c, err)
		}
	}
	e, err := LoadEnv(bytes.NewReader(data), devSize, cfg)
	if err != nil {
		if e != nil && (!errors.Is(err, ErrEnvBadCRC) || e.Valid() || len(e.Vars) != 0) {
			t.Fatalf("LoadEnv: %v with %+v", err, e)
		}
		return
	}
	c := e.Config
	if c.AutoSize || !envInside(c, int64(len(data))) || len(e.Copies) != c.copies() || !e.Valid() {
		t.Fatalf("loaded %+v", e)
	}
	start := e.Copies[e.Active].Offset + int64(c.header())
	end := e.Copies[e.Active].Offset + c.Size
	for _, v := range e.Vars {
		if v.Offset <= start || v.Offset+int64(len(v.Value)) > end || data[v.Offset-1] != '=' ||
			string(data[v.Offset:v.Offset+int64(len(v.Value))]) != v.Value {
			t.Fatalf("var %q at %d (data area %d-%d)", v.Name, v.Offset, start, end)
		}
	}
	cells, err := UBootEnv{Config: cfg}.Cells(bytes.NewReader(data), devSize)
	if err != nil {
		t.Fatal(err)
	}
	for _, ci := range cells {
		// Names the core leaves out (parseLayout validates every cell): a
		// '/' or '@' in a variable name, or a file name longer than a file
		// name may be. The bounds must hold for every cell.
		nameRule := strings.ContainsAny(ci.Name, "/@") || len(ci.FileName()) > nvcore.NameMax
		if err := ci.Validate(devSize, 1, 1); err != nil && !nameRule {
			t.Fatalf("cell %+v: %v", ci, err)
		}
		if ci.Offset+int64(ci.Bytes) > int64(len(data)) {
			t.Fatalf("cell %+v outside the data", ci)
		}
		if ci.Decode != nil {
			out, err := ci.Decode(data[ci.Offset : ci.Offset+int64(ci.Bytes)])
			if err == nil && len(out) != ci.DecodedSize || err != nil && !errors.Is(err, nvcore.ErrInvalid) {
				t.Fatalf("decode %q: %x %v", ci.Name, out, err)
			}
		}
	}

	// Round trip: one more variable, saved, loaded again.
	dev := &envMem{bytes.Clone(data)}
	if err := e.Set("fuzz", "1"); err != nil {
		t.Fatal(err)
	}
	if err := e.Save(dev, false); err != nil {
		if errors.Is(err, nvcore.ErrTooBig) {
			return
		}
		t.Fatal(err)
	}
	outside := func(b []byte) []byte {
		b = bytes.Clone(b)
		for _, off := range c.offsets() {
			clear(b[off : off+c.Size])
		}
		return b
	}
	if !bytes.Equal(outside(dev.b), outside(data)) {
		t.Fatal("Save wrote outside the environment's copies")
	}
	got, err := LoadEnv(dev, devSize, c)
	if err != nil {
		t.Fatal(err)
	}
	if got.Active != e.Active || !envSame(got.Vars, e.Vars) {
		t.Fatalf("reloaded copy %d %q, saved copy %d %q", got.Active, envPairs(got.Vars), e.Active, envPairs(e.Vars))
	}
	for i := range got.Vars {
		if got.Vars[i].Offset != e.Vars[i].Offset {
			t.Fatalf("var %s at %d, Save said %d", got.Vars[i].Name, got.Vars[i].Offset, e.Vars[i].Offset)
		}
	}
}

// envInside reports whether every copy of a resolved configuration lies in
// the first n bytes.
func envInside(c EnvConfig, n int64) bool {
	for _, off := range c.offsets() {
		if off+c.Size > n {
			return false
		}
	}
	return true
}
