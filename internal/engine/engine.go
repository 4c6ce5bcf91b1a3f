// Package engine is cowtrace's one tracer. It is handed a target — tasks
// opened one at a time while they wait at the experiment's gates, or a
// command or pid followed across fork, clone and exec — and opens the event
// set for it through package perfevents, reads every ring with one reader,
// dispatches each record to the task it belongs to, and builds the report's
// rows, methods and notes. What a record means (fault classes, copies) is
// package cow's; package experiment drives the gated workload and package
// follow starts or attaches to a program and builds its tree.
package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/cowtrace/cowtrace/internal/cow"
	"github.com/cowtrace/cowtrace/perfevents"
	"github.com/cowtrace/cowtrace/report"
)

// Mode says how faults are measured.
type Mode string

const (
	// ModeClassify samples every user page fault (and every page
	// allocation that may be a copy) into a ring and classifies them in
	// user space: the only way to pair a fault with its allocation, at the
	// price of a record per fault.
	ModeClassify Mode = "classify"
	// ModeCount counts faults in the kernel, with no record per fault:
	// the tracepoints behind PERF_EVENT_IOC_SET_FILTER filters, one
	// counter per class of fault. Gated tasks' counters are read at Stop;
	// inherited tasks' counts come in a PERF_RECORD_READ as each task
	// exits (openCPUCounted), and copies still come from the allocations'
	// stacks, a record per copy-shaped allocation. Where the kernel
	// refuses a filter, or cannot keep inherited counts per task, the run
	// falls back to ModeClassify and says so.
	ModeCount Mode = "count"
	// ModeAuto is ModeCount for inherited tasks where the kernel allows
	// it, silently ModeClassify elsewhere.
	ModeAuto Mode = "auto"
)

// ParseMode accepts "classify", "count" and "auto"; "" is def.
func ParseMode(s string, def Mode) (Mode, error) {
	switch Mode(s) {
	case "":
		return def, nil
	case ModeClassify, ModeCount, ModeAuto:
		return Mode(s), nil
	}
	return "", fmt.Errorf("unknown mode %q (want classify, count or auto)", s)
}

// ErrProbeRefused: a function of Config.Probes cannot be probed, for want
// of kprobes or because the kernel refused its probe. The trace fails,
// before its target runs where the refusal is known by then, rather than go
// on without what the user asked for by name.
var ErrProbeRefused = errors.New("cannot be probed")

// ErrInternal wraps a panic of the engine's reading goroutine: a bug in
// cowtrace, reported as an error so that the run still removes what it
// created in the kernel.
var ErrInternal = errors.New("internal error")

// ParseFaultMethod reads --fault-method: "auto" (the x86 fault tracepoints
// where the kernel has them, else faults by address) or "address" (faults
// by address everywhere, to compare the generic method with the
// tracepoints); it returns Config.FaultsByAddress.
func ParseFaultMethod(s string) (byAddress bool, err error) {
	switch s {
	case "", "auto":
		return false, nil
	case "address":
		return true, nil
	}
	return false, fmt.Errorf("unknown fault method %q (want auto or address)", s)
}

// Config configures a Session.
type Config struct {
	KprobeMethod perfevents.KprobeMethod // "" is auto
	// Probes are extra kernel functions whose hits are counted per task.
	Probes []string
	// Mode says how faults are measured; "" is ModeClassify, and
	// ModeAuto is ModeClassify for tasks opened with OpenTask.
	Mode Mode
	// RingPages is each ring's size in pages (a power of two); 0 picks
	// taskRingPages, or splits RingBudget over the CPUs.
	RingPages int
	// RingBudget is the bytes of ring memory for the inherited events'
	// rings together, split evenly over the CPUs the target may run on;
	// 0 is DefaultRingBudget (see rings.go).
	RingBudget int64
	// HandOff leaves the release of the events to a holder process
	// (perfevents.HandOff) at Close: for a program that exits right after
	// the trace. Ignored with tracefs kprobes, whose kprobe_events entries
	// can be removed only once every event on them is closed.
	HandOff bool
	// StartAtExec: a root's life starts at its exec (run), not when it
	// was opened (attach).
	StartAtExec bool
	// OnEvent, when set, is called for every write-protect fault and
	// sampled kprobe hit as it is read, from the reading goroutine,
	// without the session's lock.
	OnEvent func(Event)
	// Counters samples the page-faults and minor-faults software events of
	// inherited tasks, a record per fault each. Without it, where the
	// fault tracepoints exist, a process's page faults are its faults
	// that they classified, and minor faults are not measured; tasks
	// opened with OpenTask count all three regardless, at no cost per
	// fault.
	Counters bool
	// FaultsByAddress uses the generic fault method even where the x86
	// fault tracepoints exist: every page fault sampled with its address,
	// split by region but not classified. Where they do not exist
	// (arm64), it is used anyway.
	FaultsByAddress bool
	// OnMmap, when set, asks for a record of every mapping the traced
	// tasks make and is called for each, from the reading goroutine,
	// without the session's lock, with the record's time.
	OnMmap func(m perfevents.Mmap, timeNs uint64)
	// CrossCheck tells inherited tasks' copies by their allocation's
	// stack too where the copy routine's kprobe counts them: a record per
	// copy, to check the kprobe (inferred_copies).
	CrossCheck bool
	// CopyEvents: the caller needs every copy as an Event, with the
	// address of the fault that made it (--by, --plot), which only the
	// allocation stacks give: they are taken even where a kprobe counts
	// copies.
	CopyEvents bool
	// OnFork, OnTaskEnd and OnCounts follow the trace as it goes
	// (stream.go): each is called, when set, from the reading goroutine,
	// in time order, without the session's lock.
	OnFork    func(Fork)
	OnTaskEnd func(TaskEnd)
	OnCounts  func(TaskCounts)
	// Forget drops each task once it exited (after OnTaskEnd): the
	// session's memory does not grow with the tasks of a long trace, and
	// rows have only the tasks still alive.
	Forget bool
}

// Event is one write-protect fault, kprobe hit or counted copy.
type Event struct {
	TimeNs  uint64 // CLOCK_MONOTONIC
	Pid     int
	Tid     int
	Name    string // "wp_fault", "kprobe:FUNC" or "copy"
	Address uint64 // the fault's address, or the probed function's
	// IP is the instruction that faulted (user code for a user-mode
	// fault), 0 where the tracepoint does not say.
	IP uint64
	// Known: a copy's fault was seen, so Address and IP are its fault's.
	Known bool
}

// timedMmap is a mapping record waiting for OnMmap.
type timedMmap struct {
	m  perfevents.Mmap
	ns uint64
}

// taskRingPages is the size of a task's ring, in pages. It wakes the reader
// when half full: a wake-up costs the faulting task far more than a record
// in this kind of guest (bench/faultcost: waking every 64 records tripled
// the cost of a sampled fault), and the half left free keeps records from
// being lost while the reader catches up. CPUs' rings: see rings.go.
const taskRingPages = 512

// Session is one trace: the kernel's facilities found once, the events of
// every task, and what their records said.
type Session struct {
	cfg         Config
	tfs         *perfevents.Tracefs
	tp          *cow.Tracepoints
	kp          *perfevents.Kprobes
	copyRoutine string
	copyCheck   string
	// causeProbe is do_cow_fault where it can be probed: its hits are the
	// copy routine's copies of private file pages.
	causeProbe  string
	probeFns    []string
	unavailable []report.Unavailable
	reader      *perfevents.Reader
	mode        Mode
	fallback    string // why count mode fell back to sampling, if it did
	allocFilter string // count mode's filter of copy-shaped allocations
	// copyPath tells copies among allocations by their kernel stack; nil
	// where kallsyms cannot say, and copies are inferred by pairing.
	copyPath *cow.CopyPath
	// faultAddr: faults come from the page-fault event sampled with its
	// address, for want of (or instead of) the fault tracepoints.
	faultAddr bool
	// access is what this process may trace; userOnly: its events count
	// user mode only (an unprivileged process at perf_event_paranoid 2).
	access     perfevents.Access
	userOnly   bool
	cpus       []int // inherited events: the CPUs, and the owner of each one's ring
	cpuOwners  []*perfevents.Event
	ringOf     []int     // the ring cookie of each CPU index
	plan       *ringPlan // the size of the CPUs' rings
	readerPrio error     // why the rings are read without real-time priority

	mu        sync.Mutex
	events    []*perfevents.Event
	counting  []counting // events read with Count at Stop
	ids       map[uint64]eventInfo
	tasks     map[int]*Task
	rings     []ring // by Reader cookie
	region    report.Region
	probeErrs map[string]error
	gated     int          // tasks opened with OpenTask
	mmaps     []timedMmap  // read, not yet handed to OnMmap
	opened    map[int]bool // tasks inherited events were opened on
	// liveOpen: some root ran while its events were opened (attach);
	// whole tells, per root tid, which tasks it created hold every event
	// (whole.go).
	liveOpen bool
	whole    map[int]*wholeSince
	dropped  leftOut // events left out to fit EventBudget
	// all are every task seen, in the order they became known; tasks
	// holds the current one of each tid.
	all    []*Task
	nextID int
	// order puts the records of every ring in time order.
	order orderer
	// records counts the records read from every ring.
	records uint64
	// foreignIDs counts samples that carried another event's id and were
	// told by their READ (foreignSample).
	foreignIDs uint64
	// Count mode for inherited tasks: how tasks' counts at exit arrive,
	// the tracepoints it needs, the group's shape and what it concluded.
	method countMethod
	ctp    countTracepoints
	// shapeRefused: the kernel refused cow.AllocRule.ShapeFilter.
	shapeRefused bool
	// dropExitSamples ignores the exit tracepoint's samples
	// (testExitSyscallEnv).
	dropExitSamples bool
	group           *countGroup
	settled         *settledCounts
	// escaped counts the page faults the traced tasks took on CPUs
	// without a ring, where faults are sampled.
	escaped uint64
	// calls are the stream's callbacks due once the records being applied
	// are (stream.go).
	calls []func()
	// forgotten sums, by group leader id and member, the counts of the
	// tasks Config.Forget dropped; forgottenForks counts those of them
	// whose FORK was read, by root tid.
	forgotten      map[uint64][]uint64
	forgottenForks map[int]uint64
	nForgotten     int
	// freezeNs is when Stop froze count mode's counters (freeze), and
	// sampledAt the latest count sample read of each tid, by arrival.
	freezeNs  uint64
	sampledAt map[int]uint64

	readDone chan struct{}
	readErr  error
	reading  bool
	stopped  bool
	draining bool          // Stop has set the reader's last deadline
	closing  chan struct{} // closed when Release's closes are done
	startNs  uint64        // CLOCK_MONOTONIC when the trace started
	endNs    uint64        // ... and when Stop began to end it
}

// ring is one mapped ring: a task's own (tid) or a CPU's (tid -1), and what
// the kernel could not write into it.
type ring struct {
	tid             int
	lost, throttled uint64
}

// counting is a counter event of a gated task and where its count goes.
type counting struct {
	ev   *perfevents.Event
	tid  int
	info eventInfo
}

// New finds what the kernel offers (tracefs, tracepoints, the kprobe route)
// and, with kprobes, runs the calibration that finds the copy routine.
func New(ctx context.Context, cfg Config) (_ *Session, err error) {
	if cfg.Mode == "" {
		cfg.Mode = ModeClassify
	}
	if cfg.KprobeMethod == "" {
		cfg.KprobeMethod = perfevents.KprobeAuto
	}
	if p := cfg.RingPages; p < 0 || p&(p-1) != 0 {
		return nil, fmt.Errorf("ring of %d pages: not a power of two", p)
	}
	s := &Session{cfg: cfg, mode: cfg.Mode, ids: map[uint64]eventInfo{}, tasks: map[int]*Task{},
		probeErrs: map[string]error{}, opened: map[int]bool{}, whole: map[int]*wholeSince{}}
	// s is a local, not the named result: "return nil, err" sets that to
	// nil before this runs.
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	s.access = perfevents.CurrentAccess()
	s.userOnly = !s.access.KernelEvents()
	var tfs *perfevents.Tracefs
	var tfsErr error
	if s.access.RawTracepoints() {
		// A refusal (a security module, lockdown) leaves the software
		// events, as it does for a user without privileges.
		if tfs, tfsErr = perfevents.OpenTracefs(); errors.Is(tfsErr, perfevents.ErrPermission) {
			tfsErr = fmt.Errorf("%w: %s", tfsErr, perfevents.PermissionHint())
		}
	} else {
		tfsErr = fmt.Errorf("tracepoints need root, CAP_PERFMON or kernel.perf_event_paranoid -1 (it is %d)", s.access.Paranoid)
	}
	lockedDown := perfevents.Lockdown() == "confidentiality"
	if lockedDown && tfs != nil {
		// tracefs opens but lists no event (LOCKDOWN_TRACEFS): say why.
		tfs.Close()
		tfs, tfsErr = nil, errors.New("refused by kernel lockdown (confidentiality mode: LOCKDOWN_TRACEFS)")
	}
	s.tfs = tfs
	s.tp = cow.DetectTracepoints(tfs, tfsErr)
	s.unavailable = append(s.unavailable, s.tp.Unavailable...)
	if cfg.FaultsByAddress && s.tp.Fault != nil {
		s.tp.Fault, s.tp.KernelFault = nil, nil
		s.note("tracepoint:exceptions:page_fault_user", "not used: faults by address were asked for (--fault-method address)")
	}
	if s.tp.Fault == nil && s.mode == ModeAuto {
		s.mode = ModeClassify // faults by address are samples
	}
	s.faultAddr = s.tp.Fault == nil && s.mode == ModeClassify
	if s.tp.Alloc != nil {
		s.allocFilter = s.tp.Rule.CopyAllocFilter()
		if cfg.Mode != ModeCount {
			// Count mode's gated tasks count allocations; its inherited
			// ones find the path when they are opened.
			s.findCopyPath()
		}
	}
	if s.tp.Fault == nil {
		s.tp.KernelFault = nil
		if s.copyPath == nil {
			// Without a stack, allocations serve only to pair with faults.
			s.tp.Alloc = nil
		}
	}
	method := cfg.KprobeMethod
	switch {
	case lockedDown && method == perfevents.KprobeAuto:
		method = perfevents.KprobeNone
		s.note("kprobes", "refused by kernel lockdown (confidentiality mode: LOCKDOWN_KPROBES)")
	case !s.access.Privileged && method == perfevents.KprobeAuto:
		method = perfevents.KprobeNone
		s.note("kprobes", "need root or CAP_PERFMON")
	}
	if method == perfevents.KprobeTracefs && tfs == nil && tfsErr != nil {
		return nil, fmt.Errorf("--kprobe-method tracefs: %w", tfsErr)
	}
	kp, why, err := perfevents.NewKprobes(method, tfs)
	if err != nil {
		if method == perfevents.KprobePMU || method == perfevents.KprobeTracefs {
			err = fmt.Errorf("--kprobe-method %s: %w", method, err)
		}
		return nil, err
	}
	if kp == nil && method != cfg.KprobeMethod {
		why = ""
	}
	if kp == nil && why != "" {
		s.note("kprobes", why)
	} else if kp != nil {
		s.kp = kp
		if err := s.calibrate(ctx); err != nil {
			return nil, err
		}
		if s.copyRoutine == "" {
			s.note("copy routine", s.copyCheck)
		}
		s.probeFns = uniq(append([]string{s.copyRoutine, cow.WPFunction, s.causeProbe}, cfg.Probes...))
	}
	if err := s.askedProbesRefused(); err != nil {
		return nil, err
	}
	if s.reader, err = perfevents.NewReader(); err != nil {
		return nil, err
	}
	return s, nil
}

// findCopyPath finds the copy-on-write path in kallsyms, for copies told by
// their allocation's stack; without it copies are inferred by pairing.
func (s *Session) findCopyPath() {
	var err error
	if s.copyPath, err = cow.LoadCopyPath(); err != nil {
		s.note("callchain copies", fmt.Sprintf("%v: copies are inferred by pairing a write-protect fault with the allocation that follows it", err))
	}
}

func (s *Session) note(what, why string) {
	s.unavailable = append(s.unavailable, report.Unavailable{What: what, Why: why})
}

// SetRegion sets the address range that faults are split by (in_region and
// outside); without one every fault is outside.
func (s *Session) SetRegion(r report.Region) {
	s.mu.Lock()
	s.region = r
	s.mu.Unlock()
}

// Start starts reading the rings and marks the trace's time zero, unless
// MarkStart did already.
func (s *Session) Start() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.startNs == 0 {
		s.startNs = monotonicNs()
	}
	if s.reading {
		return
	}
	s.reading = true
	s.readDone = make(chan struct{})
	go func() {
		defer close(s.readDone)
		defer func() {
			if v := recover(); v != nil {
				s.readErr = fmt.Errorf("%w in the ring reader: %v (please report)", ErrInternal, v)
			}
		}()
		restore, prioErr := promptThreads()
		defer restore()
		s.readerPrio = prioErr
		s.readErr = s.read()
	}()
	go s.flushEvery(s.readDone)
}

// flushPeriod is how often an idle trace's records are put in order and
// applied: a quiet ring wakes the reader only at its watermark, and a
// stream (watch) or a timeline should not wait for the next busy moment.
const flushPeriod = 100 * time.Millisecond

// flushEvery asks the reader for a pass every flushPeriod until done.
func (s *Session) flushEvery(done <-chan struct{}) {
	t := time.NewTicker(flushPeriod)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			s.reader.Flush()
		}
	}
}

// MarkStart sets the trace's time zero to now.
func (s *Session) MarkStart() {
	s.mu.Lock()
	s.startNs = monotonicNs()
	s.mu.Unlock()
}

// Disable stops the events of tasks tids: what they do after this is not
// counted.
func (s *Session) Disable(tids []int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, tid := range tids {
		tk := s.tasks[tid]
		if tk == nil {
			continue
		}
		for _, ev := range tk.events {
			if err := ev.Disable(); err != nil {
				return err
			}
		}
	}
	return nil
}

// Stop ends the measurement: it disables every event, reads every ring to
// its end and every counter. Call it once the traced tasks have exited, or
// when tracing must end.
func (s *Session) Stop() error {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return nil
	}
	s.stopped = true
	if s.group != nil && s.reading {
		s.mu.Unlock()
		s.freeze()
		s.mu.Lock()
	} else {
		s.endNs = monotonicNs()
	}
	for _, ev := range s.events {
		// A task that is gone has stopped its events already.
		_ = ev.Disable()
	}
	reading := s.reading
	s.mu.Unlock()
	if reading {
		s.mu.Lock()
		// Under the lock, so that a stream's tick (dispatch.go) sets no
		// deadline after this one.
		s.draining = true
		s.reader.SetDeadline(time.Now())
		s.mu.Unlock()
		<-s.readDone
		if s.readErr != nil {
			return fmt.Errorf("read ring buffers: %w", s.readErr)
		}
	}
	if !reading {
		// What was queued by hand (tests) or before a Start that never came.
		if err := s.apply(^uint64(0)); err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.counting {
		v, err := c.ev.Count()
		if err != nil {
			return err
		}
		s.taskLocked(0, c.tid).add(c.info, v)
	}
	if s.group != nil {
		if err := s.settleCountsLocked(); err != nil {
			return err
		}
	}
	s.endsAfterStopLocked()
	return nil
}

// endsAfterStopLocked makes the tasks that exited after the trace ended
// (records read in the drain: a task ending while its events were being
// disabled, or, in count mode, while Stop waited for tasks' last samples)
// tasks alive at its end: their counts end with the trace, not with them.
// It runs after count mode's settling, for which an exit sample is final.
func (s *Session) endsAfterStopLocked() {
	for _, tk := range s.all {
		if tk.Exited && tk.EndNs > s.endNs {
			tk.Exited, tk.EndNs = false, 0
		}
	}
}

// Release closes every event and the reader in the background, after Stop.
// Closing the last event of a tracepoint (or a kprobe) makes the kernel
// unregister it and wait for an RCU grace period, tens of milliseconds
// each, one after the other under the kernel's event_mutex; started here,
// that wait overlaps whatever the caller does next, and with HandOff it
// happens in a holder process after cowtrace has exited.
func (s *Session) Release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing != nil {
		return
	}
	if s.cfg.HandOff && (s.kp == nil || s.kp.Method() != perfevents.KprobeTracefs) {
		// On failure the closes are only slower.
		_, _ = perfevents.HandOff()
	}
	evs := s.events
	s.events = nil
	s.closing = make(chan struct{})
	go func() {
		defer close(s.closing)
		s.closeReader()
		for _, ev := range evs {
			ev.Close()
		}
	}()
}

func (s *Session) closeReader() {
	if s.reader == nil {
		return
	}
	// Close wakes a blocked ReadInto, which then returns ErrClosed.
	s.reader.Close()
	s.mu.Lock()
	reading := s.reading
	s.mu.Unlock()
	if reading {
		<-s.readDone
	}
}

// Close closes every event and the reader, removes the kprobes the tracefs
// route created and lets go of tracefs. It is safe to call more than once,
// and on a Session that New did not finish.
func (s *Session) Close() error {
	s.Release()
	<-s.closing
	if s.copyPath != nil {
		// kallsyms, read in the background, is closed when it is read.
		_ = s.copyPath.Err()
	}
	var err error
	if s.kp != nil {
		err = s.kp.Close()
		s.kp = nil
	}
	if s.tfs != nil {
		s.tfs.Close()
		s.tfs = nil
	}
	return err
}

// Threads lists the tasks of process pid; a pid that does not exist wraps
// perfevents.ErrNoProcess.
func Threads(pid int) ([]int, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("pid %d: %w", pid, perfevents.ErrNoProcess)
		}
		return nil, fmt.Errorf("list threads of %d: %w", pid, err)
	}
	tids := make([]int, 0, len(ents))
	for _, e := range ents {
		if tid, err := strconv.Atoi(e.Name()); err == nil {
			tids = append(tids, tid)
		}
	}
	sort.Ints(tids)
	return tids, nil
}

func uniq(ss []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range ss {
		if s != "" && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}
