package plot

import (
	"fmt"
	"math"

	"github.com/cowtrace/cowtrace/report"
)

// A figure is laid out once, in pixels, as a list of items that the SVG
// and the PNG writers each draw: the two formats show the same picture.

type pt struct{ x, y float64 }

type item interface{ isItem() }

// line is a polyline's stroke; dash is on and off lengths, nil when solid.
type line struct {
	pts   []pt
	color rgb
	width float64
	dash  []float64
	// title names the series in the SVG, where a browser shows it on hover.
	title string
}

type anchor int

const (
	start anchor = iota
	middle
	end
)

// text is one line of text whose baseline passes through x, y; up turns
// it a quarter left, to read upwards.
type text struct {
	x, y   float64
	s      string
	size   float64
	anchor anchor
	up     bool
	color  rgb
}

// mark is a filled shape of radius r centred on x, y, outlined in white
// so that it stands out of the lines it sits on.
type mark struct {
	x, y, r float64
	shape   shape
	color   rgb
}

func (line) isItem() {}
func (text) isItem() {}
func (mark) isItem() {}

type figure struct {
	w, h  float64
	items []item
}

func (f *figure) add(it ...item) { f.items = append(f.items, it...) }

// Sizes in pixels (a font's size is its em).
const (
	figW      = 1000.0
	minH      = 540.0
	minPlotH  = 300.0
	pad       = 16.0
	titleSize = 16.0
	// A title longer than three lines (a long command) shrinks to this.
	smallTitleSize = 13.0
	tickSize       = 12.0
	axisTitleSize  = 13.0
	legendSize     = 12.0
	rowH           = 18.0
	swatchW        = 30.0
	markR          = 4.0
	// Pixels between ticks, at least: ticks any closer crowd their labels.
	yTickGap = 40.0
	xTickGap = 60.0
)

// Copies are a wide solid line; faults a thin dashed line drawn over every
// copies line, on a white line of their own width. A process's copies
// and faults are often the same counts at the same times: its dashes then
// run inside its copies line with white between them, and neither hides
// the other.
const (
	copiesW = 3.5
	faultsW = 1.5
)

var faultsDash = []float64{5, 3}

func copiesLine(pts []pt, c rgb, title string) line {
	return line{pts: pts, color: c, width: copiesW, title: title}
}

func faultsLines(pts []pt, c rgb, title string) []item {
	return []item{line{pts: pts, color: white, width: faultsW},
		line{pts: pts, color: c, width: faultsW, dash: faultsDash, title: title}}
}

// Legend entries of the line styles, drawn in the axes' grey.
const (
	KeyCopies = "copies"
	KeyFaults = "wp faults"
	KeyBoth   = "copies = wp faults"
)

// Label is a process's name in the legend.
func Label(ts report.Timeseries) string { return fmt.Sprintf("pid %d %s", ts.Pid, ts.Comm) }

// layout places everything: the title across the top, wrapped to the
// width; the legend in a column right of the plot, as tall as it needs
// (the figure grows with it); the axes' labels in the room they measure.
func layout(run *report.Run) (*figure, error) {
	if len(run.Timeseries) == 0 {
		return nil, ErrNothing
	}
	f := &figure{w: figW}
	top := f.title(report.Title(run))
	legendX, legendH := legendBox(run.Timeseries)
	bottomH := 8 + tickSize + 12 + axisTitleSize + pad
	f.h = math.Max(minH, top+math.Max(minPlotH, legendH)+bottomH)
	p := newPlotArea(run, top, f.h-bottomH, legendX-28)
	f.axes(p)
	f.series(run.Timeseries, p)
	f.legend(run.Timeseries, legendX, top)
	return f, nil
}

// title writes s across the top, wrapped to the width, in a smaller size
// when it takes more than three lines, and returns where the plot may
// start below it.
func (f *figure) title(s string) (below float64) {
	size := titleSize
	lines := wrap(s, size, figW-2*pad)
	if len(lines) > 3 {
		size = smallTitleSize
		lines = wrap(s, size, figW-2*pad)
	}
	lineH := size * 1.3
	for i, l := range lines {
		f.add(text{x: figW / 2, y: pad + size + float64(i)*lineH, s: l, size: size, anchor: middle, color: ink})
	}
	return pad + size + float64(len(lines)-1)*lineH + 0.3*size + 16
}

// legendBox is where the legend's column starts, as far right as its
// widest label lets it, and how tall it is: the key's three rows, half a
// row between, a row per process.
func legendBox(series []report.Timeseries) (x, h float64) {
	labels := []string{KeyCopies, KeyFaults, KeyBoth}
	for _, ts := range series {
		labels = append(labels, Label(ts))
	}
	var textW float64
	for _, s := range labels {
		textW = math.Max(textW, width(s, legendSize))
	}
	return figW - pad - textW - 8 - swatchW, (float64(len(labels)) + 0.5) * rowH
}

// plotArea is the rectangle the series are drawn in, in pixels, and its
// axes: seconds across, counts up.
type plotArea struct {
	left, right, top, bottom float64
	xa, ya                   axis
}

// newPlotArea fits the axes to the run's counts and duration, between top
// and bottom, from the y labels' width to right.
func newPlotArea(run *report.Run, top, bottom, right float64) plotArea {
	xTop, yTop := extent(run)
	ya := niceAxis(yTop, int((bottom-top)/yTickGap), true)
	left := pad + axisTitleSize + 10 + labelsWidth(ya) + 8
	return plotArea{left: left, right: right, top: top, bottom: bottom, xa: xAxis(xTop, right-left), ya: ya}
}

// extent is how far the run's series reach: in seconds, and in counts.
func extent(run *report.Run) (xTop, yTop float64) {
	for _, ts := range run.Timeseries {
		for _, ps := range [][]report.Point{ts.Copies, ts.Faults} {
			for _, p := range ps {
				xTop = math.Max(xTop, p.Ms/1000)
				yTop = math.Max(yTop, float64(p.N))
			}
		}
	}
	// The time axis spans the whole trace, so that a run's plots line up
	// with its duration, not with when its last process ended.
	if run.Trace != nil {
		xTop = math.Max(xTop, run.Trace.DurationMs/1000)
	}
	return xTop, yTop
}

func (p plotArea) X(ms float64) float64 { return p.left + ms/1000/p.xa.max()*(p.right-p.left) }
func (p plotArea) Y(n uint64) float64   { return p.bottom - float64(n)/p.ya.max()*(p.bottom-p.top) }

// axes draws the grid at every tick with its label, the axes and their
// titles.
func (f *figure) axes(p plotArea) {
	left, right, top, bottom := p.left, p.right, p.top, p.bottom
	for i := 0; i <= p.ya.n; i++ {
		y := bottom - float64(i)/float64(p.ya.n)*(bottom-top)
		f.add(line{pts: []pt{{left, y}, {right, y}}, color: gridC, width: 1},
			text{x: left - 8, y: y + tickSize*0.35, s: p.ya.label(i), size: tickSize, anchor: end, color: ink})
	}
	for i := 0; i <= p.xa.n; i++ {
		x := left + float64(i)/float64(p.xa.n)*(right-left)
		f.add(line{pts: []pt{{x, top}, {x, bottom}}, color: gridC, width: 1},
			text{x: x, y: bottom + 8 + tickSize, s: p.xa.label(i), size: tickSize, anchor: middle, color: ink})
	}
	f.add(line{pts: []pt{{left, top}, {left, bottom}, {right, bottom}}, color: axisC, width: 1},
		text{x: (left + right) / 2, y: bottom + 8 + tickSize + 12 + axisTitleSize, s: XTitle, size: axisTitleSize, anchor: middle, color: ink},
		text{x: pad + axisTitleSize, y: (top + bottom) / 2, s: YTitle, size: axisTitleSize, anchor: middle, up: true, color: ink})
}

// series draws every copies line first, then every faults line over them,
// then the marks: a later process's copies never cover an earlier one's
// faults.
func (f *figure) series(series []report.Timeseries, p plotArea) {
	var faults, marks []item
	for i, ts := range series {
		c, sh := style(i)
		name := Label(ts)
		if pts := steps(ts.Copies, p.X, p.Y); len(pts) > 0 {
			f.add(copiesLine(pts, c, name+": "+KeyCopies))
			last := pts[len(pts)-1]
			marks = append(marks, mark{x: last.x, y: last.y, r: markR, shape: sh, color: c})
		}
		if pts := steps(ts.Faults, p.X, p.Y); len(pts) > 0 {
			faults = append(faults, faultsLines(pts, c, name+": "+KeyFaults)...)
		}
	}
	f.add(faults...)
	f.add(marks...)
}

// xAxis is the time axis in seconds over room pixels, with as many ticks as
// leave a label's width free between two labels.
func xAxis(top, room float64) axis {
	for most := int(room / xTickGap); ; most-- {
		a := niceAxis(top, most, false)
		if most <= 1 || room/float64(a.n) >= labelsWidth(a)+12 {
			return a
		}
	}
}

// labelsWidth is the width of a's widest tick label.
func labelsWidth(a axis) float64 {
	var w float64
	for i := 0; i <= a.n; i++ {
		w = math.Max(w, width(a.label(i), tickSize))
	}
	return w
}

// steps draws cumulative counts as they grew, a step at each count: a
// straight line between two counts would show pages copied in between.
func steps(ps []report.Point, X func(float64) float64, Y func(uint64) float64) []pt {
	var out []pt
	add := func(p pt) {
		if len(out) == 0 || out[len(out)-1] != p {
			out = append(out, p)
		}
	}
	for i, p := range ps {
		if i > 0 {
			add(pt{X(p.Ms), Y(ps[i-1].N)})
		}
		add(pt{X(p.Ms), Y(p.N)})
	}
	return out
}

// legend is the key of the line styles, then a row per process: its
// colour as a copies line ending in its mark, and its name.
func (f *figure) legend(series []report.Timeseries, x, y float64) {
	row := func(swatch []item, s string) {
		f.add(swatch...)
		f.add(text{x: x + swatchW + 8, y: y + rowH/2 + legendSize*0.35, s: s, size: legendSize, color: ink})
		y += rowH
	}
	seg := []pt{{x, y + rowH/2}, {x + swatchW, y + rowH/2}}
	row([]item{copiesLine(seg, axisC, "")}, KeyCopies)
	seg = []pt{{x, y + rowH/2}, {x + swatchW, y + rowH/2}}
	row(faultsLines(seg, axisC, ""), KeyFaults)
	seg = []pt{{x, y + rowH/2}, {x + swatchW, y + rowH/2}}
	row(append([]item{copiesLine(seg, axisC, "")}, faultsLines(seg, axisC, "")...), KeyBoth)
	y += rowH / 2
	for i, ts := range series {
		c, sh := style(i)
		seg = []pt{{x, y + rowH/2}, {x + swatchW, y + rowH/2}}
		row([]item{copiesLine(seg, c, ""), mark{x: x + swatchW, y: y + rowH/2, r: markR, shape: sh, color: c}}, Label(ts))
	}
}

// outline is a mark's polygon; a circle has many sides.
func (m mark) outline() []pt {
	var corners int
	var turn float64 // of the first corner, from the top
	switch m.shape {
	case square:
		corners, turn = 4, math.Pi/4
	case triangle:
		corners = 3
	case diamond:
		corners = 4
	default:
		corners = 24
	}
	r := m.r
	switch m.shape {
	case square:
		r *= 1.2 // a square of the circle's area, about
	case triangle:
		r *= 1.35
	}
	pts := make([]pt, corners)
	for i := range pts {
		a := turn + 2*math.Pi*float64(i)/float64(corners)
		pts[i] = pt{m.x + r*math.Sin(a), m.y - r*math.Cos(a)}
	}
	return pts
}
