package main

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// report is the title line of an experiment's report.
var report = regexp.MustCompile(`^cowtrace \[[a-z-]+\]: kernel `)

func TestRegions(t *testing.T) {
	lines := strings.Split("a\n<!-- cowtrace-output: --blocks 10 -->\n```\nold\n```\n<!-- end cowtrace-output -->\nb", "\n")
	rs, err := regions(lines)
	if err != nil || len(rs) != 1 || strings.Join(rs[0].args, " ") != "--blocks 10" || rs[0].target != nil || rs[0].begin != 2 || rs[0].end != 5 {
		t.Fatalf("regions %+v, %v", rs, err)
	}
	for _, bad := range []string{
		"<!-- cowtrace-output: x -->\nno end",
		"<!-- cowtrace-output: x\n<!-- end cowtrace-output -->",
		"<!-- cowtrace-output: run -- sh -c 'true -->\n<!-- end cowtrace-output -->",
		"<!-- cowtrace-output: attach -p {target} -->\n<!-- end cowtrace-output -->",
	} {
		if _, err := regions(strings.Split(bad, "\n")); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	// A marker in a fenced block is an example; the region after it counts.
	lines = strings.Split("```\n<!-- cowtrace-output: x -->\n```\n<!-- cowtrace-output: y -->\n<!-- end cowtrace-output -->", "\n")
	if rs, err := regions(lines); err != nil || len(rs) != 1 || rs[0].args[0] != "y" || rs[0].begin != 4 {
		t.Errorf("fenced example: regions %+v, %v", rs, err)
	}
	if got := render([]string{"matrix", "--format", "markdown"}, "| a |\n"); len(got) != 1 {
		t.Errorf("markdown output fenced: %q", got)
	}
	if got := render([]string{"--blocks", "10"}, "x\n"); len(got) != 3 || got[0] != "```" {
		t.Errorf("text output not fenced: %q", got)
	}
}

func TestSplitWords(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want [][]string
	}{
		{"", [][]string{nil}},
		{" help  --all ", [][]string{{"help", "--all"}}},
		{"run -- sh -c 'sleep 0 & wait'", [][]string{{"run", "--", "sh", "-c", "sleep 0 & wait"}}},
		{`run -- sh -c "echo \"a\" \\ 'b'"`, [][]string{{"run", "--", "sh", "-c", `echo "a" \ 'b'`}}},
		{`a\ b c'd'"e" ''`, [][]string{{"a b", "cde", ""}}},
		{"x -p {target}; target sh -c 'while :; do sleep 1; done'", [][]string{{"x", "-p", "{target}"}, {"target", "sh", "-c", "while :; do sleep 1; done"}}},
	} {
		got, err := splitWords(tc.in)
		if err != nil || !slices.EqualFunc(got, tc.want, slices.Equal) {
			t.Errorf("splitWords(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"'a", `"a`, `a\`, `"a\"`} {
		if got, err := splitWords(bad); err == nil {
			t.Errorf("splitWords(%q) = %q, no error", bad, got)
		}
	}
}

func TestParseMarker(t *testing.T) {
	args, target, err := parseMarker("attach -p {target} --duration 2s; target sh -c 'sleep 9'")
	if err != nil || !slices.Equal(args, []string{"attach", "-p", "{target}", "--duration", "2s"}) || !slices.Equal(target, []string{"sh", "-c", "sleep 9"}) {
		t.Errorf("parseMarker: %q, %q, %v", args, target, err)
	}
	for _, bad := range []string{
		"attach -p {target}",                     // no target
		"run -- true; target sleep 9",            // a target nobody uses
		"attach -p {target}; sleep 9",            // not "target"
		"attach -p {target}; target",             // no command
		"attach -p {target}; target a; target b", // two
	} {
		if _, _, err := parseMarker(bad); err == nil {
			t.Errorf("parseMarker(%q) accepted", bad)
		}
	}
}

// TestRegenerate runs a stand-in for cowtrace that prints its arguments,
// one a line, over a file with a plain, a quoted and a targeted region, in
// two files at once as make readme passes them.
func TestRegenerate(t *testing.T) {
	dir := t.TempDir()
	fake := filepath.Join(dir, "cowtrace")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\nfor a; do echo \"[$a]\"; done\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	pidFile := filepath.Join(dir, "target.pid")
	a := filepath.Join(dir, "README.md")
	b := filepath.Join(dir, "b.md")
	docA := strings.Join([]string{
		"# t",
		"<!-- cowtrace-output: --blocks 10 -->",
		"stale",
		"<!-- end cowtrace-output -->",
		"between",
		"<!-- cowtrace-output: run -- sh -c 'sleep 0 & wait' -->",
		"<!-- end cowtrace-output -->",
		"",
	}, "\n")
	docB := strings.Join([]string{
		"<!-- cowtrace-output: attach -p {target}; target sh -c 'echo $$ >" + pidFile + "; exec sleep 60' -->",
		"<!-- end cowtrace-output -->",
		"end",
	}, "\n")
	for p, s := range map[string]string{a: docA, b: docB} {
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{a, b} {
		if err := regenerate(p, fake); err != nil {
			t.Fatal(err)
		}
	}
	got, _ := os.ReadFile(a)
	wantA := strings.Join([]string{
		"# t",
		"<!-- cowtrace-output: --blocks 10 -->",
		"```", "[--blocks]", "[10]", "```",
		"<!-- end cowtrace-output -->",
		"between",
		"<!-- cowtrace-output: run -- sh -c 'sleep 0 & wait' -->",
		"```", "[run]", "[--]", "[sh]", "[-c]", "[sleep 0 & wait]", "```",
		"<!-- end cowtrace-output -->",
		"",
	}, "\n")
	if string(got) != wantA {
		t.Errorf("%s:\n%s\nwant:\n%s", a, got, wantA)
	}
	got, _ = os.ReadFile(b)
	pidText, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatalf("the target did not start: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(pidText)))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(got), "[attach]\n[-p]\n["+strconv.Itoa(pid)+"]\n") {
		t.Errorf("%s: {target} is not the target's pid %d:\n%s", b, pid, got)
	}
	// Killed and waited for: no such process any more.
	if err := syscall.Kill(pid, 0); err == nil {
		t.Errorf("the target %d is still running", pid)
	}
}

// TestDocsFiguresAreGenerated: every cowtrace report in README.md and
// docs/*.md sits in a generated region (make readme), so none is typed in:
// a report's title line or a table row of one outside a region fails.
func TestDocsFiguresAreGenerated(t *testing.T) {
	docs, err := filepath.Glob("../../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range append([]string{"../../README.md"}, docs...) {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(string(b), "\n")
		rs, err := regions(lines)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		inside := make([]bool, len(lines))
		for _, r := range rs {
			for i := r.begin; i < r.end; i++ {
				inside[i] = true
			}
		}
		name := strings.TrimPrefix(path, "../../")
		for i, l := range lines {
			if inside[i] {
				continue
			}
			if report.MatchString(l) || strings.HasPrefix(l, "**cowtrace matrix: kernel") ||
				strings.HasPrefix(l, "│ writer") || strings.HasPrefix(l, "│ parent") {
				t.Errorf("%s:%d: a cowtrace report outside a generated region (see internal/readme): %q", name, i+1, l)
			}
		}
	}
}
