package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/cowtrace/cowtrace/internal/testenv"
	"github.com/cowtrace/cowtrace/internal/workload"
	"github.com/cowtrace/cowtrace/report"
)

// asMainEnv makes the test binary cowtrace itself (main, with its hand-off),
// for tests of what only a whole process shows.
const asMainEnv = "COWTRACE_TEST_AS_MAIN"

// startGateEnv makes such a process wait for EOF on its stdin before it
// starts, so that a test can start many at the same instant.
const startGateEnv = "COWTRACE_TEST_START_GATE"

func TestMain(m *testing.M) {
	// First: a worker inherits the environment below, faults included.
	workload.RunIfWorker()
	if os.Getenv(asMainEnv) == "1" {
		if os.Getenv(startGateEnv) == "1" {
			io.Copy(io.Discard, os.Stdin)
		}
		asMain()
	}
	os.Exit(m.Run())
}

func runCLI(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(args, &out, &errb)
	return code, out.String(), errb.String()
}

// TestBadInput checks that every kind of bad input gets one line on stderr
// and exit code 2, before anything is started.
func TestBadInput(t *testing.T) {
	for _, args := range [][]string{
		{"--blocks", "0"},
		{"--blocks", "-5"},
		{"--blocks", "many"},
		{"--block-size", "0"},
		{"--offset", "102400"},
		{"--format", "xml"},
		{"--kprobe-method", "ebpf"},
		{"--probe", "copy page"},
		{"--probe", ""},
		{"--no-such-flag"},
		// Rows the run will not have: refused before it runs, as run
		// refuses them (as root it would run and then exit 1).
		{"--expect", "wrter.copies == 1000"},
		{"--scenario", "many-writers", "--expect", "writer.copies == 1000"},
		{"--probe", "do_wp_page", "--kprobe-method", "none"},
		{"stray-argument"},
	} {
		code, stdout, stderr := runCLI(args...)
		if code != exitUsage {
			t.Errorf("%v: exit %d, want %d (stderr %q)", args, code, exitUsage, stderr)
		}
		if lines := strings.Count(stderr, "\n"); lines != 1 || !strings.HasPrefix(stderr, "cowtrace: ") {
			t.Errorf("%v: stderr %q, want one line starting with \"cowtrace: \"", args, stderr)
		}
		if strings.Contains(stderr, "goroutine") || stdout != "" {
			t.Errorf("%v: stdout %q stderr %q", args, stdout, stderr)
		}
	}
}

func TestHelp(t *testing.T) {
	code, stdout, _ := runCLI("experiment", "-h")
	if code != exitOK || !strings.Contains(stdout, "--blocks") || !strings.Contains(stdout, "--no-touch") {
		t.Errorf("experiment -h: exit %d, stdout %q", code, stdout)
	}
	// The experiment's flags with -h are the experiment's help too.
	if _, withFlags, _ := runCLI("--blocks", "5", "-h"); withFlags != stdout {
		t.Errorf("--blocks 5 -h is not the experiment's help:\n%s", withFlags)
	}
	code, stdout, _ = runCLI("help")
	if code != exitOK || !strings.Contains(stdout, "Usage:") {
		t.Errorf("help: exit %d, stdout %q", code, stdout)
	}
}

// TestJSONContract runs the experiment through the command line and checks
// the fields that CI users rely on.
func TestJSONContract(t *testing.T) {
	testenv.Require(t, testenv.Root)
	code, stdout, stderr := runCLI("--format", "json", "--blocks", "200")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var raw map[string]any
	if err := json.Unmarshal([]byte(stdout), &raw); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, stdout)
	}
	testenv.ValidateJSON(t, "run", []byte(stdout))
	for _, key := range []string{"schema_version", "kernel", "blocks", "block_size", "touched", "methods",
		"unavailable", "lost_records", "processes", "copy_routine"} {
		if _, ok := raw[key]; !ok {
			t.Errorf("run lacks %q", key)
		}
	}
	var r report.Run
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatal(err)
	}
	if r.Blocks != 200 || !r.Touched || len(r.Processes) != 3 {
		t.Fatalf("run: blocks %d touched %v processes %d", r.Blocks, r.Touched, len(r.Processes))
	}
	procs := raw["processes"].([]any)
	for _, p := range procs {
		m := p.(map[string]any)
		for _, key := range []string{"role", "pid", "page_faults", "minor_faults", "major_faults", "wp_faults", "copies", "window"} {
			if _, ok := m[key]; !ok {
				t.Errorf("process %v lacks %q", m["role"], key)
			}
		}
	}
	for _, key := range []string{"page_faults", "copies"} {
		if r.Methods[key] == "" {
			t.Errorf("no method stated for %s: %v", key, r.Methods)
		}
	}
	if w := r.Find("writer"); w == nil || w.InRegion == nil || w.InRegion.WP != 200 {
		t.Errorf("writer row: %+v", w)
	}
}

// TestTableOutput: the default table fits 80 columns when no terminal says
// otherwise, its methods footnotes; --format wide has every method and
// window in full; COLUMNS widens the default.
func TestTableOutput(t *testing.T) {
	testenv.Require(t, testenv.Root)
	t.Setenv("COLUMNS", "")
	for _, c := range []struct {
		args    []string
		columns string
		want    []string
		width   int // the widest line at most, 0: any
	}{
		{nil, "", []string{"[1] perf software counters", "--format wide"}, 80},
		{[]string{"--format", "wide"}, "", []string{"methods:", "windows:", "[counter]", "┌"}, 0},
		{nil, "300", []string{"methods:", "windows:", "┌"}, 300},
	} {
		t.Setenv("COLUMNS", c.columns)
		code, stdout, stderr := runCLI(append([]string{"--blocks", "20", "--no-touch"}, c.args...)...)
		if code != exitOK {
			t.Fatalf("%v: exit %d: %s", c.args, code, stderr)
		}
		for _, want := range append([]string{"parent", "reader", "writer", "not touched before fork", "lost: 0, throttled: 0"}, c.want...) {
			if !strings.Contains(stdout, want) {
				t.Errorf("%v, COLUMNS=%q: table output lacks %q:\n%s", c.args, c.columns, want, stdout)
			}
		}
		for _, l := range strings.Split(stdout, "\n") {
			if n := utf8.RuneCountInString(l); c.width > 0 && n > c.width {
				t.Errorf("%v, COLUMNS=%q: a line of %d columns:\n%s", c.args, c.columns, n, l)
			}
		}
	}
}

// panicWriter stands for a bug anywhere below run: it panics on every write.
type panicWriter struct{}

func (panicWriter) Write(b []byte) (int, error) {
	var none []byte
	return int(none[len(b)]), nil // a runtime error, as a real bug's would be
}

// TestInternalError: a panic under run is one line naming it and
// exitInternal, not a goroutine dump.
func TestInternalError(t *testing.T) {
	t.Setenv("GOTRACEBACK", "")
	var stderr bytes.Buffer
	code := run([]string{"help"}, panicWriter{}, &stderr)
	want := fmt.Sprintf("cowtrace: internal error: runtime error: index out of range [%d] with length 0 (please report)\n", len(topUsage(defaultHelpWidth)))
	if code != exitInternal || stderr.String() != want {
		t.Errorf("exit %d, stderr %q: want %d and %q", code, stderr.String(), exitInternal, want)
	}
}

// TestVersion: cowtrace version, --version and -version print one line with
// the Go release and the platform.
func TestVersion(t *testing.T) {
	for _, arg := range []string{"version", "--version", "-version"} {
		code, stdout, stderr := runCLI(arg)
		want := runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH + "\n"
		if code != exitOK || stderr != "" || !strings.HasPrefix(stdout, "cowtrace ") || !strings.HasSuffix(stdout, want) ||
			strings.Count(stdout, "\n") != 1 {
			t.Errorf("%s: exit %d, stdout %q, stderr %q: want one line ending in %q", arg, code, stdout, stderr, want)
		}
	}
	if code, _, stderr := runCLI("version", "extra"); code != exitUsage || strings.Count(stderr, "\n") != 1 {
		t.Errorf("version extra: exit %d, stderr %q", code, stderr)
	}
}

// TestExperimentOutputFile: the experiment's -o takes the report off stdout.
func TestExperimentOutputFile(t *testing.T) {
	testenv.Require(t, testenv.Root)
	file := filepath.Join(t.TempDir(), "e.json")
	code, stdout, stderr := runCLI("--blocks", "20", "--format", "json", "--label", "base", "-o", file, "--expect", "writer.copies == blocks")
	if code != exitOK || stdout != "" {
		t.Fatalf("exit %d, stdout %q, stderr %q: want 0 and nothing on stdout", code, stdout, stderr)
	}
	var run report.Run
	if b, err := os.ReadFile(file); err != nil || json.Unmarshal(b, &run) != nil || run.Blocks != 20 || run.Label != "base" {
		t.Errorf("%s: %v\n%s", file, err, b)
	}
}
