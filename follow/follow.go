// Package follow traces any program and every process it forks from then
// on: the tracer of `cowtrace run -- CMD` and `cowtrace attach -p PID`.
//
// Events are opened on the target's tasks with inherit, so that every task it
// creates gets them too, and per CPU, as `perf record` does: the kernel
// refuses to mmap an inherited per-task event opened with cpu = -1. Every
// event of one CPU writes into that CPU's single ring. In the rings:
//
//   - a dummy event's PERF_RECORD_FORK, EXIT and COMM records give the tree
//     (who forked whom, when each task ended, its name after exec);
//   - the software page-fault events (page-faults, minor-faults,
//     major-faults) are sampled on every fault with TID, so even a child
//     that lives for a millisecond is counted exactly. inherit_stat's
//     PERF_RECORD_READ at each task's exit was tried first and measured
//     wrong on Linux 6.18: the kernel swaps whole event contexts between a
//     parent and its child at context switches, and the READ values then
//     came out mixed between counters (major faults in a process that had
//     none) or missing (a writer of 1000 pages with 805 faults);
//   - exceptions:page_fault_user and kmem:mm_page_alloc are sampled with
//     TID|TIME|IDENTIFIER|RAW: write-protect faults per task, and copies
//     inferred with the experiment's own rule (package experiment);
//   - kprobes (the copy routine found by the experiment's calibration,
//     do_wp_page, --probe functions) are sampled with TID too.
//
// Every ring is read to its end after the last exit before rows are built,
// and records the kernel had to drop are counted and reported.
package follow

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	perf "github.com/elastic/go-perf"
	"golang.org/x/sys/unix"

	"github.com/cowtrace/cowtrace/experiment"
	"github.com/cowtrace/cowtrace/perfevents"
	"github.com/cowtrace/cowtrace/report"
)

// Options configure a Tracer.
type Options struct {
	KprobeMethod experiment.KprobeMethod
	// Probes are extra kernel functions whose hits are counted per process.
	Probes []string
	// Timeline, when set, is called for every write-protect fault and
	// kprobe hit as it is read, from the reading goroutine.
	Timeline func(TimelineEvent)
	// StartAtExec: the roots' rows start at their exec (run), not when
	// tracing started (attach).
	StartAtExec bool
	// HandOff leaves the release of the events to a holder process
	// (perfevents.HandOff) at Close: for a program that exits right after
	// the trace. Ignored with tracefs kprobes, which must be closed before
	// their kprobe_events entries can be removed.
	HandOff bool
	// RingPages is each CPU's ring in pages (a power of two); 0 means 1024
	// (4 MiB), room for a few hundred thousand fault records between two
	// wake-ups.
	RingPages int
}

// TimelineEvent is one write-protect fault or kprobe hit.
type TimelineEvent struct {
	TimeNs  uint64 // since the trace started (CLOCK_MONOTONIC)
	Pid     int
	Tid     int
	Comm    string
	Event   string // "wp_fault" or "kprobe:FUNC"
	Address uint64 // the fault's address, or the probed function's
}

// counterKinds are the experiment's software fault events; here each is
// sampled on every event.
var counterKinds = experiment.FaultCounters

// sample_type of each kind of event. Every event of a ring shares the
// sample_id_all trailer (TID|TIME|IDENTIFIER), and IDENTIFIER comes first in
// a sample, so the event, and with it the layout, is known before decoding.
const (
	idType     = unix.PERF_SAMPLE_TID | unix.PERF_SAMPLE_TIME | unix.PERF_SAMPLE_IDENTIFIER
	tpType     = idType | unix.PERF_SAMPLE_RAW
	kprobeType = idType | unix.PERF_SAMPLE_IP
)

type eventKind int

const (
	kindDummy eventKind = iota
	kindCounter
	kindFault
	kindKernelFault
	kindAlloc
	kindProbe
)

// eventInfo is what an event id (the parent's id for inherited events) means.
type eventInfo struct {
	kind    eventKind
	counter int    // kindCounter: index in counterKinds
	probe   string // kindProbe: function
	root    int    // index in Tracer.roots
}

// root is a task the events were opened on directly (each thread of an
// attached process), or the command that inherited them (run).
type root struct {
	tid int
}

// Tracer follows a process tree.
type Tracer struct {
	opt         Options
	tp          *experiment.Tracepoints
	kp          *experiment.Kprobes
	copyRoutine string
	copyCheck   string
	probeFns    []string
	cpus        []int
	reader      *perfevents.Reader
	unavailable []report.Unavailable

	startNs uint64 // CLOCK_MONOTONIC at Start
	endNs   uint64 // at Stop

	mu        sync.Mutex
	events    []*perf.Event
	owners    []*perf.Event // by CPU index: the event that owns the ring
	ids       map[uint64]eventInfo
	roots     []*root
	tasks     map[int]*task
	probeErrs map[string]error
	lost      uint64
	throttled uint64

	// timeline holds events until timelineLag has passed (see flushTimeline).
	pending  []pendingEvent
	newestNs uint64 // the latest sample time read

	readDone chan struct{}
	readErr  error
	started  bool
}

// New prepares a tracer: it finds the tracepoints and the kprobe route, and,
// with kprobes, runs the experiment's copy-routine calibration.
func New(ctx context.Context, opt Options) (_ *Tracer, err error) {
	if opt.RingPages == 0 {
		opt.RingPages = 1024
	}
	if opt.RingPages < 0 || opt.RingPages&(opt.RingPages-1) != 0 {
		return nil, fmt.Errorf("ring of %d pages: not a power of two", opt.RingPages)
	}
	if opt.KprobeMethod == "" {
		opt.KprobeMethod = experiment.KprobeAuto
	}
	cpus, err := onlineCPUs()
	if err != nil {
		return nil, err
	}
	t := &Tracer{opt: opt, cpus: cpus, ids: map[uint64]eventInfo{}, tasks: map[int]*task{},
		probeErrs: map[string]error{}, owners: make([]*perf.Event, len(cpus))}
	// t is a local, not the named result: "return nil, err" would set
	// that to nil before this runs (a nil Close panicked, and tracefs
	// stayed mounted).
	defer func() {
		if err != nil {
			t.Close()
		}
	}()
	t.tp, err = experiment.DetectTracepoints()
	if err != nil {
		return nil, err
	}
	t.unavailable = t.tp.Unavailable()
	kp, why, err := experiment.NewKprobes(opt.KprobeMethod, t.tp.Tracefs())
	if err != nil {
		return nil, err
	}
	if kp == nil {
		t.unavailable = append(t.unavailable, report.Unavailable{What: "kprobes", Why: why})
	} else {
		t.kp = kp
		t.copyRoutine, t.copyCheck, err = kp.FindCopyRoutine(ctx, opt.Probes)
		if err != nil {
			return nil, err
		}
		if t.copyRoutine == "" {
			t.unavailable = append(t.unavailable, report.Unavailable{What: "copy routine", Why: t.copyCheck})
		}
		t.probeFns = experiment.ProbeFunctions(t.copyRoutine, opt.Probes)
	}
	t.reader, err = perfevents.NewReader()
	if err != nil {
		return nil, err
	}
	return t, nil
}

// Open opens every event on task tid, on every CPU, inherited by every task
// tid creates from then on. With enableOnExec the events stay off until a
// task that has them execs: the command is counted from its first
// instruction, and the thread of cowtrace that forks it not at all.
func (t *Tracer) Open(tid int, enableOnExec bool) (err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := &root{tid: tid}
	ri := len(t.roots)
	t.roots = append(t.roots, r)
	base := perf.Attr{
		SampleFormat: perf.SampleFormat{Tid: true, Time: true, Identifier: true},
		Options: perf.Options{
			Inherit:      true,
			SampleIDAll:  true,
			Disabled:     enableOnExec,
			EnableOnExec: enableOnExec,
			// One clock that user space can read too, so that the
			// records' times compare with the trace's start and end.
			UseClockID: true,
		},
		ClockID: unix.CLOCK_MONOTONIC,
	}
	for ci, cpu := range t.cpus {
		// The dummy carries the task records; the first one of each CPU
		// owns that CPU's ring and every other event writes into it.
		d := base
		d.Label = "dummy"
		d.Type = perf.SoftwareEvent
		d.Config = uint64(perf.Dummy)
		d.Options.Task, d.Options.Comm, d.Options.CommExec = true, true, true
		d.Options.Watermark = true
		d.Wakeup = uint32(t.opt.RingPages * os.Getpagesize() / 4)
		dummy, err := t.open(&d, tid, cpu, eventInfo{kind: kindDummy, root: ri})
		if err != nil {
			return err
		}
		if t.owners[ci] == nil {
			fd, err := dummy.FD()
			if err != nil {
				return err
			}
			if err := t.reader.Add(fd, t.opt.RingPages, ci); err != nil {
				return err
			}
			t.owners[ci] = dummy
		} else if err := t.redirect(dummy, ci); err != nil {
			return err
		}

		for k, c := range counterKinds {
			a := base
			a.Label = c.Label
			a.Type = perf.SoftwareEvent
			a.Config = uint64(c.Counter)
			a.SetSamplePeriod(1)
			if _, err := t.openRedirected(&a, tid, cpu, ci, eventInfo{kind: kindCounter, counter: k, root: ri}); err != nil {
				return err
			}
		}

		sampled := base
		sampled.SetSamplePeriod(1)
		sampled.SampleFormat.Raw = true
		sampled.Type = perf.TracepointEvent
		if id, ok := t.tp.FaultID(); ok {
			a := sampled
			a.Label, a.Config = "tracepoint:exceptions:page_fault_user", id
			if _, err := t.openRedirected(&a, tid, cpu, ci, eventInfo{kind: kindFault, root: ri}); err != nil {
				return err
			}
		}
		if id, ok := t.tp.KernelFaultID(); ok {
			a := sampled
			a.Label, a.Config = "tracepoint:exceptions:page_fault_kernel", id
			if _, err := t.openRedirected(&a, tid, cpu, ci, eventInfo{kind: kindKernelFault, root: ri}); err != nil {
				return err
			}
		}
		if id, ok := t.tp.AllocID(); ok {
			a := sampled
			a.Label, a.Config = "tracepoint:kmem:mm_page_alloc", id
			if _, err := t.openRedirected(&a, tid, cpu, ci, eventInfo{kind: kindAlloc, root: ri}); err != nil {
				return err
			}
		}
		if t.kp != nil {
			kb := base
			kb.SetSamplePeriod(1)
			kb.SampleFormat.IP = true
			for _, fn := range t.probeFns {
				if t.probeErrs[fn] != nil {
					continue
				}
				ev, err := t.kp.Open(fn, kb, tid, cpu)
				if err != nil {
					if errors.Is(err, perfevents.ErrNotFound) || errors.Is(err, perfevents.ErrNotProbeable) {
						t.probeErrs[fn] = err
						continue
					}
					return err
				}
				if err := t.track(ev, eventInfo{kind: kindProbe, probe: fn, root: ri}); err != nil {
					return err
				}
				if err := t.redirect(ev, ci); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func (t *Tracer) open(a *perf.Attr, tid, cpu int, info eventInfo) (*perf.Event, error) {
	ev, err := perf.Open(a, tid, cpu, nil)
	if err != nil {
		return nil, openError(a.Label, tid, cpu, err)
	}
	if err := t.track(ev, info); err != nil {
		return nil, err
	}
	return ev, nil
}

func (t *Tracer) openRedirected(a *perf.Attr, tid, cpu, ci int, info eventInfo) (*perf.Event, error) {
	ev, err := t.open(a, tid, cpu, info)
	if err != nil {
		return nil, err
	}
	return ev, t.redirect(ev, ci)
}

func (t *Tracer) track(ev *perf.Event, info eventInfo) error {
	t.events = append(t.events, ev)
	id, err := ev.ID()
	if err != nil {
		return err
	}
	t.ids[id] = info
	return nil
}

func (t *Tracer) redirect(ev *perf.Event, ci int) error {
	if err := ev.SetOutput(t.owners[ci]); err != nil {
		return fmt.Errorf("send records into CPU %d's ring: %w", t.cpus[ci], err)
	}
	return nil
}

// openError turns perf_event_open's errno into one line.
func openError(label string, tid, cpu int, err error) error {
	var errno unix.Errno
	if errors.As(err, &errno) {
		switch errno {
		case unix.ESRCH:
			return fmt.Errorf("open %s on task %d: %w", label, tid, ErrNoProcess)
		case unix.EACCES, unix.EPERM:
			return fmt.Errorf("open %s on task %d: %w: %s", label, tid, perfevents.ErrPermission, perfevents.PermissionHint())
		}
	}
	return fmt.Errorf("open %s on task %d, CPU %d: %w", label, tid, cpu, err)
}

// ErrNoProcess: the task to trace does not exist (or no longer does).
var ErrNoProcess = errors.New("no such process")

// Start starts reading the rings. Events opened with enableOnExec count from
// the exec; Start marks the trace's time zero unless the command's start
// already did.
func (t *Tracer) Start() {
	if t.startNs == 0 {
		t.startNs = monotonicNs()
	}
	t.readDone = make(chan struct{})
	t.started = true
	go func() {
		defer close(t.readDone)
		t.readErr = t.read()
	}()
}

// Stop disables every event and reads every ring to its end. Call it once
// the traced processes have exited (or when tracing must end).
func (t *Tracer) Stop() error {
	t.mu.Lock()
	for _, ev := range t.events {
		// ENOENT-like failures of a task gone are harmless: the
		// event already stopped with it.
		_ = ev.Disable()
	}
	t.mu.Unlock()
	t.endNs = monotonicNs()
	if !t.started {
		return nil
	}
	t.reader.SetDeadline(time.Now())
	<-t.readDone
	t.started = false
	if t.readErr != nil {
		return fmt.Errorf("read ring buffers: %w", t.readErr)
	}
	return nil
}

// Close closes every event and the reader, and removes the kprobes that the
// tracefs route created. It is safe to call more than once.
func (t *Tracer) Close() {
	if t.opt.HandOff && (t.kp == nil || t.kp.Method() != string(experiment.KprobeTracefs)) {
		// On failure the closes below are simply slower.
		_, _ = perfevents.HandOff()
	}
	if t.reader != nil {
		t.reader.Close()
		if t.started {
			<-t.readDone
			t.started = false
		}
	}
	t.mu.Lock()
	for _, ev := range t.events {
		ev.Close()
	}
	t.events = nil
	t.mu.Unlock()
	if t.kp != nil {
		t.kp.Close()
		t.kp = nil
	}
	if t.tp != nil {
		t.tp.Close()
		t.tp = nil
	}
}

// Lost is the number of records the kernel dropped so far (full rings).
func (t *Tracer) Lost() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.lost
}

func monotonicNs() uint64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return uint64(ts.Nano())
}

// onlineCPUs parses /sys/devices/system/cpu/online ("0-3,6").
func onlineCPUs() ([]int, error) {
	b, err := os.ReadFile("/sys/devices/system/cpu/online")
	if err != nil {
		return nil, fmt.Errorf("list online CPUs: %w", err)
	}
	return parseCPUList(strings.TrimSpace(string(b)))
}

func parseCPUList(s string) ([]int, error) {
	var cpus []int
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return nil, fmt.Errorf("CPU list %q: %w", s, err)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return nil, fmt.Errorf("CPU list %q: bad range %q", s, part)
			}
		}
		for c := a; c <= b; c++ {
			cpus = append(cpus, c)
		}
	}
	if len(cpus) == 0 {
		return nil, fmt.Errorf("CPU list %q is empty", s)
	}
	return cpus, nil
}

// Threads lists the tasks of process pid; a pid that does not exist wraps
// ErrNoProcess.
func Threads(pid int) ([]int, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("pid %d: %w", pid, ErrNoProcess)
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
