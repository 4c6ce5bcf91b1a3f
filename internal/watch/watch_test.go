package watch

import (
	"reflect"
	"testing"

	"github.com/cowtrace/cowtrace/internal/engine"
)

func counts(wp, copies uint64) engine.Counts {
	return engine.Counts{WPFaults: wp, Copies: copies, WPCopies: copies, ByCause: true}
}

// TestEpisodes: a watched process forks once, then twice with the children
// alive together. The first episode owes it what it did from the fork to
// its first sample after the child's end; what it did while two episodes
// were open is in their shared bucket, once, reported when both are done.
func TestEpisodes(t *testing.T) {
	var eps []Episode
	var shared []Shared
	w := New()
	w.Episode = func(e Episode) { eps = append(eps, e) }
	w.Shared = func(s Shared) { shared = append(shared, s) }
	p := engine.TaskRef{ID: 1, Proc: 1, Pid: 100, Tid: 100, Comm: "redis-server"}
	child := func(id, pid int) engine.TaskRef {
		return engine.TaskRef{ID: id, Proc: id, Pid: pid, Tid: pid, Comm: "redis-rdb-bgsave"}
	}
	sample := func(ns, wp, copies uint64) {
		w.OnCounts(engine.TaskCounts{TimeNs: ns, Task: p, Counts: counts(wp, copies)})
	}

	w.OnFork(engine.Fork{TimeNs: 100, Parent: p, Child: child(2, 200), ParentCounts: counts(10, 5)})
	sample(150, 30, 20)
	// The child forks a grandchild: the same episode.
	w.OnFork(engine.Fork{TimeNs: 160, Parent: child(2, 200), Child: child(3, 201), ParentCounts: counts(1, 1)})
	w.OnTaskEnd(engine.TaskEnd{TimeNs: 170, Task: child(3, 201), Counts: counts(4, 4)})
	w.OnTaskEnd(engine.TaskEnd{TimeNs: 200, Task: child(2, 200), Counts: counts(100, 100)})
	if len(eps) != 0 {
		t.Fatalf("episode reported before the parent's next sample: %+v", eps)
	}
	sample(250, 31, 20)
	if len(eps) != 1 {
		t.Fatalf("%d episodes after the first one's end, want 1", len(eps))
	}
	want := Episode{ID: 1, Parent: Proc{100, "redis-server"}, Child: Proc{200, "redis-rdb-bgsave"}, StartNs: 100, EndNs: 200, Tasks: 2,
		ChildCounts: counts(104, 104), ParentCounts: counts(21, 15)}
	if !reflect.DeepEqual(eps[0], want) {
		t.Errorf("episode 1:\n got %+v\nwant %+v", eps[0], want)
	}

	w.OnFork(engine.Fork{TimeNs: 300, Parent: p, Child: child(4, 300), ParentCounts: counts(40, 25)})
	w.OnFork(engine.Fork{TimeNs: 310, Parent: p, Child: child(5, 301), ParentCounts: counts(45, 28)})
	sample(400, 60, 40)
	w.OnTaskEnd(engine.TaskEnd{TimeNs: 410, Task: child(4, 300), Counts: counts(7, 7)})
	sample(420, 61, 40)
	w.OnTaskEnd(engine.TaskEnd{TimeNs: 500, Task: child(5, 301), Counts: counts(8, 8)})
	sample(510, 62, 41)
	if len(eps) != 3 || len(shared) != 1 {
		t.Fatalf("%d episodes and %d shared buckets, want 3 and 1", len(eps), len(shared))
	}
	// 31 -> 40 while no episode was open (from 250 to 300): nobody's.
	if e := eps[1]; e.ID != 2 || e.ParentCounts != counts(5, 3) || !reflect.DeepEqual(e.SharedWith, []int{3}) {
		t.Errorf("episode 2: %+v, want its 5 wp faults and 3 copies alone, shared with 3", e)
	}
	if e := eps[2]; e.ID != 3 || e.ParentCounts != counts(1, 1) || !reflect.DeepEqual(e.SharedWith, []int{2}) {
		t.Errorf("episode 3: %+v, want 1 wp fault and 1 copy alone, shared with 2", e)
	}
	if s := shared[0]; !reflect.DeepEqual(s.Episodes, []int{2, 3}) || s.Counts != counts(16, 12) {
		t.Errorf("shared bucket %+v, want episodes 2 and 3 with 16 wp faults and 12 copies", s)
	}
}

// TestFlush: at the end of the trace an episode whose child still runs is
// reported as such.
func TestFlush(t *testing.T) {
	var eps []Episode
	w := New()
	w.Episode = func(e Episode) { eps = append(eps, e) }
	p := engine.TaskRef{ID: 1, Proc: 1, Pid: 100, Tid: 100, Comm: "postgres"}
	w.OnFork(engine.Fork{TimeNs: 100, Parent: p, Child: engine.TaskRef{ID: 2, Proc: 2, Pid: 200, Tid: 200, Comm: "postgres"}})
	w.Flush(900)
	if len(eps) != 1 || eps[0].EndNs != 900 || eps[0].Why == "" {
		t.Errorf("episodes %+v, want the running one, ended by the trace, with why", eps)
	}
}

// TestClassifyReportsAtForks: where the parent's counts come only with its
// forks (no OnCounts), an episode whose tree ended is reported at the
// parent's next fork, with the parent's counts up to it.
func TestClassifyReportsAtForks(t *testing.T) {
	var eps []Episode
	w := New()
	w.Episode = func(e Episode) { eps = append(eps, e) }
	p := engine.TaskRef{ID: 1, Proc: 1, Pid: 100, Tid: 100, Comm: "sh"}
	child := func(id, pid int) engine.TaskRef {
		return engine.TaskRef{ID: id, Proc: id, Pid: pid, Tid: pid, Comm: "true"}
	}
	w.OnFork(engine.Fork{TimeNs: 100, Parent: p, Child: child(2, 200), ParentCounts: counts(10, 5)})
	w.OnTaskEnd(engine.TaskEnd{TimeNs: 200, Task: child(2, 200), Counts: counts(7, 7)})
	if len(eps) != 0 {
		t.Fatalf("reported before the parent's next fork: %+v", eps)
	}
	w.OnFork(engine.Fork{TimeNs: 300, Parent: p, Child: child(3, 201), ParentCounts: counts(13, 8)})
	if len(eps) != 1 || eps[0].ID != 1 || eps[0].ParentCounts != counts(3, 3) || eps[0].ChildCounts != counts(7, 7) {
		t.Fatalf("at the next fork: %+v, want episode 1 with the parent's 3 copies since its fork", eps)
	}
	// The parent's end reports the last.
	w.OnTaskEnd(engine.TaskEnd{TimeNs: 400, Task: child(3, 201), Counts: counts(1, 1)})
	w.OnTaskEnd(engine.TaskEnd{TimeNs: 500, Task: p, Counts: counts(14, 9)})
	if len(eps) != 2 || eps[1].ParentCounts != counts(1, 1) {
		t.Errorf("at the parent's end: %+v, want episode 2 with the parent's last copy", eps)
	}
}

// TestCountsOfAllThreads: the counts of a process's threads at one instant
// (More on all but the last) are taken whole before the episode that
// ended is reported: each thread's copies during it are its parent's.
func TestCountsOfAllThreads(t *testing.T) {
	var eps []Episode
	w := New()
	w.Episode = func(e Episode) { eps = append(eps, e) }
	main := engine.TaskRef{ID: 1, Proc: 1, Pid: 100, Tid: 100, Comm: "redis-server"}
	bio := engine.TaskRef{ID: 2, Proc: 1, Pid: 100, Tid: 101, Comm: "bio_close_file"}
	child := engine.TaskRef{ID: 3, Proc: 3, Pid: 200, Tid: 200, Comm: "redis-rdb-bgsave"}
	w.OnCounts(engine.TaskCounts{TimeNs: 50, Task: bio, Counts: counts(1, 1)})
	w.OnFork(engine.Fork{TimeNs: 100, Parent: main, Child: child, ParentCounts: counts(10, 10)})
	w.OnTaskEnd(engine.TaskEnd{TimeNs: 200, Task: child, Counts: counts(7, 7)})
	w.OnCounts(engine.TaskCounts{TimeNs: 200, Task: main, Counts: counts(14, 14), More: true})
	if len(eps) != 0 {
		t.Fatalf("reported before the process's last thread's counts: %+v", eps)
	}
	w.OnCounts(engine.TaskCounts{TimeNs: 200, Task: bio, Counts: counts(3, 3)})
	if len(eps) != 1 || eps[0].ParentCounts != counts(6, 6) || eps[0].ChildCounts != counts(7, 7) {
		t.Fatalf("episodes %+v, want one with the parent's 4 + 2 copies", eps)
	}
}
