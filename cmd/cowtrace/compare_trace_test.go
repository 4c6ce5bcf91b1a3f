package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cowtrace/cowtrace/internal/testenv"
)

// cowtrace runs this test binary as cowtrace itself (main, its exit codes)
// and returns its stdout and exit code.
func cowtrace(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), asMainEnv+"=1")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		t.Logf("cowtrace %q: exit %d, stderr %s", args, exit.ExitCode(), stderr.String())
		return string(out), exit.ExitCode()
	case err != nil:
		t.Fatalf("cowtrace %q: %v", args, err)
	}
	if stderr.Len() > 0 {
		t.Logf("cowtrace %q: stderr %s", args, stderr.String())
	}
	return string(out), 0
}

// traceToFile saves `cowtrace run --format json -- argv` in dir/name.
func traceToFile(t *testing.T, dir, name string, argv ...string) string {
	t.Helper()
	out, code := cowtrace(t, append([]string{"run", "--format", "json", "--kprobe-method", "none", "--"}, argv...)...)
	if code != 0 {
		t.Fatalf("cowtrace run %q: exit %d\n%s", argv, code, out)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// markdownRows are the first cells and the rest of a markdown table's rows.
func markdownRows(s string) (names []string, cells map[string][]string) {
	cells = map[string][]string{}
	for _, line := range strings.Split(s, "\n") {
		c := strings.Split(line, "|")
		if len(c) < 3 {
			continue
		}
		for i := range c {
			c[i] = strings.TrimSpace(c[i])
		}
		if c[1] == "process" || strings.HasPrefix(c[1], ":-") {
			continue
		}
		names = append(names, c[1])
		cells[c[1]] = c[2 : len(c)-1]
	}
	return names, cells
}

// TestCompareTracedShell traces one shell tree of six processes twice and
// compares the runs: six matched rows and the total, nothing missing.
func TestCompareTracedShell(t *testing.T) {
	testenv.Require(t, testenv.Root, testenv.Program("sh"), testenv.Program("sleep"))
	dir := t.TempDir()
	// Only what busybox gives the vmtest guests; sleep rather than true,
	// which the shell runs itself and never execs.
	script := `sh -c "sleep 0 & wait" & sh -c "sleep 0 & wait" & sleep 0; wait`
	a := traceToFile(t, dir, "a.json", "sh", "-c", script)
	b := traceToFile(t, dir, "b.json", "sh", "-c", script)
	out, code := cowtrace(t, "compare", "--format", "markdown", a, b)
	if code != 0 {
		t.Fatalf("compare: exit %d\n%s", code, out)
	}
	names, cells := markdownRows(out)
	want := "sh sh/sh#1 sh/sh#1/sleep sh/sh#2 sh/sh#2/sleep sh/sleep total"
	if got := strings.Join(names, " "); got != want {
		t.Fatalf("rows %q, want %q:\n%s", got, want, out)
	}
	for name, c := range cells {
		for _, v := range c[:len(c)-1] {
			if v == "-" || v == "" {
				t.Errorf("%s: a value missing: %q\n%s", name, c, out)
			}
		}
	}
	for _, absent := range []string{"blocks", "block size", "region"} {
		if strings.Contains(out, absent) {
			t.Errorf("the experiment's %q in a traced comparison:\n%s", absent, out)
		}
	}
}

// TestGateOnRealRuns holds real runs of testdata/cow_grow against a
// baseline: the same program twice passes, writing 20% more pages after
// fork fails.
func TestGateOnRealRuns(t *testing.T) {
	testenv.Require(t, testenv.Root)
	prog := testenv.BuildC(t, "cow_grow")
	dir := t.TempDir()
	base := traceToFile(t, dir, "base.json", prog, "500")
	same := traceToFile(t, dir, "same.json", prog, "500")
	more := traceToFile(t, dir, "more.json", prog, "600")
	bounds := "total.copies=10%,each.wp_faults=50"

	out, code := cowtrace(t, "compare", "--format", "markdown", "--baseline", base, "--max-increase", bounds, same)
	if code != 0 || !strings.HasPrefix(out, "**cowtrace gate: passed**, all 7 checks within their bounds") {
		t.Errorf("noise: exit %d, want 0:\n%s", code, out)
	}
	out, code = cowtrace(t, "compare", "--format", "markdown", "--baseline", base, "--max-increase", bounds, more)
	if code != 1 || !strings.HasPrefix(out, "**cowtrace gate: FAILED**, 6 of 7 checks grew past their bound") {
		t.Errorf("20%% more writes: exit %d, want 1:\n%s", code, out)
	}
	names, cells := markdownRows(out)
	if len(names) != 7 {
		t.Fatalf("%d rows, want 6 processes and the total:\n%s", len(names), out)
	}
	// Columns: copies baseline, current, change; wp faults the same.
	if c := cells["total"]; !strings.HasPrefix(c[2], "**✗ +") || strings.Contains(c[5], "✗") {
		t.Errorf("total: copies change %q should be marked, wp faults change %q not (each. only)", c[2], c[5])
	}
	for _, name := range names[1:6] {
		if c := cells[name]; strings.Contains(c[2], "✗") || !strings.HasPrefix(c[5], "**✗ +") {
			t.Errorf("%s: copies %q should not be marked (total. only), wp faults %q should", name, c[2], c[5])
		}
	}
}
