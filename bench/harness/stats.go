package main

import (
	"math"
	"slices"
	"time"
)

// Summary is a figure measured several times: the runs in order, and their
// median, lowest and highest.
type Summary struct {
	Runs   []float64 `json:"runs"`
	Median float64   `json:"median"`
	Min    float64   `json:"min"`
	Max    float64   `json:"max"`
}

func summarize(runs []float64) Summary {
	s := Summary{Runs: append([]float64(nil), runs...)}
	if len(runs) == 0 {
		return s
	}
	s.Median = median(runs)
	s.Min = slices.Min(runs)
	s.Max = slices.Max(runs)
	return s
}

// median of xs (the mean of the middle two for an even count).
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// percentile is the nearest-rank percentile p (0 < p <= 100) of xs: the
// smallest value with at least p% of the values at or below it.
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	rank = min(max(rank, 1), len(s))
	return s[rank-1]
}

// pairRatios divides a[i] by b[i]: runs taken side by side in the same
// repetition are compared with each other, never with another repetition.
func pairRatios(a, b []float64) []float64 {
	n := min(len(a), len(b))
	r := make([]float64, 0, n)
	for i := range n {
		if b[i] != 0 {
			r = append(r, a[i]/b[i])
		}
	}
	return r
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
