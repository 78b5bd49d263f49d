package main

import (
	"encoding/json"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMain lets the test binary serve as the harness's child process, as
// the harness binary does.
func TestMain(m *testing.M) {
	runChildIfAsked()
	os.Exit(m.Run())
}

type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestQuick runs every section of the harness in its smoke mode and checks
// that it produces complete results; it asserts nothing about timings.
// Under -short the scale section, which builds the nvmemfs binary, is left
// out.
func TestQuick(t *testing.T) {
	if _, err := os.Stat("/dev/fuse"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI needs /dev/fuse: %v", err)
		}
		t.Skipf("no /dev/fuse: %v", err)
	}
	o := defaultOptions()
	o.quick = true
	o.out = t.TempDir()
	o.log = testLog{t}
	o.readers = "0,1,2"
	if testing.Short() {
		o.sections = "srcu,loops,removal"
	}
	res, err := run(o)
	if err != nil {
		t.Fatalf("harness: %v", err)
	}
	var sb strings.Builder
	printTable(&sb, res)
	t.Log(sb.String())

	b, err := os.ReadFile(filepath.Join(o.out, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var got Results
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("results.json: %v", err)
	}
	if got.SRCU == nil || len(got.SRCU.Figures) != len(srcuGuards)*len(cpuList()) {
		t.Errorf("results.json: SRCU figures %+v", got.SRCU)
	}
	if got.Loops == nil || len(got.Loops.Figures) != 29 || len(got.Loops.Ratios) == 0 {
		t.Fatalf("results.json: loops %+v", got.Loops)
	}
	for _, f := range got.Loops.Figures {
		if len(f.NsPerOp.Runs) != 2 || f.NsPerOp.Median <= 0 || f.Bytes <= 0 {
			t.Errorf("loop %s: %+v", f.Name, f)
		}
	}
	if got.Removal == nil || len(got.Removal.Points) != 2*3 { // file and at24, 0 to 2 readers
		t.Fatalf("results.json: removal %+v", got.Removal)
	}
	for _, p := range got.Removal.Points {
		if len(p.Samples) != 3 || p.BadEnds != 0 || p.P99ms <= 0 {
			t.Errorf("removal %s with %d readers: %+v", p.Provider, p.Readers, p)
		}
	}
	if !testing.Short() && (got.Scale == nil || got.Scale.RootEntries != 20 || got.Scale.RSSListedMiB <= 0) {
		t.Errorf("results.json: scale %+v", got.Scale)
	}
	if len(got.Targets) != 12 {
		t.Errorf("%d targets, want 12", len(got.Targets))
	}

	f, err := os.Open(filepath.Join(o.out, "removal.png"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("removal.png: %v", err)
	}
	if b := img.Bounds(); b.Dx() != plotW || b.Dy() != plotH {
		t.Errorf("removal.png is %v", b)
	}
}

func TestStats(t *testing.T) {
	xs := []float64{5, 1, 4, 2, 3}
	if m := median(xs); m != 3 {
		t.Errorf("median %v", m)
	}
	if m := median([]float64{4, 1, 3, 2}); m != 2.5 {
		t.Errorf("median of four %v", m)
	}
	for _, c := range []struct{ p, want float64 }{{50, 3}, {99, 5}, {100, 5}, {20, 1}, {21, 2}} {
		if got := percentile(xs, c.p); got != c.want {
			t.Errorf("p%v = %v, want %v", c.p, got, c.want)
		}
	}
	if r := pairRatios([]float64{2, 9}, []float64{1, 3}); len(r) != 2 || r[0] != 2 || r[1] != 3 {
		t.Errorf("pairRatios %v", r)
	}
	if p := splitPath("board/cells/mac-address@fa,0"); len(p) != 3 || p[2] != "mac-address@fa,0" {
		t.Errorf("splitPath %q", p)
	}
}
