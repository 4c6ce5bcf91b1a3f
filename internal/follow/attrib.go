package follow

import (
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/cowtrace/cowtrace/internal/engine"
	"github.com/cowtrace/cowtrace/perfevents"
	"github.com/cowtrace/cowtrace/report"
)

// collector keeps what attribution (--by) and the plot (--plot) need: every
// counted copy, every write-protect fault for the plot, and every mapping
// record, with their times. They are resolved once the trace has stopped,
// when every FORK record is known: a copy is named after the mappings of
// its process at the copy's time, which a fork took from the parent.
type collector struct {
	by     string // report.ByMapping, report.ByFunction or ""
	plot   bool
	mu     sync.Mutex
	copies []engine.Event
	faults []engine.Event
	mmaps  []timedMmap
	// initial are the mappings of processes that ran before the trace
	// (attach), from /proc/PID/maps.
	initial map[int]*addrSpace
	notes   []string
}

type timedMmap struct {
	m  perfevents.Mmap
	ns uint64
}

func (c *collector) event(e engine.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case e.Name == "copy":
		c.copies = append(c.copies, e)
	case e.Name == "wp_fault" && c.plot:
		c.faults = append(c.faults, e)
	}
}

func (c *collector) mmap(m perfevents.Mmap, ns uint64) {
	c.mu.Lock()
	c.mmaps = append(c.mmaps, timedMmap{m, ns})
	c.mu.Unlock()
}

// addInitial reads the mappings of a process the trace attached to; where
// they cannot be read, its copies are named from the records alone.
func (c *collector) addInitial(pid int) {
	a, err := readMaps(pid)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.notes = append(c.notes, fmt.Sprintf("copies by %s: the mappings of %d could not be read (%v): only those it made during the trace are known", c.by, pid, err))
		return
	}
	if c.initial == nil {
		c.initial = map[int]*addrSpace{}
	}
	c.initial[pid] = a
}

// step is one thing that changes or reads an address space, in time order.
type step struct {
	ns   uint64
	kind int // stepExec, stepMmap, stepFork, stepCopy: their order at equal times
	pid  int
	// parent is a fork's parent process.
	parent int
	m      mapping
	copy   *engine.Event
}

const (
	stepExec = iota
	stepMmap
	stepFork
	stepCopy
)

// shares are one process's copies by name, as they are counted.
type shares struct {
	copies map[string]uint64
	pages  map[string]map[uint64]bool
}

// attribute splits every process's copies by mapping or by function after
// the trace. Processes are the pids of tasks; a fork's child starts from
// its parent's mappings at the fork, the processes the trace attached to
// from /proc/PID/maps, and an exec (its COMM record) from none.
func (c *collector) attribute(tasks []*engine.Task) map[int][]report.Share {
	c.mu.Lock()
	defer c.mu.Unlock()
	steps := c.steps(tasks)
	spaces := map[int]*addrSpace{}
	for pid, a := range c.initial {
		spaces[pid] = a.clone()
	}
	space := func(pid int) *addrSpace {
		a := spaces[pid]
		if a == nil {
			a = &addrSpace{}
			spaces[pid] = a
		}
		return a
	}
	sz := newSymbolizer()
	counted := map[int]*shares{}
	for _, st := range steps {
		switch st.kind {
		case stepExec:
			spaces[st.pid] = &addrSpace{}
		case stepMmap:
			space(st.pid).insert(st.m)
		case stepFork:
			if p := spaces[st.parent]; p != nil {
				spaces[st.pid] = p.clone()
			}
		case stepCopy:
			name := c.name(space(st.pid), st.copy, sz)
			sh := counted[st.pid]
			if sh == nil {
				sh = &shares{copies: map[string]uint64{}, pages: map[string]map[uint64]bool{}}
				counted[st.pid] = sh
			}
			sh.copies[name]++
			if st.copy.Known {
				if sh.pages[name] == nil {
					sh.pages[name] = map[uint64]bool{}
				}
				sh.pages[name][st.copy.Address>>12] = true
			}
		}
	}
	out := map[int][]report.Share{}
	for pid, sh := range counted {
		out[pid] = sh.list()
	}
	return out
}

// steps orders the records, forks and copies by time.
func (c *collector) steps(tasks []*engine.Task) []step {
	byTid := map[int]*engine.Task{}
	for _, tk := range tasks {
		byTid[tk.Tid] = tk
	}
	var steps []step
	for _, tm := range c.mmaps {
		m := tm.m
		steps = append(steps, step{ns: tm.ns, kind: stepMmap, pid: int(m.Pid),
			m: mapping{start: m.Addr, end: m.Addr + m.Len, pgoff: m.Pgoff, name: m.Filename}})
	}
	for _, tk := range tasks {
		// The kernel sends an exec's COMM record (begin_new_exec) before
		// the mappings of the new program and its stack.
		for _, ns := range tk.Execs {
			steps = append(steps, step{ns: ns, kind: stepExec, pid: tk.Pid})
		}
		if tk.Root || tk.Tid != tk.Pid || tk.StartNs == 0 {
			continue
		}
		// The mappings are those of the task that forked, whatever
		// CLONE_PARENT made the parent.
		parent := tk.Ppid
		if p := byTid[tk.ParentTid]; p != nil && p.Pid != 0 {
			parent = p.Pid
		}
		steps = append(steps, step{ns: tk.StartNs, kind: stepFork, pid: tk.Pid, parent: parent})
	}
	for i := range c.copies {
		e := &c.copies[i]
		steps = append(steps, step{ns: e.TimeNs, kind: stepCopy, pid: e.Pid, copy: e})
	}
	sort.SliceStable(steps, func(i, j int) bool {
		if steps[i].ns != steps[j].ns {
			return steps[i].ns < steps[j].ns
		}
		return steps[i].kind < steps[j].kind
	})
	return steps
}

// Names of copies that no mapping or function can be given.
const (
	faultNotSeen = "[fault not seen]"
	kernelMode   = "[kernel mode]"
)

// name is where a copy landed, or which code caused it.
func (c *collector) name(a *addrSpace, e *engine.Event, sz *symbolizer) string {
	if !e.Known {
		return faultNotSeen
	}
	if c.by == report.ByMapping {
		return a.name(e.Address)
	}
	if e.IP == 0 {
		return kernelMode
	}
	m, ok := a.find(e.IP)
	switch {
	case !ok:
		return fmt.Sprintf("?+%#x %s", e.IP, unknownName)
	case !m.file():
		// Code in anonymous memory (a JIT) or in the vDSO.
		name := m.name
		if name == anonName {
			name = anonShare
		}
		return fmt.Sprintf("? (%s)", name)
	}
	return sz.name(m.name, e.IP-m.start+m.pgoff)
}

// list is the shares, largest first.
func (sh *shares) list() []report.Share {
	var total uint64
	for _, n := range sh.copies {
		total += n
	}
	out := make([]report.Share, 0, len(sh.copies))
	for name, n := range sh.copies {
		out = append(out, report.Share{Name: name, Copies: n, Pages: uint64(len(sh.pages[name])),
			Share: float64(n) / float64(total)})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Copies != out[j].Copies {
			return out[i].Copies > out[j].Copies
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// maxPoints bounds a plotted series: a step per copy would make an SVG of
// megabytes for a process that copies a million pages.
const maxPoints = 2000

// series is each process's cumulative copies and faults over the trace,
// from its start to its end, for the rows of run.
func (c *collector) series(run *report.Run, startNs uint64) []report.Timeseries {
	c.mu.Lock()
	defer c.mu.Unlock()
	copies, faults := byPid(c.copies), byPid(c.faults)
	var out []report.Timeseries
	for _, p := range run.Processes {
		if p.Lineage == nil || p.Role == "thread" || len(copies[p.Pid])+len(faults[p.Pid]) == 0 {
			continue
		}
		from, to := p.StartMs, p.StartMs+p.LifetimeMs
		out = append(out, report.Timeseries{Pid: p.Pid, Comm: p.Comm,
			Copies: cumulative(copies[p.Pid], startNs, from, to),
			Faults: cumulative(faults[p.Pid], startNs, from, to)})
	}
	return out
}

func byPid(evs []engine.Event) map[int][]engine.Event {
	out := map[int][]engine.Event{}
	for _, e := range evs {
		out[e.Pid] = append(out[e.Pid], e)
	}
	for _, es := range out {
		sort.Slice(es, func(i, j int) bool { return es[i].TimeNs < es[j].TimeNs })
	}
	return out
}

// cumulative is the running count of evs, from 0 at fromMs to the total at
// toMs, keeping at most maxPoints of the steps.
func cumulative(evs []engine.Event, startNs uint64, fromMs, toMs float64) []report.Point {
	pts := []report.Point{{Ms: fromMs, N: 0}}
	every := (len(evs) + maxPoints - 1) / maxPoints
	for i, e := range evs {
		if (i+1)%max(every, 1) != 0 && i != len(evs)-1 {
			continue
		}
		var ms float64
		if e.TimeNs > startNs {
			ms = float64(e.TimeNs-startNs) / 1e6
		}
		pts = append(pts, report.Point{Ms: ms, N: uint64(i + 1)})
	}
	if last := pts[len(pts)-1]; toMs > last.Ms {
		pts = append(pts, report.Point{Ms: toMs, N: last.N})
	}
	return pts
}

// attribNotes say what the attribution could not tell.
func attribNotes(run *report.Run) []string {
	var notSeen, other, unrecorded uint64
	for _, p := range run.Processes {
		for _, s := range p.CopiesBy {
			switch {
			case s.Name == faultNotSeen:
				notSeen += s.Copies
			case strings.HasPrefix(s.Name, "[unknown]"):
				other += s.Copies
			case s.Name == unrecordedName:
				unrecorded += s.Copies
			}
		}
	}
	var notes []string
	if notSeen > 0 {
		notes = append(notes, fmt.Sprintf("copies by %s: %d copies had no sampled fault to place them (%s)", run.CopiesBy, notSeen, faultNotSeen))
	}
	if other > 0 {
		notes = append(notes, fmt.Sprintf("copies by %s: %d copies lay in no mapping the trace knew of (%s)", run.CopiesBy, other, unknownName))
	}
	if unrecorded > 0 {
		notes = append(notes, fmt.Sprintf("copies by %s: %d copies lay in the mmap area where no record maps anything (%s): memory that mremap moved, "+
			"which the kernel does not record; anonymous but for a file mapping moved the same way", run.CopiesBy, unrecorded, unrecordedName))
	}
	return notes
}
