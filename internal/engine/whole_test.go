package engine

import (
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cowtrace/cowtrace/report"
)

// TestCountUnsealedIsNull: attached to a running root, a child whose
// samples read its groups without their seal was created before every
// group was in place, and has null counts that say so; one whose samples
// read the seal is exact; the kernel's totals still add up.
func TestCountUnsealedIsNull(t *testing.T) {
	cs := newCountSession(t)
	cs.liveOpen = true
	cs.AddRoot(99, 99, 1, "sh")
	f := feeder{t, cs.Session}
	f.fork(0, unix.PERF_RECORD_FORK, 101, 99, 101, 99, 1500)
	f.fork(0, unix.PERF_RECORD_FORK, 102, 99, 102, 99, 2000)
	cs.unsealed = true
	cs.groupSample(1, mExit, 101, 101, 2500, []uint64{1, 0, 5, 1, 0}, nil)
	cs.unsealed = false
	f.fork(1, unix.PERF_RECORD_EXIT, 101, 99, 101, 99, 2501)
	cs.groupSample(0, mExit, 102, 102, 2600, []uint64{1, 0, 7, 2, 0}, nil)
	f.fork(0, unix.PERF_RECORD_EXIT, 102, 99, 102, 99, 2601)
	cs.groupSample(0, mSwitch, 99, 99, 3000, []uint64{0, 1, 20, 0, 2}, nil)

	run, rows := cs.rows(t)
	if !run.Complete || len(run.Incomplete) > 0 {
		t.Errorf("run incomplete: %q", run.Incomplete)
	}
	want(t, "root page faults", rows[99].PageFaults, 20)
	want(t, "sealed child's page faults", rows[102].PageFaults, 7)
	want(t, "sealed child's wp faults", rows[102].WPFaults, 2)
	if r := rows[101]; r.PageFaults != nil || r.WPFaults != nil || r.Unmeasured["page_faults"] != partialWhy {
		t.Errorf("unsealed child: page faults %v, wp faults %v, unmeasured %q", fmtU(r.PageFaults), fmtU(r.WPFaults), r.Unmeasured)
	}
}

// TestCountRootHoldingAnothersGroups: a thread opened as a root of its own
// that also counts in its creator's groups (created while the attach was
// opening them) counts twice where the two overlap: its process is null.
func TestCountRootHoldingAnothersGroups(t *testing.T) {
	cs := newCountSession(t)
	cs.liveOpen = true
	cs.AddRoot(99, 99, 1, "sh")
	cs.opened[103] = true
	cs.AddRoot(99, 103, 1, "sh")
	cs.groupSample(0, mSwitch, 99, 99, 3000, []uint64{0, 1, 20, 0, 0}, nil)
	cs.groupSample(1, mSwitch, 99, 103, 3001, []uint64{0, 1, 4, 0, 0}, nil)
	_, rows := cs.rows(t)
	if r := rows[99]; r.PageFaults != nil || !strings.Contains(r.Unmeasured["page_faults"], "two threads' events") {
		t.Errorf("process 99: page faults %v, unmeasured %q", fmtU(r.PageFaults), r.Unmeasured)
	}
}

// TestClassifyWholeTasks: attached in classify mode, a task is trusted when
// it or an ancestor wrote an EXIT or COMM record (the carrier opened last),
// or its root created it after a creation that began once every event was
// in place, or after the root was seen outside any fork call (in another
// system call, or faulting in user mode); else its figures are null.
func TestClassifyWholeTasks(t *testing.T) {
	for _, tc := range []struct {
		outside   uint64 // /proc showed the root outside a fork call
		rootFault bool   // the root faulted in user mode at 1050
	}{{0, false}, {1050, false}, {0, true}} {
		outside := tc.outside
		s := synthetic(t, true, "")
		s.cfg.Counters = false
		s.liveOpen = true
		s.opened = map[int]bool{99: true}
		s.whole = map[int]*wholeSince{99: {openNs: 1000, outsideNs: outside}}
		s.AddRoot(99, 99, 1, "sh")
		f := feeder{t, s}
		if tc.rootFault {
			f.sample(0, idFault, 99, 99, 1050, userPg, 0x6)
		}
		for _, c := range []struct {
			pid, parent uint32
			ns          uint64
		}{{101, 99, 900}, {104, 99, 950}, {102, 99, 1100}, {103, 99, 1200}, {105, 101, 1400}, {106, 103, 1500}} {
			f.fork(0, unix.PERF_RECORD_FORK, c.pid, c.parent, c.pid, c.parent, c.ns)
		}
		for _, pid := range []uint32{99, 101, 102, 103, 104, 105, 106, 107} {
			f.sample(0, idFault, pid, pid, 1600, userPg, 0x7)
		}
		f.fork(1, unix.PERF_RECORD_EXIT, 104, 99, 104, 99, 1700)

		if err := s.Stop(); err != nil {
			t.Fatal(err)
		}
		rows := map[int]report.Process{}
		for _, tk := range s.Tasks() {
			var r report.Process
			s.RowOf(&r, []*Task{tk})
			rows[tk.Pid] = r
		}
		whole := map[int]bool{99: true, 103: true, 104: true, 106: true, 102: outside != 0 || tc.rootFault}
		for pid, r := range rows {
			switch {
			case whole[pid]:
				want(t, "wp faults", r.WPFaults, 1)
			case r.WPFaults != nil || r.Unmeasured["wp_faults"] != partialWhy:
				t.Errorf("%+v: %d: wp faults %v, unmeasured %q; want null, created while opening", tc, pid, fmtU(r.WPFaults), r.Unmeasured)
			}
		}
		if len(rows) != 8 {
			t.Errorf("%d rows, want 8", len(rows))
		}
	}
}

// TestExitAfterStop: a task whose exit was read in the drain, after Stop
// began to end the trace, is a task alive at its end.
func TestExitAfterStop(t *testing.T) {
	s := synthetic(t, true, "")
	s.AddRoot(100, 100, 1, "sh")
	f := feeder{t, s}
	f.fork(0, unix.PERF_RECORD_FORK, 101, 100, 101, 100, 2000)
	f.fork(0, unix.PERF_RECORD_FORK, 102, 100, 102, 100, 2001)
	f.fork(0, unix.PERF_RECORD_EXIT, 101, 100, 101, 100, 3000)
	far := monotonicNs() + 1e12
	f.fork(0, unix.PERF_RECORD_EXIT, 102, 100, 102, 100, far)
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, tk := range s.Tasks() {
		if want := tk.Tid == 101; tk.Exited != want {
			t.Errorf("task %d: exited %v, want %v (end %d)", tk.Tid, tk.Exited, want, tk.EndNs)
		}
	}
}

// TestClassifyTwoRootsEvents: a task that two attached threads' events
// sample (a thread created while the attach opened its creator, then
// opened itself, and what it creates) counts each fault twice: null.
func TestClassifyTwoRootsEvents(t *testing.T) {
	s := synthetic(t, true, "")
	s.cfg.Counters = false
	s.liveOpen = true
	s.opened = map[int]bool{99: true, 103: true}
	const idA, idB = 501, 502
	s.ids[idA] = eventInfo{kind: kindFault, root: 99}
	s.ids[idB] = eventInfo{kind: kindFault, root: 103}
	s.AddRoot(99, 99, 1, "sh")
	s.AddRoot(99, 103, 1, "sh")
	f := feeder{t, s}
	f.fork(0, unix.PERF_RECORD_FORK, 104, 99, 104, 103, 2000)
	f.sample(0, idA, 99, 99, 2100, userPg, 0x7)
	for _, id := range []uint64{idA, idB} {
		f.sample(0, id, 104, 104, 2200, userPg, 0x7)
		f.sample(0, id, 99, 103, 2300, userPg, 0x7)
	}
	f.fork(0, unix.PERF_RECORD_EXIT, 104, 99, 104, 103, 2400)
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, tk := range s.Tasks() {
		var r report.Process
		s.RowOf(&r, []*Task{tk})
		if twice := tk.Tid != 99; twice != (r.WPFaults == nil) || twice && !strings.Contains(r.Unmeasured["wp_faults"], "two threads' events") {
			t.Errorf("task %d: wp faults %v, unmeasured %q", tk.Tid, fmtU(r.WPFaults), r.Unmeasured)
		}
	}
}

// TestStreamExitAfterEnd: followed as it goes, a task whose exit is read
// after Stop began to end the trace (it exited while the counters were
// being frozen) ends with counts that are not its whole life's, and says
// so.
func TestStreamExitAfterEnd(t *testing.T) {
	cs := newCountSession(t)
	var ends []TaskEnd
	cs.cfg.OnTaskEnd = func(e TaskEnd) { ends = append(ends, e) }
	cs.AddRoot(100, 100, 1, "sh")
	f := feeder{t, cs.Session}
	f.comm(0, 100, 100, "prog", 1100, true)
	f.fork(0, unix.PERF_RECORD_FORK, 101, 100, 101, 100, 2000)
	f.fork(0, unix.PERF_RECORD_FORK, 102, 100, 102, 100, 2001)
	cs.groupSample(1, mExit, 101, 101, 2400, []uint64{1, 0, 7, 3, 0}, nil)
	f.fork(1, unix.PERF_RECORD_EXIT, 101, 100, 101, 100, 2401)
	cs.endNs = 2500
	cs.groupSample(1, mExit, 102, 102, 2900, []uint64{1, 0, 5, 1, 0}, nil)
	f.fork(1, unix.PERF_RECORD_EXIT, 102, 100, 102, 100, 3000)
	if err := cs.apply(^uint64(0)); err != nil {
		t.Fatal(err)
	}
	if len(ends) != 2 || ends[0].Why != "" || !strings.Contains(ends[1].Why, "exited while the trace was stopping") {
		t.Errorf("ends %+v: want 101 whole, 102 still running at the end", ends)
	}
}

// TestStrayTaskAfterExit: a sample of a task applied after its EXIT (out
// of order) makes a task of its own with no FORK: its row is null with the
// reason and the run is not complete, rather than a second row for the
// pid.
func TestStrayTaskAfterExit(t *testing.T) {
	cs := newCountSession(t)
	cs.AddRoot(100, 100, 1, "sh")
	f := feeder{t, cs.Session}
	f.comm(0, 100, 100, "prog", 1100, true)
	f.fork(0, unix.PERF_RECORD_FORK, 101, 100, 101, 100, 2000)
	cs.groupSample(1, mExit, 101, 101, 2900, []uint64{1, 0, 7, 3, 0}, nil)
	f.fork(1, unix.PERF_RECORD_EXIT, 101, 100, 101, 100, 3000)
	if err := cs.apply(^uint64(0)); err != nil {
		t.Fatal(err)
	}
	cs.groupSample(0, mSwitch, 101, 101, 3100, []uint64{0, 1, 2, 0, 0}, nil)
	run, _ := cs.rows(t)
	var stray, whole int
	for _, tk := range cs.Tasks() {
		var r report.Process
		cs.RowOf(&r, []*Task{tk})
		switch {
		case tk.Tid != 101:
		case r.PageFaults == nil && r.Unmeasured["page_faults"] == strayWhy:
			stray++
		case r.PageFaults != nil && *r.PageFaults == 7:
			whole++
		}
	}
	if stray != 1 || whole != 1 || run.Complete {
		t.Errorf("101: %d stray rows, %d whole rows, complete %v (%q); want one each, incomplete", stray, whole, run.Complete, run.Incomplete)
	}
}
