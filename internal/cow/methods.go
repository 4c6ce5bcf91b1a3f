package cow

import (
	"fmt"

	"github.com/cowtrace/cowtrace/report"
)

// FaultAddrMethod names the generic fault method: every page fault sampled
// with its address, whatever the architecture.
const FaultAddrMethod = "sampled:page-faults with address"

// InferredMethod names the rule behind inferred copies.
const InferredMethod = "inferred:exceptions:page_fault_user+kmem:mm_page_alloc"

// FaultMethod names the tracepoints behind the fault counts: the user-mode
// faults, and those a system call takes on the process's memory when the
// kernel has page_fault_kernel.
func FaultMethod(kernelFaults bool) string {
	if kernelFaults {
		return "tracepoint:exceptions:page_fault_user+page_fault_kernel"
	}
	return "tracepoint:exceptions:page_fault_user"
}

// Used is what a run measured with, for its methods map.
type Used struct {
	// Counters is how the software fault events were read: "counter"
	// (read per task) or "sampled" (a record per fault, for inherited
	// events).
	Counters string
	// UserOnly: the software events count user mode only (":u").
	UserOnly bool
	// NoMinor, NoMajor: minor or major faults were not measured.
	NoMinor, NoMajor bool
	// AtExit: counters of inherited tasks, each task's own counts taken
	// from samples as it leaves a CPU and as it exits (count mode).
	AtExit bool
	// PageFaultsByTracepoint: a process's page faults are the faults the
	// fault tracepoints classified, not the software counter's.
	PageFaultsByTracepoint bool
	Fault, KernelFault     bool // the fault tracepoints were opened
	// FaultAddr: without them, the page-fault event sampled with its
	// address splits faults by region, unclassified.
	FaultAddr bool
	// WPProbe: write-protect faults are do_wp_page's kprobe hits, for
	// want of the fault tracepoint.
	WPProbe bool
	Alloc   bool // ... and the allocation tracepoint
	// Callchain: allocations are copies by their kernel stack (CopyPath),
	// not by following a write-protect fault.
	Callchain bool
	Region    bool // faults are split by a region
	// Count: count mode's filtered counters instead of samples, with
	// AllocFilter on the allocations.
	Count       bool
	AllocFilter string
	// CopyRoutine is the probed copy routine, "" for none.
	CopyRoutine string
	// Probes are the functions that were probed.
	Probes []string
}

// Methods says, for each measure of a row (its JSON name), which method
// produced it. A measure without a method was not measured. Each step may
// overwrite what an earlier one said: count mode's counters replace the
// fault tracepoints' samples, a probed copy routine any inferred copies.
func Methods(u Used) map[string]string {
	m := map[string]string{}
	softwareMethods(m, u)
	faultMethods(m, u)
	switch {
	case u.Alloc && u.Callchain:
		m["inferred_copies"] = CallchainMethod
	case u.Alloc && u.Fault:
		m["inferred_copies"] = InferredMethod
	}
	if u.Fault && u.Count {
		countMethods(m, u)
	}
	switch {
	case u.CopyRoutine != "":
		m["copies"] = "kprobe:" + u.CopyRoutine
	case m["inferred_copies"] != "":
		m["copies"] = m["inferred_copies"]
	}
	for _, fn := range u.Probes {
		m["probes."+fn] = "kprobe:" + fn
	}
	return m
}

// softwareMethods are those of the page, minor and major faults.
func softwareMethods(m map[string]string, u Used) {
	for _, c := range []struct{ key, label string }{
		{"page_faults", "page-faults"}, {"minor_faults", "minor-faults"}, {"major_faults", "major-faults"},
	} {
		m[c.key] = u.Counters + ":" + c.label
		if u.UserOnly {
			m[c.key] += ":u"
		}
	}
	if u.NoMinor {
		delete(m, "minor_faults")
	}
	if u.NoMajor {
		delete(m, "major_faults")
	}
	if u.AtExit {
		for _, k := range []string{"page_faults", "minor_faults", "major_faults"} {
			if m[k] != "" {
				m[k] += report.AtExitMethod
			}
		}
	}
	if u.PageFaultsByTracepoint && u.Fault {
		m["page_faults"] = FaultMethod(u.KernelFault)
	}
}

// faultMethods are those of the write-protect faults and the faults in
// and outside the region, by whichever of the fault tracepoints, the
// page-fault event's addresses or do_wp_page's kprobe was used.
func faultMethods(m map[string]string, u Used) {
	if u.Fault {
		tp := FaultMethod(u.KernelFault)
		m["wp_faults"], m["outside"] = tp, tp
		if u.Region {
			m["in_region"] = tp
		}
	}
	if !u.Fault && u.FaultAddr {
		m["in_region"], m["outside"] = FaultAddrMethod, FaultAddrMethod
		if !u.Region {
			delete(m, "in_region")
		}
	}
	if !u.Fault && u.WPProbe {
		m["wp_faults"] = "kprobe:" + WPFunction
	}
}

// countMethods are count mode's: filtered counters in place of the fault
// tracepoints' samples, and of the allocations' unless stacks tell copies.
func countMethods(m map[string]string, u Used) {
	m["wp_faults"] = fmt.Sprintf("counter:exceptions:page_fault_user filter %q", CountFilters[CountWP].Filter)
	m["in_region"] = "counter:exceptions:page_fault_user filtered by error code and region address"
	if u.KernelFault {
		m["wp_faults"] += fmt.Sprintf(" + counter:exceptions:page_fault_kernel filter %q", CountFilters[CountKWP].Filter)
		m["in_region"] += " + counter:exceptions:page_fault_kernel"
	}
	if u.AtExit {
		m["wp_faults"] += report.AtExitMethod
	}
	delete(m, "outside")
	if !u.Region {
		delete(m, "in_region")
	}
	if u.Alloc && !u.Callchain {
		m["inferred_copies"] = fmt.Sprintf("counter:kmem:mm_page_alloc filter %q (allocations shaped like a copy, not paired with faults)", u.AllocFilter)
	}
}

// CountNote is a count-mode run's note on what it does not measure.
const CountNote = "count mode: outside-region fault classes and in_region.inferred_copies are not measured (0 or null); " +
	"copies are allocations shaped like a copy in the process, not paired with its faults"
