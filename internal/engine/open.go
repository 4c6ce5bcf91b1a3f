package engine

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/cowtrace/cowtrace/internal/cow"
	"github.com/cowtrace/cowtrace/perfevents"
)

// Every sampled event of a session shares one sample_id_all trailer
// (TID|TIME|IDENTIFIER), and IDENTIFIER comes first in a sample, so the
// event, and with it the layout, is known before decoding.
//
// Except for software events: from Linux 6.3 the kernel prepares one
// sample for all the software events that fire at one occurrence (the
// page fault, the context switch) and fills its IDENTIFIER for the first
// of them only, so that while another perf user (a second cowtrace, perf
// record -e page-faults) samples the same event on the same task, each
// sample of ours may carry the other's id. Such a sample is still in one
// of our rings, written by one of our events: foreignSample tells which.
// Count mode's group reads itself into its samples; each sampled software
// counter has a layout of a size of its own (counterSampleType).
const (
	idType     = unix.PERF_SAMPLE_TID | unix.PERF_SAMPLE_TIME | unix.PERF_SAMPLE_IDENTIFIER
	tpType     = idType | unix.PERF_SAMPLE_RAW
	kprobeType = idType | unix.PERF_SAMPLE_IP
	addrType   = idType | unix.PERF_SAMPLE_IP | unix.PERF_SAMPLE_ADDR
)

// counterSampleType is the layout of sampled software counter i
// (faultCounters), with the fault's address for the generic fault method:
// 24, 32 and 48 bytes, and 40 with the address, so that a sample's size
// names its counter when its IDENTIFIER does not.
func counterSampleType(i int, addr bool) uint64 {
	switch {
	case addr:
		return addrType
	case i == 1:
		return idType | unix.PERF_SAMPLE_CPU
	case i == 2:
		return idType | unix.PERF_SAMPLE_CPU | unix.PERF_SAMPLE_ID | unix.PERF_SAMPLE_STREAM_ID
	}
	return idType
}

type eventKind int

const (
	kindDummy eventKind = iota
	kindCounter
	kindFault
	kindKernelFault
	kindAlloc
	kindProbe
	kindCounted // count mode's filtered counters (gated tasks)
	kindMember  // a member of count mode's group (inherited tasks)
	kindSeal    // the last member of a count group (sealGroupsLocked)
)

// eventInfo is what an event id (the parent's id for inherited events) means.
type eventInfo struct {
	kind    eventKind
	counter int           // kindCounter: index in faultCounters
	probe   string        // kindProbe: function
	counted cow.CountKind // kindCounted
	// callchain: a kindAlloc sample carries the kernel's stack.
	callchain bool
	// addr: a kindCounter sample (page-faults) carries the fault's
	// address and instruction, the generic fault method.
	addr bool
	// member: a kindMember's index in the count group.
	member int
	// shaped: a kindAlloc whose kernel filter keeps only allocations
	// shaped like a copy (cow.AllocRule.ShapeFilter); its samples carry
	// no raw payload.
	shaped bool
	// group: the count group an allocation tracepoint was opened beside.
	group *openGroup
	// root is the tid of the root task a classify-mode event was opened
	// on.
	root int
}

func (i eventInfo) sampleType() uint64 {
	switch i.kind {
	case kindAlloc:
		switch {
		case i.shaped:
			return idType | unix.PERF_SAMPLE_CALLCHAIN
		case i.callchain:
			return tpType | unix.PERF_SAMPLE_CALLCHAIN
		}
		return tpType
	case kindFault, kindKernelFault:
		return tpType
	case kindProbe:
		return kprobeType
	case kindMember:
		return countSampleType
	case kindCounter:
		return counterSampleType(i.counter, i.addr)
	}
	return idType
}

// faultCounters are the software fault events of every row, in column order.
var faultCounters = []struct {
	config uint64
	label  string
}{
	{perfevents.PageFaults, "page-faults"},
	{perfevents.MinorFaults, "minor-faults"},
	{perfevents.MajorFaults, "major-faults"},
}

// track registers an open event.
func (s *Session) track(ev *perfevents.Event, info eventInfo) {
	s.events = append(s.events, ev)
	s.ids[ev.ID()] = info
}

// OpenTask opens every event on task tid of process pid alone, counting from
// now: the experiment's way, for a task that waits at a gate. Counters are
// read at Stop; sampled events write into a ring of the task's own, so its
// records arrive in the order it made them, which is what lets an
// allocation be matched to its fault.
func (s *Session) OpenTask(pid, tid int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	tk := s.taskLocked(pid, tid)
	tk.Root, tk.forked = true, true
	s.gated++
	if s.mode == ModeAuto {
		s.mode = ModeClassify
	}
	open := func(a perfevents.Attr, info eventInfo) (*perfevents.Event, error) {
		a.ExcludeKernel = s.userOnly
		ev, err := perfevents.Open(a, tid, perfevents.AnyCPU)
		if err != nil {
			return nil, err
		}
		s.track(ev, info)
		tk.events = append(tk.events, ev)
		if a.SampleType == 0 {
			s.counting = append(s.counting, counting{ev: ev, tid: tid, info: info})
		}
		return ev, nil
	}
	for i, c := range faultCounters {
		if i == 0 && s.faultAddr {
			continue // sampled, in openTaskByAddress
		}
		if _, err := open(perfevents.Attr{Label: c.label, Type: perfevents.Software, Config: c.config},
			eventInfo{kind: kindCounter, counter: i}); err != nil {
			return err
		}
	}
	if s.faultAddr {
		if err := s.openTaskByAddress(tk, open); err != nil {
			return err
		}
	}
	if s.tp.Fault != nil {
		if err := s.openTaskFaults(tk, open); err != nil {
			return err
		}
	}
	for _, fn := range s.probeFns {
		if s.probeErrs[fn] != nil {
			continue
		}
		ev, err := s.kp.Open(fn, perfevents.Attr{}, tid, perfevents.AnyCPU)
		if err != nil {
			if s.probeRefused(fn, err) {
				continue
			}
			return s.askedProbe(fn, err)
		}
		info := eventInfo{kind: kindProbe, probe: fn}
		s.track(ev, info)
		tk.events = append(tk.events, ev)
		s.counting = append(s.counting, counting{ev: ev, tid: tid, info: info})
	}
	return nil
}

// probeRefused remembers why fn cannot be probed when the kernel refuses it
// (unknown, not probe-able, or refused by a security policy), so that the
// run goes on without it and says why. A function of Config.Probes is not
// gone without: its refusal fails the trace (see askedProbe).
func (s *Session) probeRefused(fn string, err error) bool {
	if refused(err) && !slices.Contains(s.cfg.Probes, fn) {
		s.probeErrs[fn] = err
		return true
	}
	return false
}

// askedProbe is the error of fn's probe that did not open: ErrProbeRefused,
// naming it, when the kernel refused a function of Config.Probes.
func (s *Session) askedProbe(fn string, err error) error {
	if refused(err) && slices.Contains(s.cfg.Probes, fn) {
		return fmt.Errorf("--probe %s: %w: %w", fn, ErrProbeRefused, err)
	}
	return err
}

// askedProbesRefused fails New when a function of Config.Probes cannot be
// had: no kprobe route, or the calibration saw its probe refused.
func (s *Session) askedProbesRefused() error {
	if len(s.cfg.Probes) == 0 {
		return nil
	}
	if s.kp == nil {
		why := "--kprobe-method none"
		for _, u := range s.unavailable {
			if u.What == "kprobes" {
				why = u.Why
			}
		}
		return fmt.Errorf("--probe %s: %w: no kprobes (%s)", strings.Join(s.cfg.Probes, ", --probe "), ErrProbeRefused, why)
	}
	for _, fn := range s.cfg.Probes {
		if err := s.probeErrs[fn]; err != nil {
			return fmt.Errorf("--probe %s: %w: %w", fn, ErrProbeRefused, err)
		}
	}
	return nil
}

// refused says whether the kernel refused a probe itself rather than failed.
func refused(err error) bool {
	return errors.Is(err, perfevents.ErrNotFound) || errors.Is(err, perfevents.ErrNotProbeable) ||
		errors.Is(err, perfevents.ErrPermission)
}

type openFunc func(perfevents.Attr, eventInfo) (*perfevents.Event, error)

// openTaskFaults opens the fault (and allocation) events of one task in the
// session's mode. In count mode a filter the kernel refuses switches the run
// to sampling, which is possible only while no task has counted events yet
// (the first task), since rows must not mix methods.
func (s *Session) openTaskFaults(tk *Task, open openFunc) error {
	if s.mode == ModeClassify {
		return s.openTaskSampled(tk, open)
	}
	nEvents, nTask, nCounting := len(s.events), len(tk.events), len(s.counting)
	err := s.openCounted(open)
	if err == nil {
		return nil
	}
	for _, ev := range s.events[nEvents:] {
		ev.Close()
		delete(s.ids, ev.ID())
	}
	s.events, tk.events, s.counting = s.events[:nEvents], tk.events[:nTask], s.counting[:nCounting]
	if !errors.Is(err, perfevents.ErrNotSupported) || s.gated != 1 {
		return fmt.Errorf("count mode: %w", err)
	}
	s.mode = ModeClassify
	s.fallback = fmt.Sprintf("count mode fell back to sampling every fault: %v", err)
	return s.openTaskSampled(tk, open)
}

// addTaskRing maps ev's ring as task tk's. The kernel redirects output only
// into a ring that is already mapped: the task's other sampled events are
// opened after.
func (s *Session) addTaskRing(tk *Task, ev *perfevents.Event, pages int) error {
	cookie := len(s.rings)
	s.rings = append(s.rings, ring{tid: tk.Tid})
	return s.reader.Add(ev.FD(), pages, cookie)
}

// openTaskByAddress opens the generic fault method on a task: every page
// fault sampled with its address into the task's ring, and the allocation
// tracepoint, with its stacks, writing into that ring too.
func (s *Session) openTaskByAddress(tk *Task, open openFunc) error {
	pages := s.ringPages(taskRingPages)
	a := perfevents.Attr{Label: faultCounters[0].label, Type: perfevents.Software, Config: faultCounters[0].config,
		SampleType: counterSampleType(0, true), Watermark: uint32(pages * os.Getpagesize() / 2)}
	ev, err := open(a, eventInfo{kind: kindCounter, counter: 0, addr: true})
	if err != nil {
		return err
	}
	if err := s.addTaskRing(tk, ev, pages); err != nil {
		return err
	}
	if s.tp.Alloc == nil {
		return nil
	}
	aev, err := s.openAlloc(perfevents.Attr{Watermark: a.Watermark}, open)
	if err != nil {
		return err
	}
	return aev.SetOutput(ev)
}

// openTaskSampled opens the fault tracepoint with the task's ring, and the
// kernel-fault and allocation tracepoints writing into that same ring.
func (s *Session) openTaskSampled(tk *Task, open openFunc) error {
	pages := s.ringPages(taskRingPages)
	a := perfevents.Attr{Type: perfevents.Tracepoint, SampleType: tpType, Watermark: uint32(pages * os.Getpagesize() / 2)}
	f := a
	f.Label, f.Config = "tracepoint:"+s.tp.Fault.Name, s.tp.Fault.ID
	ev, err := open(f, eventInfo{kind: kindFault})
	if err != nil {
		return err
	}
	if err := s.addTaskRing(tk, ev, pages); err != nil {
		return err
	}
	if kf := s.tp.KernelFault; kf != nil {
		k := a
		k.Label, k.Config = "tracepoint:"+kf.Name, kf.ID
		kev, err := open(k, eventInfo{kind: kindKernelFault})
		if err != nil {
			return err
		}
		if err := kev.SetOutput(ev); err != nil {
			return err
		}
	}
	if s.tp.Alloc != nil {
		aev, err := s.openAlloc(a, open)
		if err != nil {
			return err
		}
		if err := aev.SetOutput(ev); err != nil {
			return err
		}
	}
	return nil
}

// openAlloc opens the allocation tracepoint with a's settings and, when the
// write-protect path is known, the kernel stack of every sample.
func (s *Session) openAlloc(a perfevents.Attr, open openFunc) (*perfevents.Event, error) {
	a.Label, a.Type, a.Config, a.SampleType = "tracepoint:"+s.tp.Alloc.Name, perfevents.Tracepoint, s.tp.Alloc.ID, tpType
	info := eventInfo{kind: kindAlloc}
	if s.copyPath != nil {
		a.KernelCallchain, info.callchain = cow.CallchainFrames, true
	}
	ev, err := open(a, info)
	if err != nil {
		return nil, err
	}
	// Only allocations that can be a copy matter (cow.AllocRule); the
	// kernel drops the zeroed ones, every first write's, before they cost
	// a record. A refused filter changes nothing but the ring's traffic.
	_ = ev.SetFilter(s.tp.Rule.NotZeroedFilter())
	return ev, nil
}

// openCounted opens one filtered counter per cow.CountKind for each
// tracepoint this kernel has.
func (s *Session) openCounted(open openFunc) error {
	in := cow.RegionFilter(s.region.Start, s.region.Length)
	for k, c := range cow.CountFilters {
		var tp *cow.Tracepoint
		filter := c.Filter
		switch c.On {
		case cow.OnUserFault:
			tp = s.tp.Fault
		case cow.OnKernelFault:
			tp = s.tp.KernelFault
		case cow.OnAlloc:
			tp, filter = s.tp.Alloc, s.allocFilter
		}
		if tp == nil {
			continue
		}
		if c.InRegion {
			filter += in
		}
		ev, err := open(perfevents.Attr{Label: "tracepoint:" + tp.Name, Type: perfevents.Tracepoint, Config: tp.ID},
			eventInfo{kind: kindCounted, counted: cow.CountKind(k)})
		if err != nil {
			return err
		}
		// The event counts from its open, unfiltered until the filter is
		// set; the task is waiting at its gate meanwhile, so nothing is
		// counted in between.
		if err := ev.SetFilter(filter); err != nil {
			return err
		}
	}
	return nil
}

func (s *Session) ringPages(def int) int {
	if s.cfg.RingPages > 0 {
		return s.cfg.RingPages
	}
	if !s.access.Privileged {
		// Without CAP_IPC_LOCK a user may lock kernel.perf_event_mlock_kb
		// (516 KiB) per CPU in all its rings, one per task here (CPU
		// rings: see cpusFor).
		return min(def, 16)
	}
	return def
}

// OpenInherited opens every event on task tid, on every online CPU of its
// affinity (rings.go), inherited by every task tid creates from then on, as
// perf record does: the kernel refuses to mmap an inherited per-task event
// opened with cpu = -1. Every event of one CPU writes into that CPU's single
// ring. With enableOnExec the events stay off until a task that has them
// execs.
//
// In ModeClassify every fault is a record. In ModeCount the faults, copies
// and probe hits are counted in the kernel, and each task's counts come from
// samples of its copy of the counters (pertask.go); where the kernel cannot
// give them, the session samples every fault instead.
func (s *Session) OpenInherited(tid int, enableOnExec bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.opened) == 0 {
		s.chooseInheritedMode()
		s.liveOpen = !enableOnExec
	}
	cis, err := s.cpusFor(tid)
	if err != nil {
		return err
	}
	if len(s.opened) == 0 {
		if s.tp.Alloc != nil && s.copyRoutineLocked() != "" && !s.cfg.CrossCheck && !s.cfg.CopyEvents {
			// The kprobe counts copies in the kernel; their stacks would
			// cost a record each.
			s.tp.Alloc = nil
			s.note("inferred copies", "not taken: the copy routine's kprobe counts copies; --cross-check tells them by their allocation's stack too, a record per copy")
		}
		if !s.fitEventBudget(len(cis)) && s.mode == ModeCount {
			s.classifyInstead(fmt.Sprintf("its counters on %d CPUs would take more than %d perf events", len(cis), EventBudget))
			s.dropped = leftOut{}
			s.fitEventBudget(len(cis))
		}
		if s.mode != ModeClassify {
			s.group = s.buildCountGroup(s.method)
		}
	}
	s.opened[tid] = true
	base := perfevents.Attr{Inherit: true, EnableOnExec: enableOnExec, Monotonic: true, ExcludeKernel: s.userOnly}
	for _, ci := range cis {
		if s.mode != ModeClassify {
			err = s.openCountGroup(tid, ci, enableOnExec)
		} else {
			err = s.openCPU(tid, ci, base)
		}
		if err != nil {
			return err
		}
	}
	if err := s.openGuard(tid, base, cis); err != nil {
		return err
	}
	if !s.liveOpen {
		return nil
	}
	if s.mode != ModeClassify {
		err = s.sealGroupsLocked(tid)
	} else {
		err = s.openCarriers(tid, base, cis)
	}
	if err != nil {
		return err
	}
	s.whole[tid] = &wholeSince{openNs: monotonicNs()}
	if s.mode == ModeClassify {
		s.whole[tid].outsideNs = outsideClone(tid)
	}
	return nil
}

// chooseInheritedMode settles ModeCount or ModeAuto for inherited tasks at
// the first one: count mode where the kernel gives each task's counts in
// its samples, else classify, with a note when count mode was asked for.
func (s *Session) chooseInheritedMode() {
	if s.mode == ModeClassify {
		return
	}
	why := s.countModeMissing()
	if why == "" {
		s.mode = ModeCount
		return
	}
	s.classifyInstead(why)
}

// classifyInstead makes the run sample every fault, with a note when count
// mode was asked for.
func (s *Session) classifyInstead(why string) {
	if s.cfg.Mode == ModeCount {
		s.fallback = fmt.Sprintf("count mode fell back to sampling every fault: %s", why)
	}
	s.mode = ModeClassify
	s.faultAddr = s.tp.Fault == nil
}

// countModeMissing says why count mode cannot run here, "" when it can; it
// settles s.method.
func (s *Session) countModeMissing() string {
	var why string
	switch {
	case s.tp.Fault == nil:
		// Without the fault tracepoints write-protect faults are told by
		// their address, which takes a sample of every fault.
		why = "write-protect faults are told by address here (no exceptions:page_fault_user tracepoint)"
	case s.cfg.Counters:
		why = "--counters samples the software counters"
	case s.cfg.OnMmap != nil:
		why = "mappings are recorded"
	}
	if why == "" && s.copyPath == nil && s.tp.Alloc != nil {
		s.findCopyPath()
		if s.copyPath == nil && s.copyRoutine == "" {
			why = "copies can be told only by pairing faults with allocations here"
		}
	}
	if why == "" {
		s.method, why = s.chooseCountMethod()
		s.dropExitSamples = s.method == exitSyscall && os.Getenv(testExitSyscallEnv) != ""
	}
	return why
}

// CountMethod says how a run here would learn each task's counts:
// "exit-tracepoint" or "exit-syscall" (pertask.go), or "classify" with the
// reason count mode is not to be had.
func (s *Session) CountMethod() (method, why string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if why := s.countModeMissing(); why != "" {
		return string(ModeClassify), why
	}
	return string(s.method), ""
}

// openCPU opens the events of task tid on CPU index ci. The first event of
// the task there carries its task records (and mappings); the first of any
// task maps the CPU's ring, and every other event writes into it.
func (s *Session) openCPU(tid, ci int, base perfevents.Attr) error {
	cpu := s.cpus[ci]
	first := true
	open := func(a perfevents.Attr, info eventInfo) (*perfevents.Event, error) {
		if first {
			s.ringOwnerAttr(&a)
			// Where no task runs while the events are opened, the
			// first carries the task records; else openCarriers'.
			a.TaskRecords, a.Mmaps = !s.liveOpen, !s.liveOpen && s.cfg.OnMmap != nil
			first = false
		}
		ev, err := perfevents.Open(a, tid, cpu)
		if err != nil {
			return nil, err
		}
		info.root = tid
		s.track(ev, info)
		return ev, s.output(ev, ci)
	}
	for i, c := range faultCounters {
		if !s.sampledCounter(i) {
			continue
		}
		a := base
		info := eventInfo{kind: kindCounter, counter: i, addr: i == 0 && s.faultAddr}
		a.Label, a.Type, a.Config, a.SampleType = c.label, perfevents.Software, c.config, info.sampleType()
		if _, err := open(a, info); err != nil {
			return err
		}
	}
	for _, t := range []struct {
		tp   *cow.Tracepoint
		kind eventKind
	}{{s.tp.Fault, kindFault}, {s.tp.KernelFault, kindKernelFault}} {
		if t.tp == nil {
			continue
		}
		a := base
		a.Label, a.Type, a.Config, a.SampleType = "tracepoint:"+t.tp.Name, perfevents.Tracepoint, t.tp.ID, tpType
		if _, err := open(a, eventInfo{kind: t.kind}); err != nil {
			return err
		}
	}
	if s.tp.Alloc != nil {
		if _, err := s.openAlloc(base, open); err != nil {
			return err
		}
	}
	a := base
	a.SampleType = kprobeType
	return s.openCPUProbes(tid, ci, a)
}

// openCPUProbes opens every probe with a on task tid on CPU index ci.
func (s *Session) openCPUProbes(tid, ci int, a perfevents.Attr) error {
	for _, fn := range s.probeFns {
		if s.probeErrs[fn] != nil {
			continue
		}
		ev, err := s.kp.Open(fn, a, tid, s.cpus[ci])
		if err != nil {
			if s.probeRefused(fn, err) {
				continue
			}
			return s.askedProbe(fn, err)
		}
		s.track(ev, eventInfo{kind: kindProbe, probe: fn, root: tid})
		if err := s.output(ev, ci); err != nil {
			return err
		}
	}
	return nil
}

// sampledCounter says whether inherited tasks sample faultCounters[i]:
// each costs a record per fault, so page-faults only where no tracepoint
// counts the faults instead, minor-faults only on request, major-faults
// (rare) unless the event budget left them out.
func (s *Session) sampledCounter(i int) bool {
	switch i {
	case 0:
		return s.cfg.Counters || s.tp.Fault == nil
	case 1:
		return s.cfg.Counters
	}
	return !s.dropped.major
}

func (s *Session) redirect(ev *perfevents.Event, ci int) error {
	if err := ev.SetOutput(s.cpuOwners[ci]); err != nil {
		return fmt.Errorf("send records into CPU %d's ring: %w", s.cpus[ci], err)
	}
	return nil
}
