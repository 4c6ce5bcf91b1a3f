package render

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/cowtrace/cowtrace/report"
	"github.com/cowtrace/cowtrace/report/gate"
	"github.com/cowtrace/cowtrace/report/internal/reporttest"
)

func holdGate(t *testing.T, base, cur *report.Run, bounds string) *gate.Verdict {
	t.Helper()
	bs, err := gate.ParseBounds([]string{bounds})
	if err != nil {
		t.Fatal(err)
	}
	v, err := gate.Hold(report.Compared{Label: "base", Runs: []*report.Run{base}}, report.Compared{Label: "cur", Runs: []*report.Run{cur}}, bs)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestWriteVerdict(t *testing.T) {
	base := reporttest.SixProcesses("", 100, 14)
	more := reporttest.SixProcesses("", 900, 28)
	v := holdGate(t, base, more, "total.copies=10%,each.wp_faults=50")
	var out bytes.Buffer
	if err := WriteVerdict(&out, v, Markdown); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	lines := strings.Split(s, "\n")
	if !strings.HasPrefix(lines[0], "**cowtrace gate: FAILED**, 1 of 7 checks grew past their bound (--max-increase total.copies=10%,each.wp_faults=50; baseline base, current cur)") {
		t.Errorf("verdict line: %q", lines[0])
	}
	for _, want := range []string{
		"| total ", "**✗ +14 (+18.9%) > +10%**", "| sh/sh#2 ", " +14 (+100.0%) |",
		"- regression: total copies 74 -> 88, +14 (+18.9%), past +10% (total.copies=10%)",
		"- bounds on the total: copies", "- bounds on each process in both runs: wp_faults",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("lacks %q:\n%s", want, s)
		}
	}
	if strings.Count(s, "✗") != 1 {
		t.Errorf("want one regression marked:\n%s", s)
	}

	out.Reset()
	if err := WriteVerdict(&out, v, JSON); err != nil {
		t.Fatal(err)
	}
	var back struct {
		Passed bool
		Checks []gate.Check
		Bounds []gate.Bound
	}
	if err := json.Unmarshal(out.Bytes(), &back); err != nil || back.Passed || len(back.Checks) != 7 || len(back.Bounds) != 2 {
		t.Fatalf("json: %v %+v\n%s", err, back, out.String())
	}
	if c := back.Checks[6]; c.Process != "total" || c.Baseline != 74 || c.Current != 88 || c.Increase != 14 || !c.Regressed || c.Allowed != 7.4 {
		t.Errorf("total check: %+v", c)
	}
	if err := WriteVerdict(&out, v, CSV); err == nil {
		t.Error("csv accepted")
	}
}
