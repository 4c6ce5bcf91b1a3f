package openmetrics

import (
	"bytes"
	"errors"
	"io"
	"sort"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/cowtrace/cowtrace/report"
	"github.com/cowtrace/cowtrace/report/render"
)

// experimentRun is the experiment's run on a kernel with kprobes.
func experimentRun() *report.Run {
	return &report.Run{
		SchemaVersion: report.SchemaVersion, Kernel: "6.1.0-test-amd64", Scenario: "touched",
		Blocks: 1000, BlockSize: 102400, Offset: 10240, Touched: true,
		CopyRoutine: "copy_mc_to_kernel", KprobeMethod: "pmu",
		Methods: map[string]string{
			"page_faults": "counter:page-faults", "wp_faults": "tracepoint:exceptions:page_fault_user",
			"in_region": "tracepoint:exceptions:page_fault_user", "copies": "kprobe:copy_mc_to_kernel",
		},
		Processes: []report.Process{
			{Role: "parent", Pid: 10, PageFaults: report.U64(20), WPFaults: report.U64(13), Copies: report.U64(12),
				InRegion: &report.FaultClasses{}, Outside: &report.FaultClasses{WP: 13},
				Probes: map[string]uint64{"copy_mc_to_kernel": 12, "do_wp_page": 13}},
			{Role: "writer", Pid: 12, PageFaults: report.U64(1000), WPFaults: report.U64(1000), Copies: report.U64(1000),
				InRegion: &report.FaultClasses{WP: 1000}, Outside: &report.FaultClasses{},
				Probes: map[string]uint64{"copy_mc_to_kernel": 1000, "do_wp_page": 1000}},
		},
	}
}

// tracedRun is a cowtrace run of sh with two children, and --threads: a
// thread row under the first process.
func tracedRun() *report.Run {
	exit := 0
	r := &report.Run{
		SchemaVersion: report.SchemaVersion, Kernel: "6.18.0-test", Scenario: "traced",
		Methods: map[string]string{"wp_faults": "tracepoint:exceptions:page_fault_user", "copies": "inferred:x"},
		Trace:   &report.Trace{Command: []string{"sh", "-c", "..."}, DurationMs: 12, EndedBy: "exit", ExitCode: &exit, Threads: true},
	}
	for _, p := range []struct {
		pid, tid, ppid, depth int
		comm                  string
		copies                uint64
	}{{100, 0, 1, 0, "sh", 10}, {100, 150, 1, 0, "sh", 4}, {101, 0, 100, 1, "sh", 17}, {102, 0, 100, 1, "ca\\t\"\n", 6}} {
		role := "child"
		if p.depth == 0 {
			role = "command"
		}
		r.Processes = append(r.Processes, report.Process{Role: role, Pid: p.pid,
			Lineage:  &report.Lineage{Tid: p.tid, Ppid: p.ppid, Comm: p.comm, Depth: p.depth, Threads: 1},
			WPFaults: report.U64(p.copies + 1), Copies: report.U64(p.copies), Outside: &report.FaultClasses{WP: p.copies + 1}})
	}
	return r
}

// parseOpenMetrics reads an exposition back with expfmt's OpenMetrics 1.0
// parser (the specification's ABNF), failing the test on anything it
// rejects, and checks that no two samples of a family share their labels.
func parseOpenMetrics(t *testing.T, text string) map[string]*dto.MetricFamily {
	t.Helper()
	dec := expfmt.NewDecoder(strings.NewReader(text), expfmt.FmtOpenMetrics_1_0_0)
	fams := map[string]*dto.MetricFamily{}
	for {
		f := &dto.MetricFamily{}
		err := dec.Decode(f)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("OpenMetrics parser: %v\n%s", err, text)
		}
		fams[f.GetName()] = f
		seen := map[string]bool{}
		for _, m := range f.Metric {
			var ls []string
			for _, l := range m.Label {
				ls = append(ls, l.GetName()+"="+l.GetValue())
			}
			sort.Strings(ls)
			key := strings.Join(ls, ",")
			if seen[key] {
				t.Errorf("%s: two samples labelled %s", f.GetName(), key)
			}
			seen[key] = true
		}
	}
	if !strings.HasSuffix(text, "\n# EOF\n") {
		t.Errorf("no # EOF at the end:\n%s", text)
	}
	return fams
}

// value is the gauge of family name whose labels include every want pair.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, want ...string) float64 {
	t.Helper()
	f := fams[name]
	if f == nil {
		t.Fatalf("no family %s", name)
	}
	if f.GetType() != dto.MetricType_GAUGE || f.GetHelp() == "" {
		t.Errorf("%s: type %v, help %q", name, f.GetType(), f.GetHelp())
	}
next:
	for _, m := range f.Metric {
		labels := map[string]string{}
		for _, l := range m.Label {
			labels[l.GetName()] = l.GetValue()
		}
		for i := 0; i < len(want); i += 2 {
			if labels[want[i]] != want[i+1] {
				continue next
			}
		}
		return m.GetGauge().GetValue()
	}
	t.Fatalf("%s has no sample with %v", name, want)
	return 0
}

func TestOpenMetricsExperiment(t *testing.T) {
	run := experimentRun()
	run.Label = `tuned "fast" kernel`
	var b bytes.Buffer
	if err := render.Write(&b, run, render.OpenMetrics); err != nil {
		t.Fatal(err)
	}
	text := b.String()
	fams := parseOpenMetrics(t, text)
	if got := value(t, fams, "cowtrace_copies", "role", "writer", "pid", "12", "kernel", "6.1.0-test-amd64", "label", `tuned "fast" kernel`, "scenario", "touched"); got != 1000 {
		t.Errorf("writer copies %v", got)
	}
	if got := value(t, fams, "cowtrace_probe_hits", "role", "parent", "function", "do_wp_page"); got != 13 {
		t.Errorf("parent do_wp_page %v", got)
	}
	if got := value(t, fams, "cowtrace_classified_faults", "role", "writer", "where", "in_region", "class", "wp"); got != 1000 {
		t.Errorf("writer wp in region %v", got)
	}
	value(t, fams, "cowtrace_run_lost_records", "kernel", "6.1.0-test-amd64")
	for _, want := range []string{
		"# HELP cowtrace_copies Pages the kernel copied for the process (kprobe:copy_mc_to_kernel)\n",
		"# TYPE cowtrace_copies gauge\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("lacks %q:\n%s", want, text)
		}
	}
	// A measure not taken has no sample rather than a 0.
	run.Processes[0].Copies = nil
	b.Reset()
	if err := render.Write(&b, run, render.OpenMetrics); err != nil {
		t.Fatal(err)
	}
	if n := len(parseOpenMetrics(t, b.String())["cowtrace_copies"].Metric); n != 1 {
		t.Errorf("%d copies samples, want the writer's only", n)
	}
}

func TestOpenMetricsTrace(t *testing.T) {
	var b bytes.Buffer
	if err := Write(&b, tracedRun()); err != nil {
		t.Fatal(err)
	}
	fams := parseOpenMetrics(t, b.String())
	if n := len(fams["cowtrace_wp_faults"].Metric); n != 4 {
		t.Errorf("%d wp_faults samples, want 4", n)
	}
	// A name with a backslash, a quote and a newline comes back as it was.
	if got := value(t, fams, "cowtrace_copies", "command", "ca\\t\"\n", "pid", "102", "role", "child", "tid", "all"); got != 6 {
		t.Errorf("cat copies %v", got)
	}
	if got := value(t, fams, "cowtrace_copies", "command", "sh", "pid", "100", "tid", "150"); got != 4 {
		t.Errorf("thread copies %v", got)
	}
	if got := value(t, fams, "cowtrace_trace_duration_seconds"); got != 0.012 {
		t.Errorf("duration %v", got)
	}
	if fams["cowtrace_trace_duration_seconds"].GetUnit() != "seconds" {
		t.Errorf("duration has no unit")
	}
	for _, l := range fams["cowtrace_copies"].Metric[0].Label {
		if l.GetName() == "scenario" || l.GetName() == "label" {
			t.Errorf("traced run labelled %s", l.GetName())
		}
	}
}
