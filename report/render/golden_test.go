package render

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cowtrace/cowtrace/internal/testenv"
	"github.com/cowtrace/cowtrace/report"
	"github.com/cowtrace/cowtrace/report/gate"
	"github.com/mattn/go-runewidth"
)

// The golden files pin every byte of what users see, from runs saved in
// testdata/runs (real runs of this kernel and two others, and a kprobe run),
// with no kernel involved. After an intended change of the output:
//
//	go test ./report/... -update
//
// and read the diff of testdata/golden before committing it.
var update = flag.Bool("update", false, "rewrite the golden files from the current output")

// checkGolden compares got with testdata/golden/name, or with -update
// rewrites the file.
func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	testenv.Golden(t, filepath.Join("testdata", "golden", name), got, *update)
}

// readRuns reads testdata/runs/NAME.json.
func readRuns(t *testing.T, name string) []*report.Run {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "runs", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	runs, err := report.ReadRuns(data)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return runs
}

func readRun(t *testing.T, name string) *report.Run {
	t.Helper()
	runs := readRuns(t, name)
	if len(runs) != 1 {
		t.Fatalf("%s: %d runs, want one", name, len(runs))
	}
	return runs[0]
}

// formatExt names each format's golden file.
// Table is the layout at DefaultWidth (80) columns, Wide the wide one.
var formatExt = map[Format]string{Table: "txt", Wide: "wide.txt", Markdown: "md", CSV: "csv", JSON: "json"}

// singleRuns are the saved single runs: the experiment in its variants and
// traced programs (run, attach).
var singleRuns = []string{
	"experiment", "experiment-kprobe", "experiment-address", "experiment-count",
	"run-by", "run-count", "run-function", "run-address", "run-exit3", "attach",
}

func TestGoldenRun(t *testing.T) {
	for _, name := range singleRuns {
		for _, f := range []Format{Table, Wide, Markdown, CSV, JSON} {
			var b bytes.Buffer
			if err := Write(&b, readRun(t, name), f); err != nil {
				t.Fatalf("%s %s: %v", name, f, err)
			}
			if f == JSON {
				testenv.ValidateJSON(t, "run", b.Bytes())
			}
			if f == Table {
				fits(t, name, b.String())
			}
			checkGolden(t, name+"."+formatExt[f], b.Bytes())
		}
	}
}

func readMatrix(t *testing.T) *report.Matrix {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "runs", "matrix.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m report.Matrix
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	return &m
}

func TestGoldenMatrix(t *testing.T) {
	m := readMatrix(t)
	// A scenario this kernel could not run, as a kernel without THP has it.
	m.Scenarios = append(m.Scenarios, report.MatrixEntry{Name: "thp-absent", Does: "what thp does", Outcome: "x", Why: "y", Held: true,
		NotApplicable: "not applicable on this kernel: built without transparent huge pages"})
	for _, f := range []Format{Table, Wide, Markdown, JSON} {
		var b bytes.Buffer
		if err := WriteMatrix(&b, m, f); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if f == JSON {
			testenv.ValidateJSON(t, "matrix", b.Bytes())
		}
		if f == Table {
			fits(t, "matrix", b.String())
		}
		checkGolden(t, "matrix."+formatExt[f], b.Bytes())
	}
}

func TestGoldenCompare(t *testing.T) {
	for _, c := range []struct {
		name string
		cols []report.Compared
	}{
		// Single experiments: one column each, matched by position.
		{"compare-experiments", []report.Compared{
			{Label: "tracepoints", Runs: readRuns(t, "experiment")},
			{Label: "kprobes", Runs: readRuns(t, "experiment-kprobe")},
			{Label: "address", Runs: readRuns(t, "experiment-address")},
		}},
		// A matrix next to one run: matched by scenario, (none) elsewhere.
		{"compare-matrix", []report.Compared{
			{Label: "matrix", Runs: readRuns(t, "matrix")},
			{Label: "one run", Runs: readRuns(t, "experiment")},
		}},
		// Traced runs: a row per process matched across the trees.
		{"compare-traces", []report.Compared{
			{Label: "count", Runs: readRuns(t, "run-count")},
			{Label: "classify", Runs: readRuns(t, "run-by")},
			{Label: "address", Runs: readRuns(t, "run-address")},
		}},
	} {
		for _, f := range []Format{Table, Wide, Markdown} {
			var b bytes.Buffer
			if err := Compare(&b, c.cols, f); err != nil {
				t.Fatalf("%s %s: %v", c.name, f, err)
			}
			if f == Table {
				fits(t, c.name, b.String())
			}
			checkGolden(t, c.name+"."+formatExt[f], b.Bytes())
		}
	}
}

func TestGoldenVerdict(t *testing.T) {
	for _, c := range []struct {
		name, base, cur, bounds string
	}{
		{"verdict-failed", "run-count", "run-by", "total.copies=10%,each.copies=0,wp_faults=20%,page_faults=5"},
		{"verdict-passed", "run-by", "run-count", "copies=10%,total.wp_faults=1000"},
		{"verdict-experiment", "experiment", "experiment-address", "copies=10,each.page_faults=50%"},
	} {
		bounds, err := gate.ParseBounds([]string{c.bounds})
		if err != nil {
			t.Fatal(err)
		}
		v, err := gate.Hold(report.Compared{Label: "base", Runs: readRuns(t, c.base)}, report.Compared{Label: "new", Runs: readRuns(t, c.cur)}, bounds)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		for _, f := range []Format{Table, Wide, Markdown, JSON} {
			var b bytes.Buffer
			if err := WriteVerdict(&b, v, f); err != nil {
				t.Fatalf("%s %s: %v", c.name, f, err)
			}
			if f == JSON {
				testenv.ValidateJSON(t, "verdict", b.Bytes())
			}
			if f == Table {
				fits(t, c.name, b.String())
			}
			checkGolden(t, c.name+"."+formatExt[f], b.Bytes())
		}
	}
}

// fits fails t where a line of a table for DefaultWidth is wider, but for
// a word longer than a line (a path, a filter), which wrapping keeps whole.
func fits(t *testing.T, name, out string) {
	t.Helper()
	for _, l := range strings.Split(out, "\n") {
		if n := runewidth.StringWidth(l); n > DefaultWidth && !strings.Contains(strings.TrimSpace(l), " ") {
			continue
		} else if n > DefaultWidth {
			t.Errorf("%s: a line of %d columns at %d:\n%s", name, n, DefaultWidth, l)
		}
	}
}
