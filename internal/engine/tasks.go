package engine

import (
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"

	"github.com/cowtrace/cowtrace/internal/cow"
	"github.com/cowtrace/cowtrace/perfevents"
	"github.com/cowtrace/cowtrace/report"
)

// Task is one thread the trace saw: opened directly (a root), or known from
// its records. A tid used again, by a new task once the pid space wraps or
// by a thread that execs and takes its process's pid, is another Task.
type Task struct {
	Pid, Tid int
	// ID is the task's own among the session's tasks, whatever its tid.
	ID int
	// Proc is the ID of the leader of the task's process: the tasks of one
	// process share it, and two processes that had the same pid do not.
	Proc      int
	Ppid      int // the parent process (for a thread: its process's parent)
	ParentTid int // the task that created it; 0 for a root
	Root      bool
	Exited    bool
	StartNs   uint64 // fork, exec of the command, or the open
	EndNs     uint64
	// Comms are the task's names in time order, once Settle has run.
	Comms []string
	// Execs are the times (CLOCK_MONOTONIC) of the task's execs, from its
	// COMM records that carry PERF_RECORD_MISC_COMM_EXEC, in time order.
	Execs []uint64

	forked   bool        // a FORK record (or the root's opening) was seen
	execSeen bool        // the root's exec
	commAt   []commEvent // names with their times, as read
	events   []*perfevents.Event

	counters [3]uint64 // page-faults, minor-faults, major-faults
	// streams classify the task's faults in ring order, one per ring: a
	// copy is inferred from a fault and the allocation that follows it in
	// the same ring. A task moved to another CPU between a fault and its
	// allocation (rare: the allocation would have to sleep) loses that
	// one inference.
	streams map[int]*cow.Stream
	probes  map[string]uint64
	counted [cow.NumCountKinds]uint64
	// copiesBy counts the copies told by their stack, by cause.
	copiesBy [cow.FirstWriteCopy + 1]uint64
	// cpuCounts are the task's counts from its groups' samples (count
	// mode), one entry per CPU group it sampled in.
	cpuCounts []cpuCounts
	// lastSample is the member whose sample was the task's latest, at
	// lastSampleNs.
	lastSample   memberKind
	lastSampleNs uint64
	// exitCalled: a sample of the task's exit or exit_group system call
	// came (exitSyscall).
	exitCalled bool
	// ownRecord: the task wrote an EXIT or a COMM record (whole.go).
	ownRecord bool
	// afterExit: the task took its tid from one that had exited; without
	// a FORK, its records came after that exit (strayLocked).
	afterExit bool
	// heldRoot is the root whose classify-mode events sampled the task
	// first, and twice says another root's did too (whole.go).
	heldRoot int
	twice    bool
	// offAfterFreeze: the task was seen off its CPU after Stop froze the
	// counters (freeze).
	offAfterFreeze bool
	// parent is the task that created it, when its FORK was seen.
	parent *Task
	// pendingForks are the tasks it created whose creation's sample
	// (stream.go) has not come yet.
	pendingForks []*Task
	// forgotten: dropped after its end (Config.Forget).
	forgotten bool
}

// commEvent is a name a task took (exec, prctl) and when.
type commEvent struct {
	ns   uint64
	name string
}

// Parent is the task that created t, nil when its FORK was not seen.
func (t *Task) Parent() *Task { return t.parent }

// Comm is the task's latest name, "?" when none is known.
func (t *Task) Comm() string {
	if len(t.Comms) == 0 {
		return "?"
	}
	return t.Comms[len(t.Comms)-1]
}

func (t *Task) setComm(c string) {
	if len(t.Comms) == 0 || t.Comms[len(t.Comms)-1] != c {
		t.Comms = append(t.Comms, c)
	}
}

// add accounts a counter's final count.
func (t *Task) add(info eventInfo, v uint64) {
	switch info.kind {
	case kindCounter:
		t.counters[info.counter] += v
	case kindProbe:
		t.probes[info.probe] += v
	case kindCounted:
		t.counted[info.counted] += v
	}
}

func (t *Task) stream(ring int) *cow.Stream {
	st := t.streams[ring]
	if st == nil {
		st = &cow.Stream{}
		t.streams[ring] = st
	}
	return st
}

// classes sums the task's fault classes over its streams.
func (t *Task) classes() (in, out report.FaultClasses) {
	for _, st := range t.streams {
		cow.AddClasses(&in, st.InRegion)
		cow.AddClasses(&out, st.Outside)
	}
	return in, out
}

// taskLocked returns the live task tid, or a new one. Records are applied
// in time order (orderer), so a task's FORK comes before its other records,
// and a task that exited is never the one a later record names, with one
// exception: when a thread execs, the kernel ends the other threads, the
// leader too, and gives the thread the leader's tid. The first record under
// the leader's tid after that is the exec's; it belongs to the one thread of
// the process still alive. pid 0 leaves an existing task's pid alone.
func (s *Session) taskLocked(pid, tid int) *Task {
	tk := s.tasks[tid]
	if tk != nil && !tk.Exited {
		return tk
	}
	if tk != nil && tk.Tid == tk.Pid && (pid == 0 || pid == tid) {
		if heir := s.execHeirLocked(tk); heir != nil {
			s.tasks[tid] = heir
			return heir
		}
	}
	return s.newTaskLocked(pid, tid)
}

// newTaskLocked makes a new task tid, the current one of that tid.
func (s *Session) newTaskLocked(pid, tid int) *Task {
	s.nextID++
	tk := &Task{Pid: pid, Tid: tid, ID: s.nextID, Proc: s.nextID, streams: map[int]*cow.Stream{}, probes: map[string]uint64{}}
	tk.afterExit = s.tasks[tid] != nil
	if pid != tid {
		if l := s.tasks[pid]; l != nil && !l.Exited {
			tk.Proc = l.Proc
		}
	}
	s.tasks[tid] = tk
	s.all = append(s.all, tk)
	return tk
}

// execHeirLocked is the thread of exited leader l's process that took l's
// tid by an exec: the process's only thread still alive.
func (s *Session) execHeirLocked(l *Task) *Task {
	var heir *Task
	for _, tk := range s.all {
		if tk.Proc == l.Proc && tk != l && !tk.Exited {
			if heir != nil {
				return nil
			}
			heir = tk
		}
	}
	return heir
}

// AddRoot records a task the events were opened on directly, with what
// /proc says about it (attach) or what cowtrace knows (run).
func (s *Session) AddRoot(pid, tid, ppid int, comm string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	tk := s.taskLocked(pid, tid)
	if tid != pid {
		if l := s.tasks[pid]; l != nil && l != tk {
			tk.Proc = l.Proc
		}
	}
	tk.Root, tk.forked, tk.Ppid = true, true, ppid
	if comm != "" && len(tk.Comms) == 0 {
		tk.Comms = []string{comm}
		tk.commAt = []commEvent{{ns: 0, name: comm}}
	}
}

// Tasks settles every task's names and returns the tasks, after Stop: the
// caller may read them, not change them.
func (s *Session) Tasks() []*Task {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, tk := range s.tasks {
		if tk.Root && tk.StartNs == 0 {
			tk.StartNs = s.startNs
		}
	}
	s.settleNamesLocked()
	out := slices.DeleteFunc(slices.Clone(s.all), func(t *Task) bool { return t.forgotten })
	sort.SliceStable(out, func(i, j int) bool { return out[i].Tid < out[j].Tid })
	return out
}

// Span is the trace's start and end (CLOCK_MONOTONIC).
func (s *Session) Span() (start, end uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.startNs, s.endNs
}

// NameAt is what task tid was called at time ns from the records read so
// far: its last COMM before ns, else its parent's name when it forked (fork
// copies the name), else what its process's leader or /proc says.
func (s *Session) NameAt(tid int, ns uint64) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	tk := s.tasks[tid]
	if tk == nil {
		return "?"
	}
	return s.nameAtLocked(tk, ns, 0)
}

func (s *Session) nameAtLocked(tk *Task, ns uint64, depth int) string {
	name, best := "", uint64(0)
	for _, c := range tk.commAt {
		if c.ns <= ns && (name == "" || c.ns >= best) {
			best, name = c.ns, c.name
		}
	}
	if name != "" {
		return name
	}
	if p := tk.parent; p != nil && p != tk && !tk.Root && depth < 64 {
		if n := s.nameAtLocked(p, tk.StartNs, depth+1); n != "?" {
			return n
		}
	}
	return s.liveCommLocked(tk)
}

// liveCommLocked names a task whose FORK or COMM record may still be unread
// in another CPU's ring: its process's leader, or /proc while it lives.
func (s *Session) liveCommLocked(tk *Task) string {
	if len(tk.Comms) > 0 {
		return tk.Comm()
	}
	if l := s.tasks[tk.Pid]; l != nil && l.Proc == tk.Proc && len(l.Comms) > 0 {
		return l.Comm()
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/comm", tk.Pid, tk.Tid)); err == nil {
		return strings.TrimSuffix(string(b), "\n")
	}
	return "?"
}

// settleNamesLocked puts every task's names in time order, once all records
// are read: COMM records of one task can sit in two CPUs' rings and be read
// out of order, and a task's first name is its parent's name when it forked
// (fork copies it; a COMM record comes only when it changes), which may be
// read after the task's own first records.
func (s *Session) settleNamesLocked() {
	done := map[*Task]bool{}
	var settle func(tk *Task, depth int)
	settle = func(tk *Task, depth int) {
		if done[tk] {
			return
		}
		done[tk] = true
		sort.SliceStable(tk.commAt, func(i, j int) bool { return tk.commAt[i].ns < tk.commAt[j].ns })
		slices.Sort(tk.Execs)
		var names []string
		if p := tk.parent; p != nil && p != tk && !tk.Root && depth < 1000 {
			settle(p, depth+1)
			if n := p.nameAt(tk.StartNs); n != "" {
				names = append(names, n)
			}
		}
		for _, c := range tk.commAt {
			if len(names) == 0 || names[len(names)-1] != c.name {
				names = append(names, c.name)
			}
		}
		if len(names) > 0 {
			tk.Comms = names
		}
	}
	for _, tk := range s.all {
		settle(tk, 0)
	}
}

// nameAt is the task's name at time ns, once settled.
func (t *Task) nameAt(ns uint64) string {
	name := ""
	if len(t.Comms) > 0 {
		name = t.Comms[0]
	}
	for _, c := range t.commAt {
		if c.ns > ns {
			break
		}
		name = c.name
	}
	return name
}
