package experiment

// This file exports, for package follow (cowtrace run / attach), the parts of
// the experiment that must stay the same rule in both places: which
// tracepoints the kernel offers and how their fields are read, how a fault is
// classified and a copy inferred, and the route to kernel functions with the
// calibration that finds the copy routine. They are thin wrappers over the
// experiment's own unexported code, so the two cannot drift apart.

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"unsafe"

	perf "github.com/elastic/go-perf"
	"golang.org/x/sys/unix"

	"github.com/cowtrace/cowtrace/perfevents"
	"github.com/cowtrace/cowtrace/report"
)

// ProbeFunctions are the kernel functions a trace counts per process: the
// copy routine (when one was found), do_wp_page, then the extra ones, each
// once.
func ProbeFunctions(copyRoutine string, extra []string) []string {
	return uniq(append([]string{copyRoutine, wpFunction}, extra...))
}

// FaultCounters are the software fault events every row counts, in its
// column order.
var FaultCounters = counterKinds

// Tracepoints are the fault and allocation tracepoints as this kernel
// describes them, found once (tracefs is mounted if needed until Close).
type Tracepoints struct{ caps *capabilities }

// DetectTracepoints finds the tracepoints. Only a lack of privilege is an
// error; a missing tracepoint is listed in Unavailable.
func DetectTracepoints() (*Tracepoints, error) {
	c, err := detect()
	if err != nil {
		return nil, err
	}
	return &Tracepoints{caps: c}, nil
}

// Kernel is the kernel release.
func (t *Tracepoints) Kernel() string { return t.caps.kernel }

// Tracefs is the tracefs handle, nil when tracefs could not be had.
func (t *Tracepoints) Tracefs() *perfevents.Tracefs { return t.caps.tfs }

// Unavailable lists what is missing, and why.
func (t *Tracepoints) Unavailable() []report.Unavailable {
	return append([]report.Unavailable{}, t.caps.unavailable...)
}

// Close unmounts tracefs if it was mounted for this run.
func (t *Tracepoints) Close() { t.caps.close() }

// FaultID is the tracefs id of exceptions:page_fault_user.
func (t *Tracepoints) FaultID() (uint64, bool) {
	if t.caps.fault == nil {
		return 0, false
	}
	return t.caps.fault.id, true
}

// KernelFaultID is the tracefs id of exceptions:page_fault_kernel: the
// copy-on-write faults a system call takes writing into the process's memory.
func (t *Tracepoints) KernelFaultID() (uint64, bool) {
	if t.caps.kfault == nil {
		return 0, false
	}
	return t.caps.kfault.id, true
}

// KernelFault reads a page_fault_kernel sample's address and error code.
func (t *Tracepoints) KernelFault(raw []byte) (address, errorCode uint64, err error) {
	f := t.caps.kfault
	if address, err = f.address.Uint(raw); err != nil {
		return 0, 0, fmt.Errorf("page_fault_kernel sample: %w", err)
	}
	if errorCode, err = f.errorCode.Uint(raw); err != nil {
		return 0, 0, fmt.Errorf("page_fault_kernel sample: %w", err)
	}
	return address, errorCode, nil
}

// AllocID is the tracefs id of kmem:mm_page_alloc; without the fault
// tracepoint it is of no use and not offered.
func (t *Tracepoints) AllocID() (uint64, bool) {
	if t.caps.alloc == nil || t.caps.fault == nil {
		return 0, false
	}
	return t.caps.alloc.id, true
}

// Fault reads a page_fault_user sample's address and x86 error code.
func (t *Tracepoints) Fault(raw []byte) (address, errorCode uint64, err error) {
	f := t.caps.fault
	if address, err = f.address.Uint(raw); err != nil {
		return 0, 0, fmt.Errorf("page_fault_user sample: %w", err)
	}
	if errorCode, err = f.errorCode.Uint(raw); err != nil {
		return 0, 0, fmt.Errorf("page_fault_user sample: %w", err)
	}
	return address, errorCode, nil
}

// TaskFaults classifies the faults of one task, in the order the task took
// them, and infers its copies with the experiment's rule: a copy-shaped
// allocation after a write-protect fault, before the task's next fault. The
// zero value is ready to use. There is no region: every fault counts as
// outside one.
type TaskFaults struct {
	counts processCounts
	stream taskStream
}

// Fault counts one fault and returns its class. A fault the kernel took in
// a system call (kernelMode) counts only on a user address, with ok false
// otherwise.
func (f *TaskFaults) Fault(address, errorCode uint64, kernelMode bool) (class FaultClass, ok bool) {
	f.stream.counts = &f.counts
	if kernelMode && !userAddress(address) {
		return 0, false
	}
	f.stream.fault(address, errorCode, report.Region{}, kernelMode)
	return Classify(errorCode), true
}

// Alloc reads an mm_page_alloc sample of the task and, when it is shaped
// like the page a copy-on-write fault copies into and follows a
// write-protect fault, counts an inferred copy.
func (f *TaskFaults) Alloc(t *Tracepoints, raw []byte) error {
	a := t.caps.alloc
	order, err := a.order.Uint(raw)
	if err != nil {
		return fmt.Errorf("mm_page_alloc sample: %w", err)
	}
	gfp, err := a.gfp.Uint(raw)
	if err != nil {
		return fmt.Errorf("mm_page_alloc sample: %w", err)
	}
	f.stream.counts = &f.counts
	f.stream.alloc(order, gfp, a.rule)
	return nil
}

// Classes are the task's faults so far, by class.
func (f *TaskFaults) Classes() report.FaultClasses {
	c := f.counts.outside
	in := f.counts.inRegion
	c.WP += in.WP
	c.WriteNotPresent += in.WriteNotPresent
	c.Read += in.Read
	c.Exec += in.Exec
	c.InferredCopies += in.InferredCopies
	c.KernelMode += in.KernelMode
	return c
}

// WPFunction is the handler of every write-protect fault.
const WPFunction = wpFunction

// Kprobes is a route to kernel functions (the kprobe PMU or tracefs
// kprobe_events) for a tracer that opens its events itself.
type Kprobes struct {
	kp kprober

	mu    sync.Mutex
	addrs map[string]uint64 // kallsyms addresses of inherited PMU probes
}

// address is fn's address from kallsyms, for a kprobe PMU event opened by
// address. Like the kernel's lookup by name, it refuses a name that several
// text symbols share.
func (k *Kprobes) address(fn string) (uint64, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if a, ok := k.addrs[fn]; ok {
		return a, nil
	}
	syms, err := perfevents.LoadKallsyms(fn)
	if err != nil {
		return 0, err
	}
	if syms.AddressesHidden() {
		return 0, fmt.Errorf("kprobe %q: inherited kprobe PMU events need the function's address, and kallsyms hides addresses (kernel.kptr_restrict): use --kprobe-method tracefs", fn)
	}
	var text []perfevents.Symbol
	for _, s := range syms.All(fn) {
		if s.IsText() {
			text = append(text, s)
		}
	}
	switch len(text) {
	case 0:
		return 0, fmt.Errorf("kprobe %q: %w (no text symbol in kallsyms)", fn, perfevents.ErrNotFound)
	case 1:
	default:
		return 0, fmt.Errorf("kprobe %q: %w (%d text symbols of that name in kallsyms)", fn, perfevents.ErrNotProbeable, len(text))
	}
	if k.addrs == nil {
		k.addrs = map[string]uint64{}
	}
	k.addrs[fn] = text[0].Addr
	return text[0].Addr, nil
}

// NewKprobes finds the route that method asks for. With none, it returns nil
// and the reason.
func NewKprobes(method KprobeMethod, tfs *perfevents.Tracefs) (*Kprobes, string, error) {
	kp, why, err := newKprober(method, tfs)
	if err != nil || kp == nil {
		return nil, why, err
	}
	return &Kprobes{kp: kp}, "", nil
}

// Method is "pmu" or "tracefs".
func (k *Kprobes) Method() string { return k.kp.method() }

// Close removes whatever the route created in tracefs. Every event opened
// from an Attr must be closed first.
func (k *Kprobes) Close() error { return k.kp.close() }

// Open opens a probe on fn with the attribute settings of base (sampling,
// inherit, enable_on_exec...) on task tid and CPU cpu. ENOENT wraps
// perfevents.ErrNotFound and EINVAL perfevents.ErrNotProbeable, as for every
// other probe.
func (k *Kprobes) Open(fn string, base perf.Attr, tid, cpu int) (*perf.Event, error) {
	a := base
	a.Label = "kprobe:" + fn
	var name *byte
	switch kp := k.kp.(type) {
	case pmuKprober:
		a.Type = perf.EventType(kp.typ)
		if a.Options.Inherit {
			// An inherited event is initialised again at every fork,
			// and the kprobe PMU then re-reads the name from config1 as
			// a user address, in the forking task's memory, where it
			// is not: the fork (a Go runtime's thread, a traced
			// program's child) fails with EFAULT. Seen in the vmtest
			// guests (6.1, 6.12). The address (config1 = 0, config2 =
			// address) carries no pointer.
			addr, err := k.address(fn)
			if err != nil {
				return nil, err
			}
			a.Config1, a.Config2 = 0, addr
			break
		}
		p, err := unix.BytePtrFromString(fn)
		if err != nil {
			return nil, fmt.Errorf("kprobe %q: %w", fn, err)
		}
		name = p
		// The kernel copies the name during perf_event_open; KeepAlive
		// below keeps it valid until then.
		a.Config1 = uint64(uintptr(unsafe.Pointer(name)))
		a.Config2 = 0
	case *tracefsKprober:
		kp.mu.Lock()
		id, ok := kp.ids[fn]
		err := kp.bad[fn]
		if !ok && err == nil {
			id, err = kp.ke.Add(fn, 0)
			if err != nil {
				kp.bad[fn] = err
			} else {
				kp.ids[fn] = id
			}
		}
		kp.mu.Unlock()
		if err != nil {
			return nil, err
		}
		a.Type = perf.TracepointEvent
		a.Config = id
	default:
		return nil, fmt.Errorf("kprobe %q: unknown route %T", fn, k.kp)
	}
	ev, err := perf.Open(&a, tid, cpu, nil)
	runtime.KeepAlive(name)
	if err != nil {
		return nil, kprobeOpenError(a.Label, tid, err)
	}
	return ev, nil
}

// kprobeOpenError maps the errnos that decide a probe's fate to the
// perfevents sentinels, as perfevents.Open does.
func kprobeOpenError(label string, tid int, err error) error {
	var errno unix.Errno
	if errors.As(err, &errno) {
		switch errno {
		case unix.ENOENT:
			return fmt.Errorf("open %s: %w (ENOENT)", label, perfevents.ErrNotFound)
		case unix.EINVAL, unix.EILSEQ, unix.EADDRNOTAVAIL:
			return fmt.Errorf("open %s: %w (%v)", label, perfevents.ErrNotProbeable, errno)
		case unix.EACCES, unix.EPERM:
			return fmt.Errorf("open %s on task %d: %w", label, tid, perfevents.ErrPermission)
		}
	}
	return fmt.Errorf("open %s on task %d: %w", label, tid, err)
}

// FindCopyRoutine runs the experiment's calibration (64 known copy-on-write
// writes in cowtrace's own worker) and returns the routine whose hits match,
// or "" and what was measured.
func (k *Kprobes) FindCopyRoutine(ctx context.Context, extra []string) (name, check string, err error) {
	syms, err := perfevents.LoadKallsyms(append([]string{wpFunction}, append(copyCandidates, extra...)...)...)
	if err != nil {
		return "", "", err
	}
	r, err := findCopyRoutine(ctx, k.kp, syms)
	if err != nil {
		return "", "", err
	}
	return r.name, r.check, nil
}
