package report_test

import (
	"strings"
	"testing"

	"github.com/cowtrace/cowtrace/report"
	"github.com/cowtrace/cowtrace/report/internal/reporttest"
)

func TestMatchProcessesByPlaceInTree(t *testing.T) {
	a := reporttest.SixProcesses("a", 100, 14)
	b := reporttest.SixProcesses("b", 500, 22)
	// Another pid order and row order: the match must not depend on either.
	b.Processes[1], b.Processes[3] = b.Processes[3], b.Processes[1]
	b.Processes[1].StartMs, b.Processes[3].StartMs = 1, 2
	b.Processes[1].Copies, b.Processes[3].Copies = report.U64(17), report.U64(22)
	b.Processes[2].Ppid, b.Processes[4].Ppid = b.Processes[3].Pid, b.Processes[1].Pid
	var names []string
	for _, m := range report.MatchProcesses([]*report.Run{a, b}) {
		names = append(names, m.Name)
		if m.Procs[0] == nil || m.Procs[1] == nil || m.Procs[0].Comm != m.Procs[1].Comm {
			t.Errorf("%s: unmatched %v", m.Name, m.Procs)
			continue
		}
		if m.Name == "sh/sh#2" && (*m.Procs[0].Copies != 14 || *m.Procs[1].Copies != 22) {
			t.Errorf("sh/sh#2 matched rows with %d and %d copies, want 14 and 22", *m.Procs[0].Copies, *m.Procs[1].Copies)
		}
	}
	want := "sh sh/sh#1 sh/sh#1/true sh/sh#2 sh/sh#2/true sh/cat"
	if got := strings.Join(names, " "); got != want {
		t.Errorf("rows %q, want %q", got, want)
	}
}

func TestTreeTotalLeavesThreadsOut(t *testing.T) {
	r := reporttest.SixProcesses("a", 100, 14)
	thread := r.Processes[0]
	thread.Lineage = &report.Lineage{Tid: 101, Ppid: 1, Comm: "sh", Depth: 0}
	r.Processes = append(r.Processes[:1], append([]report.Process{thread}, r.Processes[1:]...)...)
	r.Trace.Threads = true
	if got := *report.TreeTotal(r).Copies; got != 74 {
		t.Errorf("total copies %d, want 74 (thread rows are in their process's)", got)
	}
	for _, m := range report.MatchProcesses([]*report.Run{r}) {
		if m.Procs[0].Tid != 0 && m.Name != "sh/thread 1" {
			t.Errorf("thread row named %q", m.Name)
		}
	}
}
