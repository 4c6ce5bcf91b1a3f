package main

import (
	"encoding/json"
	"encoding/xml"
	"image/png"
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
// XML, and the <title> of every <path> (the series, named for a browser).
func svgTexts(t *testing.T, r io.Reader) (texts, titles []string) {
	t.Helper()
	dec := xml.NewDecoder(r)
	root := ""
	var in string
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
			if el.Name.Local == "text" || el.Name.Local == "title" {
				in = el.Name.Local
				cur.Reset()
			}
		case xml.CharData:
			if in != "" {
				cur.Write(el)
			}
		case xml.EndElement:
			switch {
			case el.Name.Local != in:
			case in == "text":
				texts = append(texts, cur.String())
			case in == "title":
				titles = append(titles, cur.String())
			}
			if el.Name.Local == in {
				in = ""
			}
		}
	}
	if root != "svg" {
		t.Fatalf("root element %q, want svg", root)
	}
	return texts, titles
}

// plotRun runs cow_tree with 4 children under --plot FILE and returns the
// JSON report.
func plotRun(t *testing.T, file string) report.Run {
	t.Helper()
	prog := testenv.BuildC(t, "cow_tree")
	js := filepath.Join(t.TempDir(), "r.json")
	code, _, stderr := runCLI("run", "--plot", file, "--format", "json", "-o", js, "--kprobe-method", "none", "--", prog, "4")
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
	return run
}

// TestRunPlot: --plot FILE.svg draws a chart with both axes' titles, the
// key of the line styles, and, for every process that copied or faulted,
// one legend entry and one copies and one faults series.
func TestRunPlot(t *testing.T) {
	testenv.Require(t, testenv.Root)
	svg := filepath.Join(t.TempDir(), "p.svg")
	run := plotRun(t, svg)
	f, err := os.Open(svg)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	texts, titles := svgTexts(t, f)
	count := map[string]int{}
	for _, s := range append(texts, titles...) {
		count[s]++
	}
	for _, want := range []string{plot.XTitle, plot.YTitle, plot.KeyCopies, plot.KeyFaults, plot.KeyBoth} {
		if count[want] != 1 {
			t.Errorf("%q appears %d times, want once", want, count[want])
		}
	}
	series := 0
	for _, p := range run.Processes {
		if *p.Copies == 0 && *p.WPFaults == 0 {
			continue
		}
		series++
		name := plot.Label(report.Timeseries{Pid: p.Pid, Comm: p.Comm})
		for _, want := range []string{name, name + ": " + plot.KeyCopies, name + ": " + plot.KeyFaults} {
			if count[want] != 1 {
				t.Errorf("%q appears %d times, want once", want, count[want])
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
	if legend != series || len(titles) != 2*series {
		t.Errorf("%d legend entries and %d series for %d processes: %q %q", legend, len(titles), series, texts, titles)
	}
}

// TestRunPlotPNG: --plot FILE.png writes a PNG.
func TestRunPlotPNG(t *testing.T) {
	testenv.Require(t, testenv.Root)
	file := filepath.Join(t.TempDir(), "p.PNG")
	plotRun(t, file)
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("--plot %s: %v", file, err)
	}
	if r := img.Bounds(); r.Dx() < 1000 || r.Dy() < 500 {
		t.Errorf("the PNG is %v", r)
	}
}

// TestPlotRefused: a --plot file that is neither .svg nor .png is refused
// in one line, exit 2, before the command runs or the file is made.
func TestPlotRefused(t *testing.T) {
	dir := t.TempDir()
	ran := filepath.Join(dir, "ran")
	for _, args := range [][]string{
		{"run", "--plot", filepath.Join(dir, "p.jpg"), "--", "sh", "-c", "touch " + ran},
		{"run", "--plot", filepath.Join(dir, "p"), "--", "sh", "-c", "touch " + ran},
		{"attach", "-p", strconv.Itoa(os.Getpid()), "--plot", filepath.Join(dir, "p.svgz")},
	} {
		code, stdout, stderr := runCLI(args...)
		if code != exitUsage || stdout != "" || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, ".svg or .png") {
			t.Errorf("cowtrace %q: exit %d, stdout %q, stderr %q; want exit %d and one line naming .svg and .png",
				args, code, stdout, stderr, exitUsage)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("after the refusals %s holds %v: something ran or a file was made", dir, entries)
	}
}
