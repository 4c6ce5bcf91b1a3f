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

	"github.com/cowtrace/cowtrace/engine"
	"github.com/cowtrace/cowtrace/perfevents"
	"github.com/cowtrace/cowtrace/report"
	"github.com/cowtrace/cowtrace/workload"
)

// Options configure one run.
type Options struct {
	Workload     workload.Config
	Scenario     string
	KprobeMethod perfevents.KprobeMethod
	// Mode is how faults are measured; "" is engine.ModeClassify.
	Mode engine.Mode
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
func Run(ctx context.Context, opt Options) (run *report.Run, err error) {
	if opt.Proof != "" {
		if opt.Workload.Clone == workload.CloneVfork {
			return nil, fmt.Errorf("--proof %s needs the parent and its children alive together, and vfork suspends the parent", opt.Proof)
		}
		opt.Workload.Hold = true
	}
	if err := opt.Workload.Validate(); err != nil {
		return nil, err
	}
	s, err := engine.New(ctx, engine.Config{KprobeMethod: opt.KprobeMethod, Probes: opt.Probes, Mode: opt.Mode, HandOff: opt.HandOff})
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

	procs := make([]*process, len(opt.Workload.Children)+1) // the parent, then children in fork order
	var region *report.Region
	x := newExtras(opt.Workload, opt.Proof)
	open := func(pr *process) error {
		for _, tid := range pr.tids {
			if err := s.OpenTask(pr.pid, tid); err != nil {
				return err
			}
		}
		return nil
	}
	released := 0
	_, err = workload.Drive(ctx, p, len(opt.Workload.Children), workload.Hooks{
		Ready: func(m workload.Message) error {
			x.ready(m)
			region = &report.Region{Start: m.Addr, Length: m.Value}
			s.SetRegion(*region)
			tids, err := engine.Threads(m.Pid)
			if err != nil {
				return err
			}
			procs[0] = &process{role: "parent", window: fmt.Sprintf(parentWindow, len(tids)), pid: m.Pid, tids: tids}
			return open(procs[0])
		},
		AtGate: func(m workload.Message) error {
			x.atGate(m)
			procs[m.Child] = &process{role: roleName(opt.Workload.Children, m.Child), window: childWindow, pid: m.Pid, tids: []int{m.Pid}}
			if err := open(procs[m.Child]); err != nil {
				return err
			}
			released++
			if released == len(opt.Workload.Children) && opt.AfterAttach != nil {
				return opt.AfterAttach(ctx)
			}
			return nil
		},
		// The children have exited; the parent waits at its last gate.
		// Its events stop now, and the closing of every event overlaps
		// the worker's exit.
		ParentDone: func(workload.Message) error {
			if err := s.Disable(procs[0].tids); err != nil {
				return err
			}
			if err := s.Stop(); err != nil {
				return err
			}
			s.Release()
			return nil
		},
		ChildDone: func(m workload.Message) error {
			x.childDone(roleName(opt.Workload.Children, m.Child), m)
			return nil
		},
		Hold:   opt.Workload.Hold,
		Forked: x.forked,
		Worked: x.worked,
	})
	if err != nil {
		return nil, err
	}
	if err := s.Stop(); err != nil {
		return nil, err
	}

	run = &report.Run{
		SchemaVersion: report.SchemaVersion,
		Scenario:      opt.Scenario,
		Blocks:        opt.Workload.Blocks,
		BlockSize:     opt.Workload.BlockSize,
		Offset:        opt.Workload.Offset,
		Touched:       opt.Workload.Touch,
		Region:        region,
	}
	s.FillRun(run, true)
	for _, pr := range procs {
		if pr == nil {
			continue
		}
		row := report.Process{Role: pr.role, Pid: pr.pid, Window: pr.window}
		s.Row(&row, pr.tids, true)
		run.Processes = append(run.Processes, row)
	}
	x.apply(run)
	return run, nil
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
