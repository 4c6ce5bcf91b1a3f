package render

import (
	"bytes"
	"strings"
	"testing"

	"github.com/cowtrace/cowtrace/report"
)

// TestMatrixNotApplicable: a scenario this kernel cannot run has a row that
// says so and no run; the others render as usual.
func TestMatrixNotApplicable(t *testing.T) {
	m := &report.Matrix{SchemaVersion: report.SchemaVersion, Kernel: "6.1.0-rt", Scenarios: []report.MatrixEntry{
		{Name: "touched", Outcome: "writer copies every block", Held: true, Run: &report.Run{
			Methods:   map[string]string{"copies": "kprobe:copy_mc_to_kernel"},
			Processes: []report.Process{{Role: "writer", Copies: report.U64(1000)}},
		}},
		{Name: "thp", Outcome: "x", Held: true, NotApplicable: "not applicable on this kernel: built without transparent huge pages"},
	}}
	for _, f := range []Format{Table, Markdown, JSON} {
		var b bytes.Buffer
		if err := WriteMatrix(&b, m, f); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if !strings.Contains(b.String(), "built without transparent huge pages") || !strings.Contains(b.String(), "1000") {
			t.Errorf("%s:\n%s", f, b.String())
		}
	}
}
