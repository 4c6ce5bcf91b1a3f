package render

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/cowtrace/cowtrace/report"
	"github.com/cowtrace/cowtrace/report/gate"
	"github.com/cowtrace/cowtrace/report/internal/reporttest"
)

func TestCompareMarksDifferences(t *testing.T) {
	a, b := reporttest.Experiment(), reporttest.Experiment()
	b.Kernel = "6.12.0-test"
	b.Processes[2].Copies = report.U64(998)
	b.Methods = map[string]string{"copies": "inferred:x"}
	var out bytes.Buffer
	if err := Compare(&out, []report.Compared{{Label: "old", Runs: []*report.Run{a}}, {Label: "new", Runs: []*report.Run{b}}}, Markdown); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	if !strings.HasPrefix(strings.TrimSpace(s), "|") || !strings.Contains(s, " old ") || !strings.Contains(s, " new ") {
		t.Errorf("not a markdown table with the labels:\n%s", s)
	}
	rowOf := func(name string) string {
		for _, line := range strings.Split(s, "\n") {
			cells := strings.Split(line, "|")
			if len(cells) > 2 && strings.TrimSpace(cells[1]) == name {
				return line
			}
		}
		t.Fatalf("no row %q in\n%s", name, s)
		return ""
	}
	for name, differs := range map[string]bool{
		"kernel": true, "writer copies": true, "copies method": true,
		"reader copies": false, "writer wp faults": false, "scenario": false,
	} {
		if got := strings.Contains(rowOf(name), "≠"); got != differs {
			t.Errorf("row %q marked %v, want %v: %s", name, got, differs, rowOf(name))
		}
	}
	if !strings.Contains(rowOf("writer copies"), "998") || !strings.Contains(rowOf("writer do_wp_page"), "1000") {
		t.Errorf("values missing:\n%s", s)
	}
}

func TestCompareMatchesScenarios(t *testing.T) {
	touched, untouched := reporttest.Experiment(), reporttest.Experiment()
	untouched.Scenario = "untouched"
	untouched.Processes[2].Copies = report.U64(0)
	other := reporttest.Experiment() // a second file with only the touched scenario
	var out bytes.Buffer
	err := Compare(&out, []report.Compared{{Label: "a", Runs: []*report.Run{touched, untouched}}, {Label: "b", Runs: []*report.Run{other}}}, Table)
	if err != nil {
		t.Fatal(err)
	}
	s := out.String()
	for _, want := range []string{"touched: writer copies", "untouched: writer copies", "(none)"} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
}

func TestWriteMatrix(t *testing.T) {
	run := reporttest.Experiment()
	run.Processes[2].Pagemap = &report.Pagemap{AtFork: report.FrameSharing{Pages: 25000, Shared: 25000}, AfterWrites: report.FrameSharing{Pages: 25000, Shared: 24000, Private: 1000}}
	m := &report.Matrix{SchemaVersion: report.SchemaVersion, Kernel: run.Kernel, Scenarios: []report.MatrixEntry{
		{Name: "touched", Outcome: "copies", Held: true, Run: run},
		{Name: "zero-page", Outcome: "no copies", Held: false, Run: run,
			Expectations: []report.ExpectResult{{Expect: "writer.copies == 0", Detail: "expectation failed: writer.copies == 0 (writer.copies is 1000)"}}},
	}}
	var out bytes.Buffer
	if err := WriteMatrix(&out, m, Markdown); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	for _, want := range []string{"| touched ", "| zero-page ", "DIFFERS", "as stated", "writer.copies is 1000", " 25000 |", " 1000 |"} {
		if !strings.Contains(s, want) {
			t.Errorf("matrix lacks %q:\n%s", want, s)
		}
	}
	out.Reset()
	if err := WriteMatrix(&out, m, JSON); err != nil {
		t.Fatal(err)
	}
	if runs, err := report.ReadRuns(out.Bytes()); err != nil || len(runs) != 2 {
		t.Errorf("matrix JSON does not read back: %d runs, %v", len(runs), err)
	}
}

func TestCompareTracedRuns(t *testing.T) {
	a := reporttest.SixProcesses("before", 100, 14)
	b := reporttest.SixProcesses("after", 500, 14)
	// A seventh process in the second run only: a second cat.
	b.Processes = append(b.Processes, b.Processes[5])
	b.Processes[6].Pid = 507
	b.Processes[6].Lineage = &report.Lineage{Ppid: 500, Comm: "cat", Depth: 1, StartMs: 6}
	var out bytes.Buffer
	err := Compare(&out, []report.Compared{{Label: "before", Runs: []*report.Run{a}}, {Label: "after", Runs: []*report.Run{b}}}, Markdown)
	if err != nil {
		t.Fatal(err)
	}
	s := out.String()
	for _, absent := range []string{"blocks", "block size", "region", "(none)"} {
		if strings.Contains(s, absent) {
			t.Errorf("traced comparison shows the experiment's %q:\n%s", absent, s)
		}
	}
	rows := map[string][]string{}
	var order []string
	for _, line := range strings.Split(s, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 3 || strings.HasPrefix(strings.TrimSpace(cells[1]), ":") || strings.TrimSpace(cells[1]) == "process" {
			continue
		}
		name := strings.TrimSpace(cells[1])
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		rows[name] = cells[2 : len(cells)-1]
		order = append(order, name)
	}
	want := "sh sh/sh#1 sh/sh#1/true sh/sh#2 sh/sh#2/true sh/cat#1 sh/cat#2 total"
	if got := strings.Join(order, " "); got != want {
		t.Fatalf("rows %q, want %q:\n%s", got, want, s)
	}
	// Columns: page faults, wp faults, copies; each before, after; differs.
	if got := strings.TrimSpace(strings.Join(rows["sh/sh#2"], " ")); got != "42 42 15 15 14 14" {
		t.Errorf("sh/sh#2: %q", got)
	}
	if got := strings.TrimSpace(strings.Join(rows["sh/cat#2"], " ")); got != "- 18 - 7 - 6 ≠" {
		t.Errorf("sh/cat#2, only in the second run: %q", got)
	}
	if got := strings.TrimSpace(strings.Join(rows["total"], " ")); got != "222 240 80 87 74 80 ≠" {
		t.Errorf("total: %q", got)
	}
	for _, want := range []string{"- before: cowtrace run: kernel 6.18.0-test", "lost records 0", "matched by command and place in the tree"} {
		if !strings.Contains(s, want) {
			t.Errorf("lacks %q:\n%s", want, s)
		}
	}

	err = Compare(&out, []report.Compared{{Label: "a", Runs: []*report.Run{a}}, {Label: "e", Runs: []*report.Run{kprobeRun()}}}, Table)
	if err == nil || !strings.Contains(err.Error(), "cannot compare traced runs") {
		t.Errorf("traced against experiment: %v", err)
	}
}

// FuzzCompareReports: compare and the gate take reports that users hand
// them; whatever ReadRuns accepts must compare and gate without a panic,
// whatever its pids, depths and parents (a cycle included).
func FuzzCompareReports(f *testing.F) {
	f.Add([]byte(`{"schema_version":1,"trace":{},"processes":[{"pid":1,"ppid":2,"comm":"a","depth":1},{"pid":2,"ppid":1,"comm":"a","depth":0},{"pid":2,"tid":3,"ppid":1,"comm":"a","depth":0,"copies":4}]}`))
	f.Add([]byte(`{"schema_version":1,"trace":{},"processes":[{"pid":5,"ppid":5,"comm":"","depth":-1,"copies":18446744073709551615}]}`))
	f.Add([]byte(`{"schema_version":1,"kernel":"6.1","processes":[{"role":"writer","pid":1,"copies":5}]}`))
	bounds, err := gate.ParseBounds([]string{"copies=10%,each.page_faults=1,total.lost_records=0"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		runs, err := report.ReadRuns(data)
		if err != nil {
			return
		}
		cols := []report.Compared{{Label: "a", Runs: runs}, {Label: "b", Runs: runs}}
		_ = Compare(io.Discard, cols, Table)
		if v, err := gate.Hold(cols[0], cols[1], bounds); err == nil {
			_ = WriteVerdict(io.Discard, v, Markdown)
			if !v.Passed {
				t.Errorf("a run regressed against itself: %+v", v.Regressions())
			}
		}
	})
}
