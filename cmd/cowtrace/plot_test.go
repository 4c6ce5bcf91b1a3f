package main

import (
	"encoding/json"
	"encoding/xml"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cowtrace/cowtrace/internal/testenv"
	"github.com/cowtrace/cowtrace/report"
	"github.com/cowtrace/cowtrace/report/plot"
)

// svgTexts returns every <text> of an SVG document, which must parse as
// XML, and counts its <path> elements.
func svgTexts(t *testing.T, r io.Reader) (texts []string, paths int) {
	t.Helper()
	dec := xml.NewDecoder(r)
	root := ""
	var in bool
	var cur strings.Builder
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("the SVG is not XML: %v", err)
		}
		switch el := tok.(type) {
		case xml.StartElement:
			if root == "" {
				root = el.Name.Local
			}
			switch el.Name.Local {
			case "text":
				in = true
				cur.Reset()
			case "path":
				paths++
			}
		case xml.CharData:
			if in {
				cur.Write(el)
			}
		case xml.EndElement:
			if el.Name.Local == "text" {
				in = false
				texts = append(texts, cur.String())
			}
		}
	}
	if root != "svg" {
		t.Fatalf("root element %q, want svg", root)
	}
	return texts, paths
}

// TestRunPlot: --plot draws a chart with both axes' titles and, for every
// process that copied or faulted, one copies series and one faults series,
// named in the legend.
func TestRunPlot(t *testing.T) {
	testenv.Require(t, testenv.Root)
	prog := testenv.BuildC(t, "cow_tree")
	dir := t.TempDir()
	svg, js := filepath.Join(dir, "p.svg"), filepath.Join(dir, "r.json")
	code, _, stderr := runCLI("run", "--plot", svg, "--format", "json", "-o", js, "--kprobe-method", "none", "--", prog, "4")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	b, err := os.ReadFile(js)
	if err != nil {
		t.Fatal(err)
	}
	var run report.Run
	if err := json.Unmarshal(b, &run); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(svg)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	texts, paths := svgTexts(t, f)
	count := map[string]int{}
	for _, s := range texts {
		count[s]++
	}
	for _, want := range []string{plot.XTitle, plot.YTitle} {
		if count[want] != 1 {
			t.Errorf("axis title %q appears %d times", want, count[want])
		}
	}
	series := 0
	for _, p := range run.Processes {
		if *p.Copies == 0 && *p.WPFaults == 0 {
			continue
		}
		series++
		for _, what := range []string{"copies", "wp faults"} {
			name := "pid " + strconv.Itoa(p.Pid) + " " + p.Comm + ": " + what
			if count[name] != 1 {
				t.Errorf("legend entry %q appears %d times, want once", name, count[name])
			}
		}
	}
	if series != 5 {
		t.Errorf("%d processes with copies or faults, want cow_tree and its 4 children", series)
	}
	legend := 0
	for _, s := range texts {
		if strings.HasPrefix(s, "pid ") {
			legend++
		}
	}
	if legend != 2*series {
		t.Errorf("%d legend entries, want 2 per process (%d processes): %q", legend, series, texts)
	}
	// Each series is a path, and so is each legend entry's sample line.
	if paths < 4*series {
		t.Errorf("%d paths for %d series", paths, 2*series)
	}
}
