package engine

import (
	"cmp"
	"slices"

	"github.com/cowtrace/cowtrace/internal/cow"
)

// A trace can be followed as it goes (cowtrace watch) rather than read at
// its end: each fork and each task's end is handed to the caller, in time
// order, with the counts of the tasks concerned at that instant, and with
// Config.Forget a task is dropped once it ended, so that the session's
// memory does not grow with the tasks a long trace sees.

// TaskRef names one task of the trace: its ID is unique among the
// session's tasks however its tid is used again, its Proc is its
// process's (engine.Task.Proc).
type TaskRef struct {
	ID, Proc, Pid, Tid int
	Comm               string
}

// Counts are one task's counts at one instant.
type Counts struct {
	PageFaults, WPFaults, Copies uint64
	// CopiesByCause splits Copies where the method tells (WPCopies are
	// a write-protect fault's, FirstWriteCopies a private file page's
	// first write's); ByCause says it does.
	WPCopies, FirstWriteCopies uint64
	ByCause                    bool
}

// Add adds c's counts to a's (ByCause is the session's, the same in all).
func (a *Counts) Add(c Counts) {
	a.PageFaults += c.PageFaults
	a.WPFaults += c.WPFaults
	a.Copies += c.Copies
	a.WPCopies += c.WPCopies
	a.FirstWriteCopies += c.FirstWriteCopies
	a.ByCause = c.ByCause
}

// Sub is a's counts less b's, each at least 0.
func (a Counts) Sub(b Counts) Counts {
	d := func(x, y uint64) uint64 { return x - min(x, y) }
	return Counts{PageFaults: d(a.PageFaults, b.PageFaults), WPFaults: d(a.WPFaults, b.WPFaults), Copies: d(a.Copies, b.Copies),
		WPCopies: d(a.WPCopies, b.WPCopies), FirstWriteCopies: d(a.FirstWriteCopies, b.FirstWriteCopies), ByCause: a.ByCause && b.ByCause}
}

// Fork is a task a traced task created.
type Fork struct {
	TimeNs        uint64 // CLOCK_MONOTONIC
	Parent, Child TaskRef
	// Thread: the child shares its creator's process (clone of a thread).
	Thread bool
	// ParentCounts are the creator's counts at the fork; exact where the
	// kernel samples the creation (count mode), else as of the creator's
	// latest records.
	ParentCounts Counts
}

// TaskEnd is a task that exited, with its counts over its whole traced life.
type TaskEnd struct {
	TimeNs uint64
	Task   TaskRef
	Counts Counts
	// Why says why the counts are not known whole, "" when they are.
	Why string
}

// TaskCounts is a task's counts at one of its samples (count mode): as it
// left a CPU, forked or exited; in classify mode, those of the processes
// the trace did not see created, as each task of their trees ends
// (streamRootCounts).
type TaskCounts struct {
	TimeNs uint64
	Task   TaskRef
	Counts Counts
	// More: the counts of another task of the same process at the same
	// instant follow, so that a process's counts are taken whole.
	More bool
}

// Measures says which of Counts' figures the stream measures in this
// session, once its events are open: a figure it does not measure is 0 in
// every Counts, and the reason says why.
type Measures struct {
	// Sampled: each task's counts come from count mode's samples, so a
	// process's counts are known at each of its samples (as a thread
	// leaves a CPU); else, in classify mode, as of the records applied:
	// at its forks, its end, and as each task of its tree ends.
	Sampled bool
	// NoCopies and NoWPFaults say why Copies and WPFaults are not
	// measured, "" when they are.
	NoCopies, NoWPFaults string
	// ByCause: copies are split by cause (Counts.WPCopies and
	// FirstWriteCopies) wherever a task's Counts.ByCause says so.
	ByCause bool
}

// StreamMeasures says what the stream's Counts hold in this session; call
// it after the events are opened (the mode is settled at the first).
func (s *Session) StreamMeasures() Measures {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := Measures{Sampled: s.group != nil}
	switch {
	case s.copyRoutineLocked() != "":
		m.ByCause = s.causeProbe != "" && s.probeErrs[s.causeProbe] == nil
	case s.copyPath != nil && s.tp.Alloc != nil:
		m.ByCause = true
	default:
		m.NoCopies = "no copy routine can be probed here and copies are not told by their allocation's stack (cowtrace doctor says why)"
	}
	switch {
	case s.group != nil:
		if !s.group.has(mWP) && !s.group.has(mKWP) && !(s.tp.Fault == nil && slices.Contains(s.probedLocked(), cow.WPFunction)) {
			m.NoWPFaults = "neither the fault tracepoints nor a kprobe on " + cow.WPFunction + " count write-protect faults here"
		}
	case s.tp.Fault == nil || s.faultAddr:
		m.NoWPFaults = "faults are known by their address only here (no x86 fault tracepoints), not by kind"
	}
	return m
}

// streaming says whether the caller follows the trace as it goes.
func (s *Session) streaming() bool {
	return s.cfg.OnFork != nil || s.cfg.OnTaskEnd != nil || s.cfg.OnCounts != nil
}

func (s *Session) refLocked(tk *Task) TaskRef {
	return TaskRef{ID: tk.ID, Proc: tk.Proc, Pid: tk.Pid, Tid: tk.Tid, Comm: s.liveCommLocked(tk)}
}

// countsLocked are task tk's counts as of the records applied: in count
// mode its last sample on each CPU, summed, with the copies its allocation
// stacks told; else what its samples classified.
func (s *Session) countsLocked(tk *Task) Counts {
	var c Counts
	if s.group != nil {
		g := s.group
		for _, cc := range tk.cpuCounts {
			if m, ok := g.index[mPageFaults]; ok {
				c.PageFaults += cc.vals[m]
			}
			for _, k := range []memberKind{mWP, mKWP} {
				if m, ok := g.index[k]; ok {
					c.WPFaults += cc.vals[m]
				}
			}
			for m, mem := range g.members {
				if mem.kind != mProbe {
					continue
				}
				switch mem.probe {
				case s.copyRoutineLocked():
					c.Copies += cc.vals[m]
				case s.causeProbe:
					c.FirstWriteCopies += cc.vals[m]
				}
				if s.tp.Fault == nil && mem.probe == cow.WPFunction {
					c.WPFaults += cc.vals[m]
				}
			}
		}
	} else {
		in, out := tk.classes()
		cow.AddClasses(&in, out)
		c.PageFaults, c.WPFaults = in.Total(), in.WP
		if s.sampledCounter(0) {
			c.PageFaults = tk.counters[0]
		}
		if r := s.copyRoutineLocked(); r != "" {
			c.Copies = tk.probes[r]
			c.FirstWriteCopies = tk.probes[s.causeProbe]
		}
	}
	switch {
	case s.copyRoutineLocked() != "":
		c.ByCause = s.causeProbe != "" && c.FirstWriteCopies <= c.Copies
		c.WPCopies = c.Copies - min(c.Copies, c.FirstWriteCopies)
	case s.copyPath != nil && s.tp.Alloc != nil:
		c.WPCopies, c.FirstWriteCopies = tk.copiesBy[cow.WPCopy], tk.copiesBy[cow.FirstWriteCopy]
		c.Copies, c.ByCause = c.WPCopies+c.FirstWriteCopies, true
	}
	return c
}

// call queues a callback of the stream, made once the records being
// applied are, outside the lock.
func (s *Session) call(f func()) { s.calls = append(s.calls, f) }

// streamFork says that parent created child, now or, in count mode, at
// the creator's task_newtask sample that follows.
func (s *Session) streamFork(parent, child *Task, ns uint64) {
	if s.cfg.OnFork == nil {
		return
	}
	if s.group != nil && s.group.members[s.group.index[mNewTask]].sampled {
		parent.pendingForks = append(parent.pendingForks, child)
		return
	}
	s.emitFork(parent, child, ns)
}

func (s *Session) emitFork(parent, child *Task, ns uint64) {
	f := Fork{TimeNs: ns, Parent: s.refLocked(parent), Child: s.refLocked(child), Thread: child.Pid == parent.Pid,
		ParentCounts: s.countsLocked(parent)}
	on := s.cfg.OnFork
	s.call(func() { on(f) })
}

// streamSample passes on a count sample of task tk, of member kind k.
func (s *Session) streamSample(tk *Task, k memberKind, ns uint64) {
	if k == mNewTask && len(tk.pendingForks) > 0 {
		child := tk.pendingForks[0]
		tk.pendingForks = tk.pendingForks[1:]
		s.emitFork(tk, child, ns)
	}
	if on := s.cfg.OnCounts; on != nil {
		tc := TaskCounts{TimeNs: ns, Task: s.refLocked(tk), Counts: s.countsLocked(tk)}
		s.call(func() { on(tc) })
	}
}

// streamExit says that tk exited, and forgets it with Config.Forget.
func (s *Session) streamExit(tk *Task, ns uint64) {
	for _, child := range tk.pendingForks {
		// A creation whose sample never came (lost): the counts as of
		// the last records.
		s.emitFork(tk, child, ns)
	}
	tk.pendingForks = nil
	if on := s.cfg.OnTaskEnd; on != nil {
		te := TaskEnd{TimeNs: ns, Task: s.refLocked(tk), Counts: s.countsLocked(tk), Why: s.partialLocked(tk)}
		switch {
		case te.Why != "":
		case s.endNs != 0 && ns > s.endNs:
			// Read in Stop's drain: it ended after counting did.
			te.Why = "still running when the trace ended (it exited while the trace was stopping): its counts are those until the end"
		case s.group != nil && !s.final(tk):
			te.Why = "its last counts were not sampled at its exit"
		}
		s.call(func() { on(te) })
	}
	if s.group == nil && s.cfg.OnCounts != nil && tk.parent != nil {
		s.streamRootCounts(ns)
	}
	if s.cfg.Forget {
		s.forgetLocked(tk)
	}
}

// forgetLocked drops an exited task, keeping what the end of the trace
// checks against the kernel's totals: its counts by group, and that a FORK
// was read for it.
func (s *Session) forgetLocked(tk *Task) {
	if s.group != nil {
		if s.forgotten == nil {
			s.forgotten = map[uint64][]uint64{}
		}
		for _, cc := range tk.cpuCounts {
			sums := s.forgotten[cc.leader]
			if sums == nil {
				sums = make([]uint64, len(s.group.members))
				s.forgotten[cc.leader] = sums
			}
			for m, v := range cc.vals {
				sums[m] += v
			}
		}
		if tk.parent != nil {
			if s.forgottenForks == nil {
				s.forgottenForks = map[int]uint64{}
			}
			s.forgottenForks[s.rootOfLocked(tk, len(s.opened) == 1)]++
		}
	}
	if s.tasks[tk.Tid] == tk {
		delete(s.tasks, tk.Tid)
	}
	tk.forgotten = true
	s.nForgotten++
	if s.nForgotten > 1024 && s.nForgotten > len(s.all)/2 {
		s.all = slices.DeleteFunc(s.all, func(t *Task) bool { return t.forgotten })
		s.nForgotten = 0
	}
}

// streamRootCounts, in classify mode, hands on the counts of every live
// task of the processes the trace did not see created (the attached one,
// the command: a watcher's parents) as a task of their trees ends. A
// classify-mode task has no samples of its counts, and a watcher needs a
// parent's counts as its child's tree ends to close the child's episode,
// not at the parent's next fork, which may be hours away. Records are
// applied in time order, so the counts are exact as of the end, ns.
func (s *Session) streamRootCounts(ns uint64) {
	roots := map[int]bool{}
	for _, tk := range s.tasks {
		if tk.parent == nil {
			roots[tk.Proc] = true
		}
	}
	var live []*Task
	for _, tk := range s.tasks {
		if roots[tk.Proc] && !tk.Exited {
			live = append(live, tk)
		}
	}
	slices.SortFunc(live, func(a, b *Task) int { return cmp.Or(cmp.Compare(a.Proc, b.Proc), cmp.Compare(a.ID, b.ID)) })
	on := s.cfg.OnCounts
	for i, tk := range live {
		tc := TaskCounts{TimeNs: ns, Task: s.refLocked(tk), Counts: s.countsLocked(tk), More: i+1 < len(live) && live[i+1].Proc == tk.Proc}
		s.call(func() { on(tc) })
	}
}
