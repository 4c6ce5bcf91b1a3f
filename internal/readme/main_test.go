package main

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// report is the title line of an experiment's report.
var report = regexp.MustCompile(`^cowtrace \[[a-z-]+\]: kernel `)

func TestRegions(t *testing.T) {
	lines := strings.Split("a\n<!-- cowtrace-output: --blocks 10 -->\n```\nold\n```\n<!-- end cowtrace-output -->\nb", "\n")
	rs, err := regions(lines)
	if err != nil || len(rs) != 1 || strings.Join(rs[0].args, " ") != "--blocks 10" || rs[0].begin != 2 || rs[0].end != 5 {
		t.Fatalf("regions %+v, %v", rs, err)
	}
	for _, bad := range []string{"<!-- cowtrace-output: x -->\nno end", "<!-- cowtrace-output: x\n<!-- end cowtrace-output -->"} {
		if _, err := regions(strings.Split(bad, "\n")); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if got := render([]string{"matrix", "--format", "markdown"}, "| a |\n"); len(got) != 1 {
		t.Errorf("markdown output fenced: %q", got)
	}
	if got := render([]string{"--blocks", "10"}, "x\n"); len(got) != 3 || got[0] != "```" {
		t.Errorf("text output not fenced: %q", got)
	}
}

// TestREADMEFiguresAreGenerated: every cowtrace report in README.md sits in
// a generated region (make readme), so none is typed in: a report's title
// line or a table row of one outside a region fails.
func TestREADMEFiguresAreGenerated(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	rs, err := regions(lines)
	if err != nil {
		t.Fatal(err)
	}
	inside := make([]bool, len(lines))
	for _, r := range rs {
		for i := r.begin; i < r.end; i++ {
			inside[i] = true
		}
	}
	for i, l := range lines {
		if inside[i] {
			continue
		}
		if report.MatchString(l) || strings.HasPrefix(l, "**cowtrace matrix: kernel") ||
			strings.HasPrefix(l, "│ writer") || strings.HasPrefix(l, "│ parent") {
			t.Errorf("README.md:%d: a cowtrace report outside a generated region (see internal/readme): %q", i+1, l)
		}
	}
}
