package report

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
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
	switch f {
	case JSON, CSV, OpenMetrics:
		return fmt.Errorf("compare writes table or markdown")
	}
	traced, all := 0, 0
	for _, c := range cols {
		for _, r := range c.Runs {
			all++
			if r.Trace != nil {
				traced++
			}
		}
	}
	switch traced {
	case 0:
	case all:
		return compareTraces(w, cols, f == Markdown)
	default:
		return errors.New("cannot compare traced runs (cowtrace run, attach) with the experiment's: their rows are different things")
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

	return writeTable(w, f == Markdown, 1, header, rows)
}

// compareTraces renders traced runs side by side: a row per process, matched
// across runs by command and place in the tree (matchProcesses), then the
// tree's totals; for each measure a column per run. The experiment's fields
// (blocks, region) mean nothing for a traced program and are left out.
func compareTraces(w io.Writer, cols []Compared, markdown bool) error {
	runs := make([]*Run, len(cols))
	for i, c := range cols {
		if len(c.Runs) != 1 {
			return fmt.Errorf("%s: a traced report holds one run, this one %d", c.Label, len(c.Runs))
		}
		runs[i] = c.Runs[0]
	}
	measures := traceCounts(runs)
	header := []string{"process"}
	for _, m := range measures {
		for _, c := range cols {
			if markdown {
				header = append(header, m.title+" ("+c.Label+")")
			} else {
				header = append(header, m.title+"\n"+c.Label)
			}
		}
	}
	header = append(header, "differs")
	totals := make([]*Process, len(runs))
	for i, r := range runs {
		totals[i] = treeTotal(r)
	}
	rows := append(matchProcesses(runs), matched{name: "total", procs: totals})
	var table [][]string
	for _, m := range rows {
		row := []string{m.name}
		differs := false
		for _, c := range measures {
			first := ""
			for i, p := range m.procs {
				v := "-"
				if p != nil {
					v = num(c.get(p))
				}
				if i == 0 {
					first = v
				}
				differs = differs || v != first
				row = append(row, v)
			}
		}
		mark := ""
		if differs {
			mark = "≠"
		}
		table = append(table, append(row, mark))
	}

	bw := &errWriter{w: w}
	for i, r := range runs {
		if markdown {
			fmt.Fprint(bw, "- ")
		}
		fmt.Fprintf(bw, "%s: %s; lost records %d, throttled %d\n", cols[i].Label, Title(r), r.LostRecords, r.Throttled)
	}
	if markdown {
		fmt.Fprintln(bw)
	}
	if bw.err != nil {
		return bw.err
	}
	if err := writeTable(w, markdown, 1, header, table); err != nil {
		return err
	}
	if markdown {
		fmt.Fprintln(bw)
	}
	fmt.Fprintln(bw, "processes are matched by command and place in the tree: the commands from the root down, #N for the Nth of that name among its siblings by start; - where a run has no such process")
	for _, line := range methodDifferences(cols, runs, measures) {
		fmt.Fprintln(bw, line)
	}
	return bw.err
}

// traceCounts are the measures of a traced comparison: faults, copies, the
// inferred copies where they are a second measure, and every probed function
// but the copy routine (already the copies).
func traceCounts(runs []*Run) []count {
	cs := []count{counts[0], counts[3], counts[4]} // page_faults, wp_faults, copies
	fns := map[string]bool{}
	routines := map[string]bool{}
	inferred := false
	for _, r := range runs {
		m := r.Methods
		inferred = inferred || (m["inferred_copies"] != "" && m["inferred_copies"] != m["copies"])
		routines[r.CopyRoutine] = true
		for _, fn := range probeNames(r) {
			fns[fn] = true
		}
	}
	if inferred {
		cs = append(cs, counts[5])
	}
	var names []string
	for fn := range fns {
		if !routines[fn] {
			names = append(names, fn)
		}
	}
	sort.Strings(names)
	for _, fn := range names {
		cs = append(cs, probeCount(fn))
	}
	return cs
}

// methodDifferences says where runs measured one column differently: a
// kprobe count next to an inferred one is not a like-for-like comparison.
func methodDifferences(cols []Compared, runs []*Run, cs []count) []string {
	var out []string
	for _, c := range cs {
		var parts []string
		differ := false
		for i, r := range runs {
			m := orDash(r.Methods[c.key])
			parts = append(parts, cols[i].Label+" "+m)
			differ = differ || m != orDash(runs[0].Methods[c.key])
		}
		if differ {
			out = append(out, fmt.Sprintf("note: %s measured differently: %s", c.title, strings.Join(parts, ", ")))
		}
	}
	return out
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
