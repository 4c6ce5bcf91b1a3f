package follow

import (
	"bytes"
	"context"
	"io"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"testing"

	"github.com/cowtrace/cowtrace/internal/testprog"
	"github.com/cowtrace/cowtrace/perfevents"
	"github.com/cowtrace/cowtrace/report"
)

// pythonPool runs examples/python-pool/pool.py under --by mapping and
// returns its workers' rows, and each worker's own figure (how much its
// Private_Dirty grew during gc.collect(), in kB) by pid.
func pythonPool(t *testing.T, python string, freeze bool) (workers []report.Process, ownKB map[int]int64) {
	t.Helper()
	_, self, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(self), "..", "..", "examples", "python-pool", "pool.py")
	argv := []string{python, script, "--workers", "2"}
	if freeze {
		argv = append(argv, "--freeze")
	}
	var out bytes.Buffer
	run, err := Run(context.Background(), Options{KprobeMethod: perfevents.KprobeNone, By: report.ByMapping},
		RunSpec{Path: python, Argv: argv, Stdio: Stdio{Stdout: &out, Stderr: io.Discard}})
	if err != nil {
		t.Fatal(err)
	}
	if *run.Trace.ExitCode != 0 {
		t.Fatalf("pool.py exited %d:\n%s", *run.Trace.ExitCode, out.String())
	}
	ownKB = map[int]int64{}
	for _, m := range regexp.MustCompile(`worker (\d+): Private_Dirty grew by (\d+) kB`).FindAllStringSubmatch(out.String(), -1) {
		pid, _ := strconv.Atoi(m[1])
		ownKB[pid], _ = strconv.ParseInt(m[2], 10, 64)
	}
	for _, p := range run.Processes {
		if p.Depth == 1 {
			workers = append(workers, p)
		}
	}
	if len(workers) != 2 || len(ownKB) != 2 {
		t.Fatalf("%d worker rows, %d worker lines, want 2 each:\n%s", len(workers), len(ownKB), out.String())
	}
	return workers, ownKB
}

// heapShare is the part of a process's copies in the brk heap and in
// anonymous mmaps: where CPython's objects live (pymalloc's arenas are
// anonymous mmaps, larger objects come from malloc, whose realloc moves a
// large block with mremap, unrecorded).
func heapShare(p report.Process) (heap, total uint64) {
	for _, s := range p.CopiesBy {
		total += s.Copies
		if s.Name == heapName || s.Name == anonShare || s.Name == unrecordedName {
			heap += s.Copies
		}
	}
	return heap, total
}

// TestPythonGCFreeze: a pre-fork pool's workers each run gc.collect(),
// which writes the GC header of every tracked object the parent left
// them: they copy the arenas those objects live in. After gc.freeze() in the
// parent the collector leaves those objects alone. On this machine, 200000
// small lists cost each worker 3600 to 4000 copies (14 to 16 MiB, by the
// build of CPython; Python's own figure, Private_Dirty's growth during the
// collection, within 3% of it), over 98% of them in [anon] (pymalloc's
// arenas) and [heap]; frozen, 120 to 220 copies. The bounds: at least 90%
// in heap and arenas unfrozen, cowtrace's figure at least 90% of Python's,
// and a frozen worker under a quarter of an unfrozen one's copies.
func TestPythonGCFreeze(t *testing.T) {
	requireTracing(t)
	python := testprog.Python(t)

	plain, plainKB := pythonPool(t, python, false)
	frozen, frozenKB := pythonPool(t, python, true)
	least := ^uint64(0)
	for _, w := range plain {
		heap, total := heapShare(w)
		t.Logf("without gc.freeze: worker %d: %d copies (%.1f MiB), %d in [heap] and [anon]; its own figure: Private_Dirty +%d kB; %+v",
			w.Pid, total, float64(total)/256, heap, plainKB[w.Pid], w.CopiesBy)
		if total < 1000 || heap*10 < total*9 {
			t.Errorf("worker %d: %d of %d copies in the heap and arenas, want a thousand or more, 90%% of them", w.Pid, heap, total)
		}
		if total*4 < uint64(plainKB[w.Pid])*9/10 {
			t.Errorf("worker %d: %d copies (%d kB), but its Private_Dirty grew by %d kB in gc.collect() alone", w.Pid, total, total*4, plainKB[w.Pid])
		}
		least = min(least, total)
	}
	for _, w := range frozen {
		_, total := heapShare(w)
		t.Logf("with gc.freeze: worker %d: %d copies (%.1f MiB); its own figure: Private_Dirty +%d kB; %+v",
			w.Pid, total, float64(total)/256, frozenKB[w.Pid], w.CopiesBy)
		if total*4 > least {
			t.Errorf("worker %d copied %d pages after gc.freeze(), unfrozen workers %d or more: want under a quarter", w.Pid, total, least)
		}
	}
}
