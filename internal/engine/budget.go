package engine

import (
	"fmt"
	"slices"
	"strings"

	"github.com/cowtrace/cowtrace/internal/cow"
)

// EventBudget is how many perf events (one descriptor each) a followed
// target's CPUs may take together before cowtrace leaves out the events it
// can do without. Inherited events are opened on every CPU the target may
// run on, so their descriptors grow with the CPUs: on a 48-CPU machine six
// events a CPU are 288 descriptors to trace `true`. Within the budget the
// run measures what it would on any machine; beyond it, leftOut drops, in
// this order, what another event measures too or what matters least, and a
// note says so.
const EventBudget = 160

// leftOut are the events fitEventBudget dropped, in the order it drops them.
type leftOut struct {
	wpProbe      bool // do_wp_page's kprobe: the fault tracepoints count those faults
	allocCheck   bool // allocation stacks besides the copy routine's kprobe: a cross-check
	major        bool // major faults: rare in copy-on-write, never a copy
	minor        bool // minor faults, a count mode member: page faults tell most of them
	kernelFaults bool // page_fault_kernel: write-protect faults taken in system calls
	newTask      bool // task:task_newtask, count mode's check of the FORK records
}

// eventsPerCPU is how many events openCPU (or openCPUCounted) opens on one
// CPU for one task.
func (s *Session) eventsPerCPU() int {
	n := len(s.probeFns)
	if s.liveOpen {
		n++ // the seal or the carrier of the task records (whole.go)
	}
	if s.tp.Fault != nil {
		n++
	}
	if s.tp.KernelFault != nil {
		n++
	}
	if s.mode != ModeClassify {
		// The count group (buildCountGroup): exit, context switches,
		// page, minor and major faults, tasks created; the exit calls and
		// signals where they end tasks' counts; the allocations beside.
		n += 6
		if s.method == exitSyscall {
			n += 2
		}
		for _, d := range []bool{s.dropped.major, s.dropped.minor, s.dropped.newTask} {
			if d {
				n--
			}
		}
		if s.tp.Alloc != nil && s.copyPath != nil {
			n++
		}
		return n
	}
	for i := range faultCounters {
		if s.sampledCounter(i) {
			n++
		}
	}
	if s.tp.Alloc != nil {
		n++
	}
	return n
}

// fitEventBudget leaves out events, in leftOut's order, until ncpu CPUs
// take at most EventBudget, or nothing more can go; it says whether they
// fit. Called once, before the first task's events are opened.
func (s *Session) fitEventBudget(ncpu int) bool {
	steps := []func() bool{
		func() bool { // do_wp_page, unless asked for with --probe
			i := slices.Index(s.probeFns, cow.WPFunction)
			if i < 0 || s.tp.Fault == nil || slices.Contains(s.cfg.Probes, cow.WPFunction) {
				return false
			}
			s.probeFns = slices.Delete(slices.Clone(s.probeFns), i, i+1)
			s.dropped.wpProbe = true
			return true
		},
		func() bool {
			if s.tp.Alloc == nil || s.copyRoutineLocked() == "" {
				return false
			}
			s.tp.Alloc = nil
			s.dropped.allocCheck = true
			return true
		},
		func() bool {
			if s.dropped.major {
				return false
			}
			s.dropped.major = true
			return true
		},
		func() bool {
			if s.mode == ModeClassify || s.dropped.minor {
				return false
			}
			s.dropped.minor = true
			return true
		},
		func() bool {
			if s.tp.KernelFault == nil {
				return false
			}
			s.tp.KernelFault = nil
			s.dropped.kernelFaults = true
			return true
		},
		func() bool {
			if s.mode == ModeClassify || s.dropped.newTask {
				return false
			}
			s.dropped.newTask = true
			return true
		},
	}
	for _, step := range steps {
		if ncpu*s.eventsPerCPU() <= EventBudget {
			return true
		}
		step()
	}
	return ncpu*s.eventsPerCPU() <= EventBudget
}

// budgetNoteLocked says what fitEventBudget left out, if anything.
func (s *Session) budgetNoteLocked() string {
	d := s.dropped
	var out []string
	if d.wpProbe {
		out = append(out, "do_wp_page's kprobe (the fault tracepoints count write-protect faults; --probe do_wp_page opens it)")
	}
	if d.allocCheck {
		out = append(out, "the allocation stacks that cross-check the copy routine's hits (inferred_copies)")
	}
	if d.major {
		out = append(out, "major faults")
	}
	if d.minor {
		out = append(out, "minor faults")
	}
	if d.kernelFaults {
		out = append(out, "exceptions:page_fault_kernel (write-protect faults are user mode's only)")
	}
	if d.newTask {
		out = append(out, "task:task_newtask (the FORK records are not checked against the tasks created)")
	}
	if len(out) == 0 {
		return ""
	}
	return fmt.Sprintf("descriptors: %d events on each of %d CPUs, to stay within %d perf events in all; left out: %s",
		s.eventsPerCPU(), len(s.cpus), EventBudget, strings.Join(out, "; "))
}
