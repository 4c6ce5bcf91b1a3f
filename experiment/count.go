package experiment

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cowtrace/cowtrace/perfevents"
	"github.com/cowtrace/cowtrace/report"
)

// Mode says how a run measures faults.
type Mode string

const (
	// ModeClassify samples every user page fault (and every page
	// allocation) into a ring and classifies them in user space: the only
	// way to pair a fault with its allocation, at the price of a record per
	// fault.
	ModeClassify Mode = "classify"
	// ModeCount opens counters only: the tracepoints are counted in the
	// kernel behind PERF_EVENT_IOC_SET_FILTER filters, one counter per
	// class of fault, with no ring and no record per fault. Where the
	// kernel refuses a filter the run falls back to ModeClassify and says so.
	ModeCount Mode = "count"
)

// ParseMode accepts "classify" and "count" ("" is classify).
func ParseMode(s string) (Mode, error) {
	switch Mode(s) {
	case "", ModeClassify:
		return ModeClassify, nil
	case ModeCount:
		return ModeCount, nil
	}
	return "", fmt.Errorf("unknown mode %q (want classify or count)", s)
}

// countKind indexes taskEvents.counted.
type countKind int

const (
	countWP           countKind = iota // every user-mode write-protect fault
	countKWP                           // every kernel-mode one on a user address
	countInWP                          // user-mode, in the region
	countInFirstWrite                  // ...
	countInRead
	countInExec
	countKInWP // kernel-mode (a system call writing user memory), in the region
	countKInFirstWrite
	countKInRead
	countCopyAllocs // allocations shaped like a copy
	numCountKinds
)

// The x86 error codes of each class as the fault carries them: 0x4 (user) is
// set on every page_fault_user and clear on every page_fault_kernel. The
// kernel refuses "(error_code & 3) == 3", so classes are spelt as exact
// codes; Classify, used on samples, tests bits instead and would also count
// codes with rare extra bits (protection keys 0x20), which no fault of the
// experiment has.
var countFilters = [numCountKinds]struct {
	tp       string // "user", "kernel" or "alloc"
	filter   string
	inRegion bool
}{
	countWP:            {"user", "error_code == 7", false},
	countKWP:           {"kernel", "error_code == 3 && address < 0x100000000000000", false},
	countInWP:          {"user", "error_code == 7", true},
	countInFirstWrite:  {"user", "error_code == 6", true},
	countInRead:        {"user", "(error_code == 4 || error_code == 5)", true},
	countInExec:        {"user", "(error_code == 20 || error_code == 21)", true},
	countKInWP:         {"kernel", "error_code == 3", true},
	countKInFirstWrite: {"kernel", "error_code == 2", true},
	countKInRead:       {"kernel", "(error_code == 0 || error_code == 1)", true},
	countCopyAllocs:    {"alloc", "", false},
}

// copyAllocFilter: exact flags, since the kernel refuses a masked
// comparison. The copy of a write-protect fault allocates
// GFP_HIGHUSER_MOVABLE, since 6.x through a folio, which adds __GFP_COMP even
// at order 0; a first write asks for __GFP_ZERO as well and is not counted.
func (t *tracer) copyAllocFilter() string {
	hm := t.caps.alloc.rule.highuserMovable
	f := fmt.Sprintf("order == 0 && (gfp_flags == %#x", hm)
	if t.caps.tfs != nil {
		if format, err := t.caps.tfs.EventFormat("kmem", "mm_page_alloc"); err == nil {
			if comp, ok := perfevents.FlagValues(format.PrintFmt)["__GFP_COMP"]; ok {
				f += fmt.Sprintf(" || gfp_flags == %#x", hm|comp)
			}
		}
	}
	return f + ")"
}

// openFaults opens the fault (and allocation) events of one task in the
// tracer's mode. In count mode a filter the kernel refuses switches the run
// to sampling, which is possible only while no process has counted events
// yet (the first task), since rows must not mix methods.
func (t *tracer) openFaults(p *proc, te *taskEvents) error {
	if t.mode == ModeClassify {
		return t.openSampled(p, te)
	}
	err := t.openCounted(te)
	if err == nil {
		return nil
	}
	for _, ev := range te.counted {
		ev.Close()
	}
	te.counted = nil
	if !errors.Is(err, perfevents.ErrNotSupported) {
		return err
	}
	t.mu.Lock()
	first := len(t.procs) == 1 && len(p.tasks) == 1
	t.mu.Unlock()
	if !first {
		return fmt.Errorf("count mode: %w", err)
	}
	if err := t.startSampling(); err != nil {
		return err
	}
	t.mode = ModeClassify
	t.fallback = fmt.Sprintf("count mode fell back to sampling every fault: %v", err)
	return t.openSampled(p, te)
}

// openCounted opens one filtered counter per countKind on te's task, for
// each tracepoint this kernel has.
func (t *tracer) openCounted(te *taskEvents) error {
	t.mu.Lock()
	r := t.region
	t.mu.Unlock()
	in := fmt.Sprintf(" && address >= %#x && address < %#x", r.Start, r.Start+r.Length)
	if t.allocFilter == "" && t.caps.alloc != nil {
		t.allocFilter = t.copyAllocFilter()
	}
	te.counted = make([]*perfevents.Event, numCountKinds)
	for k, c := range countFilters {
		var id uint64
		var label, filter string
		switch {
		case c.tp == "user":
			id, label, filter = t.caps.fault.id, "tracepoint:exceptions:page_fault_user", c.filter
		case c.tp == "kernel" && t.caps.kfault != nil:
			id, label, filter = t.caps.kfault.id, "tracepoint:exceptions:page_fault_kernel", c.filter
		case c.tp == "alloc" && t.caps.alloc != nil:
			id, label, filter = t.caps.alloc.id, "tracepoint:kmem:mm_page_alloc", t.allocFilter
		default:
			continue
		}
		if c.inRegion {
			filter += in
		}
		ev, err := perfevents.Open(perfevents.TracepointAttr(id, label, nil), te.tid)
		if err != nil {
			return err
		}
		te.counted[k] = ev
		// The event counts from its open, unfiltered until the filter is
		// set; the task is waiting at its gate meanwhile, so nothing is
		// counted in between.
		if err := ev.SetFilter(filter); err != nil {
			return err
		}
	}
	return nil
}

// countedRow fills r from p's counted events.
func (t *tracer) countedRow(r *report.Process, p *proc) error {
	var sums [numCountKinds]uint64
	for _, te := range p.tasks {
		for k, ev := range te.counted {
			if ev == nil {
				continue
			}
			v, err := t.count(ev)
			if err != nil {
				return err
			}
			sums[k] += v
		}
	}
	r.WPFaults = report.U64(sums[countWP] + sums[countKWP])
	r.InRegion = &report.FaultClasses{
		WP:              sums[countInWP] + sums[countKInWP],
		WriteNotPresent: sums[countInFirstWrite] + sums[countKInFirstWrite],
		Read:            sums[countInRead] + sums[countKInRead],
		Exec:            sums[countInExec],
		KernelMode:      sums[countKInWP] + sums[countKInFirstWrite] + sums[countKInRead],
	}
	// Outside is left nil: only write-protect faults are counted over the
	// whole address space, and a class without a counter is not a zero.
	// An allocation carries no address: InRegion.InferredCopies stays
	// unmeasured (countNote says so).
	if t.caps.alloc != nil {
		r.InferredCopies = report.U64(sums[countCopyAllocs])
	}
	return nil
}

// countNote is the run's note on what count mode does not measure.
const countNote = "count mode: outside-region fault classes and in_region.inferred_copies are not measured (0 or null); " +
	"copies are allocations shaped like a copy in the process, not paired with its faults"

// countMethods names the filtered counters behind each measure.
func (t *tracer) countMethods(m map[string]string) {
	if t.caps.fault == nil {
		return
	}
	m["wp_faults"] = fmt.Sprintf("counter:exceptions:page_fault_user filter %q", countFilters[countWP].filter)
	m["in_region"] = "counter:exceptions:page_fault_user filtered by error code and region address"
	if t.caps.kfault != nil {
		m["wp_faults"] += fmt.Sprintf(" + counter:exceptions:page_fault_kernel filter %q", countFilters[countKWP].filter)
		m["in_region"] += " + counter:exceptions:page_fault_kernel"
	}
	delete(m, "outside")
	if t.caps.alloc != nil {
		m["inferred_copies"] = fmt.Sprintf("counter:kmem:mm_page_alloc filter %q (allocations shaped like a copy, not paired with faults)",
			t.allocFilter)
		if m["copies"] == "" || strings.HasPrefix(m["copies"], "inferred:") {
			m["copies"] = m["inferred_copies"]
		}
	}
}
