// Package render draws report's runs for people and machines: a table
// (tablewriter) and markdown for terminals and pull requests, CSV and JSON
// for scripts, and the matrix, the side-by-side comparison and the gate's
// verdict in the same forms. Every table comes from writeTable, in the
// layout that fits the terminal (Layout).
package render

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/cowtrace/cowtrace/report"
)

// Format is an output format.
type Format string

const (
	// Table fits the terminal: the wide layout where it fits
	// Layout.Width, else the narrow one.
	Table Format = "table"
	// Wide is the table in its wide layout whatever the width, as
	// kubectl's -o wide: every method and window in full.
	Wide     Format = "wide"
	JSON     Format = "json"
	CSV      Format = "csv"
	Markdown Format = "markdown"
	// OpenMetrics is the Prometheus/OpenMetrics text exposition, for the
	// node exporter's textfile collector or a Pushgateway.
	OpenMetrics Format = "openmetrics"
)

// Formats are the formats Write writes a run in.
var Formats = []Format{Table, Wide, JSON, CSV, Markdown, OpenMetrics}

// DefaultWidth is the width of a table whose terminal is not known: the
// output is a file, a pipe, or no terminal says.
const DefaultWidth = 80

// Layout is the room a table has: the width in columns of the terminal it
// is printed to (0: DefaultWidth). Only Table looks at it.
type Layout struct {
	Width int
}

// Write renders run in format f, a table for DefaultWidth columns.
func Write(w io.Writer, run *report.Run, f Format) error { return Layout{}.Write(w, run, f) }

// Write renders run in format f.
func (l Layout) Write(w io.Writer, run *report.Run, f Format) error {
	switch f {
	case JSON:
		return writeJSON(w, run)
	case CSV:
		return writeCSV(w, run)
	case OpenMetrics:
		return writeOpenMetrics(w, run)
	}
	return l.text(w, f, func(w io.Writer, st style) error { return writeText(w, run, st) })
}

// text writes a table and its notes by draw in the layout that f and the
// width ask for: markdown; the wide layout when asked (Wide) or when its
// tables fit the width; else the narrow one. Prose wraps at the width but
// with Wide, whose reader asked for long lines (less -S, a wide window).
func (l Layout) text(w io.Writer, f Format, draw func(w io.Writer, st style) error) error {
	switch f {
	case Markdown:
		return draw(w, style{markdown: true})
	case Wide:
		return draw(w, style{})
	}
	width := l.Width
	if width <= 0 {
		width = DefaultWidth
	}
	var b bytes.Buffer
	if err := draw(&b, style{width: width}); err != nil {
		return err
	}
	if tableWidth(b.Bytes()) > width {
		b.Reset()
		if err := draw(&b, style{narrow: true, width: width}); err != nil {
			return err
		}
	}
	_, err := w.Write(b.Bytes())
	return err
}

func writeText(w io.Writer, run *report.Run, st style) error {
	cols := columns(run)
	if st.narrow && run.Trace != nil {
		cols = treeColumns(cols)
	}
	bw := &errWriter{w: w}
	heading(bw, st, report.Title(run))
	for _, u := range run.Unavailable {
		prose(bw, st, "unavailable: ", u.What+": "+u.Why)
	}
	if st.markdown {
		fmt.Fprintln(bw)
	}
	if bw.err != nil {
		return bw.err
	}
	keys := footnotes{}
	header := make([]string, len(cols))
	left := make([]bool, len(cols))
	for i, c := range cols {
		tag := shortMethod(c.method)
		if st.narrow {
			tag = keys.key(methodNote(c.method))
		}
		header[i] = stacked(c.title(st), tag)
		left[i] = c.left
	}
	rows := make([][]string, len(run.Processes))
	for i := range run.Processes {
		rows[i] = make([]string, len(cols))
		for j, c := range cols {
			rows[i][j] = c.value(&run.Processes[i])
		}
	}
	if err := writeTable(w, st, left, header, rows); err != nil {
		return err
	}
	if err := writeAttribution(w, run, st); err != nil {
		return err
	}
	if st.markdown {
		fmt.Fprintln(bw)
	}
	if st.narrow {
		writeFootnotes(bw, st, run, keys)
	} else {
		writeLegend(bw, st, run)
	}
	return bw.err
}

// treeColumns are a traced run's columns in the narrow layout: the depth
// as the command's indent, as ps --forest draws a tree, for the width of
// a column.
func treeColumns(cols []column) []column {
	var out []column
	for _, c := range cols {
		switch c.header {
		case "depth":
			continue
		case "command":
			value := c.value
			c.value = func(p *report.Process) string {
				if p.Lineage == nil {
					return value(p)
				}
				return strings.Repeat("  ", p.Depth) + value(p)
			}
		}
		out = append(out, c)
	}
	return out
}

// writeLegend says, under a run's table in the wide layout, how each column
// was measured, what span of each process's life a row covers, and what
// the run lost.
func writeLegend(w io.Writer, st style, run *report.Run) {
	prose(w, st, "", "methods:")
	for _, line := range methodLines(run) {
		subProse(w, st, line)
	}
	prose(w, st, "", "windows:")
	seen := map[string]bool{}
	for _, p := range run.Processes {
		key := p.Role + p.Window
		if !seen[key] {
			seen[key] = true
			subProse(w, st, p.Role+": "+p.Window)
		}
	}
	if run.CopyRoutineCheck != "" {
		prose(w, st, "copy routine check: ", run.CopyRoutineCheck)
	}
	writeRunEnd(w, st, run)
}

// writeRunEnd are the lines every layout ends a run with: what the trace
// cost and lost, why it is incomplete, and the notes.
func writeRunEnd(w io.Writer, st style, run *report.Run) {
	prose(w, st, "", fmt.Sprintf("records: %d, lost: %d, throttled: %d", run.Records, run.LostRecords, run.Throttled))
	for _, n := range run.Incomplete {
		prose(w, st, "incomplete: ", n)
	}
	for _, n := range run.Notes {
		prose(w, st, "note: ", n)
	}
}

// writeFootnotes explains, under a narrow table, each footnote key once,
// and says where the methods and windows are in full.
func writeFootnotes(w io.Writer, st style, run *report.Run, keys footnotes) {
	keys.write(w, st)
	writeRunEnd(w, st, run)
	prose(w, st, "", "--format wide (or json): each method and each row's window in full")
}

// writeJSON is --format json of every report: indented, so that a
// person can read it and diff two of them, and with the methods' filters
// as written ("error_code == 3 && address < ..."): the escapes of <, > and
// & guard HTML, which this is not.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(b []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(b)
	e.err = err
	return n, err
}
