package follow

import (
	"fmt"
	"sort"

	"github.com/cowtrace/cowtrace/experiment"
	"github.com/cowtrace/cowtrace/report"
)

// Windows stated in the report.
const (
	commandWindow  = "from its exec to its exit, all threads"
	attachedWindow = "from the attach to its exit or the end of the trace, all threads"
	childWindow    = "from its fork to its exit, all threads"
	threadWindow   = "one thread, from its creation to its exit"
)

// process gathers the tasks of one pid.
type process struct {
	pid      int
	tasks    []*task // leader first when known
	children []*process
	depth    int
	counters [3]uint64 // the tasks' counters summed
}

// Result builds the run after Stop: one row per process in tree order (each
// process before its children, children by start time), and with threads
// a row per thread after its process.
func (t *Tracer) Result(threads bool) (*report.Run, error) {
	t.mu.Lock()
	defer t.mu.Unlock()

	run := &report.Run{
		SchemaVersion: report.SchemaVersion,
		Kernel:        t.tpKernel(),
		Scenario:      "traced",
		CopyRoutine:   t.copyRoutine,
		Methods:       map[string]string{},
		Unavailable:   append([]report.Unavailable{}, t.unavailable...),
		LostRecords:   t.lost,
		Throttled:     t.throttled,
		Trace:         &report.Trace{Threads: threads, DurationMs: ms(t.endNs - t.startNs)},
	}
	if t.kp != nil {
		run.KprobeMethod = t.kp.Method()
		run.CopyRoutineCheck = t.copyCheck
	}
	for fn, err := range t.probeErrs {
		run.Unavailable = append(run.Unavailable, report.Unavailable{What: "kprobe:" + fn, Why: err.Error()})
	}
	sort.Slice(run.Unavailable, func(i, j int) bool { return run.Unavailable[i].What < run.Unavailable[j].What })
	t.fillMethods(run.Methods)

	for _, tk := range t.tasks {
		if tk.isRoot && tk.startNs == 0 {
			tk.startNs = t.startNs
		}
	}
	t.settleNames()
	procs := map[int]*process{}
	for _, tk := range t.tasks {
		p := procs[tk.pid]
		if p == nil {
			p = &process{pid: tk.pid}
			procs[tk.pid] = p
		}
		p.tasks = append(p.tasks, tk)
	}
	for _, p := range procs {
		sort.Slice(p.tasks, func(i, j int) bool {
			a, b := p.tasks[i], p.tasks[j]
			if (a.tid == p.pid) != (b.tid == p.pid) {
				return a.tid == p.pid
			}
			return a.startNs < b.startNs
		})
	}

	for _, p := range procs {
		for _, tk := range p.tasks {
			for k, v := range tk.counters {
				p.counters[k] += v
			}
		}
	}

	// The tree: a process hangs under its parent when the parent was
	// traced too; the roots' processes and orphans of lost records are
	// the top.
	var top []*process
	for _, p := range procs {
		parent := procs[p.leader().ppid]
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
		run.Processes = append(run.Processes, t.processRow(p))
		if threads {
			for _, tk := range p.tasks {
				run.Processes = append(run.Processes, t.threadRow(p, tk))
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
	run.Notes = append(run.Notes, "page faults are sampled per event rather than read from inherited counters: the kernel swaps inherited event contexts between parent and child tasks, which mixes per-task counts (inherit_stat)")
	if run.LostRecords > 0 {
		run.Notes = append(run.Notes, fmt.Sprintf("the kernel dropped %d records (a ring was full): fault, copy and probe counts are lower bounds, and a lost FORK or EXIT blurs the tree", run.LostRecords))
	}
	return run, nil
}

func (t *Tracer) tpKernel() string {
	if t.tp == nil {
		return ""
	}
	return t.tp.Kernel()
}

func (t *Tracer) processRow(p *process) report.Process {
	leader := p.leader()
	role, window := "child", childWindow
	if p.hasRoot() {
		role, window = "attached", attachedWindow
		if t.opt.StartAtExec {
			role, window = "command", commandWindow
		}
	}
	row := report.Process{Role: role, Pid: p.pid, Window: window, Lineage: &report.Lineage{
		Ppid:    leader.ppid,
		Comm:    leader.comm(),
		Depth:   p.depth,
		Exited:  p.exited(),
		Threads: len(p.tasks),
	}}
	if len(leader.comms) > 1 {
		row.Comms = leader.comms
	}
	t.span(row.Lineage, p.start(), p.end(), p.exited())
	row.PageFaults, row.MinorFaults, row.MajorFaults = report.U64(p.counters[0]), report.U64(p.counters[1]), report.U64(p.counters[2])
	t.samples(&row, p.tasks)
	return row
}

func (t *Tracer) threadRow(p *process, tk *task) report.Process {
	row := report.Process{Role: "thread", Pid: p.pid, Window: threadWindow, Lineage: &report.Lineage{
		Tid:     tk.tid,
		Ppid:    tk.ppid,
		Comm:    tk.comm(),
		Depth:   p.depth,
		Exited:  tk.exited,
		Threads: 1,
	}}
	t.span(row.Lineage, tk.startNs, tk.endNs, tk.exited)
	c := tk.counters
	row.PageFaults, row.MinorFaults, row.MajorFaults = report.U64(c[0]), report.U64(c[1]), report.U64(c[2])
	t.samples(&row, []*task{tk})
	return row
}

func (t *Tracer) span(l *report.Lineage, start, end uint64, exited bool) {
	if start < t.startNs {
		start = t.startNs
	}
	if !exited || end == 0 {
		end = t.endNs
	}
	l.StartMs = ms(start - t.startNs)
	if end > start {
		l.LifetimeMs = ms(end - start)
	}
}

// samples fills the measures that come from sampled records.
func (t *Tracer) samples(row *report.Process, tasks []*task) {
	_, haveFault := t.tp.FaultID()
	_, haveAlloc := t.tp.AllocID()
	var all report.FaultClasses
	probes := map[string]uint64{}
	for _, tk := range tasks {
		for _, f := range tk.faults {
			c := f.Classes()
			all.WP += c.WP
			all.WriteNotPresent += c.WriteNotPresent
			all.Read += c.Read
			all.Exec += c.Exec
			all.InferredCopies += c.InferredCopies
		}
		for fn, n := range tk.probes {
			probes[fn] += n
		}
	}
	if haveFault {
		row.Outside = &all
		row.WPFaults = report.U64(all.WP)
		if haveAlloc {
			row.InferredCopies = report.U64(all.InferredCopies)
		}
	}
	if t.kp != nil {
		for _, fn := range t.probeFns {
			if t.probeErrs[fn] == nil {
				probes[fn] += 0
			}
		}
		if len(probes) > 0 {
			row.Probes = probes
		}
	}
	if t.copyRoutine != "" && t.probeErrs[t.copyRoutine] == nil {
		row.Copies = report.U64(probes[t.copyRoutine])
	} else if row.InferredCopies != nil {
		row.Copies = report.U64(*row.InferredCopies)
	}
}

func (t *Tracer) fillMethods(m map[string]string) {
	// Sampled, not counted: see the note on inherited event contexts.
	m["page_faults"] = "sampled:page-faults"
	m["minor_faults"] = "sampled:minor-faults"
	m["major_faults"] = "sampled:major-faults"
	_, haveFault := t.tp.FaultID()
	_, haveAlloc := t.tp.AllocID()
	if haveFault {
		_, haveKernel := t.tp.KernelFaultID()
		m["wp_faults"] = experiment.FaultMethod(haveKernel)
		// Without a region, every fault is "outside" one: that field
		// holds the process's faults by class.
		m["outside"] = m["wp_faults"]
		if haveAlloc {
			m["inferred_copies"] = "inferred:exceptions:page_fault_user+kmem:mm_page_alloc"
		}
	}
	switch {
	case t.copyRoutine != "" && t.probeErrs[t.copyRoutine] == nil:
		m["copies"] = "kprobe:" + t.copyRoutine
	case m["inferred_copies"] != "":
		m["copies"] = m["inferred_copies"]
	}
	if t.kp != nil {
		for _, fn := range t.probeFns {
			if t.probeErrs[fn] == nil {
				m["probes."+fn] = "kprobe:" + fn
			}
		}
	}
}

func (p *process) leader() *task { return p.tasks[0] }

func (p *process) hasRoot() bool {
	for _, tk := range p.tasks {
		if tk.isRoot {
			return true
		}
	}
	return false
}

func (p *process) exited() bool {
	for _, tk := range p.tasks {
		if !tk.exited {
			return false
		}
	}
	return true
}

func (p *process) start() uint64 {
	s := p.tasks[0].startNs
	for _, tk := range p.tasks {
		if tk.startNs != 0 && (s == 0 || tk.startNs < s) {
			s = tk.startNs
		}
	}
	return s
}

func (p *process) end() uint64 {
	var e uint64
	for _, tk := range p.tasks {
		if tk.endNs > e {
			e = tk.endNs
		}
	}
	return e
}

func ms(ns uint64) float64 { return float64(ns) / 1e6 }
