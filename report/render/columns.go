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
// Run.Methods) and how to read it off a row.
type column struct {
	header, method string
	value          func(p *report.Process) string
}

func columns(run *report.Run) []column {
	if run.Trace != nil {
		return traceColumns(run)
	}
	m := run.Methods
	cols := []column{
		{"role", "", func(p *report.Process) string { return p.Role }},
		{"pid", "", func(p *report.Process) string { return strconv.Itoa(p.Pid) }},
	}
	cols = append(cols, faultColumns(m)...)
	switch {
	case strings.HasPrefix(m["in_region"], "sampled:"):
		// Faults by address only (no x86 fault tracepoints).
		if m["wp_faults"] != "" {
			cols = append(cols, column{"wp faults", m["wp_faults"], func(p *report.Process) string { return num(p.WPFaults) }})
		}
		cols = append(cols, column{"faults in region", m["in_region"], inRegion(func(f *report.FaultClasses) uint64 { return f.Total() })})
	case m["wp_faults"] != "":
		cols = append(cols,
			column{"wp faults", m["wp_faults"], func(p *report.Process) string { return num(p.WPFaults) }},
			column{"wp in region", m["in_region"], inRegion(func(f *report.FaultClasses) uint64 { return f.WP })},
			column{"first writes in region", m["in_region"], inRegion(func(f *report.FaultClasses) uint64 { return f.WriteNotPresent })},
			column{"reads in region", m["in_region"], inRegion(func(f *report.FaultClasses) uint64 { return f.Read })},
		)
	}
	cols = append(cols, copyColumns(run)...)
	cols = append(cols, column{"lost", "", func(p *report.Process) string { return strconv.FormatUint(p.LostRecords, 10) }})
	return cols
}

// faultColumns are the software counters' columns, in every table.
func faultColumns(m map[string]string) []column {
	cols := []column{{"page faults", m["page_faults"], func(p *report.Process) string { return num(p.PageFaults) }}}
	if m["minor_faults"] != "" {
		cols = append(cols, column{"minor", m["minor_faults"], func(p *report.Process) string { return num(p.MinorFaults) }})
	}
	return append(cols, column{"major", m["major_faults"], func(p *report.Process) string { return num(p.MajorFaults) }})
}

// copyColumns are the copies, the inferred copies when they are another
// measure, and a column per probed function other than the copy routine
// (already the copies column), in every table.
func copyColumns(run *report.Run) []column {
	m := run.Methods
	var cols []column
	if m["copies"] != "" {
		cols = append(cols, column{"copies", m["copies"], func(p *report.Process) string { return num(p.Copies) }})
	}
	if m["inferred_copies"] != "" && m["inferred_copies"] != m["copies"] {
		cols = append(cols, column{"inferred copies", m["inferred_copies"], func(p *report.Process) string { return num(p.InferredCopies) }})
	}
	for _, fn := range probeNames(run) {
		if fn == run.CopyRoutine {
			continue
		}
		cols = append(cols, column{fn, "kprobe:" + fn, func(p *report.Process) string {
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
		{"pid", "", func(p *report.Process) string { return strconv.Itoa(p.Pid) }},
		{"ppid", "", lin(func(l *report.Lineage) string { return strconv.Itoa(l.Ppid) })},
	}
	if run.Trace.Threads {
		cols = append(cols, column{"tid", "", lin(func(l *report.Lineage) string {
			if l.Tid == 0 {
				return "all"
			}
			return strconv.Itoa(l.Tid)
		})})
	}
	cols = append(cols,
		column{"depth", "", lin(func(l *report.Lineage) string { return strconv.Itoa(l.Depth) })},
		column{"command", "", lin(func(l *report.Lineage) string { return l.Comm })},
		column{"lifetime", "", lin(func(l *report.Lineage) string {
			s := report.FormatMs(l.LifetimeMs)
			if !l.Exited {
				s += " (running)"
			}
			return s
		})},
	)
	cols = append(cols, faultColumns(m)...)
	if m["wp_faults"] != "" {
		cols = append(cols, column{"wp faults", m["wp_faults"], func(p *report.Process) string { return num(p.WPFaults) }})
	}
	return append(cols, copyColumns(run)...)
}
