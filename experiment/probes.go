package experiment

import (
	"errors"
	"fmt"
	"sync"

	"github.com/cowtrace/cowtrace/perfevents"
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

// kprober counts hits of kernel functions on one task at a time, through
// whichever route the kernel offers.
type kprober interface {
	open(fn string, tid int) (*perfevents.Event, error)
	method() string
	close() error // removes whatever the route left in the kernel
}

// pmuKprober uses the kprobe PMU: a probe lives as long as its descriptor.
type pmuKprober struct{ typ uint32 }

func (p pmuKprober) open(fn string, tid int) (*perfevents.Event, error) {
	return perfevents.OpenKprobe(p.typ, fn, 0, tid, nil)
}
func (pmuKprober) method() string { return "pmu" }
func (pmuKprober) close() error   { return nil }

// tracefsKprober creates each function's probe once in kprobe_events and
// opens it per task as a tracepoint. The probes are kernel-global objects
// that outlive cowtrace unless removed: close removes them, and the caller
// runs close on every exit path (signals included).
type tracefsKprober struct {
	ke *perfevents.KprobeEvents

	mu  sync.Mutex
	ids map[string]uint64
	bad map[string]error
}

func (t *tracefsKprober) open(fn string, tid int) (*perfevents.Event, error) {
	t.mu.Lock()
	id, ok := t.ids[fn]
	err := t.bad[fn]
	if !ok && err == nil {
		id, err = t.ke.Add(fn, 0)
		if err != nil {
			t.bad[fn] = err
		} else {
			t.ids[fn] = id
		}
	}
	t.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return perfevents.Open(perfevents.TracepointAttr(id, "kprobe:"+fn, nil), tid)
}
func (*tracefsKprober) method() string { return "tracefs" }
func (t *tracefsKprober) close() error { return t.ke.Close() }

// newKprober finds the route that method asks for; when there is none, it
// returns nil and the reason, for the run's "unavailable" list.
func newKprober(method KprobeMethod, tfs *perfevents.Tracefs) (kprober, string, error) {
	if method == KprobeNone {
		return nil, "not requested (--kprobe-method none)", nil
	}
	if method == KprobeAuto || method == KprobePMU {
		typ, _, err := perfevents.KprobePMU()
		if err == nil {
			return pmuKprober{typ: typ}, "", nil
		}
		if method == KprobePMU {
			return nil, "", fmt.Errorf("--kprobe-method pmu: %w", err)
		}
	}
	if tfs != nil && tfs.HasKprobeEvents() {
		// A cowtrace killed with SIGKILL cannot remove its probes; the next
		// run does, for every group whose process is gone.
		if _, err := perfevents.RemoveStale(tfs); err != nil {
			return nil, "", fmt.Errorf("remove stale kprobes: %w", err)
		}
		ke, err := perfevents.NewKprobeEvents(tfs)
		if err != nil {
			return nil, "", err
		}
		return &tracefsKprober{ke: ke, ids: map[string]uint64{}, bad: map[string]error{}}, "", nil
	}
	if method == KprobeTracefs {
		if tfs == nil {
			return nil, "", errors.New("--kprobe-method tracefs: tracefs is not available")
		}
		return nil, "", fmt.Errorf("--kprobe-method tracefs: %w: no kprobe_events in %s (%s)",
			perfevents.ErrNotSupported, tfs.Dir, perfevents.KprobesUnavailableReason())
	}
	return nil, perfevents.KprobesUnavailableReason(), nil
}
