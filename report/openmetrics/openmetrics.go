// Package openmetrics renders a cowtrace report as an OpenMetrics
// exposition, for the node exporter's textfile collector or a Pushgateway.
// Importing it installs the writer behind report.Write's --format
// openmetrics.
//
// It is a package of its own because Prometheus's encoder
// (expfmt.MetricFamilyToOpenMetrics, used so that escaping, number formatting
// and the framing are the format's, not ours) imports net/http, and net
// links cgo in default builds: every program linking it grows by some 4.9 MB
// and, built with cgo, its re-executed workload lays its memory out
// differently. Only the command imports it, not the packages that use
// report's types.
package openmetrics

import (
	"io"
	"sort"
	"strconv"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/cowtrace/cowtrace/report"
)

func init() { report.RegisterOpenMetrics(Write) }

//
// Every count is a gauge: it is what one finished run measured for one
// process, and a process of the next run is another series, so nothing
// carries a counter's promise of growing across scrapes (Prometheus's advice
// for batch jobs and the textfile collector). A measure not taken has no
// sample, never a 0.

// family is one metric family of the exposition.
type family struct {
	name, help string
	get        func(p *report.Process) *uint64
}

// processFamilies are the per-process measures. Their help names the method
// of the run, as the table's headers do.
func processFamilies(run *report.Run) []family {
	m := run.Methods
	how := func(key string) string {
		if m[key] == "" {
			return ""
		}
		return " (" + m[key] + ")"
	}
	return []family{
		{name: "cowtrace_page_faults", help: "Page faults of the process" + how("page_faults"), get: func(p *report.Process) *uint64 { return p.PageFaults }},
		{name: "cowtrace_minor_faults", help: "Minor page faults of the process" + how("minor_faults"), get: func(p *report.Process) *uint64 { return p.MinorFaults }},
		{name: "cowtrace_major_faults", help: "Major page faults of the process" + how("major_faults"), get: func(p *report.Process) *uint64 { return p.MajorFaults }},
		{name: "cowtrace_wp_faults", help: "User write-protect faults (x86 error code 0x7), the faults of copy-on-write" + how("wp_faults"), get: func(p *report.Process) *uint64 { return p.WPFaults }},
		{name: "cowtrace_copies", help: "Pages the kernel copied for the process" + how("copies"), get: func(p *report.Process) *uint64 { return p.Copies }},
		{name: "cowtrace_inferred_copies", help: "Copies inferred from write-protect faults followed by a page allocation" + how("inferred_copies"), get: func(p *report.Process) *uint64 { return p.InferredCopies }},
		{name: "cowtrace_lost_records", help: "Perf ring records of the process lost to overflow: its sampled counts are lower bounds", get: func(p *report.Process) *uint64 { return &p.LostRecords }},
	}
}

// Write renders run as an OpenMetrics exposition: a family per measure, a
// sample per process, labelled by kernel, label (--label), the experiment's
// scenario, command (comm) and role, pid and, with --threads, tid ("all" on
// the process rows, whose counts include every thread).
func Write(w io.Writer, run *report.Run) error {
	var fams []*dto.MetricFamily
	gauge := func(name, help, unit string) *dto.MetricFamily {
		f := &dto.MetricFamily{Name: &name, Help: &help, Type: dto.MetricType_GAUGE.Enum()}
		if unit != "" {
			f.Unit = &unit
		}
		fams = append(fams, f)
		return f
	}
	sample := func(f *dto.MetricFamily, v float64, labels []*dto.LabelPair) {
		f.Metric = append(f.Metric, &dto.Metric{Label: labels, Gauge: &dto.Gauge{Value: &v}})
	}
	runLabels := []*dto.LabelPair{pair("kernel", run.Kernel)}
	if run.Label != "" {
		runLabels = append(runLabels, pair("label", run.Label))
	}
	if run.Trace == nil {
		runLabels = append(runLabels, pair("scenario", run.Scenario))
	}
	rowLabels := make([][]*dto.LabelPair, len(run.Processes))
	for i := range run.Processes {
		p := &run.Processes[i]
		ls := append(append([]*dto.LabelPair(nil), runLabels...), pair("role", p.Role), pair("pid", strconv.Itoa(p.Pid)))
		if p.Lineage != nil {
			ls = append(ls, pair("command", p.Comm))
			if run.Trace != nil && run.Trace.Threads {
				tid := "all"
				if p.Tid != 0 {
					tid = strconv.Itoa(p.Tid)
				}
				ls = append(ls, pair("tid", tid))
			}
		}
		sort.Slice(ls, func(a, b int) bool { return ls[a].GetName() < ls[b].GetName() })
		rowLabels[i] = ls
	}

	for _, fd := range processFamilies(run) {
		var f *dto.MetricFamily
		for i := range run.Processes {
			v := fd.get(&run.Processes[i])
			if v == nil {
				continue
			}
			if f == nil {
				f = gauge(fd.name, fd.help, "")
			}
			sample(f, float64(*v), rowLabels[i])
		}
	}
	if probes := probeNames(run); len(probes) > 0 {
		f := gauge("cowtrace_probe_hits", "Kprobe hits on a kernel function in the process (kprobe method "+orDash(run.KprobeMethod)+")", "")
		for i := range run.Processes {
			for _, fn := range probes {
				if v, ok := run.Processes[i].Probes[fn]; ok {
					sample(f, float64(v), withLabel(rowLabels[i], "function", fn))
				}
			}
		}
	}
	classified(run, rowLabels, gauge, sample)

	// The run's own numbers: records lost before their task was known
	// belong to no process.
	sample(gauge("cowtrace_run_lost_records", "Perf ring records lost in the whole run", ""), float64(run.LostRecords), runLabels)
	sample(gauge("cowtrace_run_throttled", "Times the kernel throttled the run's sampled events", ""), float64(run.Throttled), runLabels)
	if t := run.Trace; t != nil {
		sample(gauge("cowtrace_trace_duration_seconds", "How long cowtrace traced", "seconds"), t.DurationMs/1000, runLabels)
		if t.ExitCode != nil {
			sample(gauge("cowtrace_trace_exit_code", "The traced command's exit status, as a shell reports it", ""), float64(*t.ExitCode), runLabels)
		}
	}

	for _, f := range fams {
		if _, err := expfmt.MetricFamilyToOpenMetrics(w, f); err != nil {
			return err
		}
	}
	_, err := expfmt.FinalizeOpenMetrics(w)
	return err
}

// classified writes the faults split by their x86 error code and by whether
// they fell in the experiment's region: one family, labelled by where and
// class. The kernel-mode faults are a subset of the others and get a family
// of their own, so that summing one family never counts a fault twice.
func classified(run *report.Run, rowLabels [][]*dto.LabelPair,
	gauge func(name, help, unit string) *dto.MetricFamily, sample func(*dto.MetricFamily, float64, []*dto.LabelPair)) {
	var byClass, kernel *dto.MetricFamily
	for i := range run.Processes {
		p := &run.Processes[i]
		for _, where := range []struct {
			name string
			fc   *report.FaultClasses
		}{{"in_region", p.InRegion}, {"outside", p.Outside}} {
			if where.fc == nil {
				continue
			}
			if byClass == nil {
				byClass = gauge("cowtrace_classified_faults", "User page faults by x86 error code class, in the experiment's region or outside it ("+orDash(run.Methods["wp_faults"])+")", "")
				kernel = gauge("cowtrace_kernel_mode_faults", "Faults the kernel took on the process's memory in a system call, a subset of cowtrace_classified_faults", "")
			}
			ls := withLabel(rowLabels[i], "where", where.name)
			for _, c := range []struct {
				class string
				v     uint64
			}{{"wp", where.fc.WP}, {"write_not_present", where.fc.WriteNotPresent}, {"read", where.fc.Read}, {"exec", where.fc.Exec}} {
				sample(byClass, float64(c.v), withLabel(ls, "class", c.class))
			}
			sample(kernel, float64(where.fc.KernelMode), ls)
		}
	}
}

func pair(name, value string) *dto.LabelPair { return &dto.LabelPair{Name: &name, Value: &value} }

// withLabel returns ls with one more label, in name order, leaving ls as is.
func withLabel(ls []*dto.LabelPair, name, value string) []*dto.LabelPair {
	out := append(append([]*dto.LabelPair(nil), ls...), pair(name, value))
	sort.Slice(out, func(a, b int) bool { return out[a].GetName() < out[b].GetName() })
	return out
}

// probeNames are the kernel functions any row of run counts, sorted.
func probeNames(run *report.Run) []string {
	seen := map[string]bool{}
	var names []string
	for _, p := range run.Processes {
		for fn := range p.Probes {
			if !seen[fn] {
				seen[fn] = true
				names = append(names, fn)
			}
		}
	}
	sort.Strings(names)
	return names
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
