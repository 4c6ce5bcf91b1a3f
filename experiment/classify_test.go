package experiment

import (
	"testing"

	"github.com/cowtrace/cowtrace/report"
	"github.com/cowtrace/cowtrace/workload"
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
	} {
		if got := Classify(tc.code); got != tc.want {
			t.Errorf("Classify(%#x) = %v, want %v", tc.code, got, tc.want)
		}
	}
}

func TestInference(t *testing.T) {
	region := report.Region{Start: 0x10000, Length: 0x10000}
	rule := defaultCopyAlloc
	const movable = 0x100cca
	var counts processCounts
	s := &taskStream{counts: &counts}

	// A write-protect fault in the region that allocates a page to copy into.
	s.fault(0x10010, 0x7, region, false)
	s.alloc(0, movable, rule)
	// A second allocation in the same fault is not a second copy.
	s.alloc(0, movable, rule)
	// A write-protect fault that reuses the page: no allocation.
	s.fault(0x11000, 0x7, region, false)
	// A first write allocates a zeroed page: no copy, and not a wp fault.
	s.fault(0x12000, 0x6, region, false)
	s.alloc(0, movable|rule.zero, rule)
	// A wp fault on the zero page allocates a zeroed page: no copy.
	s.fault(0x13000, 0x7, region, false)
	s.alloc(0, movable|rule.zero, rule)
	// A wp fault outside the region that copies, but the allocation is a
	// kernel allocation first (page table, slab): only the user page counts.
	s.fault(0x1000, 0x7, region, false)
	s.alloc(0, 0xcc0, rule)
	s.alloc(0, movable, rule)
	// A huge allocation is not a base-page copy.
	s.fault(0x14000, 0x7, region, false)
	s.alloc(9, movable, rule)

	want := processCounts{
		inRegion: report.FaultClasses{WP: 4, WriteNotPresent: 1, InferredCopies: 1},
		outside:  report.FaultClasses{WP: 1, InferredCopies: 1},
	}
	if counts != want {
		t.Errorf("counts = %+v\nwant     %+v", counts, want)
	}
}

func TestRoleName(t *testing.T) {
	r, w := workload.ActionRead, workload.ActionWrite
	for _, tc := range []struct {
		children []workload.Action
		i        int
		want     string
	}{
		{[]workload.Action{r, w}, 1, "reader"},
		{[]workload.Action{r, w}, 2, "writer"},
		{[]workload.Action{r, w, w, w}, 3, "writer2"},
		{[]workload.Action{w, r, w}, 3, "writer2"},
		{[]workload.Action{w, r, w}, 1, "writer1"},
	} {
		if got := roleName(tc.children, tc.i); got != tc.want {
			t.Errorf("roleName(%v, %d) = %q, want %q", tc.children, tc.i, got, tc.want)
		}
	}
}
