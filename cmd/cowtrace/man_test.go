package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cowtrace/cowtrace/internal/testenv"
)

// manPage writes cowtrace man to a file, with a stamped commit time so
// that the page's date is the commit's.
func manPage(t *testing.T) (path, page string) {
	t.Helper()
	was := commitTime
	commitTime = "2026-12-06T23:01:24Z"
	defer func() { commitTime = was }()
	code, page, stderr := runCLI("man")
	if code != exitOK || stderr != "" {
		t.Fatalf("man: exit %d, stderr %q", code, stderr)
	}
	path = filepath.Join(t.TempDir(), "cowtrace.1")
	if err := os.WriteFile(path, []byte(page), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, page
}

// TestManPage: the page has a section per command with every visible flag,
// the exit status, and the commit's date; no hidden flag.
func TestManPage(t *testing.T) {
	_, page := manPage(t)
	if !strings.HasPrefix(page, ".TH COWTRACE 1 2026-12-06 ") {
		t.Errorf("title line: %q", strings.SplitN(page, "\n", 2)[0])
	}
	for _, c := range commands() {
		if !strings.Contains(page, ".SS "+roffQuote("cowtrace "+c.synopses[0].line)) {
			t.Errorf("no section for %s", c.name)
		}
		for _, f := range c.flags() {
			if !strings.Contains(page, ".TP\n\\fB"+roffLine(flagName(f.name))+"\\fR") {
				t.Errorf("%s: no %s", c.name, flagName(f.name))
			}
		}
	}
	for _, want := range []string{".SH \"EXIT STATUS\"", "130 interrupted"} {
		if !strings.Contains(page, want) {
			t.Errorf("no %q", want)
		}
	}
	if strings.Contains(page, "pause-") {
		t.Error("the page shows a testing aid")
	}
	checkUsageError(t, []string{"man", "extra"}, `man: unexpected argument "extra"`)
}

// TestManPageLint: mandoc and groff read the page without a warning.
func TestManPageLint(t *testing.T) {
	path, _ := manPage(t)
	t.Run("mandoc", func(t *testing.T) {
		testenv.Require(t, testenv.Program("mandoc"))
		if out, err := exec.Command("mandoc", "-Tlint", "-W", "warning", path).CombinedOutput(); err != nil || len(out) > 0 {
			t.Errorf("mandoc -Tlint: %v\n%s", err, out)
		}
	})
	t.Run("groff", func(t *testing.T) {
		testenv.Require(t, testenv.Program("groff"))
		if out, err := exec.Command("groff", "-man", "-ww", "-z", path).CombinedOutput(); err != nil || len(out) > 0 {
			t.Errorf("groff -ww: %v\n%s", err, out)
		}
	})
}

// TestRoffLine: the dashes of options and the "--" that ends them are
// minus signs; hyphens in words stay hyphens; a leading dot is no request.
func TestRoffLine(t *testing.T) {
	for in, want := range map[string]string{
		"run [flags] [--] CMD [ARGS...]":   `run [flags] [\-\-] CMD [ARGS...]`,
		"with -o FILE or --format=json":    `with \-o FILE or \-\-format=json`,
		"copy-on-write, write-protect":     "copy-on-write, write-protect",
		".svg or .png":                     `\&.svg or .png`,
		`a \ backslash`:                    `a \e backslash`,
		"cowtrace run -- CMD":              `cowtrace run \-\- CMD`,
		"(--kprobe-method none)":           `(\-\-kprobe-method none)`,
		"'sum.copies < 1000' (repeatable)": `\&'sum.copies < 1000' (repeatable)`,
	} {
		if got := roffLine(in); got != want {
			t.Errorf("roffLine(%q) = %q, want %q", in, got, want)
		}
	}
}
