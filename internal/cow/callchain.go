package cow

import (
	"fmt"
	"slices"

	"github.com/cowtrace/cowtrace/perfevents"
)

// Where copy-on-write copies a page, by the functions on the allocation's
// kernel stack:
//   - wpFunctions: the write-protect fault (do_wp_page, wp_page_copy: a
//     write to a page fork shared, or to a read-only mapped page of a
//     private file mapping);
//   - cowFaultFunctions: the first write to a not-present page of a
//     private file mapping (do_cow_fault);
//   - faultFunctions with anonAllocFunctions: do_cow_fault inlined into
//     do_fault (6.18), where the only anonymous folio do_fault allocates
//     is the copy's (page-cache pages come from filemap functions).
//
// These are the copies a kprobe on the copy routine counts
// (copy_mc_to_kernel on Debian's x86 kernels, called by both paths).
var (
	wpFunctions        = []string{WPFunction, "wp_page_copy"}
	cowFaultFunctions  = []string{CowFaultFunction}
	faultFunctions     = []string{"do_fault"}
	anonAllocFunctions = []string{"vma_alloc_folio", "vma_alloc_folio_noprof", "alloc_pages_vma"}
)

// CowFaultFunction handles the first write to a not-present page of a
// private file mapping: it copies the file's page. No fork is involved.
const CowFaultFunction = "do_cow_fault"

// CopyPathFunctions are the kallsyms names CopyPath needs.
var CopyPathFunctions = slices.Concat(wpFunctions, cowFaultFunctions, faultFunctions, anonAllocFunctions)

// CopyCause is why the kernel copied a page, as its stack tells.
type CopyCause int

const (
	// NotACopy: the allocation is not a copy-on-write copy.
	NotACopy CopyCause = iota
	// WPCopy: a write-protect fault copied a page: one that fork shared
	// (the copies sharing costs), or a private file page mapped read-only
	// by an earlier read.
	WPCopy
	// FirstWriteCopy: the first write to a not-present page of a private
	// file mapping copied the file's page (do_cow_fault): no fork in it.
	FirstWriteCopy
)

// CallchainFrames bounds the kernel stack taken with each allocation, and
// with it the unwinding's cost, which is most of a sampled copy's: on the
// 1 GiB fork workload perf record of the allocations (262144 copies) added
// 0.45 s without stacks, 0.8 s with 6 frames and 1.0 s with whole stacks.
// mm_page_alloc fires four frames below do_wp_page on 6.18
// (__alloc_frozen_pages, alloc_pages_mpol, vma_alloc_folio; perf record -g
// shows it) and one or two more on older kernels (wp_page_copy,
// __alloc_pages), and the frames above it (handle_mm_fault, the fault
// handler, the entry code) are not needed. make vmtest checks that the
// copies so told equal a kprobe's on every kernel it boots.
const CallchainFrames = 8

// CallchainMethod names the rule behind copies taken from allocation stacks.
const CallchainMethod = "callchain:kmem:mm_page_alloc on the copy-on-write path (do_wp_page, do_cow_fault)"

// CopyPath tells the allocation of a page that copy-on-write copies into
// from any other by its kernel stack: an order-0 user-page allocation that
// is not zeroed and whose stack runs through the copy-on-write path. A
// zero-page replacement allocates a zeroed page; page-cache pages of a
// buffered write(2) or a file read, which have the same order and flags,
// are allocated elsewhere (ext4_da_write_begin, filemap_fault...), and so
// are never taken for copies. It needs nothing of the architecture but
// kallsyms.
type CopyPath struct {
	ready                       chan struct{} // closed once the fields below are set
	wp, cowFaults, faults, anon []perfevents.Symbol
	err                         error
}

var errHidden = fmt.Errorf("kallsyms hides addresses (kernel.kptr_restrict)")

// LoadCopyPath reads the path's functions from /proc/kallsyms in the
// background and returns at once: the kernel takes some 50 ms to write the
// 120,000 lines of a distribution kernel's kallsyms, which would otherwise
// be most of the start-up of `cowtrace run -- true`; read meanwhile, it is
// ready by the time the first allocation's stack is looked at, which waits
// for it. Where kallsyms hides addresses, which its first text symbol
// tells, there is no rule.
func LoadCopyPath() (*CopyPath, error) {
	hidden, err := perfevents.KallsymsHidden()
	if err != nil {
		return nil, err
	}
	if hidden {
		return nil, errHidden
	}
	p := &CopyPath{ready: make(chan struct{})}
	go func() {
		defer close(p.ready)
		syms, err := perfevents.LoadKallsymsCached(CopyPathFunctions...)
		if err == nil {
			err = p.find(syms)
		}
		p.err = err
	}()
	return p, nil
}

// NewCopyPath finds the extents of the path's functions, their compiler
// variants included, in syms. Without real addresses (kptr_restrict) or
// without do_wp_page there is no rule.
func NewCopyPath(syms *perfevents.Symbols) (*CopyPath, error) {
	p := &CopyPath{ready: make(chan struct{})}
	close(p.ready)
	if err := p.find(syms); err != nil {
		return nil, err
	}
	return p, nil
}

// Err waits for the path and says why it could not be found; copies told
// by it are then not known.
func (p *CopyPath) Err() error {
	<-p.ready
	return p.err
}

func (p *CopyPath) find(syms *perfevents.Symbols) error {
	if syms.AddressesHidden() {
		return errHidden
	}
	find := func(names []string) []perfevents.Symbol {
		var out []perfevents.Symbol
		for _, fn := range names {
			for _, s := range append(syms.All(fn), syms.Variants(fn)...) {
				if s.IsText() && s.Module == "" && s.Size > 0 {
					out = append(out, s)
				}
			}
		}
		return out
	}
	p.wp, p.cowFaults = find(wpFunctions), find(cowFaultFunctions)
	p.faults, p.anon = find(faultFunctions), find(anonAllocFunctions)
	if len(p.wp) == 0 {
		return fmt.Errorf("%s is not in kallsyms", WPFunction)
	}
	return nil
}

// Functions are the functions whose frames make an allocation a copy.
func (p *CopyPath) Functions() []string {
	<-p.ready
	var out []string
	for _, s := range slices.Concat(p.wp, p.cowFaults) {
		out = append(out, s.Name)
	}
	return out
}

// Contains says whether the sample's kernel stack runs through the path;
// never where the path could not be found (Err).
func (p *CopyPath) Contains(smp *perfevents.Sample) bool { return p.Cause(smp) != NotACopy }

// Cause says whether, and why, the sample's kernel stack copies a page:
// through the write-protect fault's path, or through the first write to a
// private file page (do_cow_fault, or do_fault allocating an anonymous
// folio where do_cow_fault is inlined into it, as on 6.18). NotACopy where
// the path could not be found (Err).
func (p *CopyPath) Cause(smp *perfevents.Sample) CopyCause {
	if <-p.ready; p.err != nil {
		return NotACopy
	}
	var fault, anon bool
	for i := range smp.Frames() {
		ip := smp.Frame(i)
		switch {
		case within(p.wp, ip):
			return WPCopy
		case within(p.cowFaults, ip):
			return FirstWriteCopy
		}
		fault = fault || within(p.faults, ip)
		anon = anon || within(p.anon, ip)
	}
	if fault && anon {
		return FirstWriteCopy
	}
	return NotACopy
}

func within(syms []perfevents.Symbol, ip uint64) bool {
	for _, f := range syms {
		if f.Contains(ip) {
			return true
		}
	}
	return false
}
