package report

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/olekukonko/tablewriter"
	"github.com/olekukonko/tablewriter/renderer"
	"github.com/olekukonko/tablewriter/tw"
)

// Matrix is the result of cowtrace matrix: one run per scenario, each with
// the outcome the scenario states and whether it held.
type Matrix struct {
	SchemaVersion int           `json:"schema_version"`
	Kernel        string        `json:"kernel"`
	Scenarios     []MatrixEntry `json:"scenarios"`
}

// MatrixEntry is one scenario of a matrix.
type MatrixEntry struct {
	Name         string         `json:"name"`
	Does         string         `json:"does"`
	Outcome      string         `json:"outcome"`
	Why          string         `json:"why"`
	Expectations []ExpectResult `json:"expectations"`
	Held         bool           `json:"held"` // every expectation held
	Run          *Run           `json:"run"`
}

// ExpectResult is one checked expectation.
type ExpectResult struct {
	Expect string `json:"expect"`
	Held   bool   `json:"held"`
	Detail string `json:"detail,omitempty"` // why not, with the values seen
}

// WriteMatrix renders m: one table with a row per scenario and process, then
// each scenario's stated outcome and whether it held.
func WriteMatrix(w io.Writer, m *Matrix, f Format) error {
	switch f {
	case JSON:
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(m)
	case CSV:
		return fmt.Errorf("the matrix has no csv form (use json)")
	}
	markdown := f == Markdown
	var methods map[string]string
	if len(m.Scenarios) > 0 {
		methods = m.Scenarios[0].Run.Methods
	}
	tag := func(h, key string) string {
		t := shortMethod(methods[key])
		switch {
		case t == "":
			return h
		case markdown:
			return h + " " + t
		}
		return h + "\n" + t
	}
	header := []string{"scenario", "role", tag("page faults", "page_faults"), tag("wp faults", "wp_faults"),
		tag("wp in region", "in_region"), tag("first writes in region", "in_region"), tag("reads in region", "in_region"),
		tag("copies", "copies"), "outcome"}
	bw := &errWriter{w: w}
	if markdown {
		fmt.Fprintf(bw, "**cowtrace matrix: kernel %s**\n\n", m.Kernel)
	} else {
		fmt.Fprintf(bw, "cowtrace matrix: kernel %s\n", m.Kernel)
	}
	if bw.err != nil {
		return bw.err
	}
	opts := []tablewriter.Option{
		tablewriter.WithHeaderAutoFormat(tw.Off),
		tablewriter.WithHeaderAlignment(tw.AlignCenter),
		tablewriter.WithRowAlignment(tw.AlignRight),
	}
	if markdown {
		opts = append(opts, tablewriter.WithRenderer(renderer.NewMarkdown()))
	}
	t := tablewriter.NewTable(w, opts...)
	t.Header(header)
	num := func(v *uint64) string {
		if v == nil {
			return "-"
		}
		return strconv.FormatUint(*v, 10)
	}
	region := func(p *Process, get func(*FaultClasses) uint64) string {
		if p.InRegion == nil {
			return "-"
		}
		return strconv.FormatUint(get(p.InRegion), 10)
	}
	for _, e := range m.Scenarios {
		for i := range e.Run.Processes {
			p := &e.Run.Processes[i]
			name, outcome := "", ""
			if i == 0 {
				name, outcome = e.Name, "as stated"
				if !e.Held {
					outcome = "DIFFERS"
				}
			}
			row := []string{name, p.Role, num(p.PageFaults), num(p.WPFaults),
				region(p, func(f *FaultClasses) uint64 { return f.WP }),
				region(p, func(f *FaultClasses) uint64 { return f.WriteNotPresent }),
				region(p, func(f *FaultClasses) uint64 { return f.Read }),
				num(p.Copies), outcome}
			if err := t.Append(row); err != nil {
				return err
			}
		}
	}
	if err := t.Render(); err != nil {
		return err
	}
	if markdown {
		fmt.Fprintln(bw)
	}
	for _, line := range methodLines(m.Scenarios[0].Run) {
		fmt.Fprintf(bw, "%s%s\n", bullet(markdown), line)
	}
	if markdown {
		fmt.Fprintln(bw)
	}
	for _, e := range m.Scenarios {
		mark := "as stated"
		if !e.Held {
			mark = "DIFFERS"
		}
		fmt.Fprintf(bw, "%s%s: %s (%s)\n", bullet(markdown), e.Name, e.Outcome, mark)
		for _, x := range e.Expectations {
			if !x.Held {
				fmt.Fprintf(bw, "  %s%s\n", bullet(markdown), x.Detail)
			}
		}
		for _, n := range e.Run.Notes {
			if strings.HasPrefix(n, "thp:") || strings.Contains(n, "not mapped") {
				fmt.Fprintf(bw, "  %snote: %s\n", bullet(markdown), n)
			}
		}
	}
	return bw.err
}

func bullet(markdown bool) string {
	if markdown {
		return "- "
	}
	return ""
}
