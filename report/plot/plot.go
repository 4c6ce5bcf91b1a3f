// Package plot draws a traced run's copies and write-protect faults over
// time (--plot) as an SVG chart with go-chart. It stands apart from package
// report so that only the programs that draw link the chart library and its
// font.
package plot

import (
	"errors"
	"fmt"
	"html"
	"io"
	"strconv"

	chart "github.com/wcharczuk/go-chart/v2"
	"github.com/wcharczuk/go-chart/v2/drawing"

	"github.com/cowtrace/cowtrace/report"
)

// Axis titles, which the test looks for.
const (
	XTitle = "time since the trace started (s)"
	YTitle = "cumulative count"
)

// ErrNothing: no process had a copy or a write-protect fault to draw.
var ErrNothing = errors.New("no process copied a page or took a write-protect fault: nothing to plot")

// SVG writes one chart: for every process with copies or write-protect
// faults, its cumulative copies (a solid line) and faults (a dashed line of
// the same colour) against time.
func SVG(w io.Writer, run *report.Run) error {
	if len(run.Timeseries) == 0 {
		return ErrNothing
	}
	var series []chart.Series
	for i, ts := range run.Timeseries {
		color := chart.GetDefaultColor(i)
		// go-chart writes names into the SVG as they are.
		who := html.EscapeString(fmt.Sprintf("pid %d %s", ts.Pid, ts.Comm))
		series = append(series,
			line(who+": copies", ts.Copies, chart.Style{StrokeColor: color, StrokeWidth: 2}),
			line(who+": wp faults", ts.Faults, chart.Style{StrokeColor: color, StrokeWidth: 1, StrokeDashArray: []float64{5, 3}}))
	}
	g := chart.Chart{
		Width:      1024,
		Height:     480,
		Background: chart.Style{Padding: chart.Box{Top: 40, Left: 260, Right: 20, Bottom: 10}},
		XAxis: chart.XAxis{
			Name:           XTitle,
			ValueFormatter: func(v any) string { return seconds(v) },
		},
		YAxis: chart.YAxis{
			Name:           YTitle,
			ValueFormatter: func(v any) string { return count(v) },
		},
		// go-chart draws ticks of an unused secondary axis otherwise.
		YAxisSecondary: chart.YAxis{Style: chart.Hidden()},
		Series:         series,
	}
	g.Elements = []chart.Renderable{chart.LegendLeft(&g, chart.Style{FillColor: drawing.ColorWhite}),
		title(html.EscapeString(shorten(report.Title(run), 120)))}
	return g.Render(chart.SVG, w)
}

// title draws the run's title across the top. go-chart's own title keeps
// the rotation of the last axis name it drew when the secondary axis is
// hidden.
func title(text string) chart.Renderable {
	return func(r chart.Renderer, _ chart.Box, defaults chart.Style) {
		r.ClearTextRotation()
		r.SetFont(defaults.GetFont())
		r.SetFontColor(chart.DefaultTextColor)
		r.SetFontSize(9)
		// Right of LegendLeft's box, which sits in the left padding.
		r.Text(text, 270, 20)
	}
}

// shorten cuts s to n runes: the title has the width right of the legend.
func shorten(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// line is one series; a series of one point gets a second so that go-chart
// has a range to draw.
func line(name string, pts []report.Point, style chart.Style) chart.Series {
	s := chart.ContinuousSeries{Name: name, Style: style}
	for _, p := range pts {
		s.XValues = append(s.XValues, p.Ms/1000)
		s.YValues = append(s.YValues, float64(p.N))
	}
	if len(pts) == 1 {
		s.XValues = append(s.XValues, s.XValues[0])
		s.YValues = append(s.YValues, s.YValues[0])
	}
	return s
}

func seconds(v any) string {
	if f, ok := v.(float64); ok {
		return strconv.FormatFloat(f, 'f', 3, 64)
	}
	return ""
}

func count(v any) string {
	if f, ok := v.(float64); ok {
		return strconv.FormatFloat(f, 'f', 0, 64)
	}
	return ""
}
