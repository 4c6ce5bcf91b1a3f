package engine

import (
	"encoding/binary"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cowtrace/cowtrace/perfevents"
	"github.com/cowtrace/cowtrace/report"
)

// countSession is a synthetic count-mode session: one root (cowtrace's
// thread 99, as run opens it) with a group on each of two CPUs, whose
// members are exit, context switches, page faults, write-protect faults
// and tasks created. Leader ids are 1000+CPU; member m's id is 1000+10*m+CPU.
type countSession struct {
	*Session
	t      testing.TB
	totals [2]map[uint64]uint64
	// foreignID, set, is the IDENTIFIER groupSample writes instead of the
	// member's: another perf user's event.
	foreignID uint64
	// unsealed: groupSample reads a group without its seal, as a task
	// created while the groups were being opened does.
	unsealed bool
}

var countKinds = []memberKind{mExit, mSwitch, mPageFaults, mWP, mNewTask}

func memberID(m, cpu int) uint64 { return uint64(1000 + 10*m + cpu) }

func sealID(cpu int) uint64 { return uint64(2000 + cpu) }

func newCountSession(t testing.TB) *countSession {
	t.Helper()
	s := synthetic(t, true, "")
	s.mode, s.method = ModeCount, exitTracepoint
	s.cfg.Counters = false
	s.opened = map[int]bool{99: true}
	s.plan = &ringPlan{}
	s.ringOf = []int{0, 1}
	cs := &countSession{Session: s, t: t}
	g := &countGroup{method: exitTracepoint, index: map[memberKind]int{}, byLeader: map[uint64]*openGroup{}}
	for i, k := range countKinds {
		g.members = append(g.members, member{kind: k, noun: [...]string{"exits", "context switches", "page faults", "write-protect faults", "tasks created"}[i],
			sampled: k == mExit || k == mSwitch})
		g.index[k] = i
		for cpu := 0; cpu < 2; cpu++ {
			s.ids[memberID(i, cpu)] = eventInfo{kind: kindMember, member: i}
		}
	}
	for cpu := 0; cpu < 2; cpu++ {
		og := &openGroup{root: 99, ci: cpu, leaderID: memberID(0, cpu), sealID: sealID(cpu), samples: make([]uint64, len(countKinds))}
		s.ids[sealID(cpu)] = eventInfo{kind: kindSeal}
		cs.totals[cpu] = map[uint64]uint64{}
		totals := cs.totals[cpu]
		og.totals = func() (map[uint64]uint64, error) { return totals, nil }
		g.groups = append(g.groups, og)
		g.byLeader[memberID(0, cpu)] = og
	}
	s.group = g
	return cs
}

// groupSample feeds a sample of member kind k of the group on cpu by task
// pid/tid at time tm, with the group's values vals (in countKinds order),
// and adds to the kernel's totals what the task's values grew by since its
// previous sample on that CPU (prev).
func (cs *countSession) groupSample(cpu int, k memberKind, pid, tid uint32, tm uint64, vals, prev []uint64) {
	cs.t.Helper()
	m := cs.group.index[k]
	id := memberID(m, cpu)
	if cs.foreignID != 0 {
		id = cs.foreignID
	}
	d := binary.NativeEndian.AppendUint64(nil, id)
	d = binary.NativeEndian.AppendUint32(d, pid)
	d = binary.NativeEndian.AppendUint32(d, tid)
	d = binary.NativeEndian.AppendUint64(d, tm)
	n := len(vals) + 1
	if cs.unsealed {
		n--
	}
	d = binary.NativeEndian.AppendUint64(d, uint64(n))
	d = binary.NativeEndian.AppendUint64(d, 10) // enabled
	d = binary.NativeEndian.AppendUint64(d, 10) // running
	for i, v := range vals {
		d = binary.NativeEndian.AppendUint64(d, v)
		d = binary.NativeEndian.AppendUint64(d, memberID(i, cpu))
		var was uint64
		if prev != nil {
			was = prev[i]
		}
		cs.totals[cpu][memberID(i, cpu)] += v - was
	}
	if !cs.unsealed {
		d = binary.NativeEndian.AppendUint64(d, 0)
		d = binary.NativeEndian.AppendUint64(d, sealID(cpu))
	}
	feeder{cs.t, cs.Session}.feed(cpu, unix.PERF_RECORD_SAMPLE, 0, d)
}

// count adds to the kernel's totals what no sample reported: a task's
// counts after its last sample.
func (cs *countSession) count(cpu int, k memberKind, n uint64) {
	cs.totals[cpu][memberID(cs.group.index[k], cpu)] += n
}

func (cs *countSession) rows(t *testing.T) (*report.Run, map[int]report.Process) {
	t.Helper()
	if err := cs.Stop(); err != nil {
		t.Fatal(err)
	}
	run := &report.Run{}
	cs.FillRun(run, false)
	rows := map[int]report.Process{}
	procs := map[int][]*Task{}
	for _, tk := range cs.Tasks() {
		procs[tk.Proc] = append(procs[tk.Proc], tk)
	}
	for _, tks := range procs {
		var r report.Process
		cs.RowOf(&r, tks)
		rows[tks[0].Pid] = r
	}
	return run, rows
}

func want(t *testing.T, what string, got *uint64, n uint64) {
	t.Helper()
	if got == nil || *got != n {
		t.Errorf("%s: %v, want %d", what, fmtU(got), n)
	}
}

func fmtU(p *uint64) any {
	if p == nil {
		return "null"
	}
	return *p
}

// TestCountSamples: a task's counts are its last sample on each CPU, summed;
// a command whose exit sample came, with two children that exited, one of
// them after moving to the other CPU, all exact and the run complete.
// TestCountForeignID: a context-switch sample that carries another perf
// user's event id (Linux 6.3 and later stamp every software event firing
// at one switch with the first one's) is told by the group its READ
// names, and the run says how many were.
func TestCountForeignID(t *testing.T) {
	cs := newCountSession(t)
	cs.AddRoot(100, 100, 1, "sh")
	f := feeder{t, cs.Session}
	f.comm(0, 100, 100, "prog", 1100, true)
	cs.foreignID = 777777
	cs.groupSample(0, mSwitch, 100, 100, 1200, []uint64{0, 1, 30, 2, 0}, nil)
	cs.groupSample(0, mSwitch, 100, 100, 1300, []uint64{0, 2, 40, 3, 0}, []uint64{0, 1, 30, 2, 0})
	cs.foreignID = 0
	cs.groupSample(0, mExit, 100, 100, 3900, []uint64{1, 2, 42, 3, 0}, []uint64{0, 2, 40, 3, 0})
	f.fork(0, unix.PERF_RECORD_EXIT, 100, 1, 100, 1, 4000)
	cs.endNs = 5000

	run, rows := cs.rows(t)
	if !run.Complete || len(run.Incomplete) > 0 {
		t.Errorf("run incomplete: %q", run.Incomplete)
	}
	want(t, "command page faults", rows[100].PageFaults, 42)
	want(t, "command wp faults", rows[100].WPFaults, 3)
	if !slices.ContainsFunc(run.Notes, func(n string) bool { return strings.HasPrefix(n, "2 samples carried another perf event's id") }) {
		t.Errorf("notes %q: want the 2 samples told by their READ", run.Notes)
	}
}

func TestCountSamples(t *testing.T) {
	cs := newCountSession(t)
	cs.AddRoot(100, 100, 1, "sh")
	f := feeder{t, cs.Session}
	f.comm(0, 100, 100, "prog", 1100, true)
	cs.groupSample(0, mSwitch, 100, 100, 1200, []uint64{0, 1, 30, 2, 0}, nil)
	f.fork(0, unix.PERF_RECORD_FORK, 101, 100, 101, 100, 2000)
	f.fork(0, unix.PERF_RECORD_FORK, 102, 100, 102, 100, 2001)
	cs.groupSample(0, mSwitch, 100, 100, 2002, []uint64{0, 2, 40, 3, 2}, []uint64{0, 1, 30, 2, 0})
	// 101 runs on CPU 0, leaves it, then exits on CPU 1.
	cs.groupSample(0, mSwitch, 101, 101, 2100, []uint64{0, 1, 7, 2, 0}, nil)
	cs.groupSample(1, mExit, 101, 101, 2900, []uint64{1, 0, 3, 1, 0}, nil)
	f.fork(1, unix.PERF_RECORD_EXIT, 101, 100, 101, 100, 3000)
	cs.groupSample(1, mExit, 102, 102, 3100, []uint64{1, 0, 5, 0, 0}, nil)
	f.fork(1, unix.PERF_RECORD_EXIT, 102, 100, 102, 100, 3101)
	cs.groupSample(0, mExit, 100, 100, 3900, []uint64{1, 2, 45, 3, 2}, []uint64{0, 2, 40, 3, 2})
	f.fork(0, unix.PERF_RECORD_EXIT, 100, 1, 100, 1, 4000)
	cs.endNs = 5000

	run, rows := cs.rows(t)
	if !run.Complete || len(run.Incomplete) > 0 {
		t.Errorf("run incomplete: %q", run.Incomplete)
	}
	want(t, "command page faults", rows[100].PageFaults, 45)
	want(t, "command wp faults", rows[100].WPFaults, 3)
	want(t, "101 page faults", rows[101].PageFaults, 10)
	want(t, "101 wp faults", rows[101].WPFaults, 3)
	want(t, "102 page faults", rows[102].PageFaults, 5)
	if run.CountMethod != string(exitTracepoint) {
		t.Errorf("count method %q", run.CountMethod)
	}
}

// TestCountStillRunning: what no sample reported belongs to the tasks not
// seen ending: the one such task gets it; with two, neither does, and the
// run says why without calling itself incomplete.
func TestCountStillRunning(t *testing.T) {
	for _, n := range []int{1, 2} {
		cs := newCountSession(t)
		cs.AddRoot(100, 100, 1, "sh")
		f := feeder{t, cs.Session}
		f.comm(0, 100, 100, "prog", 1100, true)
		for i := 0; i < n; i++ {
			f.fork(0, unix.PERF_RECORD_FORK, uint32(101+i), 100, uint32(101+i), 100, uint64(2000+i))
			cs.groupSample(0, mSwitch, uint32(101+i), uint32(101+i), uint64(2100+i), []uint64{0, 1, 4, 1, 0}, nil)
		}
		cs.groupSample(0, mExit, 100, 100, 3900, []uint64{1, 0, 20, 0, uint64(n)}, nil)
		f.fork(0, unix.PERF_RECORD_EXIT, 100, 1, 100, 1, 4000)
		cs.count(1, mPageFaults, 6) // on CPU 1 after their last sample
		cs.endNs = 5000
		run, rows := cs.rows(t)
		if !run.Complete {
			t.Errorf("%d running: run incomplete: %q", n, run.Incomplete)
		}
		want(t, "command page faults", rows[100].PageFaults, 20)
		if n == 1 {
			want(t, "the running child's page faults", rows[101].PageFaults, 10)
			want(t, "the running child's wp faults", rows[101].WPFaults, 1)
			continue
		}
		for _, pid := range []int{101, 102} {
			r := rows[pid]
			if r.PageFaults != nil || !strings.Contains(r.Unmeasured["page_faults"], "still running") {
				t.Errorf("%d of 2 running: page faults %v, unmeasured %q", pid, fmtU(r.PageFaults), r.Unmeasured)
			}
			want(t, "wp faults (nothing after the samples)", r.WPFaults, 1)
		}
	}
}

// TestCountMissedExit: an exited task whose last counts no sample reported
// (its exit sample lost with the records of a full ring) cannot have them
// told: the counts are null for every task of its root, and the run is
// incomplete.
func TestCountMissedExit(t *testing.T) {
	cs := newCountSession(t)
	cs.AddRoot(100, 100, 1, "sh")
	f := feeder{t, cs.Session}
	f.comm(0, 100, 100, "prog", 1100, true)
	f.fork(0, unix.PERF_RECORD_FORK, 101, 100, 101, 100, 2000)
	cs.groupSample(0, mSwitch, 101, 101, 2100, []uint64{0, 1, 4, 1, 0}, nil)
	cs.count(0, mPageFaults, 3)
	cs.count(0, mExit, 1)
	f.lost(0, 1)
	f.fork(0, unix.PERF_RECORD_EXIT, 101, 100, 101, 100, 3000)
	cs.groupSample(0, mExit, 100, 100, 3900, []uint64{1, 0, 20, 0, 1}, nil)
	f.fork(0, unix.PERF_RECORD_EXIT, 100, 1, 100, 1, 4000)
	run, rows := cs.rows(t)
	if run.Complete || len(run.Incomplete) == 0 {
		t.Fatalf("run complete despite a lost exit")
	}
	for _, pid := range []int{100, 101} {
		if rows[pid].PageFaults != nil || rows[pid].Unmeasured["page_faults"] == "" {
			t.Errorf("%d: page faults %v, unmeasured %q; want null with the reason", pid, fmtU(rows[pid].PageFaults), rows[pid].Unmeasured)
		}
	}
	want(t, "wp faults (they add up)", rows[101].WPFaults, 1)
}

// TestExecFromThread: a thread that execs takes its process's pid (the
// kernel ends the leader, then gives the thread its tid); its records
// under the leader's tid are its own, its counts run on from before the
// exec, and the process ends when it does.
func TestExecFromThread(t *testing.T) {
	cs := newCountSession(t)
	cs.AddRoot(100, 100, 1, "sh")
	f := feeder{t, cs.Session}
	f.comm(0, 100, 100, "prog", 1100, true)
	f.fork(0, unix.PERF_RECORD_FORK, 100, 100, 105, 100, 2000) // thread 105
	cs.groupSample(1, mSwitch, 100, 105, 2100, []uint64{0, 1, 8, 1, 0}, nil)
	cs.groupSample(0, mExit, 100, 100, 2200, []uint64{1, 0, 20, 2, 1}, nil) // the leader ends
	f.fork(0, unix.PERF_RECORD_EXIT, 100, 1, 100, 1, 2201)
	f.comm(1, 100, 100, "newprog", 2300, true) // the thread, now tid 100
	cs.groupSample(1, mExit, 100, 100, 2900, []uint64{1, 1, 15, 3, 0}, []uint64{0, 1, 8, 1, 0})
	f.fork(1, unix.PERF_RECORD_EXIT, 100, 1, 100, 1, 3000)
	run, rows := cs.rows(t)
	if !run.Complete {
		t.Errorf("run incomplete: %q", run.Incomplete)
	}
	r := rows[100]
	want(t, "process page faults", r.PageFaults, 35)
	want(t, "process wp faults", r.WPFaults, 5)
	var comms []string
	for _, tk := range cs.Tasks() {
		if !tk.Exited {
			t.Errorf("task %d of the process is not seen ending", tk.Tid)
		}
		comms = append(comms, tk.Comm())
	}
	if len(comms) != 2 || comms[1] != "newprog" {
		t.Errorf("tasks' names %q, want the leader's and the thread's, newprog", comms)
	}
}

// TestPidUsedAgain: a pid that a new process takes after the first ended is
// two processes, two rows.
func TestPidUsedAgain(t *testing.T) {
	cs := newCountSession(t)
	cs.AddRoot(100, 100, 1, "sh")
	f := feeder{t, cs.Session}
	f.comm(0, 100, 100, "prog", 1100, true)
	f.fork(0, unix.PERF_RECORD_FORK, 101, 100, 101, 100, 2000)
	cs.groupSample(0, mExit, 101, 101, 2100, []uint64{1, 0, 4, 1, 0}, nil)
	f.fork(0, unix.PERF_RECORD_EXIT, 101, 100, 101, 100, 2101)
	f.fork(1, unix.PERF_RECORD_FORK, 101, 100, 101, 100, 2200)
	cs.groupSample(1, mExit, 101, 101, 2300, []uint64{1, 0, 9, 2, 0}, nil)
	f.fork(1, unix.PERF_RECORD_EXIT, 101, 100, 101, 100, 2301)
	cs.groupSample(0, mExit, 100, 100, 3900, []uint64{1, 0, 20, 0, 2}, nil)
	f.fork(0, unix.PERF_RECORD_EXIT, 100, 1, 100, 1, 4000)
	if err := cs.Stop(); err != nil {
		t.Fatal(err)
	}
	var got []uint64
	for _, tk := range cs.Tasks() {
		if tk.Pid != 101 {
			continue
		}
		var r report.Process
		cs.RowOf(&r, []*Task{tk})
		got = append(got, *r.PageFaults)
	}
	if len(got) != 2 || got[0]+got[1] != 13 || got[0] == got[1] {
		t.Errorf("pid 101's rows: page faults %v, want 4 and 9", got)
	}
}

// TestOrderedAcrossRings: records of two rings read out of time order (the
// second child's FORK in the later-read ring) are applied in time order.
func TestOrderedAcrossRings(t *testing.T) {
	cs := newCountSession(t)
	cs.AddRoot(100, 100, 1, "sh")
	var rec perfevents.Record
	push := func(cookie int, typ uint32, data []byte, pass uint64) {
		rec = perfevents.Record{Cookie: cookie, Type: typ, Data: data, Pass: pass}
		cs.order.push(&rec, recordTime(typ, data, cs.sampleTypeOf))
	}
	forkData := func(pid, ppid, tid, ptid uint32, tm uint64) []byte {
		d := binary.NativeEndian.AppendUint32(nil, pid)
		d = binary.NativeEndian.AppendUint32(d, ppid)
		d = binary.NativeEndian.AppendUint32(d, tid)
		d = binary.NativeEndian.AppendUint32(d, ptid)
		d = binary.NativeEndian.AppendUint64(d, tm)
		return append(d, trailer(pid, tid, tm, idDummy)...)
	}
	// Ring 1 (read first): 101's EXIT at 3000; ring 0: its FORK at 2000.
	push(1, unix.PERF_RECORD_EXIT, forkData(101, 100, 101, 100, 3000), 1)
	push(0, unix.PERF_RECORD_FORK, forkData(101, 100, 101, 100, 2000), 1)
	if err := cs.apply(^uint64(0)); err != nil {
		t.Fatal(err)
	}
	var n int
	for _, tk := range cs.Tasks() {
		if tk.Tid == 101 {
			n++
			if !tk.Exited || tk.StartNs != 2000 {
				t.Errorf("task 101: exited %v, start %d", tk.Exited, tk.StartNs)
			}
		}
	}
	if n != 1 {
		t.Errorf("%d tasks of tid 101, want 1", n)
	}
}

// TestStream: followed as it goes, a fork is handed on with its creator's
// counts at its creation's sample, an exit with the task's final counts; a
// task forgotten after its end still counts in the end's check.
func TestStream(t *testing.T) {
	cs := newCountSession(t)
	cs.group.members[cs.group.index[mNewTask]].sampled = true
	var forks []Fork
	var ends []TaskEnd
	cs.cfg.OnFork = func(f Fork) { forks = append(forks, f) }
	cs.cfg.OnTaskEnd = func(e TaskEnd) { ends = append(ends, e) }
	cs.cfg.Forget = true
	cs.AddRoot(100, 100, 1, "sh")
	f := feeder{t, cs.Session}
	f.comm(0, 100, 100, "prog", 1100, true)
	f.fork(0, unix.PERF_RECORD_FORK, 101, 100, 101, 100, 2000)
	cs.groupSample(0, mNewTask, 100, 100, 2001, []uint64{0, 0, 30, 2, 1}, nil)
	cs.groupSample(1, mExit, 101, 101, 2900, []uint64{1, 0, 7, 3, 0}, nil)
	f.fork(1, unix.PERF_RECORD_EXIT, 101, 100, 101, 100, 3000)
	cs.groupSample(0, mExit, 100, 100, 3900, []uint64{1, 0, 45, 4, 1}, []uint64{0, 0, 30, 2, 1})
	f.fork(0, unix.PERF_RECORD_EXIT, 100, 1, 100, 1, 4000)
	if err := cs.apply(^uint64(0)); err != nil {
		t.Fatal(err)
	}
	if len(forks) != 1 || forks[0].Child.Pid != 101 || forks[0].Thread || forks[0].ParentCounts.PageFaults != 30 || forks[0].ParentCounts.WPFaults != 2 {
		t.Errorf("forks %+v, want 101 forked by 100 at its 30 page faults and 2 wp faults", forks)
	}
	if len(ends) != 2 || ends[0].Task.Pid != 101 || ends[0].Counts.PageFaults != 7 || ends[0].Counts.WPFaults != 3 || ends[0].Why != "" ||
		ends[1].Task.Pid != 100 || ends[1].Counts.PageFaults != 45 {
		t.Errorf("ends %+v, want 101's 7 page faults and 3 wp faults, then 100's 45", ends)
	}
	run, rows := cs.rows(t)
	if !run.Complete || len(rows) != 0 {
		t.Errorf("complete %v (%q), %d rows; want complete and no row (every task forgotten)", run.Complete, run.Incomplete, len(rows))
	}
}

// TestExitCallThenSwitch: where the exit tracepoint fires too late
// (exitSyscall, 6.12 to 6.15), a task that left its CPU after its exit
// call, sampled again on the way out, still ends with its counts whole:
// nothing counts after the call.
func TestExitCallThenSwitch(t *testing.T) {
	cs := newCountSession(t)
	g := cs.group
	g.method, cs.method = exitSyscall, exitSyscall
	g.members[0].kind = mExitCall
	delete(g.index, mExit)
	g.index[mExitCall] = 0
	var ends []TaskEnd
	cs.cfg.OnTaskEnd = func(e TaskEnd) { ends = append(ends, e) }
	cs.AddRoot(100, 100, 1, "sh")
	f := feeder{t, cs.Session}
	f.comm(0, 100, 100, "prog", 1100, true)
	f.fork(0, unix.PERF_RECORD_FORK, 101, 100, 101, 100, 2000)
	cs.groupSample(1, mExitCall, 101, 101, 2900, []uint64{1, 0, 7, 3, 0}, nil)
	cs.groupSample(1, mSwitch, 101, 101, 2950, []uint64{1, 1, 7, 3, 0}, []uint64{1, 0, 7, 3, 0})
	f.fork(1, unix.PERF_RECORD_EXIT, 101, 100, 101, 100, 3000)
	cs.groupSample(0, mExitCall, 100, 100, 3900, []uint64{1, 0, 45, 4, 1}, nil)
	f.fork(0, unix.PERF_RECORD_EXIT, 100, 1, 100, 1, 4000)
	if err := cs.apply(^uint64(0)); err != nil {
		t.Fatal(err)
	}
	if len(ends) != 2 || ends[0].Task.Pid != 101 || ends[0].Why != "" || ends[0].Counts.PageFaults != 7 || ends[0].Counts.WPFaults != 3 {
		t.Errorf("ends %+v, want 101's 7 page faults and 3 wp faults, known whole", ends)
	}
	run, rows := cs.rows(t)
	if !run.Complete {
		t.Errorf("incomplete: %q", run.Incomplete)
	}
	want(t, "child's page faults", rows[101].PageFaults, 7)
}
