package cow

import "fmt"

// CountKind is one in-kernel filtered counter of count mode.
type CountKind int

const (
	CountWP           CountKind = iota // every user-mode write-protect fault
	CountKWP                           // every kernel-mode one on a user address
	CountInWP                          // user-mode, in the region
	CountInFirstWrite                  // ...
	CountInRead
	CountInExec
	CountKInWP // kernel-mode (a system call writing user memory), in the region
	CountKInFirstWrite
	CountKInRead
	CountCopyAllocs // allocations shaped like a copy
	NumCountKinds
)

// Which tracepoint a counter counts.
const (
	OnUserFault   = "user"
	OnKernelFault = "kernel"
	OnAlloc       = "alloc"
)

// CountFilter is the filter of one counter: on which tracepoint, with which
// expression, and whether the region's bounds are added to it.
type CountFilter struct {
	On       string
	Filter   string
	InRegion bool
}

// CountFilters are count mode's counters. The x86 error codes of each class
// are spelt as the fault carries them: 0x4 (user) is set on every
// page_fault_user and clear on every page_fault_kernel. The kernel refuses
// "(error_code & 3) == 3", so classes are exact codes; Classify, used on
// samples, tests bits instead and would also count codes with rare extra
// bits (protection keys 0x20), which no fault of the experiment has.
var CountFilters = [NumCountKinds]CountFilter{
	CountWP:            {OnUserFault, "error_code == 7", false},
	CountKWP:           {OnKernelFault, "error_code == 3 && address < 0x100000000000000", false},
	CountInWP:          {OnUserFault, "error_code == 7", true},
	CountInFirstWrite:  {OnUserFault, "error_code == 6", true},
	CountInRead:        {OnUserFault, "(error_code == 4 || error_code == 5)", true},
	CountInExec:        {OnUserFault, "(error_code == 20 || error_code == 21)", true},
	CountKInWP:         {OnKernelFault, "error_code == 3", true},
	CountKInFirstWrite: {OnKernelFault, "error_code == 2", true},
	CountKInRead:       {OnKernelFault, "(error_code == 0 || error_code == 1)", true},
	CountCopyAllocs:    {OnAlloc, "", false},
}

// RegionFilter is the clause that limits a counter to [start, start+length).
func RegionFilter(start, length uint64) string {
	return fmt.Sprintf(" && address >= %#x && address < %#x", start, start+length)
}

// CopyAllocFilter selects allocations shaped like a copy, with exact flags,
// since the kernel refuses a masked comparison. The copy of a write-protect
// fault allocates GFP_HIGHUSER_MOVABLE, since 6.x through a folio, which
// adds __GFP_COMP even at order 0; a first write asks for __GFP_ZERO as well
// and is not counted.
func (r AllocRule) CopyAllocFilter() string {
	f := fmt.Sprintf("order == 0 && (gfp_flags == %#x", r.HighuserMovable)
	if r.Comp != 0 {
		f += fmt.Sprintf(" || gfp_flags == %#x", r.HighuserMovable|r.Comp)
	}
	return f + ")"
}

// NotZeroedFilter drops, in the kernel, the allocations that cannot be a
// copy because they are zeroed (every first write's): a sampled
// allocation's only use is the inference.
func (r AllocRule) NotZeroedFilter() string {
	return fmt.Sprintf("order == 0 && !(gfp_flags & %#x)", r.Zero)
}

// ShapeFilter selects, in the kernel, exactly the allocations Match
// accepts: order 0, every bit of GFP_HIGHUSER_MOVABLE (one test each: the
// kernel refuses a masked comparison), no __GFP_ZERO. With it a sample
// needs no raw payload for user space to check.
func (r AllocRule) ShapeFilter() string {
	f := "order == 0"
	for bit := uint64(1); bit != 0 && bit <= r.HighuserMovable; bit <<= 1 {
		if r.HighuserMovable&bit != 0 {
			f += fmt.Sprintf(" && gfp_flags & %#x", bit)
		}
	}
	return f + fmt.Sprintf(" && !(gfp_flags & %#x)", r.Zero)
}
