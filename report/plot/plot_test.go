package plot

import (
	"bytes"
	"encoding/xml"
	"errors"
	"flag"
	"image/png"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cowtrace/cowtrace/report"
)

var update = flag.Bool("update", false, "rewrite testdata/*.svg from the code")

func tracedRun(command string, series ...report.Timeseries) *report.Run {
	code := 0
	return &report.Run{Kernel: "6.18-test", Trace: &report.Trace{Command: strings.Fields(command), ExitCode: &code,
		DurationMs: 700, EndedBy: "exit"}, Timeseries: series}
}

// pool is a parent and n workers forked 20 ms apart, each copying in ten
// bursts: the even ones took exactly one fault per copy (their two lines
// coincide), the odd ones some faults more.
func pool(n int) []report.Timeseries {
	out := []report.Timeseries{{Pid: 4100, Comm: "python3",
		Copies: []report.Point{{Ms: 0}, {Ms: 5, N: 12}, {Ms: 480, N: 19}, {Ms: 700, N: 19}},
		Faults: []report.Point{{Ms: 0}, {Ms: 5, N: 14}, {Ms: 480, N: 23}, {Ms: 700, N: 23}}}}
	for i := 1; i <= n; i++ {
		from := float64(i * 20)
		ts := report.Timeseries{Pid: 4100 + i, Comm: "worker", Copies: []report.Point{{Ms: from}}, Faults: []report.Point{{Ms: from}}}
		for k := uint64(1); k <= 10; k++ {
			ms := from + float64(k)*30
			c := k * uint64(40+10*i)
			ts.Copies = append(ts.Copies, report.Point{Ms: ms, N: c})
			ts.Faults = append(ts.Faults, report.Point{Ms: ms, N: c + k*uint64(i%2)*3})
		}
		out = append(out, ts)
	}
	return out
}

// goldens are fixed runs whose SVG is pinned in testdata: a change to the
// picture shows in review as a change to these files (go test -update
// rewrites them; look at them before committing).
var goldens = []struct {
	name string
	run  *report.Run
}{
	{"two", tracedRun("./cow_tree 1", pool(1)...)},
	{"twelve", tracedRun("python3 -c import multiprocessing as mp; mp.Pool(11).map(work, range(100000)) "+
		"# and a command line long enough that its title takes more than one line "+
		"/a/path/without/any/space/in/it/that/is/longer/than/the/whole/width/of/the/figure/on/its/own/"+
		"and/goes/on/and/on/until/it/has/to/be/broken/inside/the/word/itself/to/fit/at/all", pool(11)...)},
	{"instant", tracedRun("true", report.Timeseries{Pid: 7, Comm: "true",
		Copies: []report.Point{{Ms: 0, N: 1}}, Faults: []report.Point{{Ms: 0, N: 1}}})},
}

func TestGolden(t *testing.T) {
	for _, g := range goldens {
		t.Run(g.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := Write(&b, g.run, SVG); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", g.name+".svg")
			if *update {
				if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (go test -update writes it)", err)
			}
			if !bytes.Equal(b.Bytes(), want) {
				got, exp := strings.Split(b.String(), "\n"), strings.Split(string(want), "\n")
				for i := range max(len(got), len(exp)) {
					if i >= len(got) || i >= len(exp) || got[i] != exp[i] {
						t.Fatalf("%s differs from line %d:\ngot  %.200q\nwant %.200q\n(go test -update rewrites it)",
							path, i+1, at(got, i), at(exp, i))
					}
				}
			}
		})
	}
}

func at(lines []string, i int) string {
	if i < len(lines) {
		return lines[i]
	}
	return "(end)"
}

// svgTexts is every <text> of an SVG document, which must parse as XML.
func svgTexts(t *testing.T, r io.Reader) []string {
	t.Helper()
	dec := xml.NewDecoder(r)
	var texts []string
	in := false
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return texts
		}
		if err != nil {
			t.Fatalf("not XML: %v", err)
		}
		switch el := tok.(type) {
		case xml.StartElement:
			if el.Name.Local == "text" {
				in = true
				texts = append(texts, "")
			}
		case xml.EndElement:
			in = false
		case xml.CharData:
			if in {
				texts[len(texts)-1] += string(el)
			}
		}
	}
}

// TestSVGIsXML: names from the traced program (a comm may hold '<', '&',
// control bytes, bytes that are not UTF-8) reach the SVG escaped or
// replaced, and the document parses.
func TestSVGIsXML(t *testing.T) {
	run := tracedRun("prog <&>",
		report.Timeseries{Pid: 10, Comm: "a<b&c", Copies: []report.Point{{Ms: 0}, {Ms: 5, N: 3}}, Faults: []report.Point{{Ms: 0}, {Ms: 5, N: 4}}},
		report.Timeseries{Pid: 11, Comm: "x\x01\xffy", Copies: []report.Point{{Ms: 2}}, Faults: []report.Point{{Ms: 2}, {Ms: 3, N: 1}}},
	)
	var b bytes.Buffer
	if err := Write(&b, run, SVG); err != nil {
		t.Fatal(err)
	}
	all := strings.Join(svgTexts(t, &b), "|")
	for _, want := range []string{"pid 10 a<b&c", "pid 11 x\uFFFD\uFFFDy", XTitle, YTitle, KeyCopies, KeyFaults, KeyBoth, `"prog <&>"`} {
		if !strings.Contains(all, want) {
			t.Errorf("texts lack %q: %s", want, all)
		}
	}
}

func TestNothing(t *testing.T) {
	for _, f := range []Format{SVG, PNG} {
		if err := Write(io.Discard, tracedRun("prog"), f); !errors.Is(err, ErrNothing) {
			t.Errorf("format %d of no series: %v, want ErrNothing", f, err)
		}
	}
}

func TestFormatOf(t *testing.T) {
	for path, want := range map[string]Format{"p.svg": SVG, "dir.png/P.SVG": SVG, "/tmp/x.png": PNG, "x.Png": PNG} {
		if got, err := FormatOf(path); err != nil || got != want {
			t.Errorf("FormatOf(%q) = %v, %v; want %v", path, got, err, want)
		}
	}
	for _, path := range []string{"p.jpg", "p", "p.svg.gz", "svg", "p.pdf"} {
		if _, err := FormatOf(path); err == nil || !strings.Contains(err.Error(), ".svg or .png") {
			t.Errorf("FormatOf(%q): %v, want a refusal naming .svg and .png", path, err)
		}
	}
}

// TestPNG: the PNG decodes, is the figure at twice its pixels, and shows
// every process's colour, the text and the grid: a picture, not a blank.
func TestPNG(t *testing.T) {
	run := tracedRun("python3 pool.py", pool(11)...)
	var b bytes.Buffer
	if err := Write(&b, run, PNG); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(&b)
	if err != nil {
		t.Fatalf("not a PNG: %v", err)
	}
	fig, err := layout(run)
	if err != nil {
		t.Fatal(err)
	}
	if r := img.Bounds(); r.Dx() != int(fig.w*pngScale) || r.Dy() != int(fig.h*pngScale) {
		t.Errorf("PNG is %v, want %gx%g", r, fig.w*pngScale, fig.h*pngScale)
	}
	seen := map[rgb]int{}
	for y := img.Bounds().Min.Y; y < img.Bounds().Max.Y; y++ {
		for x := img.Bounds().Min.X; x < img.Bounds().Max.X; x++ {
			r, g, b, _ := img.At(x, y).RGBA()
			seen[rgb{uint8(r >> 8), uint8(g >> 8), uint8(b >> 8)}]++
		}
	}
	for i := range run.Timeseries {
		if c, _ := style(i); seen[c] < 100 {
			t.Errorf("process %d's colour %v: %d pixels", i, c, seen[c])
		}
	}
	for _, c := range []rgb{ink, gridC, axisC} {
		if seen[c] < 100 {
			t.Errorf("colour %v: %d pixels", c, seen[c])
		}
	}
}
