package engine

import (
	"strings"
	"testing"

	"github.com/cowtrace/cowtrace/cow"
)

// TestEventBudget: within the budget every event is opened; beyond it the
// events another measures too go first, then major faults, then the
// kernel-mode faults, until the CPUs fit or nothing more can go; a note
// names them.
func TestEventBudget(t *testing.T) {
	for _, tc := range []struct {
		name    string
		mode    Mode
		kprobes bool
		ncpu    int
		perCPU  int
		dropped leftOut
	}{
		{"classify, kprobes, 16 CPUs", ModeClassify, true, 16, 6, leftOut{}},
		{"classify, kprobes, 48 CPUs", ModeClassify, true, 48, 3, leftOut{wpProbe: true, allocCheck: true, major: true}},
		{"classify, no kprobes, 48 CPUs", ModeClassify, false, 48, 3, leftOut{major: true}},
		{"count, kprobes, 48 CPUs", ModeCount, true, 48, 3, leftOut{wpProbe: true, allocCheck: true, kernelFaults: true}},
		{"count, no kprobes, 40 CPUs", ModeCount, false, 40, 4, leftOut{}},
		{"count, no kprobes, 48 CPUs", ModeCount, false, 48, 3, leftOut{kernelFaults: true}},
		{"classify, kprobes, 200 CPUs", ModeClassify, true, 200, 2, leftOut{wpProbe: true, allocCheck: true, major: true, kernelFaults: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			copyRoutine := ""
			if tc.kprobes {
				copyRoutine = "copy_mc_to_kernel"
			}
			s := synthetic(t, true, copyRoutine)
			s.cfg.Counters, s.mode, s.copyPath = false, tc.mode, testCopyPath(t)
			s.cpus = make([]int, tc.ncpu)
			s.fitEventBudget(tc.ncpu)
			if got := s.eventsPerCPU(); got != tc.perCPU || s.dropped != tc.dropped {
				t.Errorf("%d events per CPU, left out %+v; want %d, %+v", got, s.dropped, tc.perCPU, tc.dropped)
			}
			note := s.budgetNoteLocked()
			if (note == "") != (tc.dropped == leftOut{}) {
				t.Errorf("note %q", note)
			}
			if tc.dropped.wpProbe && (strings.Contains(strings.Join(s.probeFns, ","), cow.WPFunction) || !strings.Contains(note, "do_wp_page")) {
				t.Errorf("do_wp_page left out, yet probed (%v) or not said (%q)", s.probeFns, note)
			}
			if tc.dropped.kernelFaults != (s.tp.KernelFault == nil) {
				t.Errorf("kernel faults left out %v, tracepoint %v", tc.dropped.kernelFaults, s.tp.KernelFault)
			}
		})
	}
}
