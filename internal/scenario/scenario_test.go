package scenario

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cowtrace/cowtrace/internal/cow"
	"github.com/cowtrace/cowtrace/internal/experiment"
	"github.com/cowtrace/cowtrace/internal/testenv"
	"github.com/cowtrace/cowtrace/internal/workload"
	"github.com/cowtrace/cowtrace/report"
)

func TestMain(m *testing.M) {
	workload.RunIfWorker()
	os.Exit(m.Run())
}

// TestEveryExpectationParses catches a typo in a scenario's expectations
// without a kernel: Check panics on one that does not parse.
func TestEveryExpectationParses(t *testing.T) {
	run := &report.Run{Methods: map[string]string{"pagemap": "pagemap"}}
	for _, s := range All() {
		for _, w := range []int{1, DefaultWriters} {
			func() {
				defer func() {
					if r := recover(); r != nil {
						t.Errorf("%s (writers %d): %v", s.Name, w, r)
					}
				}()
				if results, _, _ := s.Check(run, w); len(results) == 0 {
					t.Errorf("%s: no expectations", s.Name)
				}
			}()
		}
		if s.Does == "" || s.Outcome == "" || s.Why == "" {
			t.Errorf("%s: undocumented", s.Name)
		}
		if err := s.Workload(1000, 102400, 10240, DefaultWriters).Validate(); err != nil {
			t.Errorf("%s: %v", s.Name, err)
		}
	}
	// Only a scenario with huge pages depends on the kernel's build.
	for _, s := range All() {
		err := s.Applicable()
		huge := s.Workload(1000, 102400, 10240, DefaultWriters).Huge
		if err != nil && (!huge || !errors.Is(err, workload.ErrNotApplicable)) {
			t.Errorf("%s: Applicable: %v", s.Name, err)
		}
	}
	if _, err := Lookup("copy-on-read"); err == nil || !strings.Contains(err.Error(), "touched") {
		t.Errorf("Lookup of an unknown name: %v", err)
	}
}

// TestUnclassifiedWhy: an expectation on a fault class, not checked on a
// run that counted faults by address, says why the tracepoints were
// missing: denied and what grants them, not used, or not there.
func TestUnclassifiedWhy(t *testing.T) {
	byAddress := map[string]string{"in_region": cow.FaultAddrMethod}
	for _, c := range []struct {
		unavailable []report.Unavailable
		want        string
	}{
		{[]report.Unavailable{{What: "tracefs", Why: "tracepoints need root, CAP_PERFMON or kernel.perf_event_paranoid -1 (it is 2)"}, {What: "kprobes", Why: "need root or CAP_PERFMON"}},
			"the fault tracepoints were denied: tracepoints need root, CAP_PERFMON or kernel.perf_event_paranoid -1 (it is 2)"},
		{[]report.Unavailable{{What: "tracepoint:exceptions:page_fault_user", Why: "not used: faults by address were asked for (--fault-method address)"}},
			"exceptions:page_fault_user: not used: faults by address were asked for (--fault-method address)"},
		{nil, "no x86 fault tracepoints here"},
	} {
		run := &report.Run{Methods: byAddress, Unavailable: c.unavailable}
		want := "faults counted by address only, without their class (" + c.want + ")"
		if got := unclassified(run, "writer.in_region.wp == blocks"); got != want {
			t.Errorf("unclassified with %v:\n got %q\nwant %q", c.unavailable, got, want)
		}
	}
	if got := unclassified(&report.Run{Methods: byAddress}, "writer.copies == blocks"); got != "" {
		t.Errorf("an expectation on copies is not one on a fault class: %q", got)
	}
	// In Check, the copies after a fault class are still checked.
	touched, err := Lookup("touched")
	if err != nil {
		t.Fatal(err)
	}
	run := &report.Run{Blocks: 1000, Methods: map[string]string{"in_region": cow.FaultAddrMethod, "copies": "callchain"},
		Processes: []report.Process{{Role: "parent", Copies: report.U64(20), WPFaults: report.U64(30)}, {Role: "reader", Copies: report.U64(0), WPFaults: report.U64(0)},
			{Role: "writer", Copies: report.U64(1000), WPFaults: report.U64(1000)}}}
	results, _, _ := touched.Check(run, DefaultWriters)
	for _, r := range results {
		class := faultClass.MatchString(r.Expect)
		if class != (r.NotChecked != "") && !strings.Contains(r.Expect, "pagemap") {
			t.Errorf("%s: not checked %q (a fault class: %v)", r.Expect, r.NotChecked, class)
		}
	}
}

// TestScenarios runs every scenario on this kernel, with the pagemap proof
// where the scenario allows it, and checks its stated outcome: the
// expectations of scenario.go, on the copies column (a kprobe count where the
// kernel has kprobes, the tracepoint inference elsewhere), the fault classes
// in the region and the frames. Each subtest also checks a few facts
// directly, so that the expectation engine is not the only judge.
func TestScenarios(t *testing.T) {
	testenv.Require(t, testenv.Root, testenv.CapSysAdmin)
	const blocks = 1000
	for _, s := range All() {
		t.Run(s.Name, func(t *testing.T) {
			if err := s.Applicable(); errors.Is(err, workload.ErrNotApplicable) {
				t.Skip(err)
			} else if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			opt := experiment.Options{Workload: s.Workload(blocks, 102400, 10240, DefaultWriters), Scenario: s.Name}
			if s.Provable() {
				opt.Proof = experiment.ProofPagemap
			}
			run, err := experiment.Run(ctx, opt)
			if err != nil {
				t.Fatal(err)
			}
			if run.Methods["wp_faults"] == "" || run.Methods["copies"] == "" {
				t.Skipf("no exceptions:page_fault_user or kmem:mm_page_alloc tracepoint: %v", run.Unavailable)
			}
			if run.LostRecords != 0 {
				t.Errorf("lost %d records", run.LostRecords)
			}
			results, held, finding := s.Check(run, DefaultWriters)
			checked := 0
			for _, r := range results {
				if !r.Held {
					t.Error(r.Detail)
				}
				if r.NotChecked == "" {
					checked++
				}
			}
			if !held || checked == 0 {
				t.Errorf("held %v, %d of %d expectations checked", held, checked, len(results))
			}
			if finding != "" {
				t.Logf("finding on %s: %s", run.Kernel, finding)
			}
			direct(t, s.Name, run)
		})
	}
}

// direct checks the central fact of each scenario by hand.
func direct(t *testing.T, name string, run *report.Run) {
	t.Helper()
	find := func(role string) *report.Process {
		p := run.Find(role)
		if p == nil {
			t.Fatalf("no %s row", role)
		}
		return p
	}
	copies := func(p *report.Process) uint64 {
		if p.Copies == nil {
			t.Fatalf("%s: no copies", p.Role)
		}
		return *p.Copies
	}
	// Where copies are a kprobe count, the tracepoint inference must agree
	// on the children, whose windows hold only their region accesses.
	if strings.HasPrefix(run.Methods["copies"], "kprobe:") {
		for _, p := range run.Processes {
			if p.Role != "parent" && p.InferredCopies != nil && *p.InferredCopies != copies(&p) {
				t.Errorf("%s: kprobe copies %d, inferred %d", p.Role, copies(&p), *p.InferredCopies)
			}
		}
	}
	switch name {
	case "touched", "thp":
		w := find("writer")
		if w.InRegion.WP != 1000 || copies(w) != 1000 || copies(find("reader")) != 0 {
			t.Errorf("writer: %d wp in region, %d copies; reader %d copies", w.InRegion.WP, copies(w), copies(find("reader")))
		}
		if w.Pagemap == nil || w.Pagemap.AfterWrites.Private != 1000 {
			t.Errorf("writer pagemap: %+v", w.Pagemap)
		}
		if name == "thp" && !hasNote(run, "thp: ") {
			t.Errorf("thp run does not say how much of the region was huge: %v", run.Notes)
		}
	case "untouched", "wipeonfork":
		w := find("writer")
		if w.InRegion.WriteNotPresent != 1000 || w.InRegion.WP != 0 || copies(w) != 0 {
			t.Errorf("writer in region %+v, copies %d: want 1000 first writes and no copies", *w.InRegion, copies(w))
		}
	case "parent-writes":
		p := find("parent")
		if p.InRegion.WP != 1000 || p.InRegion.InferredCopies != 1000 {
			t.Errorf("parent in region %+v: want 1000 wp faults and 1000 copies", *p.InRegion)
		}
	case "after-exit":
		p := find("parent")
		if p.InRegion.WP != 1000 || p.InRegion.InferredCopies != 0 {
			t.Errorf("parent in region %+v: want 1000 wp faults, no copies (reuse)", *p.InRegion)
		}
	case "dontfork":
		if !hasNote(run, "not mapped in the child") {
			t.Errorf("no note that the children lacked the region: %v", run.Notes)
		}
		fallthrough
	case "vfork", "clone-vm":
		for _, role := range []string{"reader", "writer"} {
			if p := find(role); *p.PageFaults != 0 || copies(p) != 0 {
				t.Errorf("%s: %d faults, %d copies, want none", role, *p.PageFaults, copies(p))
			}
		}
	case "many-writers":
		for _, role := range []string{"writer1", "writer2", "writer3", "writer4"} {
			if p := find(role); copies(p) != 1000 {
				t.Errorf("%s: %d copies, want 1000", role, copies(p))
			}
		}
	case "zero-page":
		if w := find("writer"); *w.PageFaults != 1000 {
			t.Errorf("writer: %d faults, want 1000", *w.PageFaults)
		}
	default:
		t.Errorf("scenario %s has no direct check", name)
	}
}

func hasNote(run *report.Run, s string) bool {
	for _, n := range run.Notes {
		if strings.Contains(n, s) {
			return true
		}
	}
	return false
}
