package render

import (
	"sort"
	"strconv"
	"strings"

	"github.com/cowtrace/cowtrace/report"
)

// num renders an optional count: "-" when it was not measured, which is not 0.
func num(v *uint64) string {
	if v == nil {
		return "-"
	}
	return strconv.FormatUint(*v, 10)
}

// column is one measure of the table: its header, the method behind it (from
// Run.Methods) and how to read it off a row. short is the header of the
// narrow layout ("" for header), left marks a column of names.
type column struct {
	header, method string
	value          func(p *report.Process) string
	short          string
	left           bool
}

// title is the column's header in the style's layout.
func (c column) title(st style) string {
	if st.narrow && c.short != "" {
		return c.short
	}
	return c.header
}

func columns(run *report.Run) []column {
	if run.Trace != nil {
		return traceColumns(run)
	}
	m := run.Methods
	cols := []column{
		{header: "role", value: func(p *report.Process) string { return p.Role }, left: true},
		{header: "pid", value: func(p *report.Process) string { return strconv.Itoa(p.Pid) }},
	}
	cols = append(cols, faultColumns(m)...)
	switch {
	case strings.HasPrefix(m["in_region"], "sampled:"):
		// Faults by address only (no x86 fault tracepoints).
		if m["wp_faults"] != "" {
			cols = append(cols, wpColumn(m))
		}
		cols = append(cols, column{header: "faults in region", method: m["in_region"], value: inRegion(run, report.ClassUnclassified), short: "region\nfaults"})
	case m["wp_faults"] != "":
		cols = append(cols, wpColumn(m),
			column{header: "wp in region", method: m["in_region"], value: inRegion(run, report.ClassWP), short: "region\nwp"},
			column{header: "first writes in region", method: m["in_region"], value: inRegion(run, report.ClassWriteNotPresent), short: "region\n1st wr"},
			column{header: "reads in region", method: m["in_region"], value: inRegion(run, report.ClassRead), short: "region\nreads"},
		)
	}
	cols = append(cols, copyColumns(run)...)
	cols = append(cols, column{header: "lost", value: func(p *report.Process) string { return strconv.FormatUint(p.LostRecords, 10) }})
	return cols
}

func wpColumn(m map[string]string) column {
	return column{header: "wp faults", method: m["wp_faults"], value: func(p *report.Process) string { return num(p.WPFaults) }, short: "wp"}
}

// faultColumns are the software counters' columns, in every table.
func faultColumns(m map[string]string) []column {
	cols := []column{{header: "page faults", method: m["page_faults"], value: func(p *report.Process) string { return num(p.PageFaults) }, short: "faults"}}
	if m["minor_faults"] != "" {
		cols = append(cols, column{header: "minor", method: m["minor_faults"], value: func(p *report.Process) string { return num(p.MinorFaults) }})
	}
	return append(cols, column{header: "major", method: m["major_faults"], value: func(p *report.Process) string { return num(p.MajorFaults) }})
}

// copyColumns are the copies, the inferred copies when they are another
// measure, and a column per probed function other than the copy routine
// (already the copies column), in every table.
func copyColumns(run *report.Run) []column {
	m := run.Methods
	var cols []column
	if m["copies"] != "" {
		cols = append(cols, column{header: "copies", method: m["copies"], value: func(p *report.Process) string { return num(p.Copies) }})
	}
	if m["inferred_copies"] != "" && m["inferred_copies"] != m["copies"] {
		cols = append(cols, column{header: "inferred copies", method: m["inferred_copies"], value: func(p *report.Process) string { return num(p.InferredCopies) }, short: "inferred"})
	}
	for _, fn := range probeNames(run) {
		if fn == run.CopyRoutine {
			continue
		}
		cols = append(cols, column{header: fn, method: "kprobe:" + fn, value: func(p *report.Process) string {
			if v, ok := p.Probes[fn]; ok {
				return strconv.FormatUint(v, 10)
			}
			return "-"
		}})
	}
	return cols
}

func probeNames(run *report.Run) []string {
	seen := map[string]bool{}
	for _, p := range run.Processes {
		for fn := range p.Probes {
			seen[fn] = true
		}
	}
	names := make([]string, 0, len(seen))
	for fn := range seen {
		names = append(names, fn)
	}
	sort.Strings(names)
	return names
}

// shortMethod is the tag under a column header.
func shortMethod(method string) string {
	switch {
	case method == "":
		return ""
	case strings.HasPrefix(method, "counter:"):
		return "[counter]"
	case strings.HasPrefix(method, "tracepoint:"):
		return "[tracepoint]"
	case strings.HasPrefix(method, "sampled:"):
		return "[sampled]"
	case strings.HasPrefix(method, "kprobe:"):
		return "[" + method + "]"
	case strings.HasPrefix(method, "inferred:"):
		return "[inferred]"
	case strings.HasPrefix(method, "callchain:"):
		return "[callchain]"
	}
	return "[" + method + "]"
}

// traceColumns are the columns of a traced run: the tree, then the measures.
func traceColumns(run *report.Run) []column {
	lin := func(get func(l *report.Lineage) string) func(p *report.Process) string {
		return func(p *report.Process) string {
			if p.Lineage == nil {
				return "-"
			}
			return get(p.Lineage)
		}
	}
	m := run.Methods
	cols := []column{
		{header: "pid", value: func(p *report.Process) string { return strconv.Itoa(p.Pid) }},
		{header: "ppid", value: lin(func(l *report.Lineage) string { return strconv.Itoa(l.Ppid) })},
	}
	if run.Trace.Threads {
		cols = append(cols, column{header: "tid", value: lin(func(l *report.Lineage) string {
			if l.Tid == 0 {
				return "all"
			}
			return strconv.Itoa(l.Tid)
		})})
	}
	cols = append(cols,
		column{header: "depth", value: lin(func(l *report.Lineage) string { return strconv.Itoa(l.Depth) })},
		column{header: "command", value: lin(func(l *report.Lineage) string { return l.Comm }), left: true},
		column{header: "lifetime", value: lin(func(l *report.Lineage) string {
			s := report.FormatMs(l.LifetimeMs)
			if !l.Exited {
				s += " (running)"
			}
			return s
		})},
	)
	cols = append(cols, faultColumns(m)...)
	if m["wp_faults"] != "" {
		cols = append(cols, wpColumn(m))
	}
	return append(cols, copyColumns(run)...)
}
