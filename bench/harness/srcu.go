package main

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nvmemfs/nvmemfs/nvcore"
)

// The read section beside its two alternatives, the loops of
// nvcore/srcu_bench_test.go's BenchmarkReadSection: every goroutine (one
// per core given) enters and leaves an empty section on the same domain.
// ns/op is wall time over the operations of all goroutines together, as
// b.RunParallel reports it; one reader's cost is ns/op times the cores.

type srcuConfig struct {
	cpus []int
	ops  int // per goroutine and repetition
	reps int
}

// SRCUFigure is one guard at one core count.
type SRCUFigure struct {
	Guard string  `json:"guard"`
	CPU   int     `json:"cpu"`
	NsOp  Summary `json:"ns_per_op"`
	// PerReaderNs is the median ns/op times CPU: what one reader pays.
	PerReaderNs float64 `json:"per_reader_ns"`
}

// SRCUResult is the SRCU section of results.json.
type SRCUResult struct {
	Figures []SRCUFigure `json:"figures"`
	Ratios  []Ratio      `json:"ratios"`
}

var srcuGuards = []string{"srcu", "rwmutex", "atomic"}

// sectionLoop returns a function that runs n empty sections of guard.
func sectionLoop(guard string) func(n int) {
	switch guard {
	case "srcu":
		s := nvcore.NewSRCU()
		return func(n int) {
			for range n {
				t := s.Lock()
				s.Unlock(t)
			}
		}
	case "rwmutex":
		var mu sync.RWMutex
		return func(n int) {
			for range n {
				mu.RLock()
				//lint:ignore SA2001 the empty section is what is measured
				mu.RUnlock()
			}
		}
	case "atomic":
		var c atomic.Int64
		return func(n int) {
			for range n {
				c.Add(1)
				c.Add(-1)
			}
		}
	}
	panic("unknown guard " + guard)
}

// parallelNs runs loop on cpu goroutines with GOMAXPROCS cpu and returns
// wall nanoseconds per operation of all of them.
func parallelNs(loop func(int), cpu, ops int) float64 {
	var start, done sync.WaitGroup
	start.Add(1)
	for range cpu {
		done.Add(1)
		go func() {
			defer done.Done()
			start.Wait()
			loop(ops)
		}()
	}
	t0 := time.Now()
	start.Done()
	done.Wait()
	return float64(time.Since(t0).Nanoseconds()) / float64(cpu*ops)
}

func runSRCUSection(cfg srcuConfig, logf func(string, ...any)) *SRCUResult {
	prev := runtime.GOMAXPROCS(0)
	defer runtime.GOMAXPROCS(prev)
	runs := map[string][]float64{}
	key := func(g string, cpu int) string { return fmt.Sprintf("%s/cpu%d", g, cpu) }
	for rep := range cfg.reps {
		for _, cpu := range cfg.cpus {
			runtime.GOMAXPROCS(cpu)
			for i := range srcuGuards {
				g := srcuGuards[(i+rep)%len(srcuGuards)]
				loop := sectionLoop(g)
				loop(cfg.ops / 10) // warm
				runs[key(g, cpu)] = append(runs[key(g, cpu)], parallelNs(loop, cpu, cfg.ops))
			}
		}
	}
	res := &SRCUResult{}
	for _, g := range srcuGuards {
		for _, cpu := range cfg.cpus {
			s := summarize(runs[key(g, cpu)])
			res.Figures = append(res.Figures, SRCUFigure{Guard: g, CPU: cpu, NsOp: s, PerReaderNs: s.Median * float64(cpu)})
			logf("srcu: %-7s -cpu %d: %.2f ns/op", g, cpu, s.Median)
		}
	}
	ratio := func(a, b string) {
		res.Ratios = append(res.Ratios, Ratio{Name: a + " / " + b, Of: a, Over: b, Measure: "time",
			Ratio: summarize(pairRatios(runs[a], runs[b]))})
	}
	for _, cpu := range cfg.cpus {
		ratio(key("srcu", cpu), key("rwmutex", cpu))
		ratio(key("srcu", cpu), key("atomic", cpu))
	}
	// Per reader at c cores over one core: ns/op times c over ns/op at 1.
	if len(cfg.cpus) > 1 && cfg.cpus[0] == 1 {
		for _, cpu := range cfg.cpus[1:] {
			ratio(key("srcu", cpu), key("srcu", 1))
			for _, g := range srcuGuards {
				a, b := runs[key(g, cpu)], runs[key(g, 1)]
				scaled := make([]float64, len(a))
				for i := range a {
					scaled[i] = a[i] * float64(cpu)
				}
				res.Ratios = append(res.Ratios, Ratio{
					Name: fmt.Sprintf("%s per reader at %d cores / at 1", g, cpu), Of: key(g, cpu), Over: key(g, 1),
					Measure: "time per reader", Ratio: summarize(pairRatios(scaled, b)),
				})
			}
		}
	}
	return res
}

// cpuList is 1, 2, 4, ... up to the machine's cores, and the core count
// itself.
func cpuList() []int {
	n := runtime.NumCPU()
	var l []int
	for c := 1; c < n; c *= 2 {
		l = append(l, c)
	}
	return append(l, n)
}
