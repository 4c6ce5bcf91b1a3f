package cow

import (
	"testing"

	"github.com/cowtrace/cowtrace/report"
)

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		code uint64
		want FaultClass
	}{
		{0x7, FaultWP},              // user write to a present read-only page
		{0x6, FaultWriteNotPresent}, // first write
		{0x4, FaultRead},            // user read, not present
		{0x5, FaultRead},            // user read of a present, protected page (PROT_NONE)
		{0x14, FaultExec},           // instruction fetch, not present
		{0x15, FaultExec},           // instruction fetch, present (NX)
		{0x27, FaultWP},             // write-protect with the reserved/pkey bits around it
		{0x2, FaultWriteNotPresent}, // kernel-mode write to a user page (copy_to_user)
		{0x3, FaultWP},              // kernel-mode write to a shared user page (read(2) into a COW buffer)
	} {
		if got := Classify(tc.code); got != tc.want {
			t.Errorf("Classify(%#x) = %v, want %v", tc.code, got, tc.want)
		}
	}
}

func TestInference(t *testing.T) {
	region := report.Region{Start: 0x10000, Length: 0x10000}
	rule := DefaultAllocRule
	const movable = 0x100cca
	var s Stream

	// A write-protect fault in the region that allocates a page to copy into.
	s.Fault(0x10010, 0x7, region, false)
	s.Alloc(0, movable, rule)
	// A second allocation in the same fault is not a second copy.
	s.Alloc(0, movable, rule)
	// A write-protect fault that reuses the page: no allocation.
	s.Fault(0x11000, 0x7, region, false)
	// A first write allocates a zeroed page: no copy, and not a wp fault.
	s.Fault(0x12000, 0x6, region, false)
	s.Alloc(0, movable|rule.Zero, rule)
	// A wp fault on the zero page allocates a zeroed page: no copy.
	s.Fault(0x13000, 0x7, region, false)
	s.Alloc(0, movable|rule.Zero, rule)
	// A wp fault outside the region that copies, but the allocation is a
	// kernel allocation first (page table, slab): only the user page counts.
	s.Fault(0x1000, 0x7, region, false)
	s.Alloc(0, 0xcc0, rule)
	s.Alloc(0, movable, rule)
	// A huge allocation is not a base-page copy.
	s.Fault(0x14000, 0x7, region, false)
	s.Alloc(9, movable, rule)
	// A system call's write into a shared page of the process (kernel
	// mode, user address) is the process's copy-on-write fault...
	if c, ok := s.Fault(0x2000, 0x3, region, true); !ok || c != FaultWP {
		t.Errorf("kernel-mode fault on a user address: %v, %v; want FaultWP, true", c, ok)
	}
	// ... and the kernel's fault on its own address is not.
	if _, ok := s.Fault(0xffff888000001000, 0x3, region, true); ok {
		t.Error("kernel-mode fault on a kernel address was counted")
	}

	wantIn := report.FaultClasses{WP: 4, WriteNotPresent: 1, InferredCopies: 1}
	wantOut := report.FaultClasses{WP: 2, InferredCopies: 1, KernelMode: 1}
	if s.InRegion != wantIn || s.Outside != wantOut {
		t.Errorf("in %+v out %+v\nwant in %+v out %+v", s.InRegion, s.Outside, wantIn, wantOut)
	}
}

func TestAddClasses(t *testing.T) {
	a := report.FaultClasses{WP: 1, WriteNotPresent: 2, Read: 3, Exec: 4, InferredCopies: 5, KernelMode: 6}
	var sum report.FaultClasses
	AddClasses(&sum, a)
	AddClasses(&sum, a)
	want := report.FaultClasses{WP: 2, WriteNotPresent: 4, Read: 6, Exec: 8, InferredCopies: 10, KernelMode: 12}
	if sum != want {
		t.Errorf("sum %+v, want %+v", sum, want)
	}
}
