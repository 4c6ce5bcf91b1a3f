package render

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cowtrace/cowtrace/internal/testenv"
	"github.com/cowtrace/cowtrace/report"
)

// TestSchemaOfSavedRuns: every saved run, of every kernel and mode (arm64's
// faults by address, --threads), written as JSON is valid against
// docs/schema/run.schema.json.
func TestSchemaOfSavedRuns(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("testdata", "openmetrics", "*.json"))
	more, _ := filepath.Glob(filepath.Join("testdata", "runs", "*.json"))
	for _, f := range append(files, more...) {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		runs, err := report.ReadRuns(data)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, r := range runs {
			var b bytes.Buffer
			if err := Write(&b, r, JSON); err != nil {
				t.Fatal(err)
			}
			if err := testenv.CheckJSON("run", b.Bytes()); err != nil {
				t.Errorf("%s: %v", f, err)
			}
		}
	}
}

// TestSchemaRefuses: the schema holds what version 2 promises; each of
// version 1's ways (and a few more) is refused.
func TestSchemaRefuses(t *testing.T) {
	doc := func(name string) map[string]any {
		var b bytes.Buffer
		if err := Write(&b, readRun(t, name), JSON); err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b.Bytes(), &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	row := func(m map[string]any, i int) map[string]any { return m["processes"].([]any)[i].(map[string]any) }
	for _, c := range []struct {
		name, run string
		mutate    func(m map[string]any)
		want      string
	}{
		{"a key left out", "run-count", func(m map[string]any) { delete(m, "label") }, "missing property 'label'"},
		{"a row's key left out", "run-count", func(m map[string]any) { delete(row(m, 0), "probes") }, "missing property 'probes'"},
		{"a traced run's blocks 0", "run-count", func(m map[string]any) { m["blocks"] = 0 }, "/blocks"},
		{"a traced run's touched false", "run-count", func(m map[string]any) { m["touched"] = false }, "/touched"},
		{"no copy routine as \"\"", "run-count", func(m map[string]any) { m["copy_routine"] = "" }, "/copy_routine"},
		{"schema version 1", "run-count", func(m map[string]any) { m["schema_version"] = 1 }, "/schema_version"},
		{"a key not in the contract", "run-count", func(m map[string]any) { m["extra"] = 1 }, "additional properties 'extra'"},
		{"a count as text", "run-count", func(m map[string]any) { row(m, 0)["copies"] = "19" }, "/processes/0/copies"},
		{"a process row with a tid", "run-count", func(m map[string]any) { row(m, 0)["tid"] = 5 }, "/processes/0/tid"},
		{"an experiment without its layout", "experiment", func(m map[string]any) { m["blocks"] = nil }, "/blocks"},
		{"an experiment's row in a tree", "experiment", func(m map[string]any) { row(m, 0)["depth"] = 0 }, "/processes/0/depth"},
		// perf_event_paranoid 2: the page-fault event's address, no class.
		{"a class the method cannot tell", "experiment-address", func(m map[string]any) {
			row(m, 2)["in_region"].(map[string]any)["wp"] = 0
		}, "/processes/2/in_region"},
	} {
		m := doc(c.run)
		b, _ := json.Marshal(m)
		if err := testenv.CheckJSON("run", b); err != nil {
			t.Fatalf("%s as written: %v", c.run, err)
		}
		c.mutate(m)
		b, _ = json.Marshal(m)
		err := testenv.CheckJSON("run", b)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error at %q", c.name, err, c.want)
		}
	}
}
