package report

import (
	"strconv"
	"strings"
)

// Class is one class of FaultClasses, by its JSON name.
type Class string

// The classes, in the JSON contract's order.
const (
	ClassWP              Class = "wp"
	ClassWriteNotPresent Class = "write_not_present"
	ClassRead            Class = "read"
	ClassExec            Class = "exec"
	ClassInferredCopies  Class = "inferred_copies"
	ClassKernelMode      Class = "kernel_mode"
	ClassUnclassified    Class = "unclassified"
)

// Classes are every class, in the JSON contract's order.
var Classes = []Class{ClassWP, ClassWriteNotPresent, ClassRead, ClassExec, ClassInferredCopies, ClassKernelMode, ClassUnclassified}

// classSet is a set of classes, one bit each in the order of Classes.
type classSet uint8

func (s classSet) has(c Class) bool {
	for i, x := range Classes {
		if x == c {
			return s&(1<<i) != 0
		}
	}
	return false
}

// Get is the count of class c, or nil when the run that f belongs to could
// not measure it (set by Run.MarshalJSON; Run.Class reads a live run).
func (f *FaultClasses) Get(c Class) *uint64 {
	if f == nil || f.unmeasured.has(c) {
		return nil
	}
	var v uint64
	switch c {
	case ClassWP:
		v = f.WP
	case ClassWriteNotPresent:
		v = f.WriteNotPresent
	case ClassRead:
		v = f.Read
	case ClassExec:
		v = f.Exec
	case ClassInferredCopies:
		v = f.InferredCopies
	case ClassKernelMode:
		v = f.KernelMode
	case ClassUnclassified:
		v = f.Unclassified
	default:
		return nil
	}
	return &v
}

// Class is class c of the row's faults in where ("in_region" or "outside"),
// nil where the row has no such split or the run's method cannot tell the
// class: what the JSON report says null.
func (r *Run) Class(p *Process, where string, c Class) *uint64 {
	f := p.Outside
	if where == "in_region" {
		f = p.InRegion
	}
	if f == nil || !r.ClassMeasured(where, c) {
		return nil
	}
	return f.Get(c)
}

// ClassMeasured says whether the run's method for where ("in_region" or
// "outside", Methods[where]) measures class c. The engine fills every class
// of FaultClasses with a number, 0 where it had nothing to count with;
// only the method tells a 0 that was measured from one that was not.
func (r *Run) ClassMeasured(where string, c Class) bool {
	m := r.Methods[where]
	switch {
	case m == "":
		return false
	case strings.HasPrefix(m, "sampled:"):
		// The page-fault event gives a fault's address, not its kind
		// (no x86 fault tracepoints, or none allowed): a total only,
		// and the copies that allocation stacks tie to those faults.
		return c == ClassUnclassified || c == ClassInferredCopies && strings.HasPrefix(r.Methods["inferred_copies"], "callchain:")
	}
	switch c {
	case ClassKernelMode:
		// Only page_fault_kernel sees the faults a system call takes.
		return strings.Contains(m, "page_fault_kernel")
	case ClassInferredCopies:
		// Count mode counts allocations, which carry no address, so
		// none of them is in a region or out of it (cow.CountNote).
		return r.Methods["inferred_copies"] != "" && !strings.HasPrefix(m, "counter:")
	}
	return true
}

// unmeasuredClasses are the classes ClassMeasured denies for where.
func (r *Run) unmeasuredClasses(where string) classSet {
	var s classSet
	for i, c := range Classes {
		if !r.ClassMeasured(where, c) {
			s |= 1 << i
		}
	}
	return s
}

func uintText(v uint64) string { return strconv.FormatUint(v, 10) }
