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

// measure is one row of a comparison; method marks a row of methods.
type measure struct {
	name   string
	value  func(r *report.Run) string
	method bool
}

// Compare renders runs side by side for DefaultWidth columns.
func Compare(w io.Writer, cols []report.Compared, f Format) error {
	return Layout{}.Compare(w, cols, f)
}

// Compare renders runs side by side: a column per Compared, a row per
// measure, and a mark on each row whose values differ. Runs are matched by
// scenario, or by position when each column holds one run.
func (l Layout) Compare(w io.Writer, cols []report.Compared, f Format) error {
	if len(cols) == 0 {
		return errors.New("nothing to compare")
	}
	switch f {
	case JSON, CSV, OpenMetrics:
		return fmt.Errorf("compare writes table, wide or markdown")
	}
	return l.text(w, f, func(w io.Writer, st style) error { return compare(w, cols, st) })
}

func compare(w io.Writer, cols []report.Compared, st style) error {
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
		return compareTraces(w, cols, st)
	default:
		return errors.New("cannot compare traced runs (cowtrace run, attach) with the experiment's: their rows are different things")
	}
	header := []string{"measure"}
	for _, c := range cols {
		header = append(header, c.Label)
	}
	header = append(header, "differs")
	var rows [][]string
	keys := footnotes{}
	for _, g := range byScenario(cols) {
		for _, m := range measures(g.runs) {
			row := []string{g.prefix + m.name}
			for _, r := range g.runs {
				v := "(none)"
				if r != nil {
					v = m.value(r)
				}
				row = append(row, v)
			}
			mark := differs(row[1:])
			if m.method && st.narrow {
				// A method is a paragraph: a key here, the words below.
				for i, v := range row[1:] {
					if v != "-" && v != "(none)" {
						row[1+i] = keys.key(v)
					}
				}
			}
			rows = append(rows, append(row, mark))
		}
	}
	if err := writeTable(w, st, leftColumns(1, len(header)), header, rows); err != nil {
		return err
	}
	keys.write(w, st)
	return nil
}

// scenarioRuns are the runs of one scenario, one per column (nil where a
// column has none), and the prefix of its rows' names.
type scenarioRuns struct {
	prefix string
	runs   []*report.Run
}

// byScenario matches the columns' runs: by position when each column holds
// one run, else by scenario, in order of first appearance.
func byScenario(cols []report.Compared) []scenarioRuns {
	single := true
	for _, c := range cols {
		single = single && len(c.Runs) == 1
	}
	if single {
		g := scenarioRuns{runs: make([]*report.Run, len(cols))}
		for i, c := range cols {
			g.runs[i] = c.Runs[0]
		}
		return []scenarioRuns{g}
	}
	var groups []scenarioRuns
	seen := map[string]bool{}
	for _, c := range cols {
		for _, r := range c.Runs {
			if seen[r.Scenario] {
				continue
			}
			seen[r.Scenario] = true
			g := scenarioRuns{prefix: r.Scenario + ": ", runs: make([]*report.Run, len(cols))}
			for i, c := range cols {
				for _, r2 := range c.Runs {
					if r2.Scenario == r.Scenario {
						g.runs[i] = r2
						break
					}
				}
			}
			groups = append(groups, g)
		}
	}
	return groups
}

// differs is the last column of a comparison: marked when the values are
// not all the first one.
func differs(values []string) string {
	for _, v := range values {
		if v != values[0] {
			return "≠"
		}
	}
	return ""
}

// compareTraces renders traced runs side by side: a row per process, matched
// across runs by command and place in the tree (report.MatchProcesses),
// then the tree's totals; for each measure a column per run. The
// experiment's fields (blocks, region) mean nothing for a traced program and
// are left out.
func compareTraces(w io.Writer, cols []report.Compared, st style) error {
	runs := make([]*report.Run, len(cols))
	for i, c := range cols {
		if len(c.Runs) != 1 {
			return fmt.Errorf("%s: a traced report holds one run, this one %d", c.Label, len(c.Runs))
		}
		runs[i] = c.Runs[0]
	}
	counts := traceCounts(runs)
	header := []string{"process"}
	for _, m := range counts {
		for _, c := range cols {
			header = append(header, stacked(m.Title, "("+c.Label+")"))
		}
	}
	header = append(header, "differs")
	bw := &errWriter{w: w}
	for i, r := range runs {
		prose(bw, st, cols[i].Label+": ", fmt.Sprintf("%s; lost records %d, throttled %d", report.Title(r), r.LostRecords, r.Throttled))
	}
	if st.markdown {
		fmt.Fprintln(bw)
	}
	if bw.err != nil {
		return bw.err
	}
	if err := writeTable(w, st, leftColumns(1, len(header)), header, traceRows(runs, counts)); err != nil {
		return err
	}
	if st.markdown {
		fmt.Fprintln(bw)
	}
	prose(bw, st, "", "processes are matched by command and place in the tree: the commands from the root down, #N for the Nth of that name among its siblings by start; - where a run has no such process")
	for _, line := range methodDifferences(cols, runs, counts, st) {
		prose(bw, st, "note: ", line)
	}
	return bw.err
}

// traceRows are a row per process matched across the runs, then the
// totals: each count, a column per run, "-" where a run has no such
// process; marked where any count differs.
func traceRows(runs []*report.Run, counts []report.Count) [][]string {
	totals := make([]*report.Process, len(runs))
	for i, r := range runs {
		totals[i] = report.TreeTotal(r)
	}
	var rows [][]string
	for _, m := range append(report.MatchProcesses(runs), report.Matched{Name: "total", Procs: totals}) {
		row := []string{m.Name}
		mark := ""
		for _, c := range counts {
			values := make([]string, len(m.Procs))
			for i, p := range m.Procs {
				values[i] = "-"
				if p != nil {
					values[i] = num(c.Get(p))
				}
			}
			mark = cmp.Or(mark, differs(values))
			row = append(row, values...)
		}
		rows = append(rows, append(row, mark))
	}
	return rows
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
func methodDifferences(cols []report.Compared, runs []*report.Run, cs []report.Count, st style) []string {
	var out []string
	for _, c := range cs {
		var parts []string
		differ := false
		for i, r := range runs {
			m := cmp.Or(r.Methods[c.Key], "-")
			if st.narrow && m != "-" {
				m = methodNote(m)
			}
			parts = append(parts, cols[i].Label+" "+m)
			differ = differ || m != cmp.Or(runs[0].Methods[c.Key], "-")
		}
		if differ {
			out = append(out, fmt.Sprintf("%s measured differently: %s", c.Title, strings.Join(parts, "; ")))
		}
	}
	return out
}

// measures lists the rows for runs of one scenario: the run's identity and
// method, then each role's counts, for every role any run has.
func measures(runs []*report.Run) []measure {
	ms := []measure{
		{name: "kernel", value: func(r *report.Run) string { return r.Kernel }},
		{name: "scenario", value: func(r *report.Run) string { return r.Scenario }},
		{name: "blocks x block size", value: func(r *report.Run) string { return fmt.Sprintf("%d x %d", r.Blocks, r.BlockSize) }},
		{name: "copies method", value: func(r *report.Run) string { return cmp.Or(r.Methods["copies"], "-") }, method: true},
		{name: "lost records", value: func(r *report.Run) string { return strconv.FormatUint(r.LostRecords, 10) }},
	}
	roles, fns := rolesAndProbes(runs)
	for _, role := range roles {
		for _, c := range roleMeasures {
			ms = append(ms, measure{name: role + " " + c.name, value: func(r *report.Run) string {
				if p := r.Find(role); p != nil {
					return c.value(r, p)
				}
				return "(none)"
			}})
		}
		for _, fn := range fns {
			ms = append(ms, measure{name: role + " " + fn, value: func(r *report.Run) string {
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

// roleMeasures are the counts compare shows for each role of the experiment.
var roleMeasures = []struct {
	name  string
	value func(r *report.Run, p *report.Process) string
}{
	{"page faults", func(r *report.Run, p *report.Process) string { return num(p.PageFaults) }},
	{"wp faults", func(r *report.Run, p *report.Process) string { return num(p.WPFaults) }},
	{"wp in region", func(r *report.Run, p *report.Process) string { return inRegion(r, report.ClassWP)(p) }},
	{"first writes in region", func(r *report.Run, p *report.Process) string { return inRegion(r, report.ClassWriteNotPresent)(p) }},
	{"reads in region", func(r *report.Run, p *report.Process) string { return inRegion(r, report.ClassRead)(p) }},
	{"copies", func(r *report.Run, p *report.Process) string { return num(p.Copies) }},
	{"inferred copies", func(r *report.Run, p *report.Process) string { return num(p.InferredCopies) }},
}

// rolesAndProbes are the roles of runs, in order of first appearance, and
// every function any of their processes probed, sorted.
func rolesAndProbes(runs []*report.Run) (roles, fns []string) {
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
	for fn := range probes {
		fns = append(fns, fn)
	}
	sort.Strings(fns)
	return roles, fns
}
