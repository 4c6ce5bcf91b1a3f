package report

import (
	"bytes"
	"errors"
	"io"
	"sort"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

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
	run := kprobeRun()
	run.Label = `tuned "fast" kernel`
	var b bytes.Buffer
	if err := Write(&b, run, OpenMetrics); err != nil {
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
	if err := Write(&b, run, OpenMetrics); err != nil {
		t.Fatal(err)
	}
	if n := len(parseOpenMetrics(t, b.String())["cowtrace_copies"].Metric); n != 1 {
		t.Errorf("%d copies samples, want the writer's only", n)
	}
}

func TestOpenMetricsTrace(t *testing.T) {
	run := sixProcesses("", 100, 14)
	// --threads: a thread row under the first process.
	thread := run.Processes[0]
	thread.Lineage = &Lineage{Tid: 150, Ppid: 1, Comm: "sh", Depth: 0}
	run.Processes = append(run.Processes, thread)
	run.Trace.Threads = true
	var b bytes.Buffer
	if err := Write(&b, run, OpenMetrics); err != nil {
		t.Fatal(err)
	}
	fams := parseOpenMetrics(t, b.String())
	if n := len(fams["cowtrace_wp_faults"].Metric); n != 7 {
		t.Errorf("%d wp_faults samples, want 7", n)
	}
	if got := value(t, fams, "cowtrace_copies", "command", "cat", "pid", "102", "role", "child", "tid", "all"); got != 6 {
		t.Errorf("cat copies %v", got)
	}
	value(t, fams, "cowtrace_copies", "command", "sh", "pid", "100", "tid", "150")
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
