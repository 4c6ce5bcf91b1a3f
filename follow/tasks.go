package follow

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cowtrace/cowtrace/experiment"
	"github.com/cowtrace/cowtrace/perfevents"
)

// task is one thread the trace saw, from its records.
type task struct {
	pid, tid  int
	ppid      int // the parent process (for a thread: its process's parent)
	parentTid int // the task that created it; 0 for a root
	root      int // index in Tracer.roots of the events it inherited
	isRoot    bool
	execSeen  bool
	forked    bool        // a FORK record (or the root's opening) was seen
	comms     []string    // names in the order they were read (see names)
	commAt    []commEvent // the same with their times, for names
	startNs   uint64      // fork, exec of the command, or the attach
	endNs     uint64
	exited    bool

	counters [3]uint64 // samples of the software fault events
	// faults classify the task's faults in ring order, one stream per CPU
	// ring: a copy is inferred from a fault and the allocation that
	// follows it on the same CPU. A task moved to another CPU between a
	// fault and its allocation (rare: the allocation would have to
	// sleep) loses that one inference.
	faults map[int]*experiment.TaskFaults
	probes map[string]uint64
}

// commEvent is a name a task took (exec, prctl) and when.
type commEvent struct {
	ns   uint64
	name string
}

func (t *task) comm() string {
	if len(t.comms) == 0 {
		return "?"
	}
	return t.comms[len(t.comms)-1]
}

func (t *task) setComm(c string) {
	if len(t.comms) == 0 || t.comms[len(t.comms)-1] != c {
		t.comms = append(t.comms, c)
	}
}

// taskLocked returns the task tid, creating it when its first record comes
// before its FORK record (the two can be in different CPUs' rings).
func (t *Tracer) taskLocked(pid, tid int) *task {
	tk := t.tasks[tid]
	if tk == nil {
		tk = &task{pid: pid, tid: tid, root: -1, faults: map[int]*experiment.TaskFaults{}, probes: map[string]uint64{}}
		t.tasks[tid] = tk
	}
	return tk
}

// AddRoot records a task the events were opened on directly, with what
// /proc says about it (attach) or what cowtrace knows (run).
func (t *Tracer) AddRoot(pid, tid, ppid int, comm string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	tk := t.taskLocked(pid, tid)
	tk.isRoot, tk.forked, tk.ppid = true, true, ppid
	for i, r := range t.roots {
		if r.tid == tid {
			tk.root = i
		}
	}
	if comm != "" && len(tk.comms) == 0 {
		tk.comms = []string{comm}
		tk.commAt = []commEvent{{ns: 0, name: comm}}
	}
}

// read consumes records until the deadline set by Stop.
func (t *Tracer) read() error {
	var rec perfevents.Record
	var s perfevents.Sample
	for {
		err := t.reader.ReadInto(&rec)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				t.mu.Lock()
				ready := t.flushTimelineLocked(^uint64(0))
				t.mu.Unlock()
				for _, e := range ready {
					t.opt.Timeline(e)
				}
				return nil
			}
			return err
		}
		t.mu.Lock()
		ev, err := t.record(&rec, &s)
		var ready []TimelineEvent
		if ev != nil {
			t.pending = append(t.pending, pendingEvent{ev: *ev, tk: t.tasks[ev.Tid], ns: s.Time})
			t.newestNs = max(t.newestNs, s.Time)
			if t.newestNs > timelineLag {
				ready = t.flushTimelineLocked(t.newestNs - timelineLag)
			}
		}
		t.mu.Unlock()
		if err != nil {
			return err
		}
		for _, e := range ready {
			t.opt.Timeline(e)
		}
	}
}

// timelineLag is how long (in sample time) a timeline event waits before it is
// printed. The rings of the CPUs are read one after another, so the FORK or
// COMM record that names a task, and earlier events of other CPUs, can be
// read after an event; perf's ordered events wait for the same reason.
const timelineLag = uint64(250 * time.Millisecond)

// pendingEvent is a timeline event waiting for its name and its turn.
type pendingEvent struct {
	ev TimelineEvent
	tk *task
	ns uint64 // sample time
}

// flushTimelineLocked returns, in time order and named as their task was
// called at that time, the pending events up to sample time upTo.
func (t *Tracer) flushTimelineLocked(upTo uint64) []TimelineEvent {
	sort.SliceStable(t.pending, func(i, j int) bool { return t.pending[i].ns < t.pending[j].ns })
	n := sort.Search(len(t.pending), func(i int) bool { return t.pending[i].ns > upTo })
	if n == 0 {
		return nil
	}
	out := make([]TimelineEvent, n)
	for i, p := range t.pending[:n] {
		out[i] = p.ev
		if p.tk != nil {
			out[i].Comm = t.nameAtLocked(p.tk, p.ns, 0)
		}
	}
	t.pending = append(t.pending[:0], t.pending[n:]...)
	return out
}

// nameAtLocked is what task tk was called at time ns from the records read so
// far: its last COMM before ns, else its parent's name when it forked (fork
// copies the name), else what liveComm finds.
func (t *Tracer) nameAtLocked(tk *task, ns uint64, depth int) string {
	name, best := "", uint64(0)
	for _, c := range tk.commAt {
		if c.ns <= ns && (name == "" || c.ns >= best) {
			best, name = c.ns, c.name
		}
	}
	if name != "" {
		return name
	}
	if p := t.tasks[tk.parentTid]; p != nil && p != tk && !tk.isRoot && depth < 64 {
		if n := t.nameAtLocked(p, tk.startNs, depth+1); n != "?" {
			return n
		}
	}
	return t.liveComm(tk)
}

// record applies one record; it returns the timeline event it makes, if any.
func (t *Tracer) record(rec *perfevents.Record, s *perfevents.Sample) (*TimelineEvent, error) {
	switch rec.Type {
	case unix.PERF_RECORD_SAMPLE:
		if len(rec.Data) < 8 {
			return nil, fmt.Errorf("sample of %d bytes: %w", len(rec.Data), perfevents.ErrTruncated)
		}
		info, ok := t.ids[binary.NativeEndian.Uint64(rec.Data)]
		if !ok {
			return nil, nil
		}
		st := uint64(idType)
		switch info.kind {
		case kindFault, kindKernelFault, kindAlloc:
			st = tpType
		case kindProbe:
			st = kprobeType
		}
		if err := perfevents.DecodeSample(rec.Data, st, s); err != nil {
			return nil, err
		}
		tk := t.taskLocked(int(s.Pid), int(s.Tid))
		switch info.kind {
		case kindCounter:
			tk.counters[info.counter]++
		case kindFault, kindKernelFault:
			read := t.tp.Fault
			if info.kind == kindKernelFault {
				read = t.tp.KernelFault
			}
			addr, code, err := read(s.Raw)
			if err != nil {
				return nil, err
			}
			if tk.faults[rec.Cookie] == nil {
				tk.faults[rec.Cookie] = &experiment.TaskFaults{}
			}
			class, ok := tk.faults[rec.Cookie].Fault(addr, code, info.kind == kindKernelFault)
			if ok && class == experiment.FaultWP {
				return t.timeline(tk, s.Time, "wp_fault", addr), nil
			}
		case kindAlloc:
			if f := tk.faults[rec.Cookie]; f != nil {
				if err := f.Alloc(t.tp, s.Raw); err != nil {
					return nil, err
				}
			}
		case kindProbe:
			tk.probes[info.probe]++
			return t.timeline(tk, s.Time, "kprobe:"+info.probe, s.IP), nil
		}
	case unix.PERF_RECORD_FORK:
		pid, ppid, tid, ptid, tm, err := perfevents.DecodeFork(rec.Data)
		if err != nil {
			return nil, err
		}
		tk := t.taskLocked(int(pid), int(tid))
		parent := t.taskLocked(int(ppid), int(ptid))
		tk.forked, tk.parentTid, tk.startNs = true, int(ptid), tm
		tk.ppid = int(ppid)
		if pid == ppid {
			tk.ppid = parent.ppid // a thread: its process's parent
		}
		tk.root = parent.root
		if len(tk.comms) == 0 && len(parent.comms) > 0 {
			// fork copies the name (a COMM record comes only when it
			// changes); settleNames checks it against the times.
			tk.comms = []string{parent.comm()}
		}
	case unix.PERF_RECORD_EXIT:
		pid, _, tid, _, tm, err := perfevents.DecodeFork(rec.Data)
		if err != nil {
			return nil, err
		}
		tk := t.taskLocked(int(pid), int(tid))
		tk.exited, tk.endNs = true, tm
	case unix.PERF_RECORD_COMM:
		pid, tid, comm, err := perfevents.DecodeComm(rec.Data)
		if err != nil {
			return nil, err
		}
		tk := t.taskLocked(int(pid), int(tid))
		if rec.Misc&unix.PERF_RECORD_MISC_COMM_EXEC != 0 && tk.isRoot && t.opt.StartAtExec && !tk.execSeen {
			// The command's life starts at its exec, whose time only the
			// sample_id trailer carries.
			tk.execSeen = true
			if tm, ok := trailerTime(rec.Data); ok {
				tk.startNs = tm
			}
		}
		tm, _ := trailerTime(rec.Data)
		tk.setComm(string(comm))
		tk.commAt = append(tk.commAt, commEvent{ns: tm, name: string(comm)})
	case unix.PERF_RECORD_LOST:
		_, n, err := perfevents.DecodeLost(rec.Data)
		if err != nil {
			return nil, err
		}
		t.lost += n
	case unix.PERF_RECORD_THROTTLE:
		t.throttled++
	}
	return nil, nil
}

// trailerTime reads TIME from a record's sample_id trailer, which is
// TID (8 bytes), TIME, IDENTIFIER for every event of the tracer: the time is
// the 16 bytes before the end's last 8.
func trailerTime(data []byte) (uint64, bool) {
	if len(data) < 24 {
		return 0, false
	}
	return binary.NativeEndian.Uint64(data[len(data)-16:]), true
}

func (t *Tracer) timeline(tk *task, tm uint64, event string, addr uint64) *TimelineEvent {
	if t.opt.Timeline == nil {
		return nil
	}
	var rel uint64
	if tm > t.startNs {
		rel = tm - t.startNs
	}
	return &TimelineEvent{TimeNs: rel, Pid: tk.pid, Tid: tk.tid, Comm: t.liveComm(tk), Event: event, Address: addr}
}

// liveComm names a task for the timeline. Its FORK or COMM record may still
// be unread in another CPU's ring; then its process's leader, or /proc while
// the task lives, says what it is called.
func (t *Tracer) liveComm(tk *task) string {
	if len(tk.comms) > 0 {
		return tk.comm()
	}
	if l := t.tasks[tk.pid]; l != nil && len(l.comms) > 0 {
		return l.comm()
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/comm", tk.pid, tk.tid)); err == nil {
		return strings.TrimSuffix(string(b), "\n")
	}
	return "?"
}

// settleNames puts every task's names in time order, once all records are
// read: COMM records of one task can sit in two CPUs' rings and be read out
// of order, and a task's first name is its parent's name when it forked
// (fork copies it; a COMM record comes only when it changes), which may be
// read after the task's own first records.
func (t *Tracer) settleNames() {
	done := map[*task]bool{}
	var settle func(tk *task, depth int)
	settle = func(tk *task, depth int) {
		if done[tk] {
			return
		}
		done[tk] = true
		sort.SliceStable(tk.commAt, func(i, j int) bool { return tk.commAt[i].ns < tk.commAt[j].ns })
		var names []string
		if p := t.tasks[tk.parentTid]; p != nil && p != tk && !tk.isRoot && depth < 1000 {
			settle(p, depth+1)
			if n := p.nameAt(tk.startNs); n != "" {
				names = append(names, n)
			}
		}
		for _, c := range tk.commAt {
			if len(names) == 0 || names[len(names)-1] != c.name {
				names = append(names, c.name)
			}
		}
		if len(names) > 0 {
			tk.comms = names
		}
	}
	for _, tk := range t.tasks {
		settle(tk, 0)
	}
}

// nameAt is the task's name at time ns, once settled.
func (tk *task) nameAt(ns uint64) string {
	name := ""
	if len(tk.comms) > 0 {
		name = tk.comms[0]
	}
	for _, c := range tk.commAt {
		if c.ns > ns {
			break
		}
		name = c.name
	}
	return name
}
