package experiment

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"sync"
	"time"

	perf "github.com/elastic/go-perf"
	"golang.org/x/sys/unix"

	"github.com/cowtrace/cowtrace/perfevents"
	"github.com/cowtrace/cowtrace/report"
)

// sampleType is the smallest sample that answers the question: the
// tracepoint's raw fields. Events are per task, so no pid, tid, time or CPU
// is needed, and no identifier either: the raw record starts with the
// tracepoint's common_type, its tracefs id, which tells a fault from an
// allocation in the ring they share.
const sampleType = unix.PERF_SAMPLE_RAW

// ringPages is each task's ring: 2 MiB, and the reader is woken when half of
// it is full. A wake-up costs the faulting task far more than a record in
// this kind of guest (bench/faultcost: waking every 64 records tripled the
// cost of a sampled fault), so they are made rare; the half left free keeps
// records from being lost while the reader catches up (lost records are
// counted). The pages are the kernel's; only those the reader touches count
// in cowtrace's resident set.
const ringPages = 512

// tracer opens and reads the events of the processes of one run.
type tracer struct {
	caps     *capabilities
	kp       kprober // nil: no kprobes
	probeFns []string
	reader   *perfevents.Reader // nil: no sampled tracepoint
	mode     Mode
	handOff  bool   // conclude hands the events off (Options.HandOff)
	fallback string // why count mode fell back to sampling, if it did
	// allocFilter is count mode's filter of copy-shaped allocations.
	allocFilter string

	mu      sync.Mutex
	procs   []*proc
	streams []*taskStream // by ring cookie
	region  report.Region
	// probeErrs remembers why a function could not be probed, once.
	probeErrs map[string]error

	// readDone is closed when readLoop returns, with its error in readErr.
	readDone chan struct{}
	readErr  error

	// The reader goroutine's own: the stream of the ring it reads, and
	// the region as it was when it looked up that stream.
	cur       *taskStream
	curCookie int
	curRegion report.Region

	// snap holds every count once conclude has read them; closing is
	// closed when conclude's closing of the events is done.
	snap    map[*perfevents.Event]uint64
	closing chan struct{}
}

// proc is one row: a process and the events on each of its tasks.
type proc struct {
	role, window string
	pid          int
	order        int // 0 for the parent, i for child i
	tasks        []*taskEvents
	counts       processCounts
}

type taskEvents struct {
	tid                  int
	counters             []*perfevents.Event // page-faults, minor-faults, major-faults
	fault, kfault, alloc *perfevents.Event
	counted              []*perfevents.Event // by countKind in count mode; nil where not opened
	probes               map[string]*perfevents.Event
}

func (te *taskEvents) all() []*perfevents.Event {
	evs := append([]*perfevents.Event{}, te.counters...)
	if te.fault != nil {
		evs = append(evs, te.fault)
	}
	if te.kfault != nil {
		evs = append(evs, te.kfault)
	}
	if te.alloc != nil {
		evs = append(evs, te.alloc)
	}
	for _, ev := range te.counted {
		if ev != nil {
			evs = append(evs, ev)
		}
	}
	for _, ev := range te.probes {
		evs = append(evs, ev)
	}
	return evs
}

// FaultCounter is a software fault event, as perf names it.
type FaultCounter struct {
	Counter perf.SoftwareCounter
	Label   string
}

var counterKinds = []FaultCounter{
	{perf.PageFaults, "page-faults"},
	{perf.MinorPageFaults, "minor-faults"},
	{perf.MajorPageFaults, "major-faults"},
}

func newTracer(caps *capabilities, kp kprober, probeFns []string, mode Mode) (*tracer, error) {
	t := &tracer{caps: caps, kp: kp, probeFns: probeFns, mode: mode,
		probeErrs: map[string]error{}}
	if caps.fault != nil && mode != ModeCount {
		if err := t.startSampling(); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// startSampling creates the reader of the sampled events' rings.
func (t *tracer) startSampling() error {
	r, err := perfevents.NewReader()
	if err != nil {
		return err
	}
	t.reader = r
	t.readDone = make(chan struct{})
	go t.readLoop()
	return nil
}

// addProcess opens every event on each of tids, the tasks of one process.
func (t *tracer) addProcess(role, window string, pid, order int, tids []int) (*proc, error) {
	p := &proc{role: role, window: window, pid: pid, order: order}
	t.mu.Lock()
	t.procs = append(t.procs, p)
	t.mu.Unlock()
	for _, tid := range tids {
		if err := t.openTask(p, tid); err != nil {
			return nil, err
		}
	}
	return p, nil
}

func (t *tracer) openTask(p *proc, tid int) error {
	te := &taskEvents{tid: tid, probes: map[string]*perfevents.Event{}}
	p.tasks = append(p.tasks, te)
	for _, k := range counterKinds {
		ev, err := perfevents.Open(perfevents.SoftwareAttr(k.Counter, k.Label), tid)
		if err != nil {
			return err
		}
		te.counters = append(te.counters, ev)
	}
	if t.caps.fault != nil {
		if err := t.openFaults(p, te); err != nil {
			return err
		}
	}
	if t.kp != nil {
		for _, fn := range t.probeFns {
			t.mu.Lock()
			known := t.probeErrs[fn]
			t.mu.Unlock()
			if known != nil {
				continue
			}
			ev, err := t.kp.open(fn, tid)
			if err != nil {
				if !errors.Is(err, perfevents.ErrNotFound) && !errors.Is(err, perfevents.ErrNotProbeable) {
					return err
				}
				t.mu.Lock()
				t.probeErrs[fn] = err
				t.mu.Unlock()
				continue
			}
			te.probes[fn] = ev
		}
	}
	return nil
}

// openSampled opens the fault tracepoint with a ring, and the allocation
// tracepoint writing into that same ring: one stream per task, in the order
// things happened, which is what lets an allocation be matched to its fault.
func (t *tracer) openSampled(p *proc, te *taskEvents) error {
	s := &perfevents.Sampling{SampleType: sampleType, Watermark: ringPages * 4096 / 2}
	ev, err := perfevents.Open(perfevents.TracepointAttr(t.caps.fault.id, "tracepoint:exceptions:page_fault_user", s), te.tid)
	if err != nil {
		return err
	}
	te.fault = ev
	t.mu.Lock()
	cookie := len(t.streams)
	t.streams = append(t.streams, &taskStream{counts: &p.counts})
	t.mu.Unlock()
	// The kernel redirects output only into a ring that is already mapped.
	if err := t.reader.Add(ev.FD(), ringPages, cookie); err != nil {
		return err
	}
	if kf := t.caps.kfault; kf != nil {
		k, err := perfevents.Open(perfevents.TracepointAttr(kf.id, "tracepoint:exceptions:page_fault_kernel", s), te.tid)
		if err != nil {
			return err
		}
		te.kfault = k
		if err := k.SetOutput(ev); err != nil {
			return err
		}
	}
	if t.caps.alloc == nil {
		return nil
	}
	a, err := perfevents.Open(perfevents.TracepointAttr(t.caps.alloc.id, "tracepoint:kmem:mm_page_alloc", s), te.tid)
	if err != nil {
		return err
	}
	te.alloc = a
	// Only allocations that can be a copy matter to the inference (see
	// copyAlloc.match); the kernel drops the zeroed ones, every first
	// write's, before they cost a record. A refused filter changes nothing
	// but the ring's traffic.
	_ = a.SetFilter(fmt.Sprintf("order == 0 && !(gfp_flags & %#x)", t.caps.alloc.rule.zero))
	return a.SetOutput(ev)
}

// closeWindow stops every event of p: what p does after this is not counted.
func (t *tracer) closeWindow(p *proc) error {
	for _, te := range p.tasks {
		for _, ev := range te.all() {
			if err := ev.Disable(); err != nil {
				return fmt.Errorf("disable %s: %w", ev.Label, err)
			}
		}
	}
	return nil
}

func (t *tracer) setRegion(r report.Region) {
	t.mu.Lock()
	t.region = r
	t.mu.Unlock()
}

func (t *tracer) readLoop() {
	defer close(t.readDone)
	t.readErr = t.read()
}

func (t *tracer) read() error {
	var rec perfevents.Record
	var s perfevents.Sample
	for {
		err := t.reader.ReadInto(&rec)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return nil
			}
			return err
		}
		if err := t.handle(&rec, &s); err != nil {
			return err
		}
	}
}

// handle accounts one record of a task's ring. It runs once per fault and
// once per allocation, so it takes the tracer's lock only when the records
// move on to another ring (the reader drains one ring at a time).
func (t *tracer) handle(rec *perfevents.Record, s *perfevents.Sample) error {
	fault, kfault, alloc := t.caps.fault, t.caps.kfault, t.caps.alloc
	if t.cur == nil || rec.Cookie != t.curCookie {
		t.mu.Lock()
		t.cur, t.curCookie, t.curRegion = t.streams[rec.Cookie], rec.Cookie, t.region
		t.mu.Unlock()
	}
	st, region := t.cur, t.curRegion
	var tp uint64
	if rec.Type == unix.PERF_RECORD_SAMPLE {
		if err := perfevents.DecodeSample(rec.Data, sampleType, s); err != nil {
			return err
		}
		if len(s.Raw) < 2 {
			return fmt.Errorf("tracepoint sample of %d bytes", len(s.Raw))
		}
		tp = uint64(binary.NativeEndian.Uint16(s.Raw))
	}
	isFault := tp == fault.id
	isKfault := kfault != nil && tp == kfault.id
	isAlloc := alloc != nil && tp == alloc.id

	switch rec.Type {
	case unix.PERF_RECORD_SAMPLE:
		switch {
		case isFault:
			addr, err1 := fault.address.Uint(s.Raw)
			code, err2 := fault.errorCode.Uint(s.Raw)
			if err := errors.Join(err1, err2); err != nil {
				return fmt.Errorf("page_fault_user sample: %w", err)
			}
			st.fault(addr, code, region, false)
		case isKfault:
			addr, err1 := kfault.address.Uint(s.Raw)
			code, err2 := kfault.errorCode.Uint(s.Raw)
			if err := errors.Join(err1, err2); err != nil {
				return fmt.Errorf("page_fault_kernel sample: %w", err)
			}
			st.fault(addr, code, region, true)
		case isAlloc:
			order, err1 := alloc.order.Uint(s.Raw)
			gfp, err2 := alloc.gfp.Uint(s.Raw)
			if err := errors.Join(err1, err2); err != nil {
				return fmt.Errorf("mm_page_alloc sample: %w", err)
			}
			st.alloc(order, gfp, alloc.rule)
		}
	case unix.PERF_RECORD_LOST:
		if _, lost, err := perfevents.DecodeLost(rec.Data); err == nil {
			st.counts.lost += lost
		}
	case unix.PERF_RECORD_THROTTLE:
		st.counts.throttled++
	}
	return nil
}

// finish drains every ring once all the traced processes have exited, and
// stops the reader.
func (t *tracer) finish() error {
	if t.reader == nil {
		return nil
	}
	t.reader.SetDeadline(time.Now())
	<-t.readDone
	return t.readErr
}

// conclude ends the measurement once every traced process is done (the
// children have exited, the parent waits at its last gate with its events
// disabled): it drains the rings, reads every counter, and closes the events
// in the background. Closing the last event of a tracepoint (or a kprobe)
// makes the kernel unregister it and wait for an RCU grace period, tens of
// milliseconds each, one after the other under the kernel's event_mutex;
// started here, that wait overlaps the worker's exit (freeing its memory)
// instead of following it, and with handOff it happens in a holder process
// after cowtrace has exited.
func (t *tracer) conclude() error {
	if err := t.finish(); err != nil {
		return fmt.Errorf("read ring buffers: %w", err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.snap = map[*perfevents.Event]uint64{}
	var evs []*perfevents.Event
	for _, p := range t.procs {
		for _, te := range p.tasks {
			for _, ev := range te.all() {
				v, err := ev.Count()
				if err != nil {
					return err
				}
				t.snap[ev] = v
				evs = append(evs, ev)
			}
		}
	}
	if t.handOff {
		// On failure the closes below are only slower.
		_, _ = perfevents.HandOff()
	}
	t.closing = make(chan struct{})
	go func() {
		defer close(t.closing)
		t.closeReader()
		for _, ev := range evs {
			ev.Close()
		}
	}()
	return nil
}

// count is ev's count, as read by conclude if it ran.
func (t *tracer) count(ev *perfevents.Event) (uint64, error) {
	if v, ok := t.snap[ev]; ok {
		return v, nil
	}
	return ev.Count()
}

func (t *tracer) closeReader() {
	if t.reader != nil {
		// Close wakes a blocked ReadInto, which then returns ErrClosed.
		t.reader.Close()
		<-t.readDone
	}
}

// close closes every event and the reader, or waits for conclude's closing
// to end. It must run before kprobe_events entries are removed: the kernel
// refuses to remove a probe that is open.
func (t *tracer) close() {
	if t.closing != nil {
		<-t.closing
		return
	}
	t.closeReader()
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, p := range t.procs {
		for _, te := range p.tasks {
			for _, ev := range te.all() {
				ev.Close()
			}
		}
	}
}

// row builds the report row of p from its counters and classified samples.
func (t *tracer) row(p *proc, copyRoutine string) (report.Process, error) {
	r := report.Process{Role: p.role, Pid: p.pid, Window: p.window}
	sums := make([]uint64, len(counterKinds))
	probes := map[string]uint64{}
	for _, te := range p.tasks {
		for i, ev := range te.counters {
			v, err := t.count(ev)
			if err != nil {
				return r, err
			}
			sums[i] += v
		}
		for fn, ev := range te.probes {
			v, err := t.count(ev)
			if err != nil {
				return r, err
			}
			probes[fn] += v
		}
	}
	r.PageFaults, r.MinorFaults, r.MajorFaults = report.U64(sums[0]), report.U64(sums[1]), report.U64(sums[2])
	if len(probes) > 0 {
		r.Probes = probes
	}
	if t.caps.fault != nil && t.mode == ModeCount {
		if err := t.countedRow(&r, p); err != nil {
			return r, err
		}
	} else if t.caps.fault != nil {
		in, out := p.counts.inRegion, p.counts.outside
		r.InRegion, r.Outside = &in, &out
		r.WPFaults = report.U64(in.WP + out.WP)
		if t.caps.alloc != nil {
			r.InferredCopies = report.U64(in.InferredCopies + out.InferredCopies)
		}
		r.LostRecords = p.counts.lost
	}
	if copyRoutine != "" {
		if v, ok := probes[copyRoutine]; ok {
			r.Copies = report.U64(v)
		}
	} else if r.InferredCopies != nil {
		r.Copies = report.U64(*r.InferredCopies)
	}
	return r, nil
}

// probeNotes says which requested functions could not be probed, and why.
func (t *tracer) probeNotes() []report.Unavailable {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []report.Unavailable
	for fn, err := range t.probeErrs {
		out = append(out, report.Unavailable{What: "kprobe:" + fn, Why: err.Error()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].What < out[j].What })
	return out
}

// threads lists the tasks of process pid.
func threads(pid int) ([]int, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return nil, fmt.Errorf("list threads of %d: %w", pid, err)
	}
	tids := make([]int, 0, len(ents))
	for _, e := range ents {
		if tid, err := strconv.Atoi(e.Name()); err == nil {
			tids = append(tids, tid)
		}
	}
	return tids, nil
}
