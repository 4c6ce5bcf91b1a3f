package main

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// The checks of the arm64 guests. arm64 has no exceptions:page_fault_*
// tracepoints, so no fault there has a class: cowtrace samples the
// page-fault software event with its address (the generic fault method),
// which tells faults in the experiment's region from the others
// (in_region.unclassified), and takes write-protect faults from a kprobe on
// do_wp_page (wp_faults). Every x86 check that reads something else holds
// as it is; those that read fault classes are replaced here by the same
// statement in those terms. A kernel without kprobes is stood in for by
// --kprobe-method none in the same guest: a boot option cannot take
// CONFIG_KPROBES out of Debian's kernel, and without kprobes cowtrace uses
// exactly that method (copies told by their allocation's kernel stack).

// faultAddrMethod is methods.in_region of the generic fault method
// (cow.FaultAddrMethod).
const faultAddrMethod = "sampled:page-faults with address"

// arm64Expect is what Debian's arm64 kernels offer: kprobes and tracefs,
// but faults sampled with their address, there being no fault tracepoints.
// Whether the kernel has THP is what its guest shows (kernel.THPFromGuest):
// no matrix boot has declared it for arm64 yet.
var arm64Expect = expectation{Kprobes: true, Copies: methodKprobe, Faults: faultsAddress, THP: true, Lockdown: "none"}

// arm64Commands run in the arm64 guests besides cowtraceCommands.
var arm64Commands = []cowtraceCommand{
	{Name: "generic", Args: []string{"--format", "json", "--kprobe-method", "none"}},
	{Name: "generic-no-touch", Args: []string{"--format", "json", "--kprobe-method", "none", "--no-touch"}},
}

// commands are the cowtrace runs of t's guests.
func (t *target) commands() []cowtraceCommand {
	if t.Arch == "arm64" {
		return append(append([]cowtraceCommand{}, cowtraceCommands...), arm64Commands...)
	}
	return cowtraceCommands
}

// arm64Checks are the checks of the arm64 guests.
func arm64Checks() []check {
	cowtrace := []check{
		{Name: "touched: copies by the kernel's best method (a kprobe)", Cmd: "touched", Fn: checkCopyMethod},
		{Name: "touched: writer copies == blocks", Cmd: "touched", Fn: checkWriterCopiesBlocks},
		{Name: "touched: reader copies == 0", Cmd: "touched", Fn: checkReaderNoCopies},
		{Name: "touched: parent copies present", Cmd: "touched", Fn: checkParentCopies},
		{Name: "touched: faults by address: writer in-region == blocks, reader 0", Cmd: "touched", Fn: checkInRegionByAddress("touched", 1000, 0)},
		{Name: "touched: writer wp_faults (do_wp_page) == blocks", Cmd: "touched", Fn: checkWPByProbe("touched", 1000)},
		{Name: "touched: copies by allocation stacks == copies", Cmd: "touched", Fn: checkInferred},
		{Name: "no kprobes (--kprobe-method none): writer copies == blocks, reader 0, by allocation stacks", Cmd: "generic", Fn: checkGeneric("generic", 1000)},
		{Name: "no kprobes: writer in-region faults == blocks, reader 0", Cmd: "generic", Fn: checkInRegionByAddress("generic", 1000, 0)},
		{Name: "no kprobes: copies == the kprobe run's, process by process", Cmd: "generic", Fn: checkGenericAgrees},
		{Name: "no-touch: writer copies nothing, no do_wp_page; in-region faults == blocks for both", Cmd: "no-touch", Fn: checkNoTouchByAddress},
		{Name: "no-touch, no kprobes: writer copies nothing", Cmd: "generic-no-touch", Fn: checkGeneric("generic-no-touch", 0)},
		{Name: "blocks 5000: writer copies, do_wp_page and in-region faults 5000", Cmd: "blocks-5000", Fn: checkBlocks5000ByAddress},
		{Name: "tracefs kprobes agree with the PMU", Cmd: "tracefs", Fn: checkTracefsAgrees},
		{Name: "SIGINT mid-run exits clean, no kprobe left", Cmd: "sigint", Fn: checkSignalClean("sigint")},
		{Name: "SIGTERM mid-run exits clean, no kprobe left", Cmd: "sigterm", Fn: checkSignalClean("sigterm")},
		{Name: "no run leaves kprobes or tracefs mounts", Fn: checkNoLeftovers},
	}
	// The follow checks read wp_faults, which do_wp_page's hits are here,
	// and the copy routine's hits: they hold as they are. The matrix and
	// count mode have checks of their own.
	// The others are kept where arm64Expect has what they are for.
	var follow []check
	replaced := map[string]bool{}
	for _, c := range followChecks {
		switch c.Cmd {
		case "matrix":
			c = check{Name: "matrix: every scenario's outcome holds with kprobe copies, but for the x86 fault classes", Cmd: "matrix", Fn: checkMatrixArm64}
		case "count":
			c = check{Name: "count mode: kprobe copies; says its fault counters need the x86 tracepoint", Cmd: "count", Fn: checkCountArm64}
		default:
			if c.For != nil && !c.For(arm64Expect) {
				continue
			}
		}
		if replaced[c.Name] {
			continue
		}
		replaced[c.Name] = true
		follow = append(follow, c)
	}
	return append(append(append(append([]check{}, guestChecks...), cowtrace...), follow...), doctorChecks...)
}

// inRegion is the number of faults in the region, of every class: on arm64
// all of them are unclassified. It fails when the run did not split faults
// by address.
func inRegion(rep *cowtraceReport, p *cowtraceProcess) (int64, error) {
	if m := rep.Methods["in_region"]; m != faultAddrMethod {
		return 0, fmt.Errorf("methods.in_region = %q, want %q", m, faultAddrMethod)
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
		rep, w, r, err := writerReader(g, name)
		if err != nil {
			return err
		}
		var errs []error
		for _, c := range []struct {
			p    *cowtraceProcess
			want int64
		}{{w, writer}, {r, reader}} {
			n, err := inRegion(rep, c.p)
			if err != nil {
				errs = append(errs, err)
			} else if n != c.want {
				errs = append(errs, fmt.Errorf("%s in-region faults = %d (%v), want %d", c.p.Role, n, c.p.InRegion, c.want))
			}
		}
		return errors.Join(errs...)
	}
}

// wpByProbe is the process's write-protect faults, which must be do_wp_page's
// hits.
func wpByProbe(rep *cowtraceReport, p *cowtraceProcess) (int64, error) {
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
		n, err := wpByProbe(rep, w)
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
	_, w, r, err := writerReader(g, "generic")
	if err != nil {
		return err
	}
	_, kw, kr, err := writerReader(g, "touched")
	if err != nil {
		return fmt.Errorf("nothing to compare with: %w", err)
	}
	var errs []error
	for _, pair := range [][2]*cowtraceProcess{{w, kw}, {r, kr}} {
		a, err1 := copies(pair[0])
		b, err2 := copies(pair[1])
		if err := errors.Join(err1, err2); err != nil {
			errs = append(errs, err)
		} else if a != b {
			errs = append(errs, fmt.Errorf("%s copies: %d by allocation stacks, %d by kprobe", pair[0].Role, a, b))
		}
	}
	return errors.Join(errs...)
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
	if n, err := wpByProbe(rep, w); err != nil {
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
// fault tracepoints' error code gives: on arm64 such a class reads 0
// whatever happened (the faults are in in_region.unclassified), so the
// expectation says nothing there, held or not.
var classRE = regexp.MustCompile(`\.(in_region|outside)\.(wp|write_not_present|read|exec)\b`)

// matrixByClass splits a scenario's expectations that did not hold into
// those on fault classes and the others.
func matrixByClass(exps []matrixExpectation) (class, other []matrixExpectation) {
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

type matrixExpectation = struct {
	Expect     string `json:"expect"`
	Held       bool   `json:"held"`
	Detail     string `json:"detail"`
	NotChecked string `json:"not_checked"`
}

// checkMatrixArm64 is checkMatrix with the expectations on fault classes
// left out: every other expectation of every scenario must hold.
func checkMatrixArm64(g *guestRun) error {
	m, err := g.matrix()
	if err != nil {
		return err
	}
	var errs []error
	if len(m.Scenarios) < 11 {
		errs = append(errs, fmt.Errorf("%d scenarios, want 11 or more", len(m.Scenarios)))
	}
	for _, s := range m.Scenarios {
		if s.Run == nil {
			errs = append(errs, fmt.Errorf("%s: no run (%s)", s.Name, s.NotApplicable))
			continue
		}
		if c := s.Run.Methods["copies"]; !strings.HasPrefix(c, "kprobe:") {
			errs = append(errs, fmt.Errorf("%s: methods.copies = %q, want a \"kprobe:\" prefix", s.Name, c))
		}
		for _, p := range s.Run.Processes {
			if byStack(s.Run.Methods) && p.Copies != nil && p.InferredCopies != nil && *p.Copies != *p.InferredCopies {
				errs = append(errs, fmt.Errorf("%s: %s: %d kprobe copies, %d by %s", s.Name, p.Role, *p.Copies, *p.InferredCopies, s.Run.Methods["inferred_copies"]))
			}
		}
		if _, other := matrixByClass(s.Expectations); len(other) > 0 {
			var why []string
			for _, e := range other {
				why = append(why, e.Detail)
			}
			errs = append(errs, fmt.Errorf("%s: expected %s; did not hold: %s", s.Name, s.Outcome, strings.Join(why, "; ")))
		}
	}
	return errors.Join(errs...)
}

// arm64MatrixLines say, scenario by scenario, whether it held, and which
// expectations arm64 could not check.
func arm64MatrixLines(g *guestRun) []string {
	m, err := g.matrix()
	if err != nil {
		return nil
	}
	held := 0
	var out []string
	for _, s := range m.Scenarios {
		class, other := matrixByClass(s.Expectations)
		var names []string
		for _, e := range class {
			names = append(names, e.Expect)
		}
		switch {
		case s.Run == nil:
			out = append(out, fmt.Sprintf("matrix: %s not run: %s", s.Name, s.NotApplicable))
		case len(other) > 0:
			out = append(out, fmt.Sprintf("matrix: %s DIFFERS (expected %s)", s.Name, s.Outcome))
		case len(class) > 0:
			held++
			out = append(out, fmt.Sprintf("matrix: %s held but for %s: fault classes need the x86 fault tracepoints", s.Name, strings.Join(names, ", ")))
		default:
			held++
		}
	}
	return append([]string{fmt.Sprintf("matrix: %d of %d scenarios held with kprobe copies (on arm64, without their expectations on x86 fault classes)", held, len(m.Scenarios))}, out...)
}

// checkCountArm64: count mode counts faults behind filters on the x86
// tracepoint's error code; without it the run must say so and still count
// copies by kprobe.
func checkCountArm64(g *guestRun) error {
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

// arm64SkippedTests are the tests of the guests' test binaries that assert
// what only the x86 fault tracepoints give (a fault's class, the tracepoint
// itself), skipped in the arm64 guests by -test.skip patterns: each failed
// there for that reason alone (Debian's 6.1 arm64 kernel, 2026-11-30). A test
// that learns to skip itself, or to assert in terms of faults by address,
// comes off the list.
var arm64SkippedTests = map[string][]string{
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

// skipArm64Tests adds the skip patterns of arm64SkippedTests to the units
// of the test binaries, merged with a -test.skip a split part already has
// (the flag package keeps only the last one).
func skipArm64Tests(units []unit) []string {
	var notes []string
	for i := range units {
		pats := arm64SkippedTests[units[i].Base]
		if len(pats) == 0 {
			continue
		}
		if units[i].Part <= 1 {
			notes = append(notes, fmt.Sprintf("arm64: %s skips %s: they assert x86 fault classes or tracepoints", units[i].Base, strings.Join(pats, " ")))
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
