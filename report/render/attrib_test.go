package render

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/cowtrace/cowtrace/report"
)

// attribRun is a traced run split by mapping.
func attribRun() *report.Run {
	run := &report.Run{SchemaVersion: report.SchemaVersion, Kernel: "6.18-test", Scenario: "traced", CopiesBy: report.ByMapping,
		Methods: map[string]string{"copies": "callchain:kmem:mm_page_alloc", "copies_by": "mmap2:mapping"},
		Trace:   &report.Trace{Command: []string{"pool.py"}, EndedBy: "exit"},
		Processes: []report.Process{
			{Role: "command", Pid: 10, Lineage: &report.Lineage{Comm: "python3"}, Copies: report.U64(0)},
			{Role: "child", Pid: 11, Lineage: &report.Lineage{Comm: "python3", Depth: 1}, Copies: report.U64(4000),
				CopiesBy: []report.Share{{Name: "[anon]", Copies: 3700, Pages: 3700, Share: 0.925}, {Name: "[heap]", Copies: 300, Pages: 299, Share: 0.075}}},
		},
	}
	return run
}

func TestAttributionTable(t *testing.T) {
	for _, f := range []Format{Wide, Markdown} {
		var b bytes.Buffer
		if err := Write(&b, attribRun(), f); err != nil {
			t.Fatal(err)
		}
		out := b.String()
		for _, want := range []string{"copies by mapping: pid 11 (python3), 4000 copies, 15.62 MiB", "[anon]", "3700", "92.5%", "299", "copies by mapping: each counted copy"} {
			if !strings.Contains(out, want) {
				t.Errorf("%s lacks %q:\n%s", f, want, out)
			}
		}
		if strings.Contains(out, "pid 10 (python3)") {
			t.Errorf("%s: a table for a process without copies:\n%s", f, out)
		}
	}
}

func TestAttributionJSON(t *testing.T) {
	var b bytes.Buffer
	if err := Write(&b, attribRun(), JSON); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		CopiesBy  string `json:"copies_by"`
		Processes []struct {
			CopiesBy []map[string]any `json:"copies_by"`
		} `json:"processes"`
	}
	if err := json.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.CopiesBy != "mapping" || len(doc.Processes[0].CopiesBy) != 0 || len(doc.Processes[1].CopiesBy) != 2 {
		t.Fatalf("JSON %s", b.String())
	}
	if s := doc.Processes[1].CopiesBy[1]; s["name"] != "[heap]" || s["copies"] != 300.0 || s["pages"] != 299.0 || s["share"] != 0.075 {
		t.Errorf("share %v", s)
	}
	if strings.Contains(b.String(), "Timeseries") {
		t.Error("the plot's series are in the JSON report")
	}
}

func TestTopShares(t *testing.T) {
	var ss []report.Share
	for i := 0; i < 20; i++ {
		ss = append(ss, report.Share{Name: string(rune('a' + i)), Copies: 1, Pages: 1, Share: 0.05})
	}
	top := topShares(ss, attribRows)
	if len(top) != attribRows || top[attribRows-1].Name != "(9 others)" || top[attribRows-1].Copies != 9 {
		t.Errorf("top %+v", top[attribRows-1])
	}
}
