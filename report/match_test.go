package report

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

// proc is a row of a traced run; copies doubles as page and wp faults.
type proc struct {
	pid, ppid, depth int
	comm             string
	start            float64
	copies           uint64
}

// treeRun is a run as cowtrace run writes it, rows in tree order.
func treeRun(label string, procs ...proc) *Run {
	exit := 0
	r := &Run{
		SchemaVersion: SchemaVersion, Kernel: "6.18.0-test", Scenario: "traced", Label: label,
		Methods: map[string]string{
			"page_faults": "sampled:page-faults", "wp_faults": "tracepoint:exceptions:page_fault_user",
			"copies": "inferred:x", "inferred_copies": "inferred:x",
		},
		Trace: &Trace{Command: []string{"sh", "-c", "..."}, DurationMs: 12, EndedBy: "exit", ExitCode: &exit},
	}
	for _, p := range procs {
		role := "child"
		if p.depth == 0 {
			role = "command"
		}
		r.Processes = append(r.Processes, Process{
			Role: role, Pid: p.pid,
			Lineage:    &Lineage{Ppid: p.ppid, Comm: p.comm, Depth: p.depth, StartMs: p.start, Exited: true, Threads: 1},
			PageFaults: U64(p.copies * 3), WPFaults: U64(p.copies + 1), Copies: U64(p.copies), InferredCopies: U64(p.copies),
		})
	}
	return r
}

// The tree of sh -c 'sh -c "true & wait" & sh -c "true & wait" & cat; wait'.
func sixProcesses(label string, base int, secondShCopies uint64) *Run {
	return treeRun(label,
		proc{base, 1, 0, "sh", 0, 10},
		proc{base + 1, base, 1, "sh", 1, 17},
		proc{base + 5, base + 1, 2, "true", 3, 11},
		proc{base + 3, base, 1, "sh", 2, secondShCopies},
		proc{base + 4, base + 3, 2, "true", 4, 16},
		proc{base + 2, base, 1, "cat", 2.5, 6},
	)
}

func TestMatchProcessesByPlaceInTree(t *testing.T) {
	a := sixProcesses("a", 100, 14)
	b := sixProcesses("b", 500, 22)
	// Another pid order and row order: the match must not depend on either.
	b.Processes[1], b.Processes[3] = b.Processes[3], b.Processes[1]
	b.Processes[1].StartMs, b.Processes[3].StartMs = 1, 2
	b.Processes[1].Copies, b.Processes[3].Copies = U64(17), U64(22)
	b.Processes[2].Ppid, b.Processes[4].Ppid = b.Processes[3].Pid, b.Processes[1].Pid
	var names []string
	for _, m := range matchProcesses([]*Run{a, b}) {
		names = append(names, m.name)
		if m.procs[0] == nil || m.procs[1] == nil || m.procs[0].Comm != m.procs[1].Comm {
			t.Errorf("%s: unmatched %v", m.name, m.procs)
			continue
		}
		if m.name == "sh/sh#2" && (*m.procs[0].Copies != 14 || *m.procs[1].Copies != 22) {
			t.Errorf("sh/sh#2 matched rows with %d and %d copies, want 14 and 22", *m.procs[0].Copies, *m.procs[1].Copies)
		}
	}
	want := "sh sh/sh#1 sh/sh#1/true sh/sh#2 sh/sh#2/true sh/cat"
	if got := strings.Join(names, " "); got != want {
		t.Errorf("rows %q, want %q", got, want)
	}
}

func TestCompareTracedRuns(t *testing.T) {
	a := sixProcesses("before", 100, 14)
	b := sixProcesses("after", 500, 14)
	// A seventh process in the second run only: a second cat.
	b.Processes = append(b.Processes, b.Processes[5])
	b.Processes[6].Pid = 507
	b.Processes[6].Lineage = &Lineage{Ppid: 500, Comm: "cat", Depth: 1, StartMs: 6}
	var out bytes.Buffer
	err := Compare(&out, []Compared{{Label: "before", Runs: []*Run{a}}, {Label: "after", Runs: []*Run{b}}}, Markdown)
	if err != nil {
		t.Fatal(err)
	}
	s := out.String()
	for _, absent := range []string{"blocks", "block size", "region", "(none)"} {
		if strings.Contains(s, absent) {
			t.Errorf("traced comparison shows the experiment's %q:\n%s", absent, s)
		}
	}
	rows := map[string][]string{}
	var order []string
	for _, line := range strings.Split(s, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 3 || strings.HasPrefix(strings.TrimSpace(cells[1]), ":") || strings.TrimSpace(cells[1]) == "process" {
			continue
		}
		name := strings.TrimSpace(cells[1])
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		rows[name] = cells[2 : len(cells)-1]
		order = append(order, name)
	}
	want := "sh sh/sh#1 sh/sh#1/true sh/sh#2 sh/sh#2/true sh/cat#1 sh/cat#2 total"
	if got := strings.Join(order, " "); got != want {
		t.Fatalf("rows %q, want %q:\n%s", got, want, s)
	}
	// Columns: page faults, wp faults, copies; each before, after; differs.
	if got := strings.TrimSpace(strings.Join(rows["sh/sh#2"], " ")); got != "42 42 15 15 14 14" {
		t.Errorf("sh/sh#2: %q", got)
	}
	if got := strings.TrimSpace(strings.Join(rows["sh/cat#2"], " ")); got != "- 18 - 7 - 6 ≠" {
		t.Errorf("sh/cat#2, only in the second run: %q", got)
	}
	if got := strings.TrimSpace(strings.Join(rows["total"], " ")); got != "222 240 80 87 74 80 ≠" {
		t.Errorf("total: %q", got)
	}
	for _, want := range []string{"- before: cowtrace run: kernel 6.18.0-test", "lost records 0", "matched by command and place in the tree"} {
		if !strings.Contains(s, want) {
			t.Errorf("lacks %q:\n%s", want, s)
		}
	}

	err = Compare(&out, []Compared{{Label: "a", Runs: []*Run{a}}, {Label: "e", Runs: []*Run{kprobeRun()}}}, Table)
	if err == nil || !strings.Contains(err.Error(), "cannot compare traced runs") {
		t.Errorf("traced against experiment: %v", err)
	}
}

func TestTreeTotalLeavesThreadsOut(t *testing.T) {
	r := sixProcesses("a", 100, 14)
	thread := r.Processes[0]
	thread.Lineage = &Lineage{Tid: 101, Ppid: 1, Comm: "sh", Depth: 0}
	r.Processes = append(r.Processes[:1], append([]Process{thread}, r.Processes[1:]...)...)
	r.Trace.Threads = true
	if got := *treeTotal(r).Copies; got != 74 {
		t.Errorf("total copies %d, want 74 (thread rows are in their process's)", got)
	}
	for _, m := range matchProcesses([]*Run{r}) {
		if m.procs[0].Tid != 0 && m.name != "sh/thread 1" {
			t.Errorf("thread row named %q", m.name)
		}
	}
}

// FuzzCompareReports: compare and the gate take reports that users hand
// them; whatever ReadRuns accepts must compare and gate without a panic,
// whatever its pids, depths and parents (a cycle included).
func FuzzCompareReports(f *testing.F) {
	f.Add([]byte(`{"schema_version":1,"trace":{},"processes":[{"pid":1,"ppid":2,"comm":"a","depth":1},{"pid":2,"ppid":1,"comm":"a","depth":0},{"pid":2,"tid":3,"ppid":1,"comm":"a","depth":0,"copies":4}]}`))
	f.Add([]byte(`{"schema_version":1,"trace":{},"processes":[{"pid":5,"ppid":5,"comm":"","depth":-1,"copies":18446744073709551615}]}`))
	f.Add([]byte(`{"schema_version":1,"kernel":"6.1","processes":[{"role":"writer","pid":1,"copies":5}]}`))
	bounds, err := ParseBounds([]string{"copies=10%,each.page_faults=1,total.lost_records=0"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		runs, err := ReadRuns(data)
		if err != nil {
			return
		}
		cols := []Compared{{Label: "a", Runs: runs}, {Label: "b", Runs: runs}}
		_ = Compare(io.Discard, cols, Table)
		if v, err := Gate(cols[0], cols[1], bounds); err == nil {
			_ = WriteVerdict(io.Discard, v, Markdown)
			if !v.Passed {
				t.Errorf("a run regressed against itself: %+v", v.Regressions())
			}
		}
	})
}
