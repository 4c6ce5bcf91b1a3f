// Package plot draws a traced run's copies and write-protect faults over
// time (--plot), one colour per process, as SVG or PNG. It lays the chart
// out itself and writes both formats with the standard library and
// golang.org/x/image: the plotting libraries that do this well embed fonts
// and backends worth megabytes (see the README). It stands apart from
// package report so that only the programs that draw link the font.
package plot

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/cowtrace/cowtrace/report"
)

// Axis titles, which the tests look for.
const (
	XTitle = "time since the trace started (s)"
	YTitle = "cumulative count"
)

// ErrNothing: no process had a copy or a write-protect fault to draw.
var ErrNothing = errors.New("no process copied a page or took a write-protect fault: nothing to plot")

// Format is what Write writes.
type Format int

const (
	// SVG is drawn by the viewer, with its own sans-serif font.
	SVG Format = iota
	// PNG is drawn here, with the Go font, at twice the SVG's pixels.
	PNG
)

// FormatOf is the format a file name asks for by its extension: said
// before anything runs, so that a trace is not taken for a file that
// cannot be drawn.
func FormatOf(path string) (Format, error) {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".svg":
		return SVG, nil
	case ".png":
		return PNG, nil
	}
	return 0, fmt.Errorf("%q: want a file name ending in .svg or .png", path)
}

// Write draws one chart: for every process with copies or write-protect
// faults, its cumulative copies (a wide solid line) and faults (a thin
// dashed line in the same colour) against time, the legend right of the
// plot.
func Write(w io.Writer, run *report.Run, f Format) error {
	fig, err := layout(run)
	if err != nil {
		return err
	}
	if f == PNG {
		return fig.png(w)
	}
	return fig.svg(w)
}
