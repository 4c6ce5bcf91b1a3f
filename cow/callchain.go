package cow

import (
	"fmt"

	"github.com/cowtrace/cowtrace/perfevents"
)

// WPPathFunctions are the functions through which every write-protect fault
// runs, and wp_page_copy, where it copies (inlined into do_wp_page on some
// kernels: 6.12).
var WPPathFunctions = []string{WPFunction, "wp_page_copy"}

// CallchainFrames bounds the kernel stack taken with each allocation, and
// with it the unwinding's cost: mm_page_alloc fires four frames below
// do_wp_page on 6.18 (__alloc_frozen_pages, alloc_pages_mpol,
// vma_alloc_folio; perf record -g shows it) and a few more on older kernels
// (wp_page_copy, __alloc_pages), and the frames above it (handle_mm_fault,
// the fault handler, the entry code) are not needed. make vmtest checks
// that the copies so told equal a kprobe's.
const CallchainFrames = 16

// CallchainMethod names the rule behind copies taken from allocation stacks.
const CallchainMethod = "callchain:kmem:mm_page_alloc through do_wp_page"

// WPPath tells an allocation made on the write-protect fault path from any
// other by its kernel stack: an order-0 user-page allocation that is not
// zeroed and whose stack runs through do_wp_page (or wp_page_copy) is the
// page a copy-on-write fault copies into. Page-cache pages of a buffered
// write(2), which have the same order and flags, are allocated elsewhere
// (ext4_da_write_begin...), and so are never taken for copies. It needs
// nothing of the architecture but kallsyms.
type WPPath struct {
	funcs []perfevents.Symbol
}

// NewWPPath finds the extents of the write-protect path's functions, their
// compiler variants included, in kallsyms. Without real addresses
// (kptr_restrict) or without do_wp_page there is no rule.
func NewWPPath(syms *perfevents.Symbols) (*WPPath, error) {
	if syms.AddressesHidden() {
		return nil, fmt.Errorf("kallsyms hides addresses (kernel.kptr_restrict)")
	}
	p := &WPPath{}
	for _, fn := range WPPathFunctions {
		for _, s := range append(syms.All(fn), syms.Variants(fn)...) {
			if s.IsText() && s.Module == "" && s.Size > 0 {
				p.funcs = append(p.funcs, s)
			}
		}
	}
	if len(p.funcs) == 0 {
		return nil, fmt.Errorf("%s is not in kallsyms", WPFunction)
	}
	return p, nil
}

// Functions are the functions whose frames make an allocation a copy.
func (p *WPPath) Functions() []string {
	var out []string
	for _, s := range p.funcs {
		out = append(out, s.Name)
	}
	return out
}

// Contains says whether the sample's kernel stack runs through the path.
func (p *WPPath) Contains(smp *perfevents.Sample) bool {
	for i := range smp.Frames() {
		ip := smp.Frame(i)
		for _, f := range p.funcs {
			if f.Contains(ip) {
				return true
			}
		}
	}
	return false
}
