package main

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestReplaceSection(t *testing.T) {
	doc := "# cowtrace\n\nintro\n<!-- vmtest:begin -->\nold table\nold line\n<!-- vmtest:end -->\n\nrest\n"
	got, err := replaceSection(doc, "new table\n\n")
	if err != nil {
		t.Fatal(err)
	}
	want := "# cowtrace\n\nintro\n<!-- vmtest:begin -->\nnew table\n<!-- vmtest:end -->\n\nrest\n"
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
	again, err := replaceSection(got, "new table")
	if err != nil || again != got {
		t.Errorf("replacing twice changed the document: %q, %v", again, err)
	}

	for name, bad := range map[string]string{
		"no markers":      "# x\n",
		"no end":          "<!-- vmtest:begin -->\nx\n",
		"end before":      "<!-- vmtest:end -->\n<!-- vmtest:begin -->\n",
		"two begins":      "<!-- vmtest:begin -->\n<!-- vmtest:begin -->\n<!-- vmtest:end -->\n",
		"begin last line": "<!-- vmtest:end -->\n<!-- vmtest:begin -->",
	} {
		if _, err := replaceSection(bad, "t"); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestReplaceReadmeSectionFile(t *testing.T) {
	f := filepath.Join(t.TempDir(), "README.md")
	if err := os.WriteFile(f, []byte("a\n<!-- vmtest:begin -->\n<!-- vmtest:end -->\nb\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	body := readmeSection("| t |\n", time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC), "go run ./vmtest -readme README.md", true)
	if err := replaceReadmeSection(f, body); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(f)
	want := "a\n<!-- vmtest:begin -->\nMeasured 2026-11-25 with `go run ./vmtest -readme README.md` (every check passed):\n\n| t |\n<!-- vmtest:end -->\nb\n"
	if string(b) != want {
		t.Errorf("got:\n%s\nwant:\n%s", b, want)
	}
	if st, _ := os.Stat(f); st.Mode().Perm() != 0o600 {
		t.Errorf("mode changed to %v", st.Mode().Perm())
	}
}

func TestCountTests(t *testing.T) {
	out := "=== RUN   TestA\n--- PASS: TestA (0.00s)\n=== RUN   TestB\n    --- SKIP: TestB/sub (0.00s)\n--- FAIL: TestB (0.01s)\n--- SKIP: TestC (0.00s)\nFAIL\n"
	if got, want := countTests(out), (testCounts{Pass: 1, Skip: 2, Fail: 1}); got != want {
		t.Errorf("countTests = %+v, want %+v", got, want)
	}
}

func TestFigureArgs(t *testing.T) {
	got := figureArgs([]string{"-readme", "README.md", "-json", "/tmp/x.json", "--work=/tmp/w", "-keep", "-kernels", "6.1", "-v"})
	if want := []string{"-readme", "README.md", "-kernels", "6.1"}; !slices.Equal(got, want) {
		t.Errorf("figureArgs = %q, want %q", got, want)
	}
}

// TestChecksCell: the table's cell and the summary line count the same
// checks, each in its own words, without the parts that are zero.
func TestChecksCell(t *testing.T) {
	pass, fail, skip := checkResult{}, checkResult{Err: "x"}, checkResult{Skipped: "y"}
	for _, c := range []struct {
		checks        []checkResult
		cell, summary string
	}{
		{[]checkResult{pass, pass}, "2 passed", "2 checks passed"},
		{[]checkResult{pass, fail}, "1 passed, **1 failed**", "1 checks passed, 1 failed"},
		{[]checkResult{skip, pass, fail, fail}, "1 passed, **2 failed**, 1 skipped", "1 checks passed, 2 failed, 1 skipped"},
		{[]checkResult{skip}, "0 passed, 1 skipped", "0 checks passed, 1 skipped"},
	} {
		r := &kernelRun{Checks: c.checks}
		if got := r.checksCell(); got != c.cell {
			t.Errorf("checksCell = %q, want %q", got, c.cell)
		}
		if got := r.countsText("%d checks passed", ", %d failed"); got != c.summary {
			t.Errorf("summary counts = %q, want %q", got, c.summary)
		}
	}
}
