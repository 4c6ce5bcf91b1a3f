// Package render draws report's runs for people and machines: a table
// (tablewriter) and markdown for terminals and pull requests, CSV and JSON
// for scripts, and the matrix, the side-by-side comparison and the gate's
// verdict in the same forms. Every table comes from writeTable.
package render

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/cowtrace/cowtrace/report"
)

// Format is an output format.
type Format string

const (
	Table    Format = "table"
	JSON     Format = "json"
	CSV      Format = "csv"
	Markdown Format = "markdown"
	// OpenMetrics is the Prometheus/OpenMetrics text exposition, for the
	// node exporter's textfile collector or a Pushgateway.
	OpenMetrics Format = "openmetrics"
)

// Formats are the formats Write writes a run in.
var Formats = []Format{Table, JSON, CSV, Markdown, OpenMetrics}

// Write renders run in format f.
func Write(w io.Writer, run *report.Run, f Format) error {
	switch f {
	case JSON:
		return writeJSON(w, run)
	case CSV:
		return writeCSV(w, run)
	case Markdown:
		return writeText(w, run, true)
	case OpenMetrics:
		return writeOpenMetrics(w, run)
	default:
		return writeText(w, run, false)
	}
}

func writeText(w io.Writer, run *report.Run, markdown bool) error {
	cols := columns(run)
	bw := &errWriter{w: w}
	heading(bw, markdown, report.Title(run))
	for _, u := range run.Unavailable {
		fmt.Fprintf(bw, "unavailable: %s: %s\n", u.What, u.Why)
	}
	if markdown {
		fmt.Fprintln(bw)
	}
	if bw.err != nil {
		return bw.err
	}
	header := make([]string, len(cols))
	for i, c := range cols {
		header[i] = stacked(c.header, shortMethod(c.method), markdown)
	}
	rows := make([][]string, len(run.Processes))
	for i := range run.Processes {
		rows[i] = make([]string, len(cols))
		for j, c := range cols {
			rows[i][j] = c.value(&run.Processes[i])
		}
	}
	if err := writeTable(w, markdown, 0, header, rows); err != nil {
		return err
	}
	if err := writeAttribution(w, run, markdown); err != nil {
		return err
	}
	if markdown {
		fmt.Fprintln(bw)
	}
	writeLegend(bw, run)
	return bw.err
}

// writeLegend says, under a run's table, how each column was measured, what
// span of each process's life a row covers, and what the run lost.
func writeLegend(w io.Writer, run *report.Run) {
	fmt.Fprintln(w, "methods:")
	for _, line := range methodLines(run) {
		fmt.Fprintf(w, "  %s\n", line)
	}
	fmt.Fprintln(w, "windows:")
	seen := map[string]bool{}
	for _, p := range run.Processes {
		key := p.Role + p.Window
		if !seen[key] {
			seen[key] = true
			fmt.Fprintf(w, "  %s: %s\n", p.Role, p.Window)
		}
	}
	if run.CopyRoutineCheck != "" {
		fmt.Fprintf(w, "copy routine check: %s\n", run.CopyRoutineCheck)
	}
	fmt.Fprintf(w, "records: %d, lost: %d, throttled: %d\n", run.Records, run.LostRecords, run.Throttled)
	for _, n := range run.Incomplete {
		fmt.Fprintf(w, "incomplete: %s\n", n)
	}
	for _, n := range run.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
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
