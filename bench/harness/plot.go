package main

import (
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"strconv"
)

// The removal plot: one panel a provider, latency (ms, log scale) against the
// number of readers (evenly spaced), p50, p99 and max curves, and the
// target as a dashed line.

var (
	colBG     = color.RGBA{255, 255, 255, 255}
	colAxis   = color.RGBA{40, 40, 40, 255}
	colGrid   = color.RGBA{225, 225, 225, 255}
	colText   = color.RGBA{20, 20, 20, 255}
	colP50    = color.RGBA{31, 119, 180, 255}
	colP99    = color.RGBA{255, 127, 14, 255}
	colMax    = color.RGBA{140, 140, 140, 255}
	colTarget = color.RGBA{214, 39, 40, 255}
)

const (
	plotW     = 1500
	plotH     = 640
	textScale = 2
)

type canvas struct{ *image.RGBA }

func (c canvas) dot(x, y, r int, col color.Color) {
	for dy := -r; dy <= r; dy++ {
		for dx := -r; dx <= r; dx++ {
			c.Set(x+dx, y+dy, col)
		}
	}
}

// line draws from (x0, y0) to (x1, y1), width 2w+1; dash > 0 draws dash
// pixels on, dash off.
func (c canvas) line(x0, y0, x1, y1, w int, col color.Color, dash int) {
	dx, dy := abs(x1-x0), -abs(y1-y0)
	sx, sy := sign(x1-x0), sign(y1-y0)
	e := dx + dy
	for step := 0; ; step++ {
		if dash <= 0 || (step/dash)%2 == 0 {
			c.dot(x0, y0, w, col)
		}
		if x0 == x1 && y0 == y1 {
			return
		}
		if e2 := 2 * e; e2 >= dy {
			e += dy
			x0 += sx
		} else {
			e += dx
			y0 += sy
		}
	}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

func sign(v int) int {
	switch {
	case v < 0:
		return -1
	case v > 0:
		return 1
	}
	return 0
}

// panelData is one provider's curves.
type panelData struct {
	title    string
	readers  []int
	p50, p99 []float64
	max      []float64
	target   float64
}

// plotRemoval writes the removal plot to path.
func plotRemoval(path string, panels []panelData, subtitle string) error {
	img := canvas{image.NewRGBA(image.Rect(0, 0, plotW, plotH))}
	for y := range plotH {
		for x := range plotW {
			img.Set(x, y, colBG)
		}
	}
	title := "NVMEMFS: DETACH LATENCY WHILE READERS LOOP ON THE DEVICE"
	drawText(img.RGBA, (plotW-textWidth(title, 3))/2, 14, title, colText, 3, false)
	drawText(img.RGBA, (plotW-textWidth(subtitle, textScale))/2, 46, subtitle, colText, textScale, false)

	pw := plotW / max(len(panels), 1)
	for i, p := range panels {
		drawPanel(img, i*pw, 84, pw, plotH-84-66, p)
	}
	// The legend, along the bottom.
	x, y := 120, plotH-34
	legend := []struct {
		name string
		col  color.Color
		w    int
		dash int
	}{
		{"P50", colP50, 1, 0},
		{"P99", colP99, 2, 0},
		{"MAX", colMax, 1, 3},
		{"TARGET: ONE PROVIDER CHUNK + 5 MS", colTarget, 1, 8},
	}
	for _, l := range legend {
		img.line(x, y+7, x+40, y+7, l.w, l.col, l.dash)
		drawText(img.RGBA, x+50, y, l.name, colText, textScale, false)
		x += 50 + textWidth(l.name, textScale) + 50
	}

	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, img.RGBA); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func drawPanel(img canvas, ox, oy, w, h int, p panelData) {
	// Plot area, leaving room for the labels.
	x0, x1 := ox+110, ox+w-30
	y0, y1 := oy+40, oy+h-60 // y0 top, y1 bottom
	drawText(img.RGBA, ox+(w-textWidth(p.title, textScale))/2, oy, p.title, colText, textScale, false)
	tl := fmt.Sprintf("TARGET %.1f MS", p.target)
	drawText(img.RGBA, ox+(w-textWidth(tl, textScale))/2, oy+20, tl, colTarget, textScale, false)

	// A logarithmic scale: a file removal takes tens of microseconds, an
	// EEPROM's tens of milliseconds, and the target is milliseconds.
	lo, hi := p.target, p.target
	for _, vs := range [][]float64{p.p50, p.p99, p.max} {
		for _, v := range vs {
			if v > 0 && !math.IsNaN(v) {
				lo, hi = math.Min(lo, v), math.Max(hi, v)
			}
		}
	}
	dmin := math.Floor(math.Log10(lo))
	dmax := math.Ceil(math.Log10(hi))
	if math.Log10(hi) > dmax-0.15 {
		dmax++ // room above the highest point
	}
	if dmax <= dmin {
		dmax = dmin + 1
	}
	ypix := func(v float64) int {
		l := dmin
		if v > 0 {
			l = math.Max(math.Log10(v), dmin)
		}
		return y1 - int(math.Round((l-dmin)/(dmax-dmin)*float64(y1-y0)))
	}
	n := len(p.readers)
	xpix := func(i int) int {
		if n == 1 {
			return (x0 + x1) / 2
		}
		return x0 + 20 + i*(x1-x0-40)/(n-1)
	}

	// Grid: every decade labelled, 2 and 5 between them.
	for d := dmin; d <= dmax; d++ {
		v := math.Pow(10, d)
		for _, m := range []float64{2, 5} {
			if d < dmax {
				y := ypix(m * v)
				img.line(x0, y, x1, y, 0, colGrid, 3)
			}
		}
		y := ypix(v)
		img.line(x0, y, x1, y, 0, colGrid, 0)
		label := strconv.FormatFloat(v, 'f', -1, 64)
		drawText(img.RGBA, x0-12-textWidth(label, textScale), y-7, label, colText, textScale, false)
	}
	// Axes.
	img.line(x0, y0, x0, y1, 0, colAxis, 0)
	img.line(x0, y1, x1, y1, 0, colAxis, 0)
	for i, r := range p.readers {
		x := xpix(i)
		img.line(x, y1, x, y1+6, 0, colAxis, 0)
		label := strconv.Itoa(r)
		drawText(img.RGBA, x-textWidth(label, textScale)/2, y1+12, label, colText, textScale, false)
	}
	xl := "READERS"
	drawText(img.RGBA, (x0+x1-textWidth(xl, textScale))/2, y1+36, xl, colText, textScale, false)
	yl := "MILLISECONDS (LOG SCALE)"
	drawText(img.RGBA, ox+12, (y0+y1+textWidth(yl, textScale))/2, yl, colText, textScale, true)

	// Target.
	ty := ypix(p.target)
	img.line(x0, ty, x1, ty, 1, colTarget, 8)

	curve := func(vs []float64, col color.Color, w, dash, mark int) {
		px, py := -1, -1
		for i, v := range vs {
			if math.IsNaN(v) {
				continue
			}
			x, y := xpix(i), ypix(v)
			if px >= 0 {
				img.line(px, py, x, y, w, col, dash)
			}
			if mark > 0 {
				img.dot(x, y, mark, col)
			}
			px, py = x, y
		}
	}
	curve(p.max, colMax, 1, 3, 3)
	curve(p.p50, colP50, 1, 0, 4)
	curve(p.p99, colP99, 2, 0, 5)
}
