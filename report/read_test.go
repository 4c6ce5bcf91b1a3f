package report_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/cowtrace/cowtrace/report"
	"github.com/cowtrace/cowtrace/report/internal/reporttest"
)

func TestReadRuns(t *testing.T) {
	run := reporttest.Experiment()
	one, _ := json.Marshal(run)
	runs, err := report.ReadRuns(one)
	if err != nil || len(runs) != 1 || runs[0].Kernel != "6.1.0-test" || len(runs[0].Processes) != 3 {
		t.Fatalf("ReadRuns(run) = %v, %v", runs, err)
	}
	m := report.Matrix{SchemaVersion: report.SchemaVersion, Kernel: "k", Scenarios: []report.MatrixEntry{{Name: "touched", Run: run}, {Name: "untouched", Run: run}}}
	mj, _ := json.Marshal(m)
	if runs, err := report.ReadRuns(mj); err != nil || len(runs) != 2 {
		t.Fatalf("ReadRuns(matrix) = %d runs, %v", len(runs), err)
	}
	for data, want := range map[string]string{
		`{"schema_version": 1, "processes": [`:       "not JSON",
		`not json at all`:                            "not JSON",
		`[1, 2, 3]`:                                  "not JSON",
		`{"kernel": "6.1"}`:                          "no schema_version",
		`{"schema_version": 3, "processes": []}`:     "schema_version 3",
		`{"schema_version": 0, "processes": []}`:     "schema_version 0",
		`{"schema_version": 1}`:                      "no processes",
		`{"schema_version": 1, "processes": "many"}`: "run:",
		`{"schema_version": 1, "scenarios": [{}]}`:   "has no run",
		`{"schema_version": 1, "scenarios": 3}`:      "matrix:",
	} {
		_, err := report.ReadRuns([]byte(data))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ReadRuns(%s) = %v, want an error with %q", data, err, want)
		}
	}
}

// FuzzReadRuns: compare reads JSON that users hand it; anything that is not
// a run is an error, never a panic.
func FuzzReadRuns(f *testing.F) {
	f.Add([]byte(`{"schema_version":1,"kernel":"6.1","processes":[{"role":"writer","pid":1,"copies":5}]}`))
	f.Add([]byte(`[{"schema_version":1},{"schema_version":2}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = report.ReadRuns(data)
	})
}
