// Package experiment runs cowtrace's copy-on-write experiment: it starts the
// workload (package workload), opens the events of each process through
// package perfevents while that process waits at its gate, reads them, and
// returns a report.Run. It is the one place where the three meet.
package experiment

import (
	"context"
	"fmt"
	"sort"

	"github.com/cowtrace/cowtrace/perfevents"
	"github.com/cowtrace/cowtrace/report"
	"github.com/cowtrace/cowtrace/workload"
)

// Options configure one run.
type Options struct {
	Workload     workload.Config
	Scenario     string
	KprobeMethod KprobeMethod
	// Mode is how faults are measured; "" is ModeClassify.
	Mode Mode
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

// Run runs the experiment once. It cleans up everything it opened, mounted
// or created in the kernel on every return, also when ctx is cancelled.
func Run(ctx context.Context, opt Options) (run *report.Run, err error) {
	if opt.KprobeMethod == "" {
		opt.KprobeMethod = KprobeAuto
	}
	if opt.Proof != "" {
		if opt.Workload.Clone == workload.CloneVfork {
			return nil, fmt.Errorf("--proof %s needs the parent and its children alive together, and vfork suspends the parent", opt.Proof)
		}
		opt.Workload.Hold = true
	}
	if err := opt.Workload.Validate(); err != nil {
		return nil, err
	}
	caps, err := detect()
	if err != nil {
		return nil, err
	}
	defer caps.close()

	run = &report.Run{
		SchemaVersion: report.SchemaVersion,
		Kernel:        caps.kernel,
		Scenario:      opt.Scenario,
		Blocks:        opt.Workload.Blocks,
		BlockSize:     opt.Workload.BlockSize,
		Offset:        opt.Workload.Offset,
		Touched:       opt.Workload.Touch,
		Methods:       map[string]string{},
		Unavailable:   append([]report.Unavailable{}, caps.unavailable...),
	}

	kp, why, err := newKprober(opt.KprobeMethod, caps.tfs)
	if err != nil {
		return nil, err
	}
	var routine copyRoutine
	probeFns := []string{}
	if kp == nil {
		run.Unavailable = append(run.Unavailable, report.Unavailable{What: "kprobes", Why: why})
	} else {
		defer kp.close()
		run.KprobeMethod = kp.method()
		syms, err := perfevents.LoadKallsyms(append([]string{wpFunction}, append(copyCandidates, opt.Probes...)...)...)
		if err != nil {
			return nil, err
		}
		routine, err = findCopyRoutine(ctx, kp, syms)
		if err != nil {
			return nil, err
		}
		run.CopyRoutine, run.CopyRoutineCheck = routine.name, routine.check
		if routine.name == "" {
			run.Unavailable = append(run.Unavailable, report.Unavailable{What: "copy routine", Why: routine.check})
		}
		probeFns = ProbeFunctions(routine.name, opt.Probes)
	}

	if opt.Mode == "" {
		opt.Mode = ModeClassify
	}
	tr, err := newTracer(caps, kp, probeFns, opt.Mode)
	if err != nil {
		return nil, err
	}
	defer tr.close()
	tr.handOff = opt.HandOff && (kp == nil || kp.method() != string(KprobeTracefs))

	p, err := workload.Start(opt.Workload)
	if err != nil {
		return nil, err
	}
	defer p.Close()

	var parent *proc
	nchildren := len(opt.Workload.Children)
	released := 0
	x := newExtras(opt.Workload, opt.Proof)
	_, err = drive(ctx, p, nchildren, hooks{
		ready: func(m workload.Message) error {
			x.ready(m)
			tr.setRegion(report.Region{Start: m.Addr, Length: m.Value})
			run.Region = &report.Region{Start: m.Addr, Length: m.Value}
			tids, err := threads(m.Pid)
			if err != nil {
				return err
			}
			parent, err = tr.addProcess("parent", fmt.Sprintf(parentWindow, len(tids)), m.Pid, 0, tids)
			return err
		},
		atGate: func(m workload.Message) error {
			role := roleName(opt.Workload.Children, m.Child)
			x.atGate(m)
			if _, err := tr.addProcess(role, childWindow, m.Pid, m.Child, []int{m.Pid}); err != nil {
				return err
			}
			released++
			if released == nchildren && opt.AfterAttach != nil {
				return opt.AfterAttach(ctx)
			}
			return nil
		},
		parentDone: func(workload.Message) error {
			if err := tr.closeWindow(parent); err != nil {
				return err
			}
			return tr.conclude()
		},
		childDone: func(m workload.Message) error {
			x.childDone(roleName(opt.Workload.Children, m.Child), m)
			return nil
		},
		hold:   opt.Workload.Hold,
		forked: x.forked,
		worked: x.worked,
	})
	if err != nil {
		return nil, err
	}
	if err := tr.finish(); err != nil {
		return nil, fmt.Errorf("read ring buffers: %w", err)
	}

	// Children report at their gates in whatever order the scheduler ran
	// them; rows keep the parent first and the children in fork order.
	sort.SliceStable(tr.procs, func(i, j int) bool { return tr.procs[i].order < tr.procs[j].order })
	for _, pr := range tr.procs {
		row, err := tr.row(pr, routine.name)
		if err != nil {
			return nil, err
		}
		run.LostRecords += pr.counts.lost
		run.Throttled += pr.counts.throttled
		run.Processes = append(run.Processes, row)
	}
	run.Unavailable = append(run.Unavailable, tr.probeNotes()...)
	fillMethods(run, caps, routine.name, probeFns)
	x.apply(run)
	if tr.mode == ModeCount && caps.fault != nil {
		tr.countMethods(run.Methods)
		run.Notes = append(run.Notes, countNote)
	}
	if tr.fallback != "" {
		run.Notes = append(run.Notes, tr.fallback)
	}
	return run, nil
}

func fillMethods(run *report.Run, caps *capabilities, routine string, probeFns []string) {
	m := run.Methods
	m["page_faults"] = "counter:page-faults"
	m["minor_faults"] = "counter:minor-faults"
	m["major_faults"] = "counter:major-faults"
	if caps.fault != nil {
		tp := FaultMethod(caps.kfault != nil)
		m["wp_faults"], m["in_region"], m["outside"] = tp, tp, tp
		if caps.alloc != nil {
			m["inferred_copies"] = "inferred:exceptions:page_fault_user+kmem:mm_page_alloc"
		}
	}
	switch {
	case routine != "":
		m["copies"] = "kprobe:" + routine
	case m["inferred_copies"] != "":
		m["copies"] = m["inferred_copies"]
	}
	for _, fn := range probeFns {
		m["probes."+fn] = "kprobe:" + fn
	}
}

// FaultMethod names the tracepoints behind the fault counts: the user-mode
// faults, and those a system call takes on the process's memory when the
// kernel has page_fault_kernel.
func FaultMethod(kernelFaults bool) string {
	if kernelFaults {
		return "tracepoint:exceptions:page_fault_user+page_fault_kernel"
	}
	return "tracepoint:exceptions:page_fault_user"
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
