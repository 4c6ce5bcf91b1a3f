package report

// Pagemap is the physical-frame evidence of --proof pagemap for one child:
// how the pages of the experiment's region in the child compare with the
// parent's, read from /proc/PID/pagemap at two moments.
type Pagemap struct {
	// AtFork is right after the fork, before anyone touched the region.
	AtFork FrameSharing `json:"at_fork"`
	// AfterWrites is once the children and the parent did their work,
	// before anyone exited.
	AfterWrites FrameSharing `json:"after_writes"`
}

// FrameSharing counts the region's pages by what backs them in the parent
// and in the child.
type FrameSharing struct {
	Pages   uint64 `json:"pages"`   // pages in the region
	Shared  uint64 `json:"shared"`  // present in both, the same physical frame
	Private uint64 `json:"private"` // present in both, different frames
	// ParentOnly and ChildOnly are present on one side only; Neither on
	// none (never touched, or not inherited).
	ParentOnly uint64 `json:"parent_only"`
	ChildOnly  uint64 `json:"child_only"`
	Neither    uint64 `json:"neither"`
	// ZeroPage counts the child's pages whose frame also backs another
	// page of the region in the child: in private anonymous memory only
	// the kernel's shared zero page (or a KSM page) is mapped twice.
	ZeroPage uint64 `json:"zero_page"`
}
