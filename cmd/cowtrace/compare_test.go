package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cowtrace/cowtrace/internal/testenv"
	"github.com/cowtrace/cowtrace/report"
	"github.com/cowtrace/cowtrace/report/gate"
)

func writeRun(t *testing.T, dir, name, kernel string, writerCopies uint64) string {
	t.Helper()
	r := report.Run{SchemaVersion: report.SchemaVersion, Kernel: kernel, Scenario: "touched", Blocks: 1000,
		Methods:   map[string]string{"copies": "inferred:x"},
		Processes: []report.Process{{Role: "writer", Copies: report.U64(writerCopies)}}}
	b, _ := json.Marshal(r)
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCompareCommand(t *testing.T) {
	dir := t.TempDir()
	a := writeRun(t, dir, "a.json", "6.1.0-56-amd64", 1000)
	b := writeRun(t, dir, "b.json", "6.12.117", 1000)
	c := writeRun(t, dir, "c.json", "6.12.117", 998)

	code, stdout, stderr := runCLI("compare", "--format", "markdown", a, b)
	if code != exitOK || stderr != "" {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "6.1.0-56-amd64") || !strings.Contains(stdout, "6.12.117") || !strings.HasPrefix(stdout, "|") {
		t.Errorf("markdown compare lacks kernel labels:\n%s", stdout)
	}
	for _, line := range strings.Split(stdout, "\n") {
		if strings.Contains(line, "writer copies") && strings.Contains(line, "≠") {
			t.Errorf("equal copies marked as different: %s", line)
		}
	}

	// Same kernel twice: the file names tell the columns apart; --label wins.
	code, stdout, _ = runCLI("compare", b, c)
	if code != exitOK || !strings.Contains(stdout, "6.12.117 (b.json)") || !strings.Contains(stdout, "6.12.117 (c.json)") {
		t.Errorf("same-kernel labels: exit %d\n%s", code, stdout)
	}
	marked := false
	for _, line := range strings.Split(stdout, "\n") {
		marked = marked || (strings.Contains(line, "writer copies") && strings.Contains(line, "≠") && strings.Contains(line, "998"))
	}
	if !marked {
		t.Errorf("differing copies not marked:\n%s", stdout)
	}
	code, stdout, _ = runCLI("compare", "--label", "before", "--label", "after", b, c)
	if code != exitOK || !strings.Contains(stdout, "before") || !strings.Contains(stdout, "after") {
		t.Errorf("--label: exit %d\n%s", code, stdout)
	}

	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"schema_version": 1, "processes": [`), 0o644)
	notRun := filepath.Join(dir, "other.json")
	os.WriteFile(notRun, []byte(`{"name": "something else"}`), 0o644)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"compare", a, bad}, "bad.json: not JSON"},
		{[]string{"compare", notRun, a}, "other.json: not a cowtrace report"},
		{[]string{"compare", a, filepath.Join(dir, "missing.json")}, "missing.json"},
		{[]string{"compare", a}, "at least two"},
		{[]string{"compare", "--label", "x", "--label", "y", "--label", "z", a, b}, "3 labels for 2 files"},
		{[]string{"compare", "--format", "csv", a, b}, "unknown compare format"},
	} {
		checkUsageError(t, tc.args, tc.want)
	}
}

func TestBadMatrixFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"matrix", "--only", "touched,nosuch"}, `unknown scenario "nosuch"`},
		{[]string{"matrix", "--format", "csv"}, "unknown matrix format"},
		{[]string{"matrix", "--format", "openmetrics"}, "unknown matrix format"},
		{[]string{"matrix", "--writers", "0"}, "between 1 and 64"},
		{[]string{"matrix", "--proof", "smaps"}, `unknown proof "smaps"`},
		{[]string{"matrix", "--blocks", "0"}, "blocks must be positive"},
		{[]string{"matrix", "extra"}, "unexpected argument"},
	} {
		checkUsageError(t, tc.args, tc.want)
	}
}

// TestMatrixCommand runs two scenarios as JSON and reads them back with
// compare's reader.
func TestMatrixCommand(t *testing.T) {
	testenv.Require(t, testenv.Root)
	code, stdout, stderr := runCLI("matrix", "--only", "touched,vfork", "--blocks", "100", "--format", "json", "--strict")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var m report.Matrix
	if err := json.Unmarshal([]byte(stdout), &m); err != nil {
		t.Fatal(err)
	}
	testenv.ValidateJSON(t, "matrix", []byte(stdout))
	if len(m.Scenarios) != 2 || m.Scenarios[0].Name != "touched" || m.Scenarios[1].Name != "vfork" {
		t.Fatalf("scenarios: %+v", m.Scenarios)
	}
	for _, e := range m.Scenarios {
		if !e.Held || len(e.Expectations) == 0 {
			t.Errorf("%s: held %v, %d expectations", e.Name, e.Held, len(e.Expectations))
		}
	}
	if w := m.Scenarios[0].Run.Find("writer"); w == nil || w.Pagemap == nil || w.Pagemap.AfterWrites.Private != 100 {
		t.Errorf("touched writer pagemap: %+v", w)
	}
	code, stdout, _ = runCLI("matrix", "--only", "untouched", "--blocks", "20", "--format", "markdown")
	if code != exitOK || !strings.Contains(stdout, "| untouched") || !strings.Contains(stdout, "as stated") {
		t.Errorf("markdown matrix: exit %d\n%s", code, stdout)
	}
}

// writeTraced saves a traced run of two processes, the child copying
// childCopies pages.
func writeTraced(t *testing.T, dir, name string, childCopies uint64) string {
	t.Helper()
	exit := 0
	r := report.Run{SchemaVersion: report.SchemaVersion, Kernel: "6.18.0-test", Scenario: "traced",
		Methods: map[string]string{"copies": "inferred:x", "wp_faults": "tracepoint:x"},
		Trace:   &report.Trace{Command: []string{"prog"}, EndedBy: "exit", ExitCode: &exit},
		Processes: []report.Process{
			{Role: "command", Pid: 10, Lineage: &report.Lineage{Ppid: 1, Comm: "prog"}, Copies: report.U64(20), WPFaults: report.U64(30)},
			{Role: "child", Pid: 11, Lineage: &report.Lineage{Ppid: 10, Comm: "prog", Depth: 1, StartMs: 1},
				Copies: report.U64(childCopies), WPFaults: report.U64(childCopies + 1)},
		}}
	b, _ := json.Marshal(r)
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCompareGateCommand(t *testing.T) {
	dir := t.TempDir()
	base := writeTraced(t, dir, "base.json", 1000)
	same := writeTraced(t, dir, "same.json", 1000)
	more := writeTraced(t, dir, "more.json", 1200)

	code, stdout, stderr := runCLI("compare", "--baseline", base, "--max-increase", "copies=10%,wp_faults=50", same)
	if code != exitOK || stderr != "" || !strings.HasPrefix(stdout, "cowtrace gate: passed, all 6 checks within their bounds") {
		t.Errorf("no regression: exit %d, stderr %q\n%s", code, stderr, stdout)
	}
	code, stdout, stderr = runCLI("compare", "--format", "markdown", "--label", "main", "--label", "pr",
		"--baseline", base, "--max-increase", "copies=10%", "--max-increase", "each.wp_faults=50", more)
	if code != exitFailure || !strings.Contains(stderr, "gate: 3 of 5 checks grew past their --max-increase bound") {
		t.Errorf("regression: exit %d, stderr %q", code, stderr)
	}
	for _, want := range []string{"**cowtrace gate: FAILED**, 3 of 5 checks", "baseline main, current pr", "| prog/prog ", "**✗ +200 (+20.0%) > +10%**"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("markdown lacks %q:\n%s", want, stdout)
		}
	}
	code, stdout, _ = runCLI("compare", "--format", "json", "--baseline", base, "--max-increase", "total.copies=200", more)
	var v gate.Verdict
	if err := json.Unmarshal([]byte(stdout), &v); code != exitOK || err != nil || !v.Passed || len(v.Checks) != 1 {
		t.Errorf("json: exit %d, %v, %+v\n%s", code, err, v, stdout)
	}
	testenv.ValidateJSON(t, "verdict", []byte(stdout))

	// Every mistake in the flags is found before any file is read: these
	// files do not exist.
	missing := filepath.Join(dir, "missing.json")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--baseline", missing, "--max-increase", "copies=ten", missing}, "neither a count nor a percentage"},
		{[]string{"--baseline", missing, "--max-increase", "pages=10", missing}, `no measure "pages"`},
		{[]string{"--baseline", missing, "--max-increase", "copies=1%,copies=2%", missing}, "bounds copies twice"},
		{[]string{"--baseline", missing, missing}, "--baseline needs --max-increase"},
		{[]string{"--max-increase", "copies=1", missing, missing}, "--max-increase needs --baseline"},
		{[]string{"--baseline", missing, "--max-increase", "copies=1", missing, missing}, "one report against it, got 2"},
		{[]string{"--format", "csv", "--baseline", missing, "--max-increase", "copies=1", missing}, "want table, wide, markdown or json"},
		{[]string{"--format", "json", missing, missing}, "want table, wide or markdown"},
	} {
		checkUsageError(t, append([]string{"compare"}, tc.args...), tc.want)
	}
	// Reports that cannot be held against each other are bad input too.
	exp := writeRun(t, dir, "exp.json", "6.1", 1000)
	checkUsageError(t, []string{"compare", "--baseline", exp, "--max-increase", "copies=1", base}, "cannot hold a traced run")
	checkUsageError(t, []string{"compare", "--baseline", base, "--max-increase", "probes.do_wp_page=1", same}, "has no probes.do_wp_page")
}

// TestCompareFlagsAfterFiles: compare takes its flags before, between or
// after the files, as git and GNU tools do; after "--" all are files.
func TestCompareFlagsAfterFiles(t *testing.T) {
	dir := t.TempDir()
	a := writeRun(t, dir, "a.json", "6.1.0-56-amd64", 1000)
	b := writeRun(t, dir, "b.json", "6.12.117", 998)
	code, stdout, stderr := runCLI("compare", a, b, "--format", "markdown")
	if code != exitOK || stderr != "" || !strings.HasPrefix(stdout, "|") {
		t.Errorf("compare A B --format markdown: exit %d, stderr %q\n%s", code, stderr, stdout)
	}
	code, stdout, stderr = runCLI("compare", "--label", "--", a, "--label=after", b, "--format=markdown")
	header, _, _ := strings.Cut(stdout, "\n")
	if code != exitOK || stderr != "" || !strings.Contains(header, " -- ") || !strings.Contains(header, " after ") {
		t.Errorf("compare --label -- A --label=after B: exit %d, stderr %q\n%s", code, stderr, stdout)
	}
	code, _, stderr = runCLI("compare", a, "--", "--format")
	if code != exitUsage || !strings.Contains(stderr, "open --format: no such file") {
		t.Errorf("compare A -- --format: exit %d, stderr %q: want --format read as a file", code, stderr)
	}
	checkUsageError(t, []string{"compare", a, b, "--format", "xml"}, `unknown compare format "xml"`)
}

// TestCompareKinds: an experiment's report beside a traced run's is bad
// input, exit 2, in either order, naming both files.
func TestCompareKinds(t *testing.T) {
	dir := t.TempDir()
	exp := writeRun(t, dir, "exp.json", "6.1", 1000)
	traced := writeTraced(t, dir, "traced.json", 1000)
	checkUsageError(t, []string{"compare", exp, traced}, exp+" is an experiment's report and "+traced+" a traced run's")
	checkUsageError(t, []string{"compare", traced, exp}, traced+" is a traced run's (cowtrace run or attach) report and "+exp+" an experiment's")
}
