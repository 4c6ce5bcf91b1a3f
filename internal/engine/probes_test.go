package engine

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/cowtrace/cowtrace/perfevents"
	"github.com/cowtrace/cowtrace/report"
)

// TestAskedProbeRefused: a refused probe of the engine's own (the copy
// routine, do_wp_page) is gone without and noted; one the user asked for
// with --probe fails the trace, naming it and the kernel's reason.
func TestAskedProbeRefused(t *testing.T) {
	s := &Session{cfg: Config{Probes: []string{"not_a_function"}}, probeErrs: map[string]error{}}
	refusal := fmt.Errorf("open kprobe:not_a_function: %w (ENOENT)", perfevents.ErrNotFound)
	if s.probeRefused("not_a_function", refusal) {
		t.Error("a probe asked for by name was skipped")
	}
	err := s.askedProbe("not_a_function", refusal)
	if !errors.Is(err, ErrProbeRefused) || !errors.Is(err, perfevents.ErrNotFound) ||
		err.Error() != "--probe not_a_function: cannot be probed: open kprobe:not_a_function: not found (ENOENT)" {
		t.Errorf("askedProbe: %v", err)
	}
	if !s.probeRefused("copy_mc_to_kernel", refusal) || s.probeErrs["copy_mc_to_kernel"] == nil {
		t.Error("the engine's own probe, refused, was not skipped and noted")
	}
	// A failure that is not the kernel's refusal stays what it was.
	other := errors.New("too many open files")
	if err := s.askedProbe("not_a_function", other); err != other {
		t.Errorf("askedProbe of a failure that is no refusal: %v", err)
	}
}

// TestAskedProbesWithoutKprobes: without a kprobe route, New's check names
// every asked function and why there are no kprobes.
func TestAskedProbesWithoutKprobes(t *testing.T) {
	s := &Session{cfg: Config{Probes: []string{"a", "b"}}, probeErrs: map[string]error{},
		unavailable: []report.Unavailable{{What: "kprobes", Why: "kernel built without CONFIG_KPROBES"}}}
	err := s.askedProbesRefused()
	if !errors.Is(err, ErrProbeRefused) || !strings.HasPrefix(err.Error(), "--probe a, --probe b: cannot be probed: no kprobes (kernel built without CONFIG_KPROBES)") {
		t.Errorf("askedProbesRefused: %v", err)
	}
	s.cfg.Probes = nil
	if err := s.askedProbesRefused(); err != nil {
		t.Errorf("nothing asked, yet %v", err)
	}
}
