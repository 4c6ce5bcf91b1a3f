// Package follow traces any program and every process it forks from then
// on: `cowtrace run -- CMD` starts the command with the events inherited
// (see startCommand), `cowtrace attach -p PID` opens them on a running
// process's threads. The tracing engine (package engine) opens the events
// per CPU with inherit and reads their records; this package starts or
// attaches to the target, builds the process tree from the tasks the engine
// saw, and orders the timeline.
package follow

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/cowtrace/cowtrace/internal/engine"
	"github.com/cowtrace/cowtrace/perfevents"
	"github.com/cowtrace/cowtrace/report"
)

// Options configure a trace.
type Options struct {
	KprobeMethod perfevents.KprobeMethod
	// Probes are extra kernel functions whose hits are counted per process.
	Probes []string
	// Timeline, when set, is called for every write-protect fault and
	// kprobe hit, in time order, about timelineLag after it happened.
	Timeline func(TimelineEvent)
	// HandOff leaves the release of the events to a holder process: for a
	// program that exits right after the trace (engine.Config.HandOff).
	HandOff bool
	// FaultsByAddress asks for the generic fault method (see
	// engine.Config.FaultsByAddress).
	FaultsByAddress bool
	// Counters samples the page-faults and minor-faults software events
	// too (engine.Config.Counters).
	Counters bool
	// RingPages is each CPU's ring in pages (a power of two); 0 is the
	// engine's default.
	RingPages int
	// By splits each process's copies by mapping or by function
	// (report.ByMapping, report.ByFunction; "" does not).
	By string
	// Plot keeps each process's copies and faults over time in the run's
	// Timeseries.
	Plot bool
	// Mode is engine.ModeCount, ModeClassify or ModeAuto ("" is
	// classify); the timeline, --by and --plot need every fault, and make
	// ModeAuto classify.
	Mode engine.Mode
	// CrossCheck tells copies by their allocation's stack too where the
	// copy routine's kprobe counts them (engine.Config.CrossCheck).
	CrossCheck bool
	// Stream follows the trace as it goes (engine's stream.go): each
	// callback that is set is called in time order from the reading
	// goroutine. With Forget, tasks are dropped once they ended: the
	// run's rows are then those still alive at its end.
	Stream StreamHooks
	Forget bool
	// RingSize is the bytes of ring memory for every CPU's ring together
	// (--ring-size), split over the CPUs the target may run on; 0 is
	// engine.DefaultRingBudget.
	RingSize int64
}

// StreamHooks are engine.Config's stream callbacks, and Started, called
// once every event is open and counting, before the rings are read (so
// before any other hook) and before AttachSpec.Attached, with the pid of
// the process traced (run's command, the one attached to) and what the
// stream's counts measure.
type StreamHooks struct {
	OnFork    func(engine.Fork)
	OnTaskEnd func(engine.TaskEnd)
	OnCounts  func(engine.TaskCounts)
	Started   func(pid int, m engine.Measures)
}

// started calls the Started hook, if any.
func (h StreamHooks) started(s *engine.Session, pid int) {
	if h.Started != nil {
		h.Started(pid, s.StreamMeasures())
	}
}

// ErrNoProcess: the process to trace does not exist (or no longer does).
var ErrNoProcess = perfevents.ErrNoProcess

// TimelineEvent is one write-protect fault or kprobe hit.
type TimelineEvent struct {
	TimeNs  uint64 // since the trace started (CLOCK_MONOTONIC)
	Pid     int
	Tid     int
	Comm    string
	Event   string // "wp_fault" or "kprobe:FUNC"
	Address uint64 // the fault's address, or the probed function's
}

// newSession starts an engine session for a followed target, with the
// timeline and the collector of --by and --plot when asked for.
func newSession(ctx context.Context, opt Options, startAtExec bool) (*engine.Session, *timeline, *collector, error) {
	var tl *timeline
	var col *collector
	cfg := engine.Config{KprobeMethod: opt.KprobeMethod, Probes: opt.Probes, HandOff: opt.HandOff, FaultsByAddress: opt.FaultsByAddress, Counters: opt.Counters,
		RingPages: opt.RingPages, RingBudget: opt.RingSize, StartAtExec: startAtExec, CrossCheck: opt.CrossCheck,
		OnFork: opt.Stream.OnFork, OnTaskEnd: opt.Stream.OnTaskEnd, OnCounts: opt.Stream.OnCounts, Forget: opt.Forget}
	if opt.Timeline != nil {
		tl = &timeline{emit: opt.Timeline}
	}
	cfg.Mode = opt.Mode
	if cfg.Mode == "" || cfg.Mode == engine.ModeAuto && (opt.Timeline != nil || opt.By != "" || opt.Plot) {
		cfg.Mode = engine.ModeClassify
	}
	if opt.By != "" || opt.Plot {
		col = &collector{by: opt.By, plot: opt.Plot}
		cfg.CopyEvents = true
		if opt.By != "" {
			// Mapping records cost a record per mmap: only --by needs them.
			cfg.OnMmap = col.mmap
		}
	}
	switch {
	case tl != nil && col != nil:
		cfg.OnEvent = func(e engine.Event) { tl.add(e); col.event(e) }
	case tl != nil:
		cfg.OnEvent = tl.add
	case col != nil:
		cfg.OnEvent = col.event
	}
	s, err := engine.New(ctx, cfg)
	if err != nil {
		return nil, nil, nil, err
	}
	if tl != nil {
		tl.s = s
	}
	return s, tl, col, nil
}

// finish adds to run what the collector gathered, once the trace stopped.
func (c *collector) finish(s *engine.Session, run *report.Run) {
	if c == nil {
		return
	}
	if c.by != "" {
		run.CopiesBy = c.by
		run.Methods["copies_by"] = "mmap2:" + c.by
		by := c.attribute(s.Tasks())
		for i := range run.Processes {
			p := &run.Processes[i]
			if p.Role != "thread" {
				p.CopiesBy = by[p.Pid]
			}
		}
		run.Notes = append(run.Notes, c.notes...)
		run.Notes = append(run.Notes, attribNotes(run)...)
	}
	if c.plot {
		start, _ := s.Span()
		run.Timeseries = c.series(run, start)
	}
}

// timelineLag is how long (in sample time) a timeline event waits before it
// is printed. The rings of the CPUs are read one after another, so the FORK
// or COMM record that names a task, and earlier events of other CPUs, can be
// read after an event; perf's ordered events wait for the same reason.
const timelineLag = uint64(250 * time.Millisecond)

// timeline orders the engine's events by time and names them as their task
// was called then.
type timeline struct {
	s    *engine.Session
	emit func(TimelineEvent)

	mu      sync.Mutex
	pending []engine.Event
	newest  uint64 // the latest sample time read
}

func (tl *timeline) add(e engine.Event) {
	if e.Name == "copy" {
		return // the timeline shows faults and probe hits
	}
	tl.mu.Lock()
	tl.pending = append(tl.pending, e)
	tl.newest = max(tl.newest, e.TimeNs)
	var ready []engine.Event
	if tl.newest > timelineLag {
		ready = tl.takeLocked(tl.newest - timelineLag)
	}
	tl.mu.Unlock()
	tl.send(ready)
}

// flush emits every event still waiting, once the rings are read.
func (tl *timeline) flush() {
	if tl == nil {
		return
	}
	tl.mu.Lock()
	ready := tl.takeLocked(^uint64(0))
	tl.mu.Unlock()
	tl.send(ready)
}

// takeLocked removes, in time order, the pending events up to time upTo.
func (tl *timeline) takeLocked(upTo uint64) []engine.Event {
	sort.SliceStable(tl.pending, func(i, j int) bool { return tl.pending[i].TimeNs < tl.pending[j].TimeNs })
	n := sort.Search(len(tl.pending), func(i int) bool { return tl.pending[i].TimeNs > upTo })
	out := append([]engine.Event{}, tl.pending[:n]...)
	tl.pending = append(tl.pending[:0], tl.pending[n:]...)
	return out
}

func (tl *timeline) send(evs []engine.Event) {
	if len(evs) == 0 {
		return
	}
	start, _ := tl.s.Span()
	for _, e := range evs {
		var rel uint64
		if e.TimeNs > start {
			rel = e.TimeNs - start
		}
		tl.emit(TimelineEvent{TimeNs: rel, Pid: e.Pid, Tid: e.Tid, Comm: tl.s.NameAt(e.Tid, e.TimeNs),
			Event: e.Name, Address: e.Address})
	}
}
