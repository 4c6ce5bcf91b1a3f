package report_test

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/cowtrace/cowtrace/report"
	"github.com/cowtrace/cowtrace/report/internal/reporttest"
)

func decode(t *testing.T, v any) map[string]any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestEveryKeyPresent: an experiment and a traced run have the same keys, in
// the run and in every row; what does not apply is null.
func TestEveryKeyPresent(t *testing.T) {
	exp := decode(t, reporttest.Experiment())
	tr := decode(t, reporttest.SixProcesses("", 100, 1))
	if a, b := slices.Sorted(maps.Keys(exp)), slices.Sorted(maps.Keys(tr)); !slices.Equal(a, b) {
		t.Errorf("run keys differ:\nexperiment %v\ntraced     %v", a, b)
	}
	row := func(doc map[string]any, i int) map[string]any { return doc["processes"].([]any)[i].(map[string]any) }
	if a, b := slices.Sorted(maps.Keys(row(exp, 0))), slices.Sorted(maps.Keys(row(tr, 0))); !slices.Equal(a, b) {
		t.Errorf("row keys differ:\nexperiment %v\ntraced     %v", a, b)
	}
	for _, k := range []string{"blocks", "block_size", "offset", "touched", "region", "label", "copy_routine", "count_method"} {
		if v, ok := tr[k]; !ok || v != nil {
			t.Errorf("traced run: %s = %v (present %v), want null", k, v, ok)
		}
	}
	if exp["blocks"] != float64(1000) || exp["trace"] != nil {
		t.Errorf("experiment: blocks %v, trace %v", exp["blocks"], exp["trace"])
	}
	for _, k := range []string{"ppid", "comm", "depth", "tid", "probes", "pagemap", "copies_by"} {
		if v, ok := row(exp, 0)[k]; !ok || v != nil {
			t.Errorf("experiment's parent: %s = %v (present %v), want null", k, v, ok)
		}
	}
	if v := row(exp, 2)["probes"]; v == nil {
		t.Error("writer's probes are null, want its hits")
	}
	for _, k := range []string{"notes", "unavailable", "incomplete"} {
		if l, ok := tr[k].([]any); !ok || len(l) != 0 {
			t.Errorf("traced run: %s = %#v, want []", k, tr[k])
		}
	}
	if u, ok := row(tr, 0)["unmeasured"].(map[string]any); !ok || len(u) != 0 {
		t.Errorf("unmeasured = %#v, want {}", row(tr, 0)["unmeasured"])
	}
	if c, ok := row(tr, 0)["comms"].([]any); !ok || len(c) != 1 || c[0] != row(tr, 0)["comm"] {
		t.Errorf("comms = %#v, want the one name", row(tr, 0)["comms"])
	}
}

// TestClassesByMethod: a class the run's method cannot tell is null, one it
// can is a number, 0 included.
func TestClassesByMethod(t *testing.T) {
	classes := func(methods map[string]string) map[string]any {
		run := reporttest.Experiment()
		run.Methods = methods
		run.Processes[2].InRegion = &report.FaultClasses{WP: 5, Unclassified: 7}
		return decode(t, run)["processes"].([]any)[2].(map[string]any)["in_region"].(map[string]any)
	}
	for _, c := range []struct {
		methods map[string]string
		null    string // the classes that are null, sorted
	}{
		// Tracepoints with page_fault_kernel, and inferred copies.
		{map[string]string{"in_region": "tracepoint:exceptions:page_fault_user+page_fault_kernel", "inferred_copies": "inferred:x"}, ""},
		// Without page_fault_kernel nor copies.
		{map[string]string{"in_region": "tracepoint:exceptions:page_fault_user"}, "inferred_copies kernel_mode"},
		// Count mode: allocations have no address.
		{map[string]string{"in_region": "counter:exceptions:page_fault_user filtered + counter:exceptions:page_fault_kernel", "inferred_copies": "counter:kmem"},
			"inferred_copies"},
		// Addresses only (perf_event_paranoid 2, arm64), copies by stack.
		{map[string]string{"in_region": "sampled:page-faults with address", "inferred_copies": "callchain:kmem"},
			"exec kernel_mode read wp write_not_present"},
		{map[string]string{"in_region": "sampled:page-faults with address"},
			"exec inferred_copies kernel_mode read wp write_not_present"},
		// No method: nothing measured.
		{map[string]string{}, "exec inferred_copies kernel_mode read unclassified wp write_not_present"},
	} {
		got := classes(c.methods)
		var null []string
		for k, v := range got {
			if v == nil {
				null = append(null, k)
			}
		}
		slices.Sort(null)
		if strings.Join(null, " ") != c.null {
			t.Errorf("%v: null %v, want %q", c.methods, null, c.null)
		}
		if len(got) != len(report.Classes) {
			t.Errorf("%v: %d classes, want %d", c.methods, len(got), len(report.Classes))
		}
		if !strings.Contains(c.null, "wp") && got["wp"] != float64(5) {
			t.Errorf("%v: wp = %v, want 5", c.methods, got["wp"])
		}
	}
}

// TestVersion1ReadsAsVersion2: a report of schema version 1 (keys left out,
// a traced run's blocks 0, no complete) reads back and writes as version 2.
func TestVersion1ReadsAsVersion2(t *testing.T) {
	v1 := `{"schema_version": 1, "kernel": "6.1", "scenario": "traced", "blocks": 0, "block_size": 0, "offset": 0,
		"touched": false, "copy_routine": "", "kprobe_method": "", "methods": {"copies": "inferred:x"},
		"trace": {"command": ["sh"], "duration_ms": 5, "ended_by": "exit", "exit_code": 0, "threads": false},
		"processes": [{"role": "command", "pid": 1, "ppid": 0, "comm": "sh", "depth": 0, "copies": 3,
			"in_region": null, "outside": null, "lost_records": 0}]}`
	runs, err := report.ReadRuns([]byte(v1))
	if err != nil {
		t.Fatal(err)
	}
	doc := decode(t, runs[0])
	if doc["schema_version"] != float64(report.SchemaVersion) || doc["blocks"] != nil || doc["copy_routine"] != nil || doc["complete"] != true {
		t.Errorf("version 1 written back: schema %v, blocks %v, copy_routine %v, complete %v",
			doc["schema_version"], doc["blocks"], doc["copy_routine"], doc["complete"])
	}
	if _, err := report.ReadRuns(mustJSON(t, doc)); err != nil {
		t.Errorf("version 2 written back does not read: %v", err)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
