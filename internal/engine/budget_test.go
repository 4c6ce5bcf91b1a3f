package engine

import (
	"strings"
	"testing"

	"github.com/cowtrace/cowtrace/internal/cow"
)

// TestEventBudget: within the budget every event is opened; beyond it the
// events another measures too go first, then major and minor faults, then
// the kernel-mode faults and the check of the FORK records, until the CPUs
// fit or nothing more can go (count mode then gives way to classify); a
// note names them.
func TestEventBudget(t *testing.T) {
	for _, tc := range []struct {
		name    string
		mode    Mode
		kprobes bool
		ncpu    int
		perCPU  int
		dropped leftOut
		fits    bool
	}{
		{"classify, kprobes, 16 CPUs", ModeClassify, true, 16, 6, leftOut{}, true},
		{"classify, kprobes, 48 CPUs", ModeClassify, true, 48, 3, leftOut{wpProbe: true, allocCheck: true, major: true}, true},
		{"classify, no kprobes, 48 CPUs", ModeClassify, false, 48, 3, leftOut{major: true}, true},
		{"count, kprobes, 16 CPUs", ModeCount, true, 16, 10, leftOut{wpProbe: true}, true},
		{"count, no kprobes, 16 CPUs", ModeCount, false, 16, 9, leftOut{}, true},
		{"count, no kprobes, 32 CPUs", ModeCount, false, 32, 5, leftOut{major: true, minor: true, kernelFaults: true, newTask: true}, true},
		{"count, kprobes, 48 CPUs", ModeCount, true, 48, 5, leftOut{wpProbe: true, allocCheck: true, major: true, minor: true, kernelFaults: true, newTask: true}, false},
		{"classify, kprobes, 200 CPUs", ModeClassify, true, 200, 2, leftOut{wpProbe: true, allocCheck: true, major: true, kernelFaults: true}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			copyRoutine := ""
			if tc.kprobes {
				copyRoutine = "copy_mc_to_kernel"
			}
			s := synthetic(t, true, copyRoutine)
			s.cfg.Counters, s.mode, s.copyPath = false, tc.mode, testCopyPath(t)
			s.cpus = make([]int, tc.ncpu)
			fits := s.fitEventBudget(tc.ncpu)
			if got := s.eventsPerCPU(); got != tc.perCPU || s.dropped != tc.dropped || fits != tc.fits {
				t.Errorf("%d events per CPU, left out %+v, fit %v; want %d, %+v, %v", got, s.dropped, fits, tc.perCPU, tc.dropped, tc.fits)
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
