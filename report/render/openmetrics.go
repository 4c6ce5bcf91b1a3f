package render

// The renderer of --format openmetrics.
//
// One text serves both readers a user feeds it to. Prometheus' text format
// 0.0.4 is what node_exporter's textfile collector, the Pushgateway and
// promtool parse; OpenMetrics 1.0 is what --format openmetrics promises.
// The two differ, for what is written here, only in HELP: OpenMetrics
// requires a double quote there to be escaped, 0.0.4 rejects the escape.
// So no HELP holds a double quote (each is a constant; what varies, the
// method, goes into cowtrace_method_info's label values, escaped alike in
// both), and the OpenMetrics-only lines, # UNIT and # EOF, are comments to
// a 0.0.4 parser. The tests read every output with both parsers.
//
// Every family is a gauge: each value is what one finished run counted for
// one process, and the next run's processes are other series, so no value
// promises a counter's growth across scrapes (and a counter's family name
// would differ between the two formats: foo against foo_total). HELP is the
// same on every kernel and in every mode because node_exporter drops, with
// only a log line, the samples of a family whose HELP differs from the same
// family's in another file of its directory.
//
// The standard library writes it rather than prometheus/common's expfmt:
// linking expfmt's encoders grew the static binary from 8.2 to 12.9 MB and
// its packages from 152 to 300 (net/http, protobuf) and cost about 100 more
// page faults at every start, for a grammar of a few lines; and its
// OpenMetrics encoder escapes the double quote in HELP, the very escape
// promtool rejects. expfmt's two parsers are the tests' judges instead.

import (
	"bufio"
	"io"
	"sort"
	"strconv"
	"strings"

	"github.com/cowtrace/cowtrace/report"
)

// omLabel is one label of a sample.
type omLabel struct{ name, value string }

// omSample is one line of a family: labels in name order, and the value as
// written; name, when set, replaces the family's (a histogram's samples).
type omSample struct {
	name   string
	labels []omLabel
	value  string
}

// omFamily is one family, a gauge unless typ says otherwise. unit, when
// set, is also the last word of name, as OpenMetrics requires.
type omFamily struct {
	name, unit, help, typ string
	samples               []omSample
}

// omProcessFamilies are the per-process measures, each read off a row; nil
// is a measure not taken, which gets no sample.
var omProcessFamilies = []struct {
	name, help string
	get        func(p *report.Process) *uint64
}{
	{"cowtrace_page_faults", "Page faults of the process", func(p *report.Process) *uint64 { return p.PageFaults }},
	{"cowtrace_minor_faults", "Minor page faults of the process", func(p *report.Process) *uint64 { return p.MinorFaults }},
	{"cowtrace_major_faults", "Major page faults of the process", func(p *report.Process) *uint64 { return p.MajorFaults }},
	{"cowtrace_wp_faults", "Write-protect faults of the process, the faults copy-on-write takes", func(p *report.Process) *uint64 { return p.WPFaults }},
	{"cowtrace_copies", "Pages the kernel copied for the process", func(p *report.Process) *uint64 { return p.Copies }},
	{"cowtrace_inferred_copies", "Copies inferred from page allocations on the copy-on-write path, beside a kprobe count when both exist", func(p *report.Process) *uint64 { return p.InferredCopies }},
	{"cowtrace_lost_records", "Perf ring records of the process lost to overflow; when not 0 its sampled counts are lower bounds", func(p *report.Process) *uint64 { return &p.LostRecords }},
}

// The HELP of the families written outside omProcessFamilies.
const (
	omHelpProbeHits  = "Kprobe hits on a kernel function in the process"
	omHelpClassified = "Page faults on the process's memory by class, from the x86 error code or unclassified where only the address is known, in the experiment's region or outside it"
	omHelpKernelMode = "Faults the kernel took on the process's memory in a system call, a subset of cowtrace_classified_faults"
	omHelpMethod     = "How each measure was taken on this kernel, its JSON name in label measure; always 1"
	omHelpRunLost    = "Perf ring records lost in the whole run"
	omHelpThrottled  = "Times the kernel throttled the run's sampled events"
	omHelpDuration   = "How long cowtrace traced"
	omHelpExitCode   = "The traced command's exit status, as a shell reports it"
)

// writeOpenMetrics renders run as OpenMetrics 1.0 text that is also
// Prometheus text 0.0.4 (see the top of this file): a family per measure, a
// sample per process, labelled by kernel, label (--label), the experiment's
// scenario, role, pid and, for cowtrace run and attach, command (the comm)
// and, with --threads, tid ("all" on the process rows, whose counts include
// every thread).
func writeOpenMetrics(w io.Writer, run *report.Run) error {
	runLabels := []omLabel{{"kernel", run.Kernel}}
	if run.Label != "" {
		runLabels = append(runLabels, omLabel{"label", run.Label})
	}
	if run.Trace == nil {
		runLabels = append(runLabels, omLabel{"scenario", run.Scenario})
	}
	rowLabels := make([][]omLabel, len(run.Processes))
	for i := range run.Processes {
		rowLabels[i] = omRowLabels(run, &run.Processes[i], runLabels)
	}

	var fams []*omFamily
	add := func(f *omFamily) {
		if len(f.samples) > 0 {
			fams = append(fams, f)
		}
	}
	for _, pf := range omProcessFamilies {
		f := &omFamily{name: pf.name, help: pf.help}
		for i := range run.Processes {
			if v := pf.get(&run.Processes[i]); v != nil {
				f.add(rowLabels[i], omUint(*v))
			}
		}
		add(f)
	}
	add(omProbeHits(run, rowLabels))
	byClass, kernel := omClassified(run, rowLabels)
	add(byClass)
	add(kernel)

	for _, f := range omRunFamilies(run, runLabels) {
		add(f)
	}

	bw := bufio.NewWriter(w)
	for _, f := range fams {
		f.write(bw)
	}
	bw.WriteString("# EOF\n")
	return bw.Flush()
}

// omRunFamilies are the run's own numbers: its methods, what it lost, and
// for cowtrace run and attach how long it traced and how the command ended.
func omRunFamilies(run *report.Run, runLabels []omLabel) []*omFamily {
	methods := &omFamily{name: "cowtrace_method_info", help: omHelpMethod}
	keys := make([]string, 0, len(run.Methods))
	for k := range run.Methods {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		methods.add(omWith(runLabels, omLabel{"measure", k}, omLabel{"method", run.Methods[k]}), "1")
	}
	fams := []*omFamily{methods}

	// Records lost before their task was known belong to no process.
	lost := &omFamily{name: "cowtrace_run_lost_records", help: omHelpRunLost}
	lost.add(omWith(runLabels), omUint(run.LostRecords))
	throttled := &omFamily{name: "cowtrace_run_throttled", help: omHelpThrottled}
	throttled.add(omWith(runLabels), omUint(run.Throttled))
	fams = append(fams, lost, throttled)
	if t := run.Trace; t != nil {
		d := &omFamily{name: "cowtrace_trace_duration_seconds", unit: "seconds", help: omHelpDuration}
		d.add(omWith(runLabels), omSeconds(t.DurationMs))
		fams = append(fams, d)
		if t.ExitCode != nil {
			e := &omFamily{name: "cowtrace_trace_exit_code", help: omHelpExitCode}
			e.add(omWith(runLabels), strconv.Itoa(*t.ExitCode))
			fams = append(fams, e)
		}
	}
	return fams
}

// omRowLabels are the labels of a process's samples, in name order.
func omRowLabels(run *report.Run, p *report.Process, runLabels []omLabel) []omLabel {
	ls := []omLabel{{"role", p.Role}, {"pid", strconv.Itoa(p.Pid)}}
	if p.Lineage != nil {
		ls = append(ls, omLabel{"command", p.Comm})
		if run.Trace != nil && run.Trace.Threads {
			tid := "all"
			if p.Tid != 0 {
				tid = strconv.Itoa(p.Tid)
			}
			ls = append(ls, omLabel{"tid", tid})
		}
	}
	return omWith(runLabels, ls...)
}

// omProbeHits is a sample per process and probed kernel function.
func omProbeHits(run *report.Run, rowLabels [][]omLabel) *omFamily {
	f := &omFamily{name: "cowtrace_probe_hits", help: omHelpProbeHits}
	var fns []string
	seen := map[string]bool{}
	for _, p := range run.Processes {
		for fn := range p.Probes {
			if !seen[fn] {
				seen[fn] = true
				fns = append(fns, fn)
			}
		}
	}
	sort.Strings(fns)
	for i, p := range run.Processes {
		for _, fn := range fns {
			if v, ok := p.Probes[fn]; ok {
				f.add(omWith(rowLabels[i], omLabel{"function", fn}), omUint(v))
			}
		}
	}
	return f
}

// omClassified splits each process's faults by where they fell (in the
// experiment's region or outside it) and by class. Which classes exist
// depends on the method: the x86 fault tracepoints and count mode's
// filtered counters give the error-code classes, the page-fault event
// sampled with its address gives none (all unclassified), and a class the
// method cannot see is left out rather than written as 0. Kernel-mode
// faults, a subset of the others, get a family of their own so that
// summing one family never counts a fault twice.
func omClassified(run *report.Run, rowLabels [][]omLabel) (byClass, kernel *omFamily) {
	byClass = &omFamily{name: "cowtrace_classified_faults", help: omHelpClassified}
	kernel = &omFamily{name: "cowtrace_kernel_mode_faults", help: omHelpKernelMode}
	for i := range run.Processes {
		p := &run.Processes[i]
		for _, where := range []struct {
			name string
			fc   *report.FaultClasses
		}{{"in_region", p.InRegion}, {"outside", p.Outside}} {
			method := run.Methods[where.name]
			if where.fc == nil || method == "" {
				continue
			}
			ls := omWith(rowLabels[i], omLabel{"where", where.name})
			if strings.HasPrefix(method, "sampled:") {
				byClass.add(omWith(ls, omLabel{"class", "unclassified"}), omUint(where.fc.Unclassified))
				continue
			}
			for _, c := range []struct {
				class string
				v     uint64
			}{{"wp", where.fc.WP}, {"write_not_present", where.fc.WriteNotPresent}, {"read", where.fc.Read}, {"exec", where.fc.Exec}} {
				byClass.add(omWith(ls, omLabel{"class", c.class}), omUint(c.v))
			}
			if strings.Contains(method, "page_fault_kernel") {
				kernel.add(ls, omUint(where.fc.KernelMode))
			}
		}
	}
	return byClass, kernel
}

func (f *omFamily) add(labels []omLabel, value string) {
	f.samples = append(f.samples, omSample{labels: labels, value: value})
}

// write writes the family: TYPE, UNIT and HELP, then a line per sample.
func (f *omFamily) write(w *bufio.Writer) {
	typ := f.typ
	if typ == "" {
		typ = "gauge"
	}
	w.WriteString("# TYPE " + f.name + " " + typ + "\n")
	if f.unit != "" {
		w.WriteString("# UNIT " + f.name + " " + f.unit + "\n")
	}
	w.WriteString("# HELP " + f.name + " " + omHelpEscaper.Replace(f.help) + "\n")
	for _, s := range f.samples {
		if s.name != "" {
			w.WriteString(s.name)
		} else {
			w.WriteString(f.name)
		}
		if len(s.labels) > 0 {
			w.WriteByte('{')
			for i, l := range s.labels {
				if i > 0 {
					w.WriteByte(',')
				}
				w.WriteString(l.name + `="` + omLabelValue(l.value) + `"`)
			}
			w.WriteByte('}')
		}
		w.WriteString(" " + s.value + "\n")
	}
}

// addSample adds a sample named name (a histogram's _bucket, _sum or
// _count) to the family.
func (f *omFamily) addSample(name string, labels []omLabel, value string) {
	f.samples = append(f.samples, omSample{name: name, labels: labels, value: value})
}

// omHelpEscaper escapes what both formats escape alike in HELP; a double
// quote, which they escape differently, is kept out of every HELP instead.
var omHelpEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`)

var omLabelEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)

// omLabelValue escapes a label value as both formats require. Both also
// require UTF-8, which a comm (bytes the program chose) or --label need not
// be: a parser that meets an invalid byte rejects the whole file.
func omLabelValue(s string) string {
	return omLabelEscaper.Replace(strings.ToValidUTF8(s, "\uFFFD"))
}

// omWith returns ls and more, in name order, leaving ls as it is.
func omWith(ls []omLabel, more ...omLabel) []omLabel {
	out := append(append(make([]omLabel, 0, len(ls)+len(more)), ls...), more...)
	sort.Slice(out, func(a, b int) bool { return out[a].name < out[b].name })
	return out
}

// omUint writes a count as the exact integer; through a float64 a count
// above 2^53 would be rounded.
func omUint(v uint64) string { return strconv.FormatUint(v, 10) }

// omSeconds writes milliseconds as seconds to the nanosecond, the
// precision they were measured with, without the binary fraction's tail
// (0.12612683800000002) that the division leaves.
func omSeconds(ms float64) string {
	s := strconv.FormatFloat(ms/1000, 'f', 9, 64)
	return strings.TrimSuffix(strings.TrimRight(s, "0"), ".")
}
