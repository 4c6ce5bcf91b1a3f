package render

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/cowtrace/cowtrace/report"
)

// kprobeRun is a run as a kernel with kprobes produces it.
func kprobeRun() *report.Run {
	return &report.Run{
		SchemaVersion: report.SchemaVersion, Kernel: "6.1.0-test-amd64", Scenario: "touched",
		Blocks: 1000, BlockSize: 102400, Offset: 10240, Touched: true,
		CopyRoutine: "copy_mc_to_kernel", CopyRoutineCheck: "copy_mc_to_kernel: 64 hits on 64 known copy-on-write writes",
		KprobeMethod: "pmu",
		Methods: map[string]string{
			"page_faults": "counter:page-faults", "minor_faults": "counter:minor-faults", "major_faults": "counter:major-faults",
			"wp_faults": "tracepoint:exceptions:page_fault_user", "in_region": "tracepoint:exceptions:page_fault_user",
			"copies": "kprobe:copy_mc_to_kernel", "inferred_copies": "inferred:exceptions:page_fault_user+kmem:mm_page_alloc",
		},
		Unavailable: []report.Unavailable{{What: "kprobe:folio_copy", Why: "not probe-able"}},
		Processes: []report.Process{
			{Role: "parent", Pid: 10, Window: "w0", PageFaults: report.U64(20), MinorFaults: report.U64(20), MajorFaults: report.U64(0),
				WPFaults: report.U64(13), Copies: report.U64(12), InferredCopies: report.U64(12), InRegion: &report.FaultClasses{}, Outside: &report.FaultClasses{WP: 13},
				Probes: map[string]uint64{"copy_mc_to_kernel": 12, "do_wp_page": 13}},
			{Role: "writer", Pid: 12, Window: "w1", PageFaults: report.U64(1000), MinorFaults: report.U64(1000), MajorFaults: report.U64(0),
				WPFaults: report.U64(1000), Copies: report.U64(1000), InferredCopies: report.U64(1000), InRegion: &report.FaultClasses{WP: 1000, InferredCopies: 1000},
				Outside: &report.FaultClasses{}, Probes: map[string]uint64{"copy_mc_to_kernel": 1000, "do_wp_page": 1000}},
		},
	}
}

func render(t *testing.T, f Format) string {
	t.Helper()
	var b bytes.Buffer
	if err := Write(&b, kprobeRun(), f); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestTableSaysHowEachColumnWasMeasured(t *testing.T) {
	out := render(t, Wide)
	for _, want := range []string{
		"kernel 6.1.0-test-amd64", "1000 blocks x 102400 bytes (97.7 MiB) written before fork",
		"[kprobe:copy_mc_to_kernel]", "[counter]", "[tracepoint]", "[inferred]", "do_wp_page",
		"unavailable: kprobe:folio_copy: not probe-able",
		"copies: kprobe (pmu) hits on copy_mc_to_kernel", "copy routine check: copy_mc_to_kernel: 64 hits",
		"parent: w0", "writer: w1", "lost: 0, throttled: 0",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	// The copy routine is the copies column, not a second probe column.
	if strings.Count(out, "copy_mc_to_kernel]") != 1 {
		t.Errorf("copy routine shown more than once as a column:\n%s", out)
	}
}

// TestNarrowTableSaysHowEachColumnWasMeasured: at 80 columns each method is
// a footnote key under its header, explained once below the table.
func TestNarrowTableSaysHowEachColumnWasMeasured(t *testing.T) {
	out := render(t, Table)
	for _, want := range []string{
		"kernel 6.1.0-test-amd64", "unavailable: kprobe:folio_copy: not probe-able",
		"[1] perf software counters, per task", "[3] kprobe hits on copy_mc_to_kernel",
		"kprobe hits on do_wp_page", "records: 0, lost: 0, throttled: 0", "--format wide",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	for _, l := range strings.Split(out, "\n") {
		if len([]rune(l)) > DefaultWidth {
			t.Errorf("a line of %d columns:\n%s", len([]rune(l)), l)
		}
	}
	// Each key is explained once.
	if strings.Count(out, "\n[1] ") != 1 || strings.Count(out, "\n[2] ") != 1 || strings.Count(out, "[2]") < 3 {
		t.Errorf("footnotes:\n%s", out)
	}
}

// TestLayoutFitsWidth: Table takes the wide layout where its table fits the
// width, the narrow one where not; Wide takes the wide one at any width.
func TestLayoutFitsWidth(t *testing.T) {
	for _, c := range []struct {
		f     Format
		width int
		wide  bool
	}{{Table, 80, false}, {Table, 0, false}, {Table, 300, true}, {Wide, 80, true}, {Wide, 300, true}} {
		var b bytes.Buffer
		if err := (Layout{Width: c.width}).Write(&b, kprobeRun(), c.f); err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(b.String(), "┌"); got != c.wide {
			t.Errorf("%s at %d columns: boxed %v, want %v:\n%s", c.f, c.width, got, c.wide, b.String())
		}
	}
}

func TestMarkdownIsATable(t *testing.T) {
	out := render(t, Markdown)
	lines := strings.Split(out, "\n")
	var rows int
	for _, l := range lines {
		if strings.HasPrefix(l, "|") {
			rows++
		}
	}
	if rows != 4 { // header, separator, two processes
		t.Errorf("markdown has %d table lines, want 4:\n%s", rows, out)
	}
	if !strings.Contains(out, "copies [kprobe:copy_mc_to_kernel]") {
		t.Errorf("markdown header lacks the method:\n%s", out)
	}
}

func TestCSV(t *testing.T) {
	recs, err := csv.NewReader(strings.NewReader(render(t, CSV))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 3 {
		t.Fatalf("%d records, want header + 2", len(recs))
	}
	col := map[string]int{}
	for i, h := range recs[0] {
		col[h] = i
	}
	writer := recs[2]
	for name, want := range map[string]string{
		"role": "writer", "copies": "1000", "in_region_wp": "1000", "page_faults": "1000",
		// Unmeasured or not this kind of run: empty, not "-".
		"ppid": "", "lifetime_ms": "", "in_region_kernel_mode": "", "in_region_unclassified": "0", "outside_wp": "",
		"probes": "copy_mc_to_kernel=1000;do_wp_page=1000",
	} {
		i, ok := col[name]
		if !ok {
			t.Errorf("no column %q in %v", name, recs[0])
			continue
		}
		if writer[i] != want {
			t.Errorf("writer's %s = %q, want %q", name, writer[i], want)
		}
	}
}

// TestCSVHeaderIsStable: the experiment and traced runs of every kernel and
// mode have the one header, without methods or units in cells.
func TestCSVHeaderIsStable(t *testing.T) {
	want := strings.Join(CSVHeader(), ",")
	for _, name := range singleRuns {
		recs, err := csv.NewReader(bytes.NewReader(writeTo(t, readRun(t, name), CSV))).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(recs[0], ","); got != want {
			t.Errorf("%s: header\n%s\nwant\n%s", name, got, want)
		}
		for _, rec := range recs[1:] {
			for i, c := range rec {
				if c == "-" || strings.HasSuffix(c, " ms") || strings.HasSuffix(c, " s") {
					t.Errorf("%s: %s = %q, want a number or empty", name, recs[0][i], c)
				}
			}
		}
	}
	if h := CSVHeader(); !slices.Contains(h, "lifetime_ms") || !slices.Contains(h, "page_faults") {
		t.Errorf("header %v lacks lifetime_ms or page_faults", h)
	}
}

func writeTo(t *testing.T, run *report.Run, f Format) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := Write(&b, run, f); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestJSONRoundTrip(t *testing.T) {
	out := render(t, JSON)
	var back report.Run
	if err := json.Unmarshal([]byte(out), &back); err != nil {
		t.Fatal(err)
	}
	if w := back.Find("writer"); w == nil || *w.Copies != 1000 || w.InRegion.WP != 1000 {
		t.Errorf("writer after round trip: %+v", w)
	}
	if back.Find("reader") != nil {
		t.Error("found a reader that was never there")
	}
	// Unmeasured values are null, not zero: zero is a measurement.
	var raw struct {
		Processes []map[string]json.RawMessage `json:"processes"`
	}
	r := kprobeRun()
	r.Processes[0].Copies = nil
	var b bytes.Buffer
	if err := Write(&b, r, JSON); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b.Bytes(), &raw); err != nil {
		t.Fatal(err)
	}
	if got := string(raw.Processes[0]["copies"]); got != "null" {
		t.Errorf("unmeasured copies encoded as %s, want null", got)
	}
}
