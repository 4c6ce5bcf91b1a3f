package render

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/cowtrace/cowtrace/internal/testenv"
	"github.com/cowtrace/cowtrace/report"
)

// omDir holds the OpenMetrics cases: NAME.json, a run as cowtrace wrote it
// in JSON (experiment-kprobe and experiment-arm64 edited from experiment to
// stand for the kernels with kprobes that make vmtest boots), and NAME.prom,
// the exposition it renders to.
const omDir = "testdata/openmetrics"

// omCases are the names of the cases in omDir.
func omCases(t *testing.T) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(omDir, "*.json"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no cases in %s (%v)", omDir, err)
	}
	var names []string
	for _, p := range paths {
		names = append(names, strings.TrimSuffix(filepath.Base(p), ".json"))
	}
	return names
}

// omParsed caches what the OpenMetrics parser read of each case: it checks
// every line against the specification's ABNF, about a second a case.
var omParsed = map[string]map[string]*dto.MetricFamily{}

// omCase is case name rendered and read back by the OpenMetrics parser.
func omCase(t *testing.T, name string) map[string]*dto.MetricFamily {
	t.Helper()
	if fams, ok := omParsed[name]; ok {
		return fams
	}
	fams := parseOpenMetrics(t, name, omRender(t, name))
	omParsed[name] = fams
	return fams
}

// omRender renders the run of case name.
func omRender(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(omDir, name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var run report.Run
	if err := json.Unmarshal(b, &run); err != nil {
		t.Fatalf("%s.json: %v", name, err)
	}
	var out bytes.Buffer
	if err := Write(&out, &run, OpenMetrics); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

// TestOpenMetricsGolden pins the exposition of every case, byte for byte
// (go test ./report -run OpenMetricsGolden -update rewrites them).
func TestOpenMetricsGolden(t *testing.T) {
	for _, name := range omCases(t) {
		got := omRender(t, name)
		golden := filepath.Join(omDir, name+".prom")
		if *update {
			if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatalf("%v (go test -update writes it)", err)
		}
		if got != string(want) {
			t.Errorf("%s: the exposition differs from %s (go test -update rewrites it):\n%s", name, golden, got)
		}
	}
}

// TestOpenMetricsBothFormats reads every case with both of Prometheus'
// parsers: the text format 0.0.4 parser (the one node_exporter's textfile
// collector, the Pushgateway and promtool use) and the OpenMetrics 1.0
// parser (the specification's ABNF). Both must accept the same text and
// find the same families, help, labels and values in it.
func TestOpenMetricsBothFormats(t *testing.T) {
	for _, name := range omCases(t) {
		text := omRender(t, name)
		asText := parseText(t, name, text)
		asOM := omCase(t, name)
		if a, b := omDump(asText), omDump(asOM); a != b {
			t.Errorf("%s: the text parser read\n%s\nthe OpenMetrics parser read\n%s", name, a, b)
		}
		for _, f := range asOM {
			if f.GetType() != dto.MetricType_GAUGE || f.GetHelp() == "" {
				t.Errorf("%s: %s: type %v, help %q: want a gauge with help", name, f.GetName(), f.GetType(), f.GetHelp())
			}
			if u := f.GetUnit(); u != "" && !strings.HasSuffix(f.GetName(), "_"+u) {
				t.Errorf("%s: %s has unit %s but not in its name", name, f.GetName(), u)
			}
		}
	}
}

// TestOpenMetricsStableNames: node_exporter drops the samples of a family
// whose HELP differs from the same family's in another file of its
// directory, so a family's HELP, and the names of its labels, are the same
// on every kernel and in every mode.
func TestOpenMetricsStableNames(t *testing.T) {
	help := map[string]string{}
	labels := map[string]string{}
	for _, name := range omCases(t) {
		for _, f := range omCase(t, name) {
			if h, ok := help[f.GetName()]; ok && h != f.GetHelp() {
				t.Errorf("%s: %s has help %q, another case %q", name, f.GetName(), f.GetHelp(), h)
			}
			help[f.GetName()] = f.GetHelp()
			traced := strings.HasPrefix(name, "run") || strings.HasPrefix(name, "attach")
			for _, m := range f.Metric {
				var ls []string
				for _, l := range m.Label {
					// label is --label's and tid --threads', there when asked for.
					if n := l.GetName(); n != "label" && n != "tid" {
						ls = append(ls, n)
					}
				}
				key := fmt.Sprintf("%s traced=%v", f.GetName(), traced)
				got := strings.Join(ls, ",")
				if l, ok := labels[key]; ok && l != got {
					t.Errorf("%s: %s labelled %s, another case %s", name, f.GetName(), got, l)
				}
				labels[key] = got
			}
		}
	}
}

// TestOpenMetricsValues checks the values against the runs' JSON, and that
// what a run did not measure has no sample.
func TestOpenMetricsValues(t *testing.T) {
	fams := omCase(t, "experiment-kprobe")
	if got := omValue(t, fams, "cowtrace_copies", "role", "writer", "kernel", "6.1.0-56-amd64", "scenario", "touched"); got != 100 {
		t.Errorf("writer copies %v, want 100", got)
	}
	if got := omValue(t, fams, "cowtrace_probe_hits", "role", "writer", "function", "do_wp_page"); got != 100 {
		t.Errorf("writer do_wp_page hits %v, want 100", got)
	}
	if got := omValue(t, fams, "cowtrace_classified_faults", "role", "writer", "where", "in_region", "class", "wp"); got != 100 {
		t.Errorf("writer wp faults in region %v, want 100", got)
	}
	if got := omValue(t, fams, "cowtrace_method_info", "measure", "copies", "method", "kprobe:copy_mc_to_kernel"); got != 1 {
		t.Errorf("copies method %v", got)
	}

	// Count mode on a followed program: no fault classes, no minor
	// faults; a method with double quotes in it comes back whole.
	fams = omCase(t, "run-count")
	for _, absent := range []string{"cowtrace_classified_faults", "cowtrace_kernel_mode_faults", "cowtrace_minor_faults", "cowtrace_probe_hits"} {
		if fams[absent] != nil {
			t.Errorf("run-count: %s written for a measure not taken", absent)
		}
	}
	if got := omValue(t, fams, "cowtrace_trace_exit_code"); got != 7 {
		t.Errorf("exit code %v, want 7", got)
	}
	omValue(t, fams, "cowtrace_method_info", "measure", "wp_faults",
		"method", `counter:exceptions:page_fault_user filter "error_code == 7" + counter:exceptions:page_fault_kernel filter "error_code == 3 && address < 0x100000000000000", read at each task's exit`)

	// Faults known by address only have no class but unclassified, and no
	// kernel-mode count.
	for _, name := range []string{"run-address", "experiment-arm64"} {
		fams = omCase(t, name)
		for _, m := range fams["cowtrace_classified_faults"].Metric {
			for _, l := range m.Label {
				if l.GetName() == "class" && l.GetValue() != "unclassified" {
					t.Errorf("%s: class %s from faults known by address only", name, l.GetValue())
				}
			}
		}
		if fams["cowtrace_kernel_mode_faults"] != nil {
			t.Errorf("%s: kernel-mode faults from faults known by address only", name)
		}
	}
	if got := omValue(t, fams, "cowtrace_classified_faults", "role", "writer", "where", "in_region", "class", "unclassified"); got != 100 {
		t.Errorf("arm64 writer faults in region %v, want 100", got)
	}

	fams = omCase(t, "run-threads")
	if got := omValue(t, fams, "cowtrace_trace_duration_seconds"); got != 0.331143036 {
		t.Errorf("duration %v s, want 0.331143036", got)
	}
	if n := len(fams["cowtrace_page_faults"].Metric); n != 8 {
		t.Errorf("%d page fault samples, want the process and its 7 threads", n)
	}
	omValue(t, fams, "cowtrace_page_faults", "role", "command", "tid", "all")
	omValue(t, fams, "cowtrace_page_faults", "role", "thread", "tid", "4257")
	if fams = omCase(t, "attach"); fams["cowtrace_trace_exit_code"] != nil {
		t.Error("attach: an exit code for a process cowtrace did not start")
	}
}

// TestOpenMetricsLabelValues: a comm or --label holding a backslash, a
// double quote, a newline or bytes that are not UTF-8 keeps the file
// readable and comes back as it was (invalid bytes as U+FFFD).
func TestOpenMetricsLabelValues(t *testing.T) {
	exit := 0
	comm := "a\\b\"c\nd\xff"
	run := &report.Run{Kernel: "6.18.0-test", Label: "x\"\\\n\xfey", Methods: map[string]string{"page_faults": "counter:page-faults"},
		Trace: &report.Trace{DurationMs: 1, ExitCode: &exit},
		Processes: []report.Process{{Role: "command", Pid: 5, Lineage: &report.Lineage{Comm: comm}, PageFaults: report.U64(3)},
			{Role: "child", Pid: 6, Lineage: &report.Lineage{Comm: "sh", Ppid: 5}, PageFaults: report.U64(1 << 60)}}}
	var b bytes.Buffer
	if err := Write(&b, run, OpenMetrics); err != nil {
		t.Fatal(err)
	}
	text := b.String()
	fams := parseOpenMetrics(t, "label values", text)
	if a, b := omDump(parseText(t, "label values", text)), omDump(fams); a != b {
		t.Errorf("the parsers disagree:\n%s\n%s", a, b)
	}
	if got := omValue(t, fams, "cowtrace_page_faults", "command", "a\\b\"c\nd\uFFFD", "label", "x\"\\\n\uFFFDy", "pid", "5"); got != 3 {
		t.Errorf("page faults %v", got)
	}
	if !regexp.MustCompile(`(?m)^cowtrace_trace_duration_seconds\{.*\} 0\.001$`).MatchString(text) {
		t.Errorf("1 ms not written as 0.001 s:\n%s", text)
	}
	// A count above 2^53 is written as the exact integer.
	if !strings.Contains(text, `pid="6",role="child"} 1152921504606846976`+"\n") {
		t.Errorf("2^60 not written exactly:\n%s", text)
	}
}

// TestOpenMetricsPromtool hands every case to promtool check metrics, the
// linter users run; it needs no kernel, only Debian's prometheus package.
func TestOpenMetricsPromtool(t *testing.T) {
	if why := testenv.Program("promtool")(); why != "" {
		t.Skip("needs " + why + " (apt-get install prometheus)")
	}
	for _, name := range omCases(t) {
		cmd := exec.Command("promtool", "check", "metrics")
		cmd.Stdin = strings.NewReader(omRender(t, name))
		if out, err := cmd.CombinedOutput(); err != nil || len(out) > 0 {
			t.Errorf("%s: promtool check metrics: %v\n%s", name, err, out)
		}
	}
}

// parseText reads text as node_exporter's textfile collector does.
func parseText(t *testing.T, name, text string) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("%s: text format parser: %v\n%s", name, err, text)
	}
	return fams
}

// parseOpenMetrics reads text with the OpenMetrics 1.0 parser, and checks
// that it ends with # EOF and that no two samples of a family share their
// labels.
func parseOpenMetrics(t *testing.T, name, text string) map[string]*dto.MetricFamily {
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
			t.Fatalf("%s: OpenMetrics parser: %v\n%s", name, err, text)
		}
		fams[f.GetName()] = f
		seen := map[string]bool{}
		for _, m := range f.Metric {
			key := omLabelKey(m)
			if seen[key] {
				t.Errorf("%s: %s: two samples labelled %s", name, f.GetName(), key)
			}
			seen[key] = true
		}
	}
	if !strings.HasSuffix(text, "\n# EOF\n") {
		t.Errorf("%s: no # EOF at the end:\n%s", name, text)
	}
	return fams
}

func omLabelKey(m *dto.Metric) string {
	var ls []string
	for _, l := range m.Label {
		ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
	}
	sort.Strings(ls)
	return strings.Join(ls, ",")
}

// omDump is what a parser found, in one comparable string (without the
// unit, which only OpenMetrics has).
func omDump(fams map[string]*dto.MetricFamily) string {
	var lines []string
	for _, f := range fams {
		for _, m := range f.Metric {
			lines = append(lines, fmt.Sprintf("%s %v %q {%s} %v", f.GetName(), f.GetType(), f.GetHelp(), omLabelKey(m), m.GetGauge().GetValue()))
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// omValue is the gauge of family name whose labels include every want pair.
func omValue(t *testing.T, fams map[string]*dto.MetricFamily, name string, want ...string) float64 {
	t.Helper()
	f := fams[name]
	if f == nil {
		t.Fatalf("no family %s", name)
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
	t.Fatalf("%s has no sample with %q", name, want)
	return 0
}
