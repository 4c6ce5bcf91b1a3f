package render

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	"github.com/cowtrace/cowtrace/report"
)

// measure is one row of a comparison.
type measure struct {
	name  string
	value func(r *report.Run) string
}

// Compare renders runs side by side: a column per Compared, a row per
// measure, and a mark on each row whose values differ. Runs are matched by
// scenario, or by position when each column holds one run.
func Compare(w io.Writer, cols []report.Compared, f Format) error {
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
	find := func(c report.Compared, scenario string) *report.Run {
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
		runs := make([]*report.Run, len(cols))
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
func compareTraces(w io.Writer, cols []report.Compared, markdown bool) error {
	runs := make([]*report.Run, len(cols))
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
				header = append(header, m.Title+" ("+c.Label+")")
			} else {
				header = append(header, m.Title+"\n"+c.Label)
			}
		}
	}
	header = append(header, "differs")
	totals := make([]*report.Process, len(runs))
	for i, r := range runs {
		totals[i] = report.TreeTotal(r)
	}
	rows := append(report.MatchProcesses(runs), report.Matched{Name: "total", Procs: totals})
	var table [][]string
	for _, m := range rows {
		row := []string{m.Name}
		differs := false
		for _, c := range measures {
			first := ""
			for i, p := range m.Procs {
				v := "-"
				if p != nil {
					v = num(c.Get(p))
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
		fmt.Fprintf(bw, "%s: %s; lost records %d, throttled %d\n", cols[i].Label, report.Title(r), r.LostRecords, r.Throttled)
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
func traceCounts(runs []*report.Run) []report.Count {
	cs := []report.Count{report.Counts[0], report.Counts[3], report.Counts[4]} // page_faults, wp_faults, copies
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
		cs = append(cs, report.Counts[5])
	}
	var names []string
	for fn := range fns {
		if !routines[fn] {
			names = append(names, fn)
		}
	}
	sort.Strings(names)
	for _, fn := range names {
		cs = append(cs, report.ProbeCount(fn))
	}
	return cs
}

// methodDifferences says where runs measured one column differently: a
// kprobe count next to an inferred one is not a like-for-like comparison.
func methodDifferences(cols []report.Compared, runs []*report.Run, cs []report.Count) []string {
	var out []string
	for _, c := range cs {
		var parts []string
		differ := false
		for i, r := range runs {
			m := cmp.Or(r.Methods[c.Key], "-")
			parts = append(parts, cols[i].Label+" "+m)
			differ = differ || m != cmp.Or(runs[0].Methods[c.Key], "-")
		}
		if differ {
			out = append(out, fmt.Sprintf("note: %s measured differently: %s", c.Title, strings.Join(parts, ", ")))
		}
	}
	return out
}

// measures lists the rows for runs of one scenario: the run's identity and
// method, then each role's counts, for every role any run has.
func measures(runs []*report.Run) []measure {
	ms := []measure{
		{"kernel", func(r *report.Run) string { return r.Kernel }},
		{"scenario", func(r *report.Run) string { return r.Scenario }},
		{"blocks x block size", func(r *report.Run) string { return fmt.Sprintf("%d x %d", r.Blocks, r.BlockSize) }},
		{"copies method", func(r *report.Run) string { return cmp.Or(r.Methods["copies"], "-") }},
		{"lost records", func(r *report.Run) string { return strconv.FormatUint(r.LostRecords, 10) }},
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
	region := func(get func(*report.FaultClasses) uint64) func(p *report.Process) string {
		return func(p *report.Process) string {
			if p.InRegion == nil {
				return "-"
			}
			return strconv.FormatUint(get(p.InRegion), 10)
		}
	}
	fields := []struct {
		name  string
		value func(p *report.Process) string
	}{
		{"page faults", func(p *report.Process) string { return num(p.PageFaults) }},
		{"wp faults", func(p *report.Process) string { return num(p.WPFaults) }},
		{"wp in region", region(func(f *report.FaultClasses) uint64 { return f.WP })},
		{"first writes in region", region(func(f *report.FaultClasses) uint64 { return f.WriteNotPresent })},
		{"reads in region", region(func(f *report.FaultClasses) uint64 { return f.Read })},
		{"copies", func(p *report.Process) string { return num(p.Copies) }},
		{"inferred copies", func(p *report.Process) string { return num(p.InferredCopies) }},
	}
	for _, role := range roles {
		for _, fd := range fields {
			ms = append(ms, measure{role + " " + fd.name, func(r *report.Run) string {
				if p := r.Find(role); p != nil {
					return fd.value(p)
				}
				return "(none)"
			}})
		}
		for _, fn := range fns {
			ms = append(ms, measure{role + " " + fn, func(r *report.Run) string {
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
