package main

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/cowtrace/cowtrace/internal/cow"
)

// The checks of boots whose faults have no class: without the x86
// exceptions:page_fault_* tracepoints (arm64 has none) cowtrace samples the
// page-fault software event with its address (the generic fault method),
// which tells faults in the experiment's region from the others
// (in_region.unclassified), and takes write-protect faults from a kprobe on
// do_wp_page (wp_faults). Every check that reads something else holds there
// as it is; those that read fault classes have a sibling here that makes
// the same statement in those terms. A kernel without kprobes is stood in
// for by --kprobe-method none in the same guest (expectation.
// WithoutKprobesToo): without kprobes cowtrace uses exactly that method
// (copies told by their allocation's kernel stack).

// inRegion is the number of faults in the region, of every class: where
// faults have no class all of them are unclassified. It fails when the run did not split faults
// by address.
func inRegion(rep *cowtraceReport, p *cowtraceProcess) (int64, error) {
	if m := rep.Methods["in_region"]; m != cow.FaultAddrMethod {
		return 0, fmt.Errorf("methods.in_region = %q, want %q", m, cow.FaultAddrMethod)
	}
	if p.InRegion == nil {
		return 0, fmt.Errorf("%s in_region is null", p.Role)
	}
	var n int64
	for k, v := range p.InRegion {
		// inferred_copies and kernel_mode count faults of the classes again.
		if k != "inferred_copies" && k != "kernel_mode" {
			n += v
		}
	}
	return n, nil
}

func checkInRegionByAddress(name string, writer, reader int64) func(g *guestRun) error {
	return func(g *guestRun) error {
		return perRole(g, name, writer, reader, func(rep *cowtraceReport, p *cowtraceProcess, want int64) []error {
			n, err := inRegion(rep, p)
			if err != nil {
				return []error{err}
			}
			if n != want {
				return []error{fmt.Errorf("%s in-region faults = %d (%v), want %d", p.Role, n, p.InRegion, want)}
			}
			return nil
		})
	}
}

// probedWP is the process's write-protect faults, which must be do_wp_page's
// hits.
func probedWP(rep *cowtraceReport, p *cowtraceProcess) (int64, error) {
	if m := rep.Methods["wp_faults"]; m != "kprobe:do_wp_page" {
		return 0, fmt.Errorf("methods.wp_faults = %q, want kprobe:do_wp_page", m)
	}
	n, ok := p.Probes["do_wp_page"]
	if !ok {
		return 0, fmt.Errorf(`%s probes has no "do_wp_page"`, p.Role)
	}
	if n != p.WPFaults {
		return 0, fmt.Errorf("%s do_wp_page = %d, wp_faults = %d", p.Role, n, p.WPFaults)
	}
	return n, nil
}

func checkWPByProbe(name string, want int64) func(g *guestRun) error {
	return func(g *guestRun) error {
		rep, w, _, err := writerReader(g, name)
		if err != nil {
			return err
		}
		n, err := probedWP(rep, w)
		if err != nil {
			return err
		}
		if n != want {
			return fmt.Errorf("writer wp_faults = %d, want %d", n, want)
		}
		return nil
	}
}

// checkGeneric: without kprobes, copies are the allocations on the
// copy-on-write path, told by their kernel stacks; the writer's are its
// writes into pages it shares, and the reader copies nothing.
func checkGeneric(name string, writer int64) func(g *guestRun) error {
	return func(g *guestRun) error {
		rep, w, r, err := writerReader(g, name)
		if err != nil {
			return err
		}
		var errs []error
		if rep.KprobeMethod != "" || rep.CopyRoutine != "" {
			errs = append(errs, fmt.Errorf("kprobe_method %q, copy_routine %q: want neither", rep.KprobeMethod, rep.CopyRoutine))
		}
		if m := rep.Methods["copies"]; !strings.HasPrefix(m, "callchain:") {
			errs = append(errs, fmt.Errorf("methods.copies = %q, want copies by allocation stacks (callchain:)", m))
		}
		errs = append(errs, wantCopies(w, writer), wantCopies(r, 0))
		return errors.Join(errs...)
	}
}

// checkGenericAgrees: the method without kprobes counts, process by process,
// what the copy routine's kprobe counted in the touched run. The parent's
// copies (its stack and runtime data, written while the children share
// them) are not the same pages from run to run, so it is left out.
func checkGenericAgrees(g *guestRun) error {
	t, err := againstTouched(g, "generic")
	if err != nil {
		return err
	}
	return errors.Join(t.sameCopies("by allocation stacks", "by kprobe")...)
}

// checkNoTouchByAddress: with nothing written before the fork, the
// writer's writes are first writes (no do_wp_page, no copy) and the
// reader's reads fault their pages in, one fault per block each.
func checkNoTouchByAddress(g *guestRun) error {
	rep, w, _, err := writerReader(g, "no-touch")
	if err != nil {
		return err
	}
	var errs []error
	errs = append(errs, wantCopies(w, 0))
	if n, err := probedWP(rep, w); err != nil {
		errs = append(errs, err)
	} else if n != 0 {
		errs = append(errs, fmt.Errorf("writer wp_faults = %d, want 0", n))
	}
	errs = append(errs, checkInRegionByAddress("no-touch", 1000, 1000)(g))
	return errors.Join(errs...)
}

func checkBlocks5000ByAddress(g *guestRun) error {
	rep, w, _, err := writerReader(g, "blocks-5000")
	if err != nil {
		return err
	}
	errs := []error{wantCopies(w, 5000), checkWPByProbe("blocks-5000", 5000)(g)}
	if n, err := inRegion(rep, w); err != nil {
		errs = append(errs, err)
	} else if n != 5000 {
		errs = append(errs, fmt.Errorf("writer in-region faults = %d, want 5000", n))
	}
	return errors.Join(errs...)
}

// classRE matches an expectation on a fault class, which only the x86
// fault tracepoints' error code gives: where faults have no class such a
// class reads 0 whatever happened (the faults are in
// in_region.unclassified), so the expectation says nothing there, held or
// not.
var classRE = regexp.MustCompile(`\.(in_region|outside)\.(wp|write_not_present|read|exec)\b`)

// unheldByClass splits a scenario's expectations that did not hold into
// those on fault classes and the others.
func unheldByClass(exps []matrixExpectation) (class, other []matrixExpectation) {
	for _, e := range exps {
		switch {
		case e.Held:
		case classRE.MatchString(e.Expect):
			class = append(class, e)
		default:
			other = append(other, e)
		}
	}
	return
}

// checkCountClassless: count mode counts faults behind filters on the x86
// tracepoint's error code; without it the run must say so and still count
// copies by kprobe.
func checkCountClassless(g *guestRun) error {
	rep, w, _, err := writerReader(g, "count")
	if err != nil {
		return err
	}
	var errs []error
	errs = append(errs, wantCopies(w, rep.Blocks))
	if m, ok := rep.Methods["wp_faults"]; ok && strings.HasPrefix(m, "counter:") {
		errs = append(errs, fmt.Errorf("methods.wp_faults = %q: counted without the fault tracepoint?", m))
	}
	named := false
	for _, u := range rep.Unavailable {
		named = named || u.What == "tracepoint:exceptions:page_fault_user"
	}
	if !named {
		errs = append(errs, fmt.Errorf("unavailable %v does not name tracepoint:exceptions:page_fault_user", rep.Unavailable))
	}
	return errors.Join(errs...)
}

// testsNeedingFaultClasses are the tests of the guests' test binaries that
// assert what only the x86 fault tracepoints give (a fault's class, the
// tracepoint itself), skipped by -test.skip patterns on boots whose faults
// have no class: each failed on Debian's 6.1 arm64 kernel for that reason
// alone (2026-11-30). A test that learns to skip itself, or to assert in
// terms of faults by address, comes off the list.
var testsNeedingFaultClasses = map[string][]string{
	// They open exceptions:page_fault_user as their tracepoint.
	"perfevents.test": {"^TestOpenTracefsPrivate$", "^TestOpenTracefsUsesForeignMount$"},
	// in_region.wp, write_not_present, read.
	"experiment.test": {"^(TestSeedExperiment|TestScaledExperiment|TestUntouchedExperiment)$"},
	// The tracepoint required (TestConcurrentRuns), wp_faults columns
	// (TestCompareTracedShell), expectations on in_region.wp, the writer's
	// in_region.wp (TestJSONContract), the matrix's class expectations
	// (TestMatrixCommand); wp_faults of `run --kprobe-method none`, which
	// only the tracepoint gives there (TestRunTimelineJSON, whose nil
	// dereference then ends the binary, TestRunTableThreads, TestRunExpect,
	// TestRunOutputFile).
	"cmd_cowtrace.test": {"^(TestConcurrentRuns|TestCompareTracedShell|TestExpectExitCodes|TestScenarioFlag|TestJSONContract|TestMatrixCommand|TestRunTimelineJSON|TestRunTableThreads|TestRunExpect|TestRunOutputFile)$"},
	// The scenarios whose expectations name fault classes (the matrix
	// command covers them, without those expectations).
	"scenario.test": {"^TestScenarios$/^(touched|untouched|wipeonfork|after-exit|many-writers|parent-writes|thp)$"},
}

// testSkips are the tests that boots of e skip, by test binary.
func testSkips(e expectation) map[string][]string {
	if byTracepoint(e) {
		return nil
	}
	return testsNeedingFaultClasses
}

// skipTests adds the patterns of skips to the units of the test binaries,
// merged with a -test.skip a split part already has (the flag package
// keeps only the last one), and says what each binary skips.
func skipTests(units []unit, skips map[string][]string) []string {
	var notes []string
	for i := range units {
		pats := skips[units[i].Base]
		if len(pats) == 0 {
			continue
		}
		if units[i].Part <= 1 {
			notes = append(notes, fmt.Sprintf("%s skips %s: they assert x86 fault classes or tracepoints", units[i].Base, strings.Join(pats, " ")))
		}
		argv := units[i].Cmd.Argv
		skip := strings.Join(pats, "|")
		if j := slices.Index(argv, "-test.skip"); j >= 0 && j+1 < len(argv) {
			argv = slices.Clone(argv)
			argv[j+1] += "|" + skip
		} else {
			argv = append(slices.Clip(argv), "-test.skip", skip)
		}
		units[i].Cmd.Argv = argv
	}
	return notes
}
