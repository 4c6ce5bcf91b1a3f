package plot

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/cowtrace/cowtrace/report"
)

func tracedRun(series ...report.Timeseries) *report.Run {
	return &report.Run{Kernel: "6.18-test", Trace: &report.Trace{Command: []string{"prog"}, EndedBy: "exit"},
		Timeseries: series}
}

// TestSVGIsXML: names from the traced program (a comm may hold '<' or '&')
// reach the SVG escaped, and the document parses.
func TestSVGIsXML(t *testing.T) {
	run := tracedRun(
		report.Timeseries{Pid: 10, Comm: "a<b&c", Copies: []report.Point{{Ms: 0}, {Ms: 5, N: 3}}, Faults: []report.Point{{Ms: 0}, {Ms: 5, N: 4}}},
		report.Timeseries{Pid: 11, Comm: "child", Copies: []report.Point{{Ms: 2}}, Faults: []report.Point{{Ms: 2}, {Ms: 3, N: 1}}},
	)
	var b bytes.Buffer
	if err := SVG(&b, run); err != nil {
		t.Fatal(err)
	}
	dec := xml.NewDecoder(&b)
	var texts []string
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("not XML: %v", err)
		}
		if cd, ok := tok.(xml.CharData); ok && strings.TrimSpace(string(cd)) != "" {
			texts = append(texts, string(cd))
		}
	}
	all := strings.Join(texts, "|")
	for _, want := range []string{"pid 10 a<b&c: copies", "pid 11 child: wp faults", XTitle, YTitle} {
		if !strings.Contains(all, want) {
			t.Errorf("texts lack %q: %s", want, all)
		}
	}
}

func TestSVGNothing(t *testing.T) {
	if err := SVG(io.Discard, tracedRun()); !errors.Is(err, ErrNothing) {
		t.Errorf("SVG of no series: %v, want ErrNothing", err)
	}
}
