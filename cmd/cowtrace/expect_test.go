package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cowtrace/cowtrace/internal/testenv"
)

// checkUsageError asserts exit code 2 with one line on stderr and nothing on
// stdout, quickly (nothing may have been started).
func checkUsageError(t *testing.T, args []string, want string) {
	t.Helper()
	start := time.Now()
	code, stdout, stderr := runCLI(args...)
	if code != exitUsage {
		t.Errorf("%v: exit %d, want %d (stderr %q)", args, code, exitUsage, stderr)
	}
	if strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, "cowtrace: ") || !strings.Contains(stderr, want) {
		t.Errorf("%v: stderr %q, want one line with %q", args, stderr, want)
	}
	if stdout != "" {
		t.Errorf("%v: stdout %q", args, stdout)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("%v: took %v: something ran before the mistake was found", args, d)
	}
}

func TestBadScenarioFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--expect", "writer.copies = 1000"}, "want OPERAND OP OPERAND"},
		{[]string{"--expect", "writer.copies == 1000", "--expect", "writer.copiez == 3"}, `no field "copiez"`},
		{[]string{"--expect", "1 < 2"}, "compares two numbers"},
		{[]string{"--expect", ""}, "empty value"},
		{[]string{"--scenario", "nosuch"}, `unknown scenario "nosuch"`},
		{[]string{"--scenario", "touched", "--no-touch"}, "--no-touch and --scenario"},
		{[]string{"--writers", "3"}, "many-writers only"},
		{[]string{"--scenario", "touched", "--writers", "3"}, "many-writers only"},
		{[]string{"--scenario", "many-writers", "--writers", "0"}, "between 1 and 64"},
		{[]string{"--scenario", "many-writers", "--writers", "65"}, "between 1 and 64"},
		{[]string{"--scenario", "vfork", "--proof", "pagemap"}, "vfork suspends the parent"},
		{[]string{"--proof", "smaps"}, `unknown proof "smaps"`},
		{[]string{"--scenario", "thp", "--offset", "200000"}, "outside a block"},
		{[]string{"--expect", "comm(worker).copies == 0"}, "only cowtrace run and attach"},
		{[]string{"--expect", "count(depth=1) == 2"}, "only cowtrace run and attach"},
		{[]string{"-o", "/nonexistent/dir/r.json"}, "-o: open /nonexistent/dir/r.json"},
	} {
		checkUsageError(t, tc.args, tc.want)
	}
}

// TestExpectExitCodes runs the experiment with expectations that hold and
// with two that fail: exit 1, one line per failed expectation with the value
// seen, and the report still on stdout.
func TestExpectExitCodes(t *testing.T) {
	testenv.Require(t, testenv.Root)
	code, stdout, stderr := runCLI("--blocks", "50", "--expect", "writer.in_region.wp == 50",
		"--expect", "reader.copies == 0", "--expect", "writer.copies == blocks")
	if code != exitOK || stderr != "" || !strings.Contains(stdout, "writer") {
		t.Fatalf("expectations that hold: exit %d, stderr %q", code, stderr)
	}
	code, stdout, stderr = runCLI("--blocks", "50", "--expect", "writer.copies == 49",
		"--expect", "reader.copies == 0", "--expect", "reader.in_region.read > 0")
	if code != exitFailure {
		t.Errorf("failing expectations: exit %d, want %d", code, exitFailure)
	}
	lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
	want := []string{
		"cowtrace: expectation failed: writer.copies == 49 (writer.copies is 50)",
		"cowtrace: expectation failed: reader.in_region.read > 0 (reader.in_region.read is 0)",
	}
	if len(lines) != len(want) {
		t.Fatalf("stderr %q, want %d lines", stderr, len(want))
	}
	for i := range want {
		if lines[i] != want[i] {
			t.Errorf("line %d: %q, want %q", i, lines[i], want[i])
		}
	}
	if !strings.Contains(stdout, "writer") {
		t.Errorf("no report on stdout when expectations fail:\n%s", stdout)
	}
}

// TestScenarioFlag runs one scenario with the proof and a label, as JSON.
func TestScenarioFlag(t *testing.T) {
	testenv.Require(t, testenv.Root)
	code, stdout, stderr := runCLI("--scenario", "parent-writes", "--blocks", "40", "--proof", "pagemap", "--label", "ci",
		"--format", "json", "--expect", "parent.in_region.wp == 40", "--expect", "reader.pagemap.after_writes.private == 40")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{`"scenario": "parent-writes"`, `"label": "ci"`, `"pagemap"`, "scenario parent-writes: expected", "(as stated)"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

// TestRunExpectMalformed: a malformed or impossible --expect on run exits 2
// before the command starts; the command would have created a file.
func TestRunExpectMalformed(t *testing.T) {
	mark := filepath.Join(t.TempDir(), "ran")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--expect", "sum.copies <"}, "want OPERAND OP OPERAND"},
		{[]string{"--expect", "writer.copies == 0"}, `no role "writer" in this kind of run (roles: command, child, thread)`},
		{[]string{"--expect", "comm(worker.copies == 0"}, "unbalanced parentheses"},
		{[]string{"--expect", "depth(-1).copies > 0"}, "is not 0, 1, 2"},
		{[]string{"--expect", "count.copies == 1"}, "count takes no field"},
		{[]string{"--expect", "sum(pid=1).copies == 1"}, `no key "pid"`},
		{[]string{"--expect", "comm(sh).copiez == 1"}, `no field "copiez"`},
		{[]string{"--expect", "sum.copies < 10", "--expect", "max.copies"}, "want OPERAND OP OPERAND"},
		{[]string{"-o", filepath.Join(mark, "no", "such", "dir")}, "-o: open"},
	} {
		args := append(append([]string{"run", "--kprobe-method", "none"}, tc.args...), "--", "sh", "-c", "touch "+mark)
		checkUsageError(t, args, tc.want)
		if _, err := os.Stat(mark); err == nil {
			t.Fatalf("%q: the command ran", args)
		}
	}
}
