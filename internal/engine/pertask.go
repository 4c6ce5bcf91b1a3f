package engine

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cowtrace/cowtrace/internal/cow"
	"github.com/cowtrace/cowtrace/perfevents"
)

// Count mode for inherited targets (run, attach) counts every fault, copy
// and probe hit in the kernel, and learns each task's own counts from
// samples of a group of counters, taken where the task's counting ends:
// each time it leaves a CPU, and as it exits.
//
// The group is inherited and opened on every CPU, as perf record's events
// are; each task gets its own copy of it on each CPU, which counts what the
// task does there. A member sampled with PERF_SAMPLE_READ (Linux 6.12)
// reads the sampling task's own copy of every member: the context-switch
// member writes the task's counts on that CPU each time it leaves it, the
// leader, on sched:sched_process_exit, its counts on its last CPU as it
// exits. A task's count is the sum over CPUs of its last sample on each.
// Such a member also keeps the kernel from swapping the event contexts of
// a parent and its child (nr_no_switch_fast), which would move counts
// between tasks.
//
// Every sample is written on the CPU it describes into that CPU's ring.
// The kernel's other way, the PERF_RECORD_READ that an inherit_stat event
// writes as a task exits (perf record -s), writes the READ of every CPU's
// copy from the exiting task's CPU into the other CPUs' rings: a ring has
// no lock against a second CPU writing it (perf_output_begin's nest count
// is per CPU), and under a tree of short processes on two CPUs a ring
// stopped publishing its head for good within seconds, silently.
//
// The run checks itself: the leader's read() sums every task's copies, the
// exited tasks' included, so per group and member the tasks' last samples
// must add up to it; a sampled member's own count is how many samples it
// wrote; task:task_newtask counts the tasks the FORK records must show.
// What does not add up is null in the rows, with the reason.

// countMethod is how a task's counts at its exit reach user space.
type countMethod string

const (
	// exitTracepoint: the leader samples at sched:sched_process_exit,
	// which the kernel fires before it tears the task's events down
	// (Linux 6.16 and later; perfevents.ExitSampled asks).
	exitTracepoint countMethod = "exit-tracepoint"
	// exitSyscall: the tracepoint fires too late (6.12 to 6.15), so the
	// last counts are those sampled at the exit and exit_group system
	// calls and at signal delivery (fatal signals end tasks there);
	// that a task ended in neither is seen in the sums.
	exitSyscall countMethod = "exit-syscall"
)

// memberKind is what a member of the count group counts.
type memberKind int

const (
	mNone       memberKind = iota
	mExit                  // sched:sched_process_exit, the leader: a sample as each task exits
	mSwitch                // context switches: a sample as a task leaves a CPU
	mExitCall              // raw_syscalls:sys_enter of exit and exit_group (exitSyscall)
	mSignal                // signal:signal_deliver (exitSyscall)
	mPageFaults            // the page-faults software event
	mMinor                 // minor-faults
	mMajor                 // major-faults
	mWP                    // user-mode write-protect faults (filtered page_fault_user)
	mKWP                   // kernel-mode ones on user addresses (filtered page_fault_kernel)
	mNewTask               // task:task_newtask: tasks created
	mProbe                 // a kprobe's hits
)

// member is one event of the count group.
type member struct {
	kind    memberKind
	label   string // the event, as perf names it
	noun    string // what it counts, in the plural, for messages
	sampled bool   // it writes a sample, with the group's counts, at each event
	probe   string // mProbe: the function
	// open opens the member on task tid, CPU cpu, with a's settings, in
	// leader's group (nil: it is the leader).
	open func(a perfevents.Attr, tid, cpu int, leader *perfevents.Event) (*perfevents.Event, error)
}

// countTracepoints are the tracepoints count mode needs beyond cow's.
type countTracepoints struct {
	exit, newTask, sysEnter, signal uint64
}

// countGroup is the count group's shape, the same on every CPU and root.
type countGroup struct {
	method  countMethod
	members []member
	// index of each kind's member, -1 where absent.
	index map[memberKind]int
	// groups are the groups opened, one per root task and CPU.
	groups []*openGroup
	// byLeader finds a group by its leader's id.
	byLeader map[uint64]*openGroup
}

// openGroup is the group of one root task on one CPU.
type openGroup struct {
	root     int                 // the tid it was opened on
	ci       int                 // CPU index
	leaderID uint64              // the id its samples carry first
	events   []*perfevents.Event // by member index
	// sealID is the id of the member sealGroupsLocked added last, 0
	// before it did.
	sealID uint64
	// samples counts the samples read, by member index.
	samples []uint64
	// alloc is the allocation tracepoint opened beside the group (copies
	// told by their stack), and allocSamples the samples read from it.
	alloc        *perfevents.Event
	allocSamples uint64
	// totals reads the members' totals, the exited tasks' included (the
	// leader's ReadGroup), and allocs how many allocation samples the
	// kernel wrote; tests put fixed figures there.
	totals func() (map[uint64]uint64, error)
	allocs func() (uint64, error)
}

// memberAt returns the group's member index of the event id, -1 if none.
func (g *countGroup) memberOf(id uint64, ids map[uint64]eventInfo) int {
	if info, ok := ids[id]; ok && info.kind == kindMember {
		return info.member
	}
	return -1
}

// chooseCountMethod settles how tasks' counts reach user space, or says why
// count mode cannot run here.
func (s *Session) chooseCountMethod() (countMethod, string) {
	if s.tfs == nil {
		return "", "tracefs is not available"
	}
	ct, why := s.countTracepoints()
	if why != "" {
		return "", why
	}
	s.ctp = ct
	ok, err := perfevents.ExitSampled(ct.exit)
	switch {
	case errors.Is(err, perfevents.ErrNoSampleRead):
		return "", "this kernel refuses inherited events with PERF_SAMPLE_READ, which give each task's own counts (Linux 6.12 has them)"
	case err != nil:
		return "", fmt.Sprintf("per-task counts could not be checked: %v", err)
	case ok && os.Getenv(testExitSyscallEnv) == "":
		return exitTracepoint, ""
	case ct.sysEnter == 0 || ct.signal == 0:
		return "", "sched:sched_process_exit fires after a task's events are gone here, and raw_syscalls:sys_enter or signal:signal_deliver is missing"
	}
	return exitSyscall, ""
}

// testExitSyscallEnv, set, makes a kernel whose exit tracepoint comes in
// time (6.16 and later) behave as 6.12's: the exit-syscall method, its exit
// samples dropped, so that the method 6.12 gets is tested on this kernel
// too (TestTreesUnderPerf).
const testExitSyscallEnv = "COWTRACE_TEST_EXIT_SYSCALL"

// countTracepoints finds the ids of the tracepoints count mode uses.
func (s *Session) countTracepoints() (countTracepoints, string) {
	var ct countTracepoints
	for _, t := range []struct {
		group, name string
		id          *uint64
		need        bool
	}{
		{"sched", "sched_process_exit", &ct.exit, true},
		{"task", "task_newtask", &ct.newTask, true},
		{"raw_syscalls", "sys_enter", &ct.sysEnter, false},
		{"signal", "signal_deliver", &ct.signal, false},
	} {
		id, err := s.tfs.EventID(t.group, t.name)
		if err != nil {
			if t.need {
				return ct, fmt.Sprintf("tracepoint %s:%s: %v", t.group, t.name, err)
			}
			continue
		}
		*t.id = id
	}
	return ct, ""
}

// exitCallFilter selects the system calls that end a task, by this
// architecture's numbers (a 32-bit task on a 64-bit kernel has others;
// its end shows in the sums).
var exitCallFilter = fmt.Sprintf("id == %d || id == %d", unix.SYS_EXIT, unix.SYS_EXIT_GROUP)

// buildCountGroup lays out the group's members for this session.
func (s *Session) buildCountGroup(method countMethod) *countGroup {
	g := &countGroup{method: method, index: map[memberKind]int{}, byLeader: map[uint64]*openGroup{}}
	tp := func(kind memberKind, noun, label string, id uint64, filter string) {
		g.members = append(g.members, member{kind: kind, label: label, noun: noun, open: func(a perfevents.Attr, tid, cpu int, leader *perfevents.Event) (*perfevents.Event, error) {
			a.Label, a.Type, a.Config = label, perfevents.Tracepoint, id
			ev, err := openMember(a, tid, cpu, leader)
			if err == nil && filter != "" {
				if err = ev.SetFilter(filter); err != nil {
					ev.Close()
					return nil, err
				}
			}
			return ev, err
		}})
	}
	sw := func(kind memberKind, noun, label string, config uint64) {
		g.members = append(g.members, member{kind: kind, label: label, noun: noun, open: func(a perfevents.Attr, tid, cpu int, leader *perfevents.Event) (*perfevents.Event, error) {
			a.Label, a.Type, a.Config = label, perfevents.Software, config
			return openMember(a, tid, cpu, leader)
		}})
	}
	tp(mExit, "exits", "tracepoint:sched:sched_process_exit", s.ctp.exit, "")
	sw(mSwitch, "context switches", "context-switches", unix.PERF_COUNT_SW_CONTEXT_SWITCHES)
	if method == exitSyscall {
		tp(mExitCall, "exit calls", "tracepoint:raw_syscalls:sys_enter", s.ctp.sysEnter, exitCallFilter)
		tp(mSignal, "signal deliveries", "tracepoint:signal:signal_deliver", s.ctp.signal, "")
	}
	sw(mPageFaults, "page faults", "page-faults", perfevents.PageFaults)
	if !s.dropped.minor {
		sw(mMinor, "minor faults", "minor-faults", perfevents.MinorFaults)
	}
	if !s.dropped.major {
		sw(mMajor, "major faults", "major-faults", perfevents.MajorFaults)
	}
	for _, k := range []cow.CountKind{cow.CountWP, cow.CountKWP} {
		f := cow.CountFilters[k]
		t, kind, noun := s.tp.Fault, mWP, "write-protect faults"
		if f.On == cow.OnKernelFault {
			t, kind, noun = s.tp.KernelFault, mKWP, "write-protect faults in system calls"
		}
		if t != nil {
			tp(kind, noun, "tracepoint:"+t.Name, t.ID, f.Filter)
		}
	}
	if !s.dropped.newTask {
		tp(mNewTask, "tasks created", "tracepoint:task:task_newtask", s.ctp.newTask, "")
	}
	for _, fn := range s.probeFns {
		if s.probeErrs[fn] != nil {
			continue
		}
		g.members = append(g.members, member{kind: mProbe, label: "kprobe:" + fn, noun: fn + " hits", probe: fn,
			open: func(a perfevents.Attr, tid, cpu int, leader *perfevents.Event) (*perfevents.Event, error) {
				return s.kp.OpenInGroup(fn, a, tid, cpu, leader)
			}})
	}
	for i, m := range g.members {
		if m.kind != mProbe {
			g.index[m.kind] = i
		}
		// The exit, the switches and the exit calls end a stint of
		// counting; a stream wants the creator's counts at each fork too.
		g.members[i].sampled = m.kind >= mExit && m.kind <= mSignal || m.kind == mNewTask && s.streaming()
	}
	return g
}

func openMember(a perfevents.Attr, tid, cpu int, leader *perfevents.Event) (*perfevents.Event, error) {
	if leader == nil {
		return perfevents.Open(a, tid, cpu)
	}
	return perfevents.OpenInGroup(a, tid, cpu, leader)
}

// has says whether the group has a member of kind k.
func (g *countGroup) has(k memberKind) bool {
	_, ok := g.index[k]
	return ok
}

// countSampleType is the sample_type of the group's sampled members.
const countSampleType = idType | unix.PERF_SAMPLE_READ

// openCountGroup opens the group of root task tid on CPU index ci: the
// leader (which owns the CPU's ring when it is the first event there and
// carries the task records of tid's tasks), the members, and, where copies
// are told by their stack, the allocation tracepoint. With enableOnExec the
// group stays off until a task that has it execs; else it is enabled once
// every member and filter is in place.
func (s *Session) openCountGroup(tid, ci int, enableOnExec bool) error {
	cpu := s.cpus[ci]
	og := &openGroup{root: tid, ci: ci, samples: make([]uint64, len(s.group.members))}
	base := perfevents.Attr{Inherit: true, EnableOnExec: enableOnExec, Disabled: true, Monotonic: true,
		ExcludeKernel: s.userOnly, GroupRead: true}
	var leader *perfevents.Event
	for i, m := range s.group.members {
		a := base
		if m.sampled {
			a.SampleType = countSampleType
		}
		if i == 0 {
			s.ringOwnerAttr(&a)
			a.TaskRecords = true // the records of tid's tasks
		} else if !enableOnExec {
			// The leader's enable starts the whole group.
			a.Disabled = false
		}
		ev, err := m.open(a, tid, cpu, leader)
		if err != nil {
			if m.kind == mProbe && s.probeRefused(m.probe, err) {
				return fmt.Errorf("kprobe %s refused on CPU %d after it was opened on others: %w", m.probe, cpu, err)
			}
			if m.kind == mProbe {
				return s.askedProbe(m.probe, err)
			}
			return err
		}
		s.track(ev, eventInfo{kind: kindMember, member: i, probe: m.probe})
		og.events = append(og.events, ev)
		if i == 0 {
			leader, og.leaderID = ev, ev.ID()
			s.group.byLeader[ev.ID()] = og
			og.totals = ev.ReadGroup
		}
		if i == 0 || m.sampled {
			if err := s.output(ev, ci); err != nil {
				return err
			}
		}
	}
	if s.tp.Alloc != nil && s.copyPath != nil {
		a := base
		a.GroupRead, a.Disabled = false, true
		ev, err := s.openShapedAlloc(a, tid, ci, og)
		if err != nil {
			return err
		}
		og.alloc, og.allocs = ev, ev.Count
		if !enableOnExec {
			if err := ev.Enable(); err != nil {
				return err
			}
		}
	}
	s.group.groups = append(s.group.groups, og)
	if !enableOnExec {
		return leader.Enable()
	}
	return nil
}

// sealGroupsLocked adds one last member to each group of root task tid, once
// every group of it is open and counting: a software dummy, which counts
// nothing. A fork copies its creator's events as they are at that instant,
// so a task that an attached root forks while its groups are being opened
// (the root runs meanwhile) may hold some groups and not others, or groups
// not yet counting, and its counts fall short with nothing in them to show
// it. A task whose sample reads a group's seal among the values was created
// after every group was whole and counting (partialLocked).
func (s *Session) sealGroupsLocked(tid int) error {
	for _, og := range s.group.groups {
		if og.root != tid || og.sealID != 0 {
			continue
		}
		a := perfevents.Attr{Label: "seal", Type: perfevents.Software, Config: perfevents.Dummy, Inherit: true,
			Monotonic: true, ExcludeKernel: s.userOnly, GroupRead: true}
		ev, err := perfevents.OpenInGroup(a, tid, s.cpus[og.ci], og.events[0])
		if err != nil {
			return err
		}
		s.track(ev, eventInfo{kind: kindSeal})
		og.sealID = ev.ID()
	}
	return nil
}

// openShapedAlloc opens the allocation tracepoint beside the group of tid on
// CPU index ci, filtered in the kernel to the allocations shaped like a copy
// so that its samples, one per copy, need no raw payload (a third smaller);
// where the kernel refuses the filter, as openAlloc does.
func (s *Session) openShapedAlloc(a perfevents.Attr, tid, ci int, og *openGroup) (*perfevents.Event, error) {
	open := func(a perfevents.Attr, info eventInfo) (*perfevents.Event, error) {
		ev, err := perfevents.Open(a, tid, s.cpus[ci])
		if err != nil {
			return nil, err
		}
		info.group = og
		s.track(ev, info)
		return ev, s.output(ev, ci)
	}
	if !s.shapeRefused {
		sa := a
		sa.Label, sa.Type, sa.Config, sa.SampleType = "tracepoint:"+s.tp.Alloc.Name, perfevents.Tracepoint, s.tp.Alloc.ID, idType
		sa.KernelCallchain = cow.CallchainFrames
		ev, err := perfevents.Open(sa, tid, s.cpus[ci])
		if err != nil {
			return nil, err
		}
		if err := ev.SetFilter(s.tp.Rule.ShapeFilter()); err == nil {
			info := eventInfo{kind: kindAlloc, callchain: true, shaped: true, group: og}
			s.track(ev, info)
			return ev, s.output(ev, ci)
		}
		ev.Close()
		s.shapeRefused = true
	}
	return s.openAlloc(a, open)
}

// countSample applies a sample of a count group's member to its task: its
// values on that CPU are now those of the sample.
func (s *Session) countSample(tk *Task, info eventInfo, smp *perfevents.Sample) {
	if smp.Read.Len() == 0 {
		return
	}
	if s.dropExitSamples && s.group.members[info.member].kind == mExit {
		return
	}
	_, leaderID := smp.Read.Value(0)
	og := s.group.byLeader[leaderID]
	if og == nil {
		return
	}
	og.samples[info.member]++
	c := tk.countsOn(leaderID, len(s.group.members))
	c.sealed = false
	for i := 0; i < smp.Read.Len(); i++ {
		v, id := smp.Read.Value(i)
		if m := s.group.memberOf(id, s.ids); m >= 0 {
			c.vals[m] = v
		}
		c.sealed = c.sealed || id == og.sealID && id != 0
	}
	c.enabled, c.running = smp.Read.Enabled, smp.Read.Running
	tk.lastSample, tk.lastSampleNs = s.group.members[info.member].kind, smp.Time
	if tk.lastSample == mExitCall {
		tk.exitCalled = true
	}
}

// freezeWait bounds how long Stop waits for the tasks that were running
// when it froze the counters to leave their CPU.
const freezeWait = 200 * time.Millisecond

// freeze ends counting but not sampling: it disables the counting members
// (and the allocations beside them) of every group, so that every count
// stays as it is, and then waits, up to freezeWait, until every task still
// alive has been seen off its CPU since. A task's next sample, as it leaves
// its CPU or exits, then reports its final counts; a task off its CPU at
// the freeze had them in its last sample already. Seen off its CPU after
// the freeze with no sample since, a task was off it at the freeze: had it
// been on it, it would have left it since, and sampled.
func (s *Session) freeze() {
	s.mu.Lock()
	s.endNs = monotonicNs()
	for _, og := range s.group.groups {
		for i, ev := range og.events {
			if !s.group.members[i].sampled {
				// A task that is gone has stopped its events already.
				_ = ev.Disable()
			}
		}
		if og.alloc != nil {
			_ = og.alloc.Disable()
		}
	}
	s.freezeNs = monotonicNs()
	s.sampledAt = map[int]uint64{}
	var live []*Task
	for _, tk := range s.all {
		if !tk.Exited {
			live = append(live, tk)
		}
	}
	s.mu.Unlock()
	deadline := time.Now().Add(freezeWait)
	for len(live) > 0 && time.Now().Before(deadline) {
		s.mu.Lock()
		live = slices.DeleteFunc(live, func(tk *Task) bool {
			if s.sampledAt[tk.Tid] > s.freezeNs {
				return true
			}
			if offCPU(tk) {
				tk.offAfterFreeze = true
				return true
			}
			return false
		})
		s.mu.Unlock()
		time.Sleep(time.Millisecond)
	}
}

// offCPU says whether task tk is off every CPU now (any state but R, or
// gone: reaped, it exited, and its exit sampled its counts); a runnable
// task waiting for a CPU counts as on one.
func offCPU(tk *Task) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/stat", tk.Pid, tk.Tid))
	if err != nil {
		return errors.Is(err, os.ErrNotExist)
	}
	st := string(b)
	i := strings.LastIndexByte(st, ')')
	return i >= 0 && i+2 < len(st) && st[i+2] != 'R'
}

// cpuCounts are a task's counts in one CPU group, as its latest sample
// there gave them.
type cpuCounts struct {
	leader           uint64 // the group's leader id
	vals             []uint64
	enabled, running uint64
	// sealed: the task's copy of the group holds its seal
	// (sealGroupsLocked).
	sealed bool
}

func (t *Task) countsOn(leader uint64, n int) *cpuCounts {
	for i := range t.cpuCounts {
		if t.cpuCounts[i].leader == leader {
			return &t.cpuCounts[i]
		}
	}
	t.cpuCounts = append(t.cpuCounts, cpuCounts{leader: leader, vals: make([]uint64, n)})
	return &t.cpuCounts[len(t.cpuCounts)-1]
}

// note says how count mode learned each task's counts; copiesCounted: a
// kprobe counts copies, rather than a record per copy's allocation.
func (g *countGroup) note(copiesCounted bool) string {
	var b strings.Builder
	if copiesCounted {
		b.WriteString("count mode: faults, copies and probe hits are counted in the kernel")
	} else {
		b.WriteString("count mode: faults and probe hits are counted in the kernel, copies are one record each (the allocation and its kernel stack)")
	}
	b.WriteString("; each task's counts come from samples of its counters as it leaves a CPU and ")
	switch g.method {
	case exitTracepoint:
		b.WriteString("as it exits (sched:sched_process_exit)")
	case exitSyscall:
		b.WriteString("as it calls exit or exit_group or takes a signal (this kernel fires sched:sched_process_exit after the task's counters are gone)")
	}
	b.WriteString(", checked against the counters' totals")
	return b.String()
}
