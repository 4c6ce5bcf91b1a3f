package experiment

import "github.com/cowtrace/cowtrace/report"

// x86 page-fault error code bits (arch/x86/include/asm/trap_pf.h).
const (
	pfPresent = 0x1  // the page was present: a protection fault
	pfWrite   = 0x2  // the access was a write
	pfUser    = 0x4  // from user mode
	pfFetch   = 0x10 // an instruction fetch
)

// FaultClass is what kind of user page fault an x86 error code describes.
type FaultClass int

const (
	// FaultWP is a write to a present, read-only page: the write-protect
	// fault (do_wp_page) through which copy-on-write goes (0x7).
	FaultWP FaultClass = iota
	// FaultWriteNotPresent is a first write to a page with no mapping (0x6).
	FaultWriteNotPresent
	// FaultRead is a read of a page with no mapping (0x4) or a protected one.
	FaultRead
	// FaultExec is an instruction fetch (0x14, 0x15).
	FaultExec
)

// Classify reads an x86 page-fault error code.
func Classify(errorCode uint64) FaultClass {
	switch {
	case errorCode&pfFetch != 0:
		return FaultExec
	case errorCode&pfWrite != 0 && errorCode&pfPresent != 0:
		return FaultWP
	case errorCode&pfWrite != 0:
		return FaultWriteNotPresent
	}
	return FaultRead
}

func (c FaultClass) add(f *report.FaultClasses) {
	switch c {
	case FaultWP:
		f.WP++
	case FaultWriteNotPresent:
		f.WriteNotPresent++
	case FaultRead:
		f.Read++
	case FaultExec:
		f.Exec++
	}
}

// copyAlloc says whether a kmem:mm_page_alloc is the allocation of a page
// that the kernel is about to copy into: one base page (order 0) for user
// memory (GFP_HIGHUSER_MOVABLE) that the allocator is not asked to zero.
// The zero-page case of a write-protect fault allocates with __GFP_ZERO and
// copies nothing, which is what tells the two apart.
type copyAlloc struct {
	highuserMovable uint64
	zero            uint64
}

// Fallbacks are the values of Linux 6.x on x86, used only when the
// tracepoint's format does not list them.
var defaultCopyAlloc = copyAlloc{highuserMovable: 0x100cca, zero: 0x100}

func (c copyAlloc) match(order uint64, gfp uint64) bool {
	return order == 0 && gfp&c.highuserMovable == c.highuserMovable && gfp&c.zero == 0
}

// taskStream follows the records of one task in ring order. The fault
// tracepoint fires on entry to the fault handler and the allocation inside
// it, so an allocation that follows a write-protect fault in the same task,
// before the task's next fault, belongs to that fault.
type taskStream struct {
	counts  *processCounts
	pending bool // a write-protect fault that has not allocated yet
	inside  bool // ... whose address is in the region
}

// processCounts accumulates the classified faults of one process (all of
// its tasks).
type processCounts struct {
	inRegion, outside report.FaultClasses
	lost, throttled   uint64
}

// fault counts one fault of the task. Faults taken in kernel mode count only
// on user addresses (a system call writing into the process's memory); the
// kernel's faults on its own addresses (vmalloc) are not the process's.
func (s *taskStream) fault(address, errorCode uint64, region report.Region, kernelMode bool) {
	if kernelMode && !userAddress(address) {
		return
	}
	inside := address >= region.Start && address-region.Start < region.Length
	class := Classify(errorCode)
	f := &s.counts.outside
	if inside {
		f = &s.counts.inRegion
	}
	class.add(f)
	if kernelMode {
		f.KernelMode++
	}
	s.pending = class == FaultWP
	s.inside = inside
}

// userAddress says whether an x86-64 address is in the user half, with 4- or
// 5-level page tables.
func userAddress(a uint64) bool { return a>>56 == 0 }

func (s *taskStream) alloc(order, gfp uint64, rule copyAlloc) {
	if !s.pending || !rule.match(order, gfp) {
		return
	}
	s.pending = false
	if s.inside {
		s.counts.inRegion.InferredCopies++
	} else {
		s.counts.outside.InferredCopies++
	}
}
