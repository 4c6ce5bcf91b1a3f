package perfevents

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"unsafe"

	perf "github.com/elastic/go-perf"
	"golang.org/x/sys/unix"
)

// KprobeMethod picks the route to kernel functions.
type KprobeMethod string

const (
	KprobeAuto    KprobeMethod = "auto"    // the PMU, else tracefs kprobe_events, else none
	KprobePMU     KprobeMethod = "pmu"     // the kprobe PMU only (Linux 4.17+)
	KprobeTracefs KprobeMethod = "tracefs" // tracefs kprobe_events only
	KprobeNone    KprobeMethod = "none"    // tracepoints only, as on kernels without kprobes
)

// ParseKprobeMethod validates a --kprobe-method value.
func ParseKprobeMethod(s string) (KprobeMethod, error) {
	switch m := KprobeMethod(s); m {
	case KprobeAuto, KprobePMU, KprobeTracefs, KprobeNone:
		return m, nil
	}
	return "", fmt.Errorf("unknown kprobe method %q (want auto, pmu, tracefs or none)", s)
}

// Kprobes is one route to kernel functions: the kprobe PMU, whose probes
// live as long as their descriptors, or tracefs kprobe_events, whose probes
// are kernel-global objects created once per function and opened as
// tracepoints. Every probe opened through it is an *Event like any other.
// Close undoes exactly what the route created.
type Kprobes struct {
	method  KprobeMethod // KprobePMU or KprobeTracefs
	pmuType uint32
	ke      *KprobeEvents

	mu    sync.Mutex
	ids   map[string]uint64 // tracefs: the tracepoint of each function
	bad   map[string]error  // tracefs: functions kprobe_events refused
	addrs map[string]uint64 // PMU: kallsyms addresses for inherited probes
}

// NewKprobes finds the route that method asks for. With none, it returns nil
// and the reason, for the run's "unavailable" list.
func NewKprobes(method KprobeMethod, tfs *Tracefs) (*Kprobes, string, error) {
	if method == KprobeNone {
		return nil, "not requested (kprobe method none)", nil
	}
	if method == "" || method == KprobeAuto || method == KprobePMU {
		typ, _, err := KprobePMUType()
		if err == nil {
			return &Kprobes{method: KprobePMU, pmuType: typ}, "", nil
		}
		if method == KprobePMU {
			return nil, "", fmt.Errorf("kprobes through the PMU: %w", err)
		}
	}
	if tfs != nil && tfs.HasKprobeEvents() {
		// A cowtrace killed with SIGKILL cannot remove its probes; the next
		// run does, for every group whose process is gone.
		if _, err := RemoveStale(tfs); err != nil {
			return nil, "", fmt.Errorf("remove stale kprobes: %w", err)
		}
		ke, err := NewKprobeEvents(tfs)
		if err != nil {
			return nil, "", err
		}
		return &Kprobes{method: KprobeTracefs, ke: ke, ids: map[string]uint64{}, bad: map[string]error{}}, "", nil
	}
	if method == KprobeTracefs {
		if tfs == nil {
			return nil, "", errors.New("kprobes through tracefs: tracefs is not available")
		}
		return nil, "", fmt.Errorf("kprobes through tracefs: %w: no kprobe_events in %s (%s)",
			ErrNotSupported, tfs, KprobesUnavailableReason())
	}
	return nil, KprobesUnavailableReason(), nil
}

// Method is KprobePMU or KprobeTracefs.
func (k *Kprobes) Method() KprobeMethod { return k.method }

// Close removes the probes the tracefs route created; a removal that fails
// is reported, never dropped. Every event opened through k must be closed
// first: the kernel refuses to remove a probe that is open.
func (k *Kprobes) Close() error {
	if k == nil || k.ke == nil {
		return nil
	}
	return k.ke.Close()
}

// Open opens a probe on fn with a's settings (sampling, inherit,
// enable_on_exec...), whose Type, Config and Label it sets, on task tid and
// CPU cpu. ENOENT wraps ErrNotFound and EINVAL ErrNotProbeable.
func (k *Kprobes) Open(fn string, a Attr, tid, cpu int) (*Event, error) {
	return k.OpenInGroup(fn, a, tid, cpu, nil)
}

// OpenInGroup is Open as a member of leader's group (nil: none).
func (k *Kprobes) OpenInGroup(fn string, a Attr, tid, cpu int, leader *Event) (*Event, error) {
	a.Label = "kprobe:" + fn
	if k.method == KprobeTracefs {
		id, err := k.tracepoint(fn)
		if err != nil {
			return nil, err
		}
		a.Type, a.Config = Tracepoint, id
		return open(a.perf(), tid, cpu, leader)
	}
	pa := a.perf()
	pa.Type = perf.EventType(k.pmuType)
	if a.Inherit {
		// An inherited event is initialised again at every fork, and the
		// kprobe PMU then re-reads the name from config1 as a user
		// address, in the forking task's memory, where it is not: the
		// fork (a Go runtime's thread, a traced program's child) fails
		// with EFAULT. Seen on Debian's 6.1 and 6.12. The address
		// (config1 = 0, config2 = address) carries no pointer.
		addr, err := k.address(fn)
		if err != nil {
			return nil, err
		}
		pa.Config1, pa.Config2 = 0, addr
		return open(pa, tid, cpu, leader)
	}
	name, err := unix.BytePtrFromString(fn)
	if err != nil {
		return nil, fmt.Errorf("kprobe %q: %w", fn, err)
	}
	// The kernel copies the NUL-terminated name from this address during
	// perf_event_open; KeepAlive keeps it valid until then.
	pa.Config1 = uint64(uintptr(unsafe.Pointer(name)))
	ev, err := open(pa, tid, cpu, leader)
	runtime.KeepAlive(name)
	return ev, err
}

// tracepoint creates fn's probe in kprobe_events once and returns its id.
func (k *Kprobes) tracepoint(fn string) (uint64, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if id, ok := k.ids[fn]; ok {
		return id, nil
	}
	if err := k.bad[fn]; err != nil {
		return 0, err
	}
	id, err := k.ke.Add(fn, 0)
	if err != nil {
		k.bad[fn] = err
		return 0, err
	}
	k.ids[fn] = id
	return id, nil
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
	syms, err := LoadKallsymsCached(fn)
	if err != nil {
		return 0, err
	}
	if syms.AddressesHidden() {
		return 0, fmt.Errorf("kprobe %q: inherited kprobe PMU events need the function's address, and kallsyms hides addresses (kernel.kptr_restrict); kprobes through tracefs need none", fn)
	}
	var text []Symbol
	for _, s := range syms.All(fn) {
		if s.IsText() {
			text = append(text, s)
		}
	}
	switch len(text) {
	case 0:
		return 0, fmt.Errorf("kprobe %q: %w (no text symbol in kallsyms)", fn, ErrNotFound)
	case 1:
	default:
		return 0, fmt.Errorf("kprobe %q: %w (%d text symbols of that name in kallsyms)", fn, ErrNotProbeable, len(text))
	}
	if k.addrs == nil {
		k.addrs = map[string]uint64{}
	}
	k.addrs[fn] = text[0].Addr
	return text[0].Addr, nil
}
