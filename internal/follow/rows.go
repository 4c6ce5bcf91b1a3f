package follow

import (
	"fmt"
	"sort"

	"github.com/cowtrace/cowtrace/internal/engine"
	"github.com/cowtrace/cowtrace/report"
)

// Windows stated in the report.
const (
	commandWindow  = "from its exec to its exit, all threads"
	attachedWindow = "from the attach to its exit or the end of the trace, all threads"
	childWindow    = "from its fork to its exit, all threads"
	threadWindow   = "one thread, from its creation to its exit"
)

// process gathers the tasks of one process: one pid, but a pid used again
// after its process ended is another process (engine.Task.Proc).
type process struct {
	id       int // engine.Task.Proc
	pid      int
	tasks    []*engine.Task // leader first when known
	children []*process
	depth    int
}

// tree is the trace's processes as a tree and the span rows are measured in.
type tree struct {
	s              *engine.Session
	startNs, endNs uint64
	startAtExec    bool
}

// result builds the run after Stop: one row per process in tree order (each
// process before its children, children by start time), and with threads
// a row per thread after each process that had more than one.
func result(s *engine.Session, threads, startAtExec bool) *report.Run {
	start, end := s.Span()
	tr := tree{s: s, startNs: start, endNs: end, startAtExec: startAtExec}
	run := &report.Run{
		SchemaVersion: report.SchemaVersion,
		Scenario:      "traced",
		Trace:         &report.Trace{Threads: threads, DurationMs: ms(end - start)},
	}
	s.FillRun(run, false)

	procs := map[int]*process{}
	byPid := map[int][]*process{}
	for _, tk := range s.Tasks() {
		p := procs[tk.Proc]
		if p == nil {
			p = &process{id: tk.Proc, pid: tk.Pid}
			procs[tk.Proc] = p
			byPid[tk.Pid] = append(byPid[tk.Pid], p)
		}
		p.tasks = append(p.tasks, tk)
	}
	for _, p := range procs {
		sort.Slice(p.tasks, func(i, j int) bool {
			a, b := p.tasks[i], p.tasks[j]
			if (a.Tid == p.pid) != (b.Tid == p.pid) {
				return a.Tid == p.pid
			}
			return a.StartNs < b.StartNs
		})
	}

	// A process hangs under its parent when the parent was traced too; the
	// roots' processes and orphans of lost records are the top.
	var top []*process
	for _, p := range procs {
		parent := parentOf(p, byPid)
		if parent != nil && parent != p && !p.hasRoot() {
			parent.children = append(parent.children, p)
		} else {
			top = append(top, p)
		}
	}
	byStart := func(ps []*process) {
		sort.Slice(ps, func(i, j int) bool {
			if ps[i].start() != ps[j].start() {
				return ps[i].start() < ps[j].start()
			}
			return ps[i].pid < ps[j].pid
		})
	}
	byStart(top)
	var walk func(p *process, depth int)
	walk = func(p *process, depth int) {
		p.depth = depth
		run.Processes = append(run.Processes, tr.processRow(p))
		// A process of one thread would repeat its own row as a
		// thread's: only processes of several get thread rows.
		if threads && len(p.tasks) > 1 {
			for _, tk := range p.tasks {
				run.Processes = append(run.Processes, tr.threadRow(p, tk))
			}
		}
		if !p.exited() {
			run.Trace.StillRunning = append(run.Trace.StillRunning, p.pid)
		}
		byStart(p.children)
		for _, c := range p.children {
			walk(c, depth+1)
		}
	}
	for _, p := range top {
		walk(p, 0)
	}
	if run.LostRecords > 0 {
		run.Notes = append(run.Notes, fmt.Sprintf("the kernel dropped %d records (a ring was full): fault, copy and probe counts are lower bounds, and a lost FORK or EXIT blurs the tree", run.LostRecords))
	}
	return run
}

func (tr tree) processRow(p *process) report.Process {
	leader := p.leader()
	role, window := "child", childWindow
	if p.hasRoot() {
		role, window = "attached", attachedWindow
		if tr.startAtExec {
			role, window = "command", commandWindow
		}
	}
	row := report.Process{Role: role, Pid: p.pid, Window: window, Lineage: &report.Lineage{
		Ppid:    leader.Ppid,
		Comm:    leader.Comm(),
		Depth:   p.depth,
		Exited:  p.exited(),
		Threads: len(p.tasks),
	}}
	if len(leader.Comms) > 1 {
		row.Comms = leader.Comms
	}
	tr.span(row.Lineage, p.start(), p.end(), p.exited())
	tr.s.RowOf(&row, p.tasks)
	return row
}

func (tr tree) threadRow(p *process, tk *engine.Task) report.Process {
	row := report.Process{Role: "thread", Pid: p.pid, Window: threadWindow, Lineage: &report.Lineage{
		Tid:     tk.Tid,
		Ppid:    tk.Ppid,
		Comm:    tk.Comm(),
		Depth:   p.depth,
		Exited:  tk.Exited,
		Threads: 1,
	}}
	tr.span(row.Lineage, tk.StartNs, tk.EndNs, tk.Exited)
	tr.s.RowOf(&row, []*engine.Task{tk})
	return row
}

// parentOf is the process that created p: its leader's creator's, when the
// FORK was seen, else the live process of the parent pid when p started.
func parentOf(p *process, byPid map[int][]*process) *process {
	if c := p.leader().Parent(); c != nil {
		for _, q := range byPid[c.Pid] {
			if q.id == c.Proc {
				return q
			}
		}
	}
	var best *process
	for _, q := range byPid[p.leader().Ppid] {
		if q.start() <= p.start() && (best == nil || q.start() > best.start()) {
			best = q
		}
	}
	return best
}

func (tr tree) span(l *report.Lineage, start, end uint64, exited bool) {
	if start < tr.startNs {
		start = tr.startNs
	}
	if !exited || end == 0 {
		end = tr.endNs
	}
	l.StartMs = ms(start - tr.startNs)
	if end > start {
		l.LifetimeMs = ms(end - start)
	}
}

func (p *process) leader() *engine.Task { return p.tasks[0] }

func (p *process) hasRoot() bool {
	for _, tk := range p.tasks {
		if tk.Root {
			return true
		}
	}
	return false
}

func (p *process) exited() bool {
	for _, tk := range p.tasks {
		if !tk.Exited {
			return false
		}
	}
	return true
}

func (p *process) start() uint64 {
	s := p.tasks[0].StartNs
	for _, tk := range p.tasks {
		if tk.StartNs != 0 && (s == 0 || tk.StartNs < s) {
			s = tk.StartNs
		}
	}
	return s
}

func (p *process) end() uint64 {
	var e uint64
	for _, tk := range p.tasks {
		if tk.EndNs > e {
			e = tk.EndNs
		}
	}
	return e
}

func ms(ns uint64) float64 { return float64(ns) / 1e6 }
