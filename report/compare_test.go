package report

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestReadRuns(t *testing.T) {
	run := sampleRun()
	one, _ := json.Marshal(run)
	runs, err := ReadRuns(one)
	if err != nil || len(runs) != 1 || runs[0].Kernel != "6.1.0-test" || len(runs[0].Processes) != 3 {
		t.Fatalf("ReadRuns(run) = %v, %v", runs, err)
	}
	m := Matrix{SchemaVersion: SchemaVersion, Kernel: "k", Scenarios: []MatrixEntry{{Name: "touched", Run: run}, {Name: "untouched", Run: run}}}
	mj, _ := json.Marshal(m)
	if runs, err := ReadRuns(mj); err != nil || len(runs) != 2 {
		t.Fatalf("ReadRuns(matrix) = %d runs, %v", len(runs), err)
	}
	for data, want := range map[string]string{
		`{"schema_version": 1, "processes": [`:       "not JSON",
		`not json at all`:                            "not JSON",
		`[1, 2, 3]`:                                  "not JSON",
		`{"kernel": "6.1"}`:                          "no schema_version",
		`{"schema_version": 2, "processes": []}`:     "schema_version 2",
		`{"schema_version": 1}`:                      "no processes",
		`{"schema_version": 1, "processes": "many"}`: "run:",
		`{"schema_version": 1, "scenarios": [{}]}`:   "has no run",
		`{"schema_version": 1, "scenarios": 3}`:      "matrix:",
	} {
		_, err := ReadRuns([]byte(data))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ReadRuns(%s) = %v, want an error with %q", data, err, want)
		}
	}
}

func TestCompareMarksDifferences(t *testing.T) {
	a, b := sampleRun(), sampleRun()
	b.Kernel = "6.12.0-test"
	b.Processes[2].Copies = U64(998)
	b.Methods = map[string]string{"copies": "inferred:x"}
	var out bytes.Buffer
	if err := Compare(&out, []Compared{{Label: "old", Runs: []*Run{a}}, {Label: "new", Runs: []*Run{b}}}, Markdown); err != nil {
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
	touched, untouched := sampleRun(), sampleRun()
	untouched.Scenario = "untouched"
	untouched.Processes[2].Copies = U64(0)
	other := sampleRun() // a second file with only the touched scenario
	var out bytes.Buffer
	err := Compare(&out, []Compared{{Label: "a", Runs: []*Run{touched, untouched}}, {Label: "b", Runs: []*Run{other}}}, Table)
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
	run := sampleRun()
	run.Processes[2].Pagemap = &Pagemap{AtFork: FrameSharing{Pages: 25000, Shared: 25000}, AfterWrites: FrameSharing{Pages: 25000, Shared: 24000, Private: 1000}}
	m := &Matrix{SchemaVersion: SchemaVersion, Kernel: run.Kernel, Scenarios: []MatrixEntry{
		{Name: "touched", Outcome: "copies", Held: true, Run: run},
		{Name: "zero-page", Outcome: "no copies", Held: false, Run: run,
			Expectations: []ExpectResult{{Expect: "writer.copies == 0", Detail: "expectation failed: writer.copies == 0 (writer.copies is 1000)"}}},
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
	if runs, err := ReadRuns(out.Bytes()); err != nil || len(runs) != 2 {
		t.Errorf("matrix JSON does not read back: %d runs, %v", len(runs), err)
	}
}

// FuzzReadRuns: compare reads JSON that users hand it; anything that is not
// a run is an error, never a panic.
func FuzzReadRuns(f *testing.F) {
	f.Add([]byte(`{"schema_version":1,"kernel":"6.1","processes":[{"role":"writer","pid":1,"copies":5}]}`))
	f.Add([]byte(`[{"schema_version":1},{"schema_version":2}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = ReadRuns(data)
	})
}
