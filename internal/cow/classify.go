// Package cow holds what cowtrace knows about the kernel's copy-on-write,
// apart from how events are opened and read: how a page fault is classified
// from its x86 error code, which page allocation is a copy, which tracepoints
// carry faults and allocations and how their fields are read, which kernel
// routines may copy a page and how a calibration picks one, count mode's
// in-kernel filters, and the names of the methods behind each measure. The
// engine imports it; nothing here opens an event.
package cow

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

// AddClasses adds src's counts to dst's, class by class.
func AddClasses(dst *report.FaultClasses, src report.FaultClasses) {
	dst.WP += src.WP
	dst.WriteNotPresent += src.WriteNotPresent
	dst.Read += src.Read
	dst.Exec += src.Exec
	dst.InferredCopies += src.InferredCopies
	dst.KernelMode += src.KernelMode
	dst.Unclassified += src.Unclassified
}

// UserAddress says whether an x86-64 address is in the user half, with 4-
// or 5-level page tables. A fault the kernel takes on its own addresses
// (vmalloc) is not the process's.
func UserAddress(a uint64) bool { return a>>56 == 0 }

// AllocRule says whether a kmem:mm_page_alloc is the allocation of a page
// that the kernel is about to copy into: one base page (order 0) for user
// memory (GFP_HIGHUSER_MOVABLE) that the allocator is not asked to zero.
// The zero-page case of a write-protect fault allocates with __GFP_ZERO and
// copies nothing, which is what tells the two apart.
type AllocRule struct {
	HighuserMovable uint64
	Zero            uint64
	// Comp is __GFP_COMP, which 6.x adds to an order-0 folio allocation;
	// 0 when the kernel does not name it.
	Comp uint64
}

// DefaultAllocRule holds the values of Linux 6.x on x86, used only when the
// tracepoint's format does not list them.
var DefaultAllocRule = AllocRule{HighuserMovable: 0x100cca, Zero: 0x100}

// Match says whether an allocation of this order and these flags is shaped
// like a copy.
func (r AllocRule) Match(order, gfp uint64) bool {
	return order == 0 && gfp&r.HighuserMovable == r.HighuserMovable && gfp&r.Zero == 0
}

// Stream follows the faults and allocations of one task in the order the
// task made them. The fault tracepoint fires on entry to the fault handler
// and the allocation inside it, so an allocation that follows a
// write-protect fault in the same task, before the task's next fault,
// belongs to that fault. The zero value is ready to use.
type Stream struct {
	InRegion, Outside report.FaultClasses
	pending           bool   // a write-protect fault that has not allocated yet
	inside            bool   // ... whose address is in the region
	addr, ip          uint64 // ... and where it was, and which instruction took it
}

// Copied is a counted copy: the address and instruction of the fault it
// belongs to, when that fault was seen (Known).
type Copied struct {
	Addr, IP uint64
	Known    bool
}

// Fault counts one fault of the task and returns its class; ok is false for
// a fault taken in kernel mode (kernelMode) on a kernel address, which is
// not the process's and is not counted.
func (s *Stream) Fault(address, errorCode uint64, region report.Region, kernelMode bool) (class FaultClass, ok bool) {
	return s.FaultAt(address, 0, errorCode, region, kernelMode)
}

// FaultAt is Fault with the faulting instruction, for attributing the copy
// that may follow.
func (s *Stream) FaultAt(address, ip, errorCode uint64, region report.Region, kernelMode bool) (class FaultClass, ok bool) {
	if kernelMode && !UserAddress(address) {
		return 0, false
	}
	inside := address >= region.Start && address-region.Start < region.Length
	class = Classify(errorCode)
	f := &s.Outside
	if inside {
		f = &s.InRegion
	}
	class.add(f)
	if kernelMode {
		f.KernelMode++
	}
	s.pending = class == FaultWP
	s.inside = inside
	s.addr, s.ip = address, ip
	return class, true
}

// FaultByAddress counts a fault known by its address only (no error code,
// no class: the software page-fault event) and makes it the fault a copy
// that follows belongs to.
func (s *Stream) FaultByAddress(address, ip uint64, region report.Region) {
	inside := address >= region.Start && address-region.Start < region.Length
	if inside {
		s.InRegion.Unclassified++
	} else {
		s.Outside.Unclassified++
	}
	s.pending, s.inside, s.addr, s.ip = true, inside, address, ip
}

// Copy counts a copy that the allocation's stack proved (CopyPath): in the
// region when it follows a write-protect fault there that has not
// allocated yet, else outside.
func (s *Stream) Copy() Copied {
	c := Copied{Addr: s.addr, IP: s.ip, Known: s.pending}
	if s.pending && s.inside {
		s.InRegion.InferredCopies++
	} else {
		s.Outside.InferredCopies++
	}
	s.pending = false
	return c
}

// Alloc counts an inferred copy when the allocation is shaped like a copy
// and follows a write-protect fault that has not allocated yet.
func (s *Stream) Alloc(order, gfp uint64, rule AllocRule) (Copied, bool) {
	if !s.pending || !rule.Match(order, gfp) {
		return Copied{}, false
	}
	s.pending = false
	if s.inside {
		s.InRegion.InferredCopies++
	} else {
		s.Outside.InferredCopies++
	}
	return Copied{Addr: s.addr, IP: s.ip, Known: true}, true
}
