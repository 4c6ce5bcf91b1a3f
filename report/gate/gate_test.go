package gate

import (
	"strings"
	"testing"

	"github.com/cowtrace/cowtrace/report"
	"github.com/cowtrace/cowtrace/report/internal/reporttest"
)

func TestParseBounds(t *testing.T) {
	bs, err := ParseBounds([]string{"copies=10%, each.wp_faults=50", "total.probes.do_wp_page=2.5%"})
	if err != nil {
		t.Fatal(err)
	}
	want := []Bound{
		{Text: "copies=10%", Measure: "copies", Scope: Both, Percent: true, Limit: 10},
		{Text: "each.wp_faults=50", Measure: "wp_faults", Scope: EachOnly, Limit: 50},
		{Text: "total.probes.do_wp_page=2.5%", Measure: "probes.do_wp_page", Scope: TotalOnly, Percent: true, Limit: 2.5},
	}
	if len(bs) != len(want) {
		t.Fatalf("%+v", bs)
	}
	for i := range want {
		if bs[i] != want[i] {
			t.Errorf("bound %d: %+v, want %+v", i, bs[i], want[i])
		}
	}
	for in, msg := range map[string]string{
		"copies":                         "want MEASURE=N",
		"copies=":                        "want MEASURE=N",
		"=5":                             "want MEASURE=N",
		"copies=10%,":                    "want MEASURE=N",
		"pages=10":                       `no measure "pages"`,
		"total.=10":                      `no measure ""`,
		"probes.=10":                     `no measure "probes."`,
		"copies=ten":                     "neither a count nor a percentage",
		"copies=10%%":                    "neither a count nor a percentage",
		"copies=NaN":                     "neither a count nor a percentage",
		"copies=-1":                      "negative",
		"copies=1.5":                     "whole number",
		"copies=10%,copies=50":           "bounds copies twice",
		"copies=10%,total.copies=5":      "bounds copies twice",
		"total.copies=10%,each.copies=5": "",
	} {
		_, err := ParseBounds([]string{in})
		switch {
		case msg == "" && err != nil:
			t.Errorf("%q: %v", in, err)
		case msg != "" && (err == nil || !strings.Contains(err.Error(), msg)):
			t.Errorf("%q: %v, want an error with %q", in, err, msg)
		}
	}
}

func TestGate(t *testing.T) {
	base := reporttest.SixProcesses("", 100, 14) // copies 10 17 11 14 16 6, total 74
	same := reporttest.SixProcesses("", 900, 14)
	if v := gate(t, base, same, "copies=0,wp_faults=0"); !v.Passed || len(v.Checks) != 14 {
		t.Errorf("identical runs: passed %v with %d checks, want 14 checks passed", v.Passed, len(v.Checks))
	}
	// The second sh copies 14 -> 28: +14, the total 74 -> 88: +18.9%.
	more := reporttest.SixProcesses("", 900, 28)
	for bounds, want := range map[string][]string{
		"copies=100%":       nil,
		"copies=14":         nil,
		"copies=13":         {"sh/sh#2", "total"},
		"copies=10%":        {"sh/sh#2", "total"},
		"total.copies=10%":  {"total"},
		"total.copies=20%":  nil,
		"each.copies=50%":   {"sh/sh#2"},
		"each.wp_faults=13": {"sh/sh#2"},
		"page_faults=41":    {"sh/sh#2", "total"},
		"minor_faults=1000": nil, // not measured in these runs: see below
	} {
		if bounds == "minor_faults=1000" {
			bs, _ := ParseBounds([]string{bounds})
			_, err := Hold(report.Compared{Label: "base", Runs: []*report.Run{base}}, report.Compared{Label: "cur", Runs: []*report.Run{more}}, bs)
			if err == nil || !strings.Contains(err.Error(), "base has no minor_faults") {
				t.Errorf("bound on a measure not taken: %v", err)
			}
			continue
		}
		v := gate(t, base, more, bounds)
		var got []string
		for _, c := range v.Regressions() {
			got = append(got, c.Process)
		}
		if strings.Join(got, " ") != strings.Join(want, " ") || v.Passed != (len(want) == 0) {
			t.Errorf("%s: regressions in %v (passed %v), want %v", bounds, got, v.Passed, want)
		}
	}
	// A process of the current run only is shown, in the total, not
	// bounded by itself.
	extra := reporttest.SixProcesses("", 900, 14)
	extra.Processes = append(extra.Processes, extra.Processes[5])
	extra.Processes[6].Pid = 999
	extra.Processes[6].Lineage = &report.Lineage{Ppid: 900, Comm: "cat", Depth: 1, StartMs: 9}
	v := gate(t, base, extra, "copies=6,total.page_faults=0")
	if got := strings.Join(v.OnlyInCurrent, ","); got != "sh/cat#2" || len(v.Regressions()) != 1 || v.Regressions()[0].Measure != "page_faults" {
		t.Errorf("extra process: only in current %q, regressions %+v", got, v.Regressions())
	}
}

func gate(t *testing.T, base, cur *report.Run, bounds string) *Verdict {
	t.Helper()
	bs, err := ParseBounds([]string{bounds})
	if err != nil {
		t.Fatal(err)
	}
	v, err := Hold(report.Compared{Label: "base", Runs: []*report.Run{base}}, report.Compared{Label: "cur", Runs: []*report.Run{cur}}, bs)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
