package plot

import (
	"math"
	"strings"
	"testing"

	"github.com/cowtrace/cowtrace/report"
)

type box struct{ x0, y0, x1, y1 float64 }

func (a box) overlaps(b box) bool { return a.x0 < b.x1 && b.x0 < a.x1 && a.y0 < b.y1 && b.y0 < a.y1 }

// textBox is the room a text takes: its measured width (with slack) and
// its size from a little above the baseline's ascent to its descent.
func textBox(t text) box {
	w := width(t.s, t.size)
	x0 := t.x
	switch t.anchor {
	case middle:
		x0 -= w / 2
	case end:
		x0 -= w
	}
	b := box{x0, t.y - t.size, x0 + w, t.y + 0.25*t.size}
	if t.up {
		// Turned about (x, y): along the baseline is up the page.
		return box{t.x - t.size, t.y - (b.x1 - t.x), t.x + 0.25*t.size, t.y - (b.x0 - t.x)}
	}
	return b
}

// TestLayout, on every golden run and on one of forty processes: no text
// overlaps another or leaves the figure (so no title is cut and the ticks'
// labels stand apart), the legend stands right of everything the series
// draw, and every faults line is drawn after every copies line.
func TestLayout(t *testing.T) {
	runs := map[string]*report.Run{"forty": tracedRun("python3 pool.py", pool(39)...)}
	for _, g := range goldens {
		runs[g.name] = g.run
	}
	for name, run := range runs {
		t.Run(name, func(t *testing.T) {
			f, err := layout(run)
			if err != nil {
				t.Fatal(err)
			}
			var texts []text
			legendX, seriesX := math.Inf(1), math.Inf(-1)
			lastCopies, firstFaults := -1, len(f.items)
			inLegend := map[string]bool{KeyCopies: true, KeyFaults: true, KeyBoth: true}
			for _, ts := range run.Timeseries {
				inLegend[Label(ts)] = true
			}
			for i, it := range f.items {
				switch it := it.(type) {
				case text:
					texts = append(texts, it)
					if inLegend[it.s] {
						legendX = math.Min(legendX, it.x-8-swatchW)
					}
				case line:
					if it.title == "" {
						continue
					}
					for _, p := range it.pts {
						seriesX = math.Max(seriesX, p.x+it.width/2)
					}
					if strings.HasSuffix(it.title, ": "+KeyCopies) {
						lastCopies = i
					} else if firstFaults == len(f.items) {
						firstFaults = i
					}
				}
			}
			if !(seriesX+markR+1 < legendX) {
				t.Errorf("the series reach x=%g, the legend starts at %g", seriesX, legendX)
			}
			if lastCopies > firstFaults {
				t.Errorf("a copies line (item %d) is drawn over a faults line (item %d)", lastCopies, firstFaults)
			}
			if n := len(texts); n < 3+len(run.Timeseries)+2 {
				t.Fatalf("%d texts", n)
			}
			for i, a := range texts {
				ba := textBox(a)
				if ba.x0 < 0 || ba.y0 < 0 || ba.x1 > f.w || ba.y1 > f.h {
					t.Errorf("%q (%v) leaves the %gx%g figure", a.s, ba, f.w, f.h)
				}
				for _, b := range texts[:i] {
					if bb := textBox(b); ba.overlaps(bb) {
						t.Errorf("%q (%v) overlaps %q (%v)", a.s, ba, b.s, bb)
					}
				}
			}
		})
	}
}
