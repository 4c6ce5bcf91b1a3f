package report

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
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

// ParseFormat validates a --format value.
func ParseFormat(s string) (Format, error) {
	switch f := Format(s); f {
	case Table, JSON, CSV, Markdown, OpenMetrics:
		return f, nil
	}
	return "", fmt.Errorf("unknown format %q (want table, json, csv, markdown or openmetrics)", s)
}

// openMetrics writes --format openmetrics once package report/openmetrics
// has registered it.
var openMetrics func(io.Writer, *Run) error

// RegisterOpenMetrics installs the writer of --format openmetrics; importing
// package report/openmetrics calls it. That package stands apart because its
// encoder brings net/http, and with it cgo, into every program that links
// it: the programs that only use report's types stay without.
func RegisterOpenMetrics(write func(io.Writer, *Run) error) { openMetrics = write }

// Write renders run in format f.
func Write(w io.Writer, run *Run, f Format) error {
	switch f {
	case JSON:
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(run)
	case CSV:
		return writeCSV(w, run)
	case Markdown:
		return writeText(w, run, true)
	case OpenMetrics:
		if openMetrics == nil {
			return errors.New("--format openmetrics: this program was built without package report/openmetrics")
		}
		return openMetrics(w, run)
	default:
		return writeText(w, run, false)
	}
}

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
	value          func(p *Process) string
}

func columns(run *Run) []column {
	if run.Trace != nil {
		return traceColumns(run)
	}
	region := func(get func(f *FaultClasses) uint64) func(p *Process) string {
		return func(p *Process) string {
			if p.InRegion == nil {
				return "-"
			}
			return strconv.FormatUint(get(p.InRegion), 10)
		}
	}
	m := run.Methods
	cols := []column{
		{"role", "", func(p *Process) string { return p.Role }},
		{"pid", "", func(p *Process) string { return strconv.Itoa(p.Pid) }},
	}
	cols = append(cols, faultColumns(m)...)
	switch {
	case strings.HasPrefix(m["in_region"], "sampled:"):
		// Faults by address only (no x86 fault tracepoints).
		if m["wp_faults"] != "" {
			cols = append(cols, column{"wp faults", m["wp_faults"], func(p *Process) string { return num(p.WPFaults) }})
		}
		cols = append(cols, column{"faults in region", m["in_region"], region(func(f *FaultClasses) uint64 { return f.Total() })})
	case m["wp_faults"] != "":
		cols = append(cols,
			column{"wp faults", m["wp_faults"], func(p *Process) string { return num(p.WPFaults) }},
			column{"wp in region", m["in_region"], region(func(f *FaultClasses) uint64 { return f.WP })},
			column{"first writes in region", m["in_region"], region(func(f *FaultClasses) uint64 { return f.WriteNotPresent })},
			column{"reads in region", m["in_region"], region(func(f *FaultClasses) uint64 { return f.Read })},
		)
	}
	cols = append(cols, copyColumns(run)...)
	cols = append(cols, column{"lost", "", func(p *Process) string { return strconv.FormatUint(p.LostRecords, 10) }})
	return cols
}

// faultColumns are the software counters' columns, in every table.
func faultColumns(m map[string]string) []column {
	cols := []column{{"page faults", m["page_faults"], func(p *Process) string { return num(p.PageFaults) }}}
	if m["minor_faults"] != "" {
		cols = append(cols, column{"minor", m["minor_faults"], func(p *Process) string { return num(p.MinorFaults) }})
	}
	return append(cols, column{"major", m["major_faults"], func(p *Process) string { return num(p.MajorFaults) }})
}

// copyColumns are the copies, the inferred copies when they are another
// measure, and a column per probed function other than the copy routine
// (already the copies column), in every table.
func copyColumns(run *Run) []column {
	m := run.Methods
	var cols []column
	if m["copies"] != "" {
		cols = append(cols, column{"copies", m["copies"], func(p *Process) string { return num(p.Copies) }})
	}
	if m["inferred_copies"] != "" && m["inferred_copies"] != m["copies"] {
		cols = append(cols, column{"inferred copies", m["inferred_copies"], func(p *Process) string { return num(p.InferredCopies) }})
	}
	for _, fn := range probeNames(run) {
		if fn == run.CopyRoutine {
			continue
		}
		cols = append(cols, column{fn, "kprobe:" + fn, func(p *Process) string {
			if v, ok := p.Probes[fn]; ok {
				return strconv.FormatUint(v, 10)
			}
			return "-"
		}})
	}
	return cols
}

func probeNames(run *Run) []string {
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

func writeText(w io.Writer, run *Run, markdown bool) error {
	cols := columns(run)
	header := make([]string, len(cols))
	for i, c := range cols {
		header[i] = c.header
		if tag := shortMethod(c.method); tag != "" {
			if markdown {
				header[i] += " " + tag
			} else {
				header[i] += "\n" + tag
			}
		}
	}
	bw := &errWriter{w: w}
	title := Title(run)
	if markdown {
		fmt.Fprintf(bw, "**%s**\n\n", title)
	} else {
		fmt.Fprintf(bw, "%s\n", title)
	}
	for _, u := range run.Unavailable {
		fmt.Fprintf(bw, "unavailable: %s: %s\n", u.What, u.Why)
	}
	if markdown {
		fmt.Fprintln(bw)
	}
	if bw.err != nil {
		return bw.err
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
	fmt.Fprintln(bw, "methods:")
	for _, line := range methodLines(run) {
		fmt.Fprintf(bw, "  %s\n", line)
	}
	fmt.Fprintln(bw, "windows:")
	seen := map[string]bool{}
	for _, p := range run.Processes {
		key := p.Role + p.Window
		if !seen[key] {
			seen[key] = true
			fmt.Fprintf(bw, "  %s: %s\n", p.Role, p.Window)
		}
	}
	if run.CopyRoutineCheck != "" {
		fmt.Fprintf(bw, "copy routine check: %s\n", run.CopyRoutineCheck)
	}
	fmt.Fprintf(bw, "lost records: %d, throttled: %d\n", run.LostRecords, run.Throttled)
	for _, n := range run.Notes {
		fmt.Fprintf(bw, "note: %s\n", n)
	}
	return bw.err
}

// Title is the one-line description of what was run.
func Title(run *Run) string {
	if run.Trace != nil {
		return traceTitle(run)
	}
	touched := "written before fork"
	if !run.Touched {
		touched = "not touched before fork"
	}
	scenario := ""
	if run.Scenario != "" {
		scenario = " [" + run.Scenario + "]"
	}
	return fmt.Sprintf("cowtrace%s: kernel %s, %d blocks x %d bytes (%.1f MiB) %s, one byte per block at offset %d",
		scenario, run.Kernel, run.Blocks, run.BlockSize,
		float64(run.Blocks)*float64(run.BlockSize)/(1<<20), touched, run.Offset)
}

// AtExitMethod ends the method of a counter whose count each inherited task
// reports when it exits (count mode on a followed program).
const AtExitMethod = ", read at each task's exit"

// methodLines explains each method once, in words.
func methodLines(run *Run) []string {
	var out []string
	m := run.Methods
	atExit := strings.HasSuffix(m["page_faults"], AtExitMethod)
	switch {
	case atExit:
		out = append(out, "page faults: perf software counter page-faults, inherited by every task, each task's count reported when it exits (count mode; minor and major faults with --mode classify)")
	case strings.HasPrefix(m["page_faults"], "tracepoint:"):
		out = append(out, "page faults: every fault the tracepoints below classified; major: perf software event major-faults, every event sampled with its thread id (the software counters page-faults and minor-faults with --counters)")
	case strings.HasPrefix(m["page_faults"], "sampled:") && m["minor_faults"] == "":
		out = append(out, "page faults, major: perf software events page-faults, major-faults, every event sampled with its thread id (minor faults with --counters)")
	case strings.HasPrefix(m["page_faults"], "sampled:"):
		out = append(out, "page faults, minor, major: perf software events page-faults, minor-faults, major-faults, every event sampled with its thread id")
	case m["page_faults"] != "":
		out = append(out, "page faults, minor, major: perf software counters page-faults, minor-faults, major-faults, per task")
	}
	if strings.HasPrefix(m["wp_faults"], "counter:") && atExit {
		out = append(out, "wp faults: tracepoints exceptions:page_fault_user (error code 0x7) and page_fault_kernel (0x3, on user addresses) counted in the kernel behind filters, each task's count reported when it exits, no sampling")
	} else if strings.HasPrefix(m["wp_faults"], "counter:") {
		out = append(out, "wp faults, ... in region: tracepoint exceptions:page_fault_user counted in the kernel behind filters on the x86 error code (wp = 0x7) and the region's addresses, no sampling")
	} else if m["wp_faults"] != "" {
		line := "wp faults, ... in region: tracepoint exceptions:page_fault_user, every fault sampled and classified by its x86 error code (wp = write to a present page, 0x7)"
		if strings.HasSuffix(m["wp_faults"], "+page_fault_kernel") {
			line += "; with page_fault_kernel for the faults a system call takes on the process's memory"
		}
		out = append(out, line)
	}
	if c := m["copies"]; strings.HasPrefix(c, "kprobe:") {
		out = append(out, fmt.Sprintf("copies: kprobe (%s) hits on %s, the routine that copies pages on this kernel", run.KprobeMethod, strings.TrimPrefix(c, "kprobe:")))
	}
	if m["inferred_copies"] != "" {
		label := "inferred copies"
		if m["copies"] == m["inferred_copies"] {
			label = "copies"
		}
		switch {
		case strings.HasPrefix(m["inferred_copies"], "callchain:"):
			out = append(out, label+": kmem:mm_page_alloc of one non-zeroed user page whose kernel stack (resolved with kallsyms) runs through do_wp_page: the page a copy-on-write fault copies into")
		case strings.HasPrefix(m["inferred_copies"], "counter:"):
			out = append(out, label+": inferred, not measured: kmem:mm_page_alloc of one non-zeroed user page in the process, counted in the kernel behind a filter")
		default:
			out = append(out, label+": inferred, not measured: wp faults followed in the same task by kmem:mm_page_alloc of one non-zeroed user page")
		}
	}
	for _, fn := range probeNames(run) {
		if fn != run.CopyRoutine {
			out = append(out, fmt.Sprintf("%s: kprobe (%s) hits", fn, run.KprobeMethod))
		}
	}
	return append(out, attribMethodLines(run)...)
}

func writeCSV(w io.Writer, run *Run) error {
	cols := columns(run)
	cw := csv.NewWriter(w)
	rec := []string{"kernel", "scenario"}
	for _, c := range cols {
		// CSV has no room for a legend: the method rides in the header.
		h := strings.ReplaceAll(c.header, " ", "_")
		if c.method != "" {
			h += " (" + c.method + ")"
		}
		rec = append(rec, h)
	}
	if err := cw.Write(rec); err != nil {
		return err
	}
	for i := range run.Processes {
		rec = rec[:0]
		rec = append(rec, run.Kernel, run.Scenario)
		for _, c := range cols {
			rec = append(rec, c.value(&run.Processes[i]))
		}
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
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
