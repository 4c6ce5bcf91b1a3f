package report

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"

	"github.com/olekukonko/tablewriter"
	"github.com/olekukonko/tablewriter/renderer"
	"github.com/olekukonko/tablewriter/tw"
)

// Compared is one column of a comparison: the runs of one file (one run, or
// every scenario of a matrix) under a label.
type Compared struct {
	Label string
	Runs  []*Run
}

// ReadRuns decodes a report written with --format json: one run, or a
// matrix. Anything else is an error that says what was wrong.
func ReadRuns(data []byte) ([]*Run, error) {
	var probe struct {
		SchemaVersion *int            `json:"schema_version"`
		Scenarios     json.RawMessage `json:"scenarios"`
		Processes     json.RawMessage `json:"processes"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&probe); err != nil {
		return nil, fmt.Errorf("not JSON: %w", err)
	}
	switch {
	case probe.SchemaVersion == nil:
		return nil, errors.New("not a cowtrace report (no schema_version)")
	case *probe.SchemaVersion != SchemaVersion:
		return nil, fmt.Errorf("schema_version %d, this cowtrace reads %d", *probe.SchemaVersion, SchemaVersion)
	case probe.Scenarios != nil:
		var m Matrix
		if err := json.Unmarshal(data, &m); err != nil {
			return nil, fmt.Errorf("matrix: %w", err)
		}
		var runs []*Run
		for _, e := range m.Scenarios {
			if e.Run == nil {
				return nil, fmt.Errorf("matrix: scenario %q has no run", e.Name)
			}
			runs = append(runs, e.Run)
		}
		return runs, nil
	case probe.Processes == nil:
		return nil, errors.New("not a cowtrace report (no processes)")
	}
	var r Run
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("run: %w", err)
	}
	return []*Run{&r}, nil
}

// measure is one row of a comparison.
type measure struct {
	name  string
	value func(r *Run) string
}

// Compare renders runs side by side: a column per Compared, a row per
// measure, and a mark on each row whose values differ. Runs are matched by
// scenario, or by position when each column holds one run.
func Compare(w io.Writer, cols []Compared, f Format) error {
	if len(cols) == 0 {
		return errors.New("nothing to compare")
	}
	single := true
	for _, c := range cols {
		single = single && len(c.Runs) == 1
	}
	// The scenarios in order of first appearance.
	var scenarios []string
	seen := map[string]bool{}
	for _, c := range cols {
		for _, r := range c.Runs {
			if !seen[r.Scenario] {
				seen[r.Scenario] = true
				scenarios = append(scenarios, r.Scenario)
			}
		}
	}
	if single {
		scenarios = []string{""}
	}
	find := func(c Compared, scenario string) *Run {
		if single {
			return c.Runs[0]
		}
		for _, r := range c.Runs {
			if r.Scenario == scenario {
				return r
			}
		}
		return nil
	}

	header := []string{"measure"}
	for _, c := range cols {
		header = append(header, c.Label)
	}
	header = append(header, "differs")
	var rows [][]string
	for _, sc := range scenarios {
		runs := make([]*Run, len(cols))
		for i, c := range cols {
			runs[i] = find(c, sc)
		}
		prefix := ""
		if !single {
			prefix = sc + ": "
		}
		for _, m := range measures(runs) {
			row := []string{prefix + m.name}
			differs := false
			for i, r := range runs {
				v := "(none)"
				if r != nil {
					v = m.value(r)
				}
				row = append(row, v)
				differs = differs || v != row[1]
				_ = i
			}
			mark := ""
			if differs {
				mark = "≠"
			}
			rows = append(rows, append(row, mark))
		}
	}

	switch f {
	case JSON, CSV:
		return fmt.Errorf("compare writes table or markdown")
	}
	opts := []tablewriter.Option{
		tablewriter.WithHeaderAutoFormat(tw.Off),
		tablewriter.WithHeaderAlignment(tw.AlignCenter),
		// The measure's name reads from the left, the numbers from the right.
		tablewriter.WithRowAlignmentConfig(tw.CellAlignment{Global: tw.AlignRight, PerColumn: []tw.Align{tw.AlignLeft}}),
	}
	if f == Markdown {
		opts = append(opts, tablewriter.WithRenderer(renderer.NewMarkdown()))
	}
	t := tablewriter.NewTable(w, opts...)
	t.Header(header)
	for _, row := range rows {
		if err := t.Append(row); err != nil {
			return err
		}
	}
	return t.Render()
}

// measures lists the rows for runs of one scenario: the run's identity and
// method, then each role's counts, for every role any run has.
func measures(runs []*Run) []measure {
	ms := []measure{
		{"kernel", func(r *Run) string { return r.Kernel }},
		{"scenario", func(r *Run) string { return r.Scenario }},
		{"blocks x block size", func(r *Run) string { return fmt.Sprintf("%d x %d", r.Blocks, r.BlockSize) }},
		{"copies method", func(r *Run) string { return orDash(r.Methods["copies"]) }},
		{"lost records", func(r *Run) string { return strconv.FormatUint(r.LostRecords, 10) }},
	}
	var roles []string
	seen := map[string]bool{}
	probes := map[string]bool{}
	for _, r := range runs {
		if r == nil {
			continue
		}
		for _, p := range r.Processes {
			if !seen[p.Role] {
				seen[p.Role] = true
				roles = append(roles, p.Role)
			}
			for fn := range p.Probes {
				probes[fn] = true
			}
		}
	}
	var fns []string
	for fn := range probes {
		fns = append(fns, fn)
	}
	sort.Strings(fns)
	region := func(get func(*FaultClasses) uint64) func(p *Process) string {
		return func(p *Process) string {
			if p.InRegion == nil {
				return "-"
			}
			return strconv.FormatUint(get(p.InRegion), 10)
		}
	}
	fields := []struct {
		name  string
		value func(p *Process) string
	}{
		{"page faults", func(p *Process) string { return num(p.PageFaults) }},
		{"wp faults", func(p *Process) string { return num(p.WPFaults) }},
		{"wp in region", region(func(f *FaultClasses) uint64 { return f.WP })},
		{"first writes in region", region(func(f *FaultClasses) uint64 { return f.WriteNotPresent })},
		{"reads in region", region(func(f *FaultClasses) uint64 { return f.Read })},
		{"copies", func(p *Process) string { return num(p.Copies) }},
		{"inferred copies", func(p *Process) string { return num(p.InferredCopies) }},
	}
	for _, role := range roles {
		for _, fd := range fields {
			ms = append(ms, measure{role + " " + fd.name, func(r *Run) string {
				if p := r.Find(role); p != nil {
					return fd.value(p)
				}
				return "(none)"
			}})
		}
		for _, fn := range fns {
			ms = append(ms, measure{role + " " + fn, func(r *Run) string {
				p := r.Find(role)
				if p == nil {
					return "(none)"
				}
				if v, ok := p.Probes[fn]; ok {
					return strconv.FormatUint(v, 10)
				}
				return "-"
			}})
		}
	}
	return ms
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
