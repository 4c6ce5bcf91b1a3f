// Package experiment runs cowtrace's copy-on-write experiment: it starts the
// workload (package workload), hands each of its processes to the tracing
// engine (package engine) while the process waits at its gate, so that its
// events count from its first access to the region, and returns a
// report.Run with the rows in fork order, the scenario's notes and the
// physical-frame proof.
package experiment

import (
	"context"
	"fmt"

	"github.com/cowtrace/cowtrace/internal/engine"
	"github.com/cowtrace/cowtrace/internal/workload"
	"github.com/cowtrace/cowtrace/perfevents"
	"github.com/cowtrace/cowtrace/report"
)

// Options configure one run.
type Options struct {
	Workload     workload.Config
	Scenario     string
	KprobeMethod perfevents.KprobeMethod
	// Mode is how faults are measured; "" is engine.ModeClassify.
	Mode engine.Mode
	// FaultsByAddress asks for the generic fault method (see
	// engine.Config.FaultsByAddress).
	FaultsByAddress bool
	// Probes are extra kernel functions to count per process.
	Probes []string
	// Proof adds physical-frame evidence (ProofPagemap). It holds the
	// workload's processes (workload.Config.Hold) to look at them alive.
	Proof Proof
	// HandOff leaves the release of the events to a holder process
	// (perfevents.HandOff), for a program that exits right after the run.
	// Ignored with tracefs kprobes: their kprobe_events entries can be
	// removed only once every event on them is closed.
	HandOff bool
	// AfterAttach, when set, runs once every event of every process is
	// open, before the last child is released. Tests use it to interrupt a
	// run at its most loaded moment.
	AfterAttach func(ctx context.Context) error
}

// Windows stated in the report: what span of each process the row counts.
const (
	parentWindow = "from its first fork to its final read of the region, all %d threads"
	childWindow  = "from its gate (before its first access to the region) to its exit"
)

// process is one row of the experiment: a process of the workload and its
// tasks, each opened in the engine.
type process struct {
	role, window string
	pid          int
	tids         []int
}

// Run runs the experiment once. It cleans up everything it opened, mounted
// or created in the kernel on every return, also when ctx is cancelled.
func Run(ctx context.Context, opt Options) (*report.Run, error) {
	if opt.Proof != "" {
		if opt.Workload.Clone == workload.CloneVfork {
			return nil, fmt.Errorf("--proof %s needs the parent and its children alive together, and vfork suspends the parent", opt.Proof)
		}
		opt.Workload.Hold = true
	}
	if err := opt.Workload.Validate(); err != nil {
		return nil, err
	}
	s, err := engine.New(ctx, engine.Config{KprobeMethod: opt.KprobeMethod, Probes: opt.Probes, Mode: opt.Mode,
		HandOff: opt.HandOff, FaultsByAddress: opt.FaultsByAddress})
	if err != nil {
		return nil, err
	}
	defer s.Close()
	s.Start()

	p, err := workload.Start(opt.Workload)
	if err != nil {
		return nil, err
	}
	defer p.Close()

	g := &gates{ctx: ctx, opt: opt, s: s, x: newExtras(opt.Workload, opt.Proof),
		procs: make([]*process, len(opt.Workload.Children)+1)}
	if _, err := workload.Drive(ctx, p, len(opt.Workload.Children), g.hooks()); err != nil {
		return nil, err
	}
	if err := s.Stop(); err != nil {
		return nil, err
	}
	return g.result(), nil
}

// gates is what the experiment does at each of the workload's gates.
type gates struct {
	ctx      context.Context
	opt      Options
	s        *engine.Session
	x        *extras
	procs    []*process // the parent, then children in fork order
	region   *report.Region
	released int
}

func (g *gates) hooks() workload.Hooks {
	return workload.Hooks{Ready: g.ready, AtGate: g.atGate, ParentDone: g.parentDone, ChildDone: g.childDone,
		Hold: g.opt.Workload.Hold, Forked: g.x.forked, Worked: g.x.worked}
}

func (g *gates) open(pr *process) error {
	for _, tid := range pr.tids {
		if err := g.s.OpenTask(pr.pid, tid); err != nil {
			return err
		}
	}
	return nil
}

// ready: the parent has mapped (and written) the region and forked nothing.
func (g *gates) ready(m workload.Message) error {
	g.x.ready(m)
	g.region = &report.Region{Start: m.Addr, Length: m.Value}
	g.s.SetRegion(*g.region)
	tids, err := engine.Threads(m.Pid)
	if err != nil {
		return err
	}
	g.procs[0] = &process{role: "parent", window: fmt.Sprintf(parentWindow, len(tids)), pid: m.Pid, tids: tids}
	return g.open(g.procs[0])
}

// atGate: child m.Child exists and has not touched the region.
func (g *gates) atGate(m workload.Message) error {
	g.x.atGate(m)
	g.procs[m.Child] = &process{role: roleName(g.opt.Workload.Children, m.Child), window: childWindow, pid: m.Pid, tids: []int{m.Pid}}
	if err := g.open(g.procs[m.Child]); err != nil {
		return err
	}
	g.released++
	if g.released == len(g.opt.Workload.Children) && g.opt.AfterAttach != nil {
		return g.opt.AfterAttach(g.ctx)
	}
	return nil
}

// parentDone: the children have exited and the parent waits at its last
// gate. Its events stop now, and the closing of every event overlaps the
// worker's exit.
func (g *gates) parentDone(workload.Message) error {
	if err := g.s.Disable(g.procs[0].tids); err != nil {
		return err
	}
	if err := g.s.Stop(); err != nil {
		return err
	}
	g.s.Release()
	return nil
}

func (g *gates) childDone(m workload.Message) error {
	g.x.childDone(roleName(g.opt.Workload.Children, m.Child), m)
	return nil
}

// result builds the run: the rows in fork order, then the scenario's notes
// and proof.
func (g *gates) result() *report.Run {
	w := g.opt.Workload
	run := &report.Run{
		SchemaVersion: report.SchemaVersion,
		Scenario:      g.opt.Scenario,
		Blocks:        w.Blocks,
		BlockSize:     w.BlockSize,
		Offset:        w.Offset,
		Touched:       w.Touch,
		Region:        g.region,
	}
	g.s.FillRun(run, true)
	for _, pr := range g.procs {
		if pr == nil {
			continue
		}
		row := report.Process{Role: pr.role, Pid: pr.pid, Window: pr.window}
		g.s.Row(&row, pr.tids, true)
		run.Processes = append(run.Processes, row)
	}
	g.x.apply(run)
	return run
}

// Roles are the roles of the rows a run of workload cfg has: the parent,
// then each child's, in fork order; so that an expectation naming a row
// the run will not have is refused before it starts.
func Roles(cfg workload.Config) []string {
	roles := []string{"parent"}
	for i := range cfg.Children {
		roles = append(roles, roleName(cfg.Children, i+1))
	}
	return roles
}

// roleName names child i (1-based): "reader", "writer", and with several of
// a kind "writer1", "writer2"...
func roleName(children []workload.Action, i int) string {
	a := children[i-1]
	n, k := 0, 0
	for j, c := range children {
		if c == a {
			n++
			if j < i {
				k = n
			}
		}
	}
	if n == 1 {
		return a.String()
	}
	return fmt.Sprintf("%s%d", a, k)
}
