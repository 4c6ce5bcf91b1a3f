package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/cowtrace/cowtrace/internal/cow"
)

// The checks of this file cover what came after the experiment: `cowtrace
// run` following a C program's process tree with inherited kprobes,
// `cowtrace matrix` with kprobe copies, and --mode count against the
// classified mode.

// runReport holds the fields of `cowtrace run --format json` that the
// checks look at.
type runReport struct {
	cowtraceReport
	// Count mode: how each task's counts came, whether every figure adds
	// up, and the records the rings delivered.
	CountMethod string   `json:"count_method"`
	Complete    bool     `json:"complete"`
	Incomplete  []string `json:"incomplete"`
	Records     int64    `json:"records"`
	Trace       *struct {
		ExitCode *int   `json:"exit_code"`
		EndedBy  string `json:"ended_by"`
	} `json:"trace"`
	Processes []runProcess `json:"processes"`
}

type runProcess struct {
	cowtraceProcess
	CopiesBy []struct {
		Name   string `json:"name"`
		Copies int64  `json:"copies"`
	} `json:"copies_by"`
	Ppid   int    `json:"ppid"`
	Comm   string `json:"comm"`
	Depth  int    `json:"depth"`
	Exited bool   `json:"exited"`
}

func (p *runProcess) String() string {
	return fmt.Sprintf("pid %d (%s, depth %d)", p.PID, p.Comm, p.Depth)
}

// matrixReport holds the fields of `cowtrace matrix --format json` that the
// checks look at.
type matrixReport struct {
	SchemaVersion int              `json:"schema_version"`
	Kernel        string           `json:"kernel"`
	Scenarios     []matrixScenario `json:"scenarios"`
}

type matrixScenario struct {
	Name          string              `json:"name"`
	Outcome       string              `json:"outcome"`
	Held          bool                `json:"held"`
	Finding       string              `json:"finding"`
	Expectations  []matrixExpectation `json:"expectations"`
	NotApplicable string              `json:"not_applicable"`
	Run           *cowtraceReport     `json:"run"`
}

type matrixExpectation struct {
	Expect     string `json:"expect"`
	Held       bool   `json:"held"`
	Detail     string `json:"detail"`
	NotChecked string `json:"not_checked"`
}

// decode parses the stdout of a command that must have succeeded (exit
// wantExit) into v.
func (g *guestRun) decode(name string, wantExit int, v any) error {
	r, err := g.result(name)
	if err != nil {
		return err
	}
	if r.Signaled != "" || r.ExitCode != wantExit {
		return fmt.Errorf("%s: %s, want exit %d", name, exitStatus(r), wantExit)
	}
	if err := json.Unmarshal([]byte(r.Stdout), v); err != nil {
		return fmt.Errorf("%s: stdout is not the JSON report: %w", name, err)
	}
	return nil
}

func (g *guestRun) runReport(name string) (*runReport, error) {
	if rep := g.runs[name]; rep != nil {
		return rep, nil
	}
	var rep runReport
	if err := g.decode(name, 0, &rep); err != nil {
		return nil, err
	}
	if rep.SchemaVersion < 1 || rep.SchemaVersion > 2 {
		return nil, fmt.Errorf("%s: schema_version %d, want 1 or 2", name, rep.SchemaVersion)
	}
	if rep.Trace == nil || rep.Trace.ExitCode == nil {
		return nil, fmt.Errorf("%s: no trace.exit_code", name)
	}
	g.runs[name] = &rep
	return &rep, nil
}

func (g *guestRun) matrix() (*matrixReport, error) {
	if g.matrixRep != nil {
		return g.matrixRep, nil
	}
	parts := g.parts["matrix"]
	if parts == nil {
		var m matrixReport
		if err := g.decode("matrix", 0, &m); err != nil {
			return nil, err
		}
		if m.SchemaVersion < 1 || m.SchemaVersion > 2 {
			return nil, fmt.Errorf("matrix: schema_version %d, want 1 or 2", m.SchemaVersion)
		}
		g.matrixRep = &m
		return &m, nil
	}
	// The matrix ran in parts, each with --only a few scenarios: their
	// scenarios together are the matrix, each scenario exactly once.
	var all matrixReport
	seen := map[string]string{}
	for i, p := range parts {
		if p == nil {
			return nil, fmt.Errorf("%w %q", errNoResult, partName("matrix", i+1, len(parts)))
		}
		var m matrixReport
		if err := g.decode(p.Name, 0, &m); err != nil {
			return nil, err
		}
		if m.SchemaVersion < 1 || m.SchemaVersion > 2 {
			return nil, fmt.Errorf("%s: schema_version %d, want 1 or 2", p.Name, m.SchemaVersion)
		}
		if i == 0 {
			all.SchemaVersion, all.Kernel = m.SchemaVersion, m.Kernel
		} else if m.Kernel != all.Kernel {
			return nil, fmt.Errorf("%s: kernel %q, the first part's %q", p.Name, m.Kernel, all.Kernel)
		}
		for _, s := range m.Scenarios {
			if other, ok := seen[s.Name]; ok {
				return nil, fmt.Errorf("scenario %s in both %s and %s", s.Name, other, p.Name)
			}
			seen[s.Name] = p.Name
		}
		all.Scenarios = append(all.Scenarios, m.Scenarios...)
	}
	g.matrixRep = &all
	return &all, nil
}

// seedRows returns the rows of `cowtrace run -- cow_seed`: the command,
// then its children in fork order (reader first, then writer).
func seedRows(g *guestRun) (rep *runReport, parent, reader, writer *runProcess, err error) {
	if rep, err = g.runReport("run-seed"); err != nil {
		return
	}
	if n := len(rep.Processes); n != 3 {
		err = fmt.Errorf("%d rows, want 3 (the command, its reader and its writer)", n)
		return
	}
	parent, reader, writer = &rep.Processes[0], &rep.Processes[1], &rep.Processes[2]
	return
}

func checkSeedTree(g *guestRun) error {
	rep, parent, reader, writer, err := seedRows(g)
	if err != nil {
		return err
	}
	var errs []error
	if c := *rep.Trace.ExitCode; c != 0 || rep.Trace.EndedBy != "exit" {
		errs = append(errs, fmt.Errorf("trace ended by %q with exit code %d, want exit and 0", rep.Trace.EndedBy, c))
	}
	if parent.Role != "command" || parent.Depth != 0 || parent.Comm != "cow_seed" {
		errs = append(errs, fmt.Errorf("first row %s role %q: want the command cow_seed at depth 0", parent, parent.Role))
	}
	for _, c := range []*runProcess{reader, writer} {
		if c.Role != "child" || c.Ppid != parent.PID || c.Depth != 1 || !c.Exited || c.Comm != "cow_seed" {
			errs = append(errs, fmt.Errorf("row %s role %q ppid %d exited %v: want an exited cow_seed child of %d", c, c.Role, c.Ppid, c.Exited, parent.PID))
		}
	}
	if rep.LostRecords != 0 {
		errs = append(errs, fmt.Errorf("%d records lost", rep.LostRecords))
	}
	return errors.Join(errs...)
}

func checkSeedMethod(g *guestRun) error {
	rep, err := g.runReport("run-seed")
	if err != nil {
		return err
	}
	errs := []error{wantCopyMethod(g, &rep.cowtraceReport)}
	if !g.Expect.Kprobes {
		return errors.Join(errs...)
	}
	if rep.KprobeMethod != "pmu" {
		errs = append(errs, fmt.Errorf("kprobe_method = %q, want pmu (auto on a kernel with the kprobe PMU)", rep.KprobeMethod))
	}
	for _, u := range rep.Unavailable {
		if strings.HasPrefix(u.What, "kprobe") {
			errs = append(errs, fmt.Errorf("unavailable: %s: %s", u.What, u.Why))
		}
	}
	return errors.Join(errs...)
}

// probe returns the row's hits on fn, which must have been counted.
func probe(p *runProcess, fn string) (int64, error) {
	n, ok := p.Probes[fn]
	if !ok {
		return 0, fmt.Errorf("%s: probes has no %q", p, fn)
	}
	return n, nil
}

// seedBlocks is what cow_seed's writer writes: one byte into each of 1000
// blocks of 102400 bytes.
const seedBlocks = 1000

// checkSeedWriter: the writer writes one byte into each of 1000 blocks its
// parent maps until the end, so each of those 1000 write-protect faults
// copies. On top come libc's own few (its stack, stdio): the reader takes
// the same ones, so writer wp_faults == 1000 + reader wp_faults exactly.
// Whether one of those few copies or reuses the page depends on whether
// the parent or the reader already took its own copy of that page (seen:
// 6.1 1003 copies for 1005 wp faults, 6.12 1005 for 1005), so the copies
// are asserted between 1000 and the wp faults. do_wp_page runs for every
// write-protect fault, also the kernel's own write of the child's tid
// (set_child_tid) in a system call, which cowtrace counts through
// exceptions:page_fault_kernel: do_wp_page == wp_faults.
func checkSeedWriter(g *guestRun) error {
	rep, _, r, w, err := seedRows(g)
	if err != nil {
		return err
	}
	n, err := copies(&w.cowtraceProcess)
	if err != nil {
		return err
	}
	var errs []error
	if g.Expect.Copies == methodKprobe {
		if hits, err := probe(w, rep.CopyRoutine); err != nil {
			errs = append(errs, err)
		} else if n != hits {
			errs = append(errs, fmt.Errorf("writer copies %d, %s hits %d", n, rep.CopyRoutine, hits))
		}
	}
	if w.WPFaults != seedBlocks+r.WPFaults {
		errs = append(errs, fmt.Errorf("writer wp_faults %d, reader %d: want %d + the reader's", w.WPFaults, r.WPFaults, seedBlocks))
	}
	if n < seedBlocks || n > w.WPFaults {
		errs = append(errs, fmt.Errorf("writer copies %d, wp_faults %d: want %d..wp_faults", n, w.WPFaults, seedBlocks))
	}
	if g.Expect.Kprobes {
		if wpHits, err := probe(w, "do_wp_page"); err != nil {
			errs = append(errs, err)
		} else if wpHits != w.WPFaults {
			errs = append(errs, fmt.Errorf("writer do_wp_page %d, wp_faults %d: want them equal", wpHits, w.WPFaults))
		}
	}
	return errors.Join(errs...)
}

// checkSeedReader: the reader only reads the shared blocks; fork copied the
// page tables, so the reads do not fault. All it can copy is what libc
// writes (its stack, stdio): a handful, never more than its wp faults.
func checkSeedReader(g *guestRun) error {
	_, _, r, _, err := seedRows(g)
	if err != nil {
		return err
	}
	n, err := copies(&r.cowtraceProcess)
	if err != nil {
		return err
	}
	if r.WPFaults > 8 || n > r.WPFaults {
		return fmt.Errorf("reader copies %d, wp_faults %d: want a handful (libc's own), copies <= wp_faults", n, r.WPFaults)
	}
	return nil
}

// checkSeedPerProcess: every row has its own hits of both probes, the
// copies column is the copy routine's hits (where they are the kernel's
// best method), and no row has more copies than write-protect handler
// calls.
func checkSeedPerProcess(g *guestRun) error {
	rep, err := g.runReport("run-seed")
	if err != nil {
		return err
	}
	var errs []error
	for i := range rep.Processes {
		if err := checkSeedProcess(rep, &rep.Processes[i], g.Expect.Copies == methodKprobe); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// checkSeedProcess checks one row of checkSeedPerProcess: do_wp_page runs
// for every copy and for every write-protect fault of a child; where byRoutine, the
// copies are also the copy routine's hits.
func checkSeedProcess(rep *runReport, p *runProcess, byRoutine bool) error {
	wp, err := probe(p, "do_wp_page")
	var hits int64
	if byRoutine {
		var errHits error
		hits, errHits = probe(p, rep.CopyRoutine)
		err = errors.Join(errHits, err)
	}
	if err != nil {
		return err
	}
	n, err := copies(&p.cowtraceProcess)
	switch {
	case err != nil:
		return err
	case byRoutine && n != hits:
		return fmt.Errorf("%s: copies %d, %s hits %d", p, n, rep.CopyRoutine, hits)
	case byRoutine && byStack(rep.Methods) && p.Depth > 0 && p.InferredCopies != nil && *p.InferredCopies != hits:
		// The forked children's copies are all write-protect ones. The
		// command's include first writes to its private file mappings
		// (do_cow_fault), which 6.1 copies with copy_user_highpage, not
		// the probed copy_mc_to_kernel: the stack method counts them on
		// every kernel, the kprobe only where the routine serves both.
		return fmt.Errorf("%s: %d copies by allocation stacks (%s), %s hits %d", p, *p.InferredCopies, rep.Methods["inferred_copies"], rep.CopyRoutine, hits)
	case n > wp:
		return fmt.Errorf("%s: %d copies but do_wp_page ran %d times", p, n, wp)
	case p.Depth > 0 && wp < p.WPFaults:
		// Only the children: the command writes its heap after they have
		// exited, when a transparent huge page it shared may be its own
		// again, and the kernel reuses it whole (do_huge_pmd_wp_page)
		// without do_wp_page: 12 calls for 14 faults on 7.3.
		return fmt.Errorf("%s: do_wp_page %d < wp_faults %d", p, wp, p.WPFaults)
	}
	return nil
}

// checkSeedFaults: with the software events only, the writer's page faults
// are its 1000 writes and the few of libc (the reader's as many, give or
// take those of its writes), the reader's a handful.
func checkSeedFaults(g *guestRun) error {
	_, _, r, w, err := seedRows(g)
	if err != nil {
		return err
	}
	if w.PageFaults == nil || r.PageFaults == nil {
		return fmt.Errorf("page_faults: writer %s, reader %s", fmtp(w.PageFaults), fmtp(r.PageFaults))
	}
	if *r.PageFaults > 64 || *w.PageFaults < seedBlocks || *w.PageFaults > seedBlocks+*r.PageFaults+8 {
		return fmt.Errorf("page faults: writer %d, reader %d: want the writer's 1000 + about the reader's, the reader's a handful", *w.PageFaults, *r.PageFaults)
	}
	return nil
}

// checkTreeTracefs: cow_tree 5 forks 5 children that live about a
// millisecond each; child k writes k region pages that its parent still
// maps. Exact attribution: each child's write-protect faults are k plus a
// baseline (libc), and its do_wp_page hits are its wp faults plus a
// kernel-mode part, both the same for every child; each of the k region
// writes copies.
func checkTreeTracefs(g *guestRun) error {
	rep, err := g.runReport("run-tree-tracefs")
	if err != nil {
		return err
	}
	var errs []error
	if rep.KprobeMethod != "tracefs" {
		errs = append(errs, fmt.Errorf("kprobe_method = %q, want tracefs", rep.KprobeMethod))
	}
	errs = append(errs, wantCopyMethod(g, &rep.cowtraceReport))
	if rep.LostRecords != 0 {
		errs = append(errs, fmt.Errorf("%d records lost", rep.LostRecords))
	}
	if len(rep.Processes) != 6 {
		return errors.Join(append(errs, fmt.Errorf("%d rows, want the command and 5 children", len(rep.Processes)))...)
	}
	root := &rep.Processes[0]
	var wpBase, kernBase int64
	for k, p := range rep.Processes[1:] {
		pages := int64(k + 1)
		if p.Ppid != root.PID || p.Depth != 1 || !p.Exited {
			errs = append(errs, fmt.Errorf("child %d: %s ppid %d exited %v", k+1, &p, p.Ppid, p.Exited))
			continue
		}
		wp, err1 := probe(&p, "do_wp_page")
		hits, err2 := copies(&p.cowtraceProcess)
		if err := errors.Join(err1, err2); err != nil {
			errs = append(errs, err)
			continue
		}
		if k == 0 {
			wpBase, kernBase = p.WPFaults-pages, wp-p.WPFaults
		} else if p.WPFaults-pages != wpBase || wp-p.WPFaults != kernBase {
			errs = append(errs, fmt.Errorf("child %d (%d pages): wp_faults %d, do_wp_page %d; child 1: pages + %d, wp_faults + %d",
				k+1, pages, p.WPFaults, wp, wpBase, kernBase))
		}
		if hits < pages || hits > wp {
			errs = append(errs, fmt.Errorf("child %d (%d pages): %d copies, %d do_wp_page: want pages..do_wp_page", k+1, pages, hits, wp))
		}
	}
	if wpBase < 0 || wpBase > 16 || kernBase < 0 || kernBase > 4 {
		errs = append(errs, fmt.Errorf("baseline per child: %d wp faults, %d kernel-mode do_wp_page: want a handful", wpBase, kernBase))
	}
	return errors.Join(errs...)
}

// byStack says whether the run told copies by their allocation's kernel
// stack, the exact method without kprobes (the pairing rule before it
// counted other allocations after reusing faults).
func byStack(methods map[string]string) bool {
	return strings.HasPrefix(methods["inferred_copies"], "callchain:")
}

// checkMatrix: every scenario ran with copies counted by the kernel's best
// method, and each one's stated outcome held (a finding, such as a kernel
// without the shared zero page, is not a failure). Where faults have no
// class, every expectation but those on fault classes held.
func checkMatrix(g *guestRun) error {
	m, err := g.matrix()
	if err != nil {
		return err
	}
	var errs []error
	if len(m.Scenarios) < 11 {
		errs = append(errs, fmt.Errorf("%d scenarios, want 11 or more", len(m.Scenarios)))
	}
	for _, s := range m.Scenarios {
		if s.Run == nil && s.NotApplicable != "" && s.Name == "thp" && !g.Boot.Info.THP {
			continue // a kernel without transparent huge pages
		}
		if s.Run == nil {
			errs = append(errs, fmt.Errorf("%s: no run (%s)", s.Name, s.NotApplicable))
			continue
		}
		if want, c := copiesPrefix[g.Expect.Copies], s.Run.Methods["copies"]; !strings.HasPrefix(c, want) {
			errs = append(errs, fmt.Errorf("%s: methods.copies = %q, want a %q prefix", s.Name, c, want))
		}
		// The method that needs no kprobe must count what the kprobe does.
		for _, p := range s.Run.Processes {
			if byStack(s.Run.Methods) && p.Copies != nil && p.InferredCopies != nil && *p.Copies != *p.InferredCopies {
				errs = append(errs, fmt.Errorf("%s: %s: %d kprobe copies, %d by %s", s.Name, p.Role, *p.Copies, *p.InferredCopies, s.Run.Methods["inferred_copies"]))
			}
		}
		if !scenarioHeld(g.Expect, s) {
			var why []string
			for _, e := range unheld(g.Expect, s) {
				why = append(why, e.Detail)
			}
			errs = append(errs, fmt.Errorf("%s: expected %s; did not hold: %s", s.Name, s.Outcome, strings.Join(why, "; ")))
		}
	}
	return errors.Join(errs...)
}

// unheld are the expectations of s that did not hold and that a kernel of
// e decides: where faults have no class, not those on fault classes.
func unheld(e expectation, s matrixScenario) []matrixExpectation {
	class, other := unheldByClass(s.Expectations)
	if byTracepoint(e) {
		return append(class, other...)
	}
	return other
}

// scenarioHeld says whether s's outcome held on a kernel of e that
// measures copies: as cowtrace says where faults have their class, and
// where they have none, as every expectation it can decide says.
func scenarioHeld(e expectation, s matrixScenario) bool {
	if byTracepoint(e) {
		return s.Held
	}
	return s.Run != nil && len(unheld(e, s)) == 0
}

// matrixLines summarise the matrix for the report: held or not, findings
// and expectations the run could not check; where faults have no class,
// which expectations on classes went unchecked.
func (g *guestRun) matrixLines() []string {
	m, err := g.matrix()
	if err != nil {
		return nil
	}
	if g.Expect.Copies == methodNone {
		decided, ok, undecided := countersOnlyExpectations(m)
		return append([]string{fmt.Sprintf("matrix: %d of %d expectations that the software events decide held (%d need what this kernel refuses)", ok, decided, undecided)}, scenarioLines(g.Expect, m)...)
	}
	held := 0
	zero := ""
	for _, s := range m.Scenarios {
		if scenarioHeld(g.Expect, s) {
			held++
		}
		if s.Name == "zero-page" && s.Held && s.Finding == "" {
			zero = "; zero-page: reads mapped the shared zero page, the writer copied nothing"
		}
	}
	if classlessCopies(g.Expect) {
		zero += " (without their expectations on fault classes, which need the x86 fault tracepoints)"
	}
	return append([]string{fmt.Sprintf("matrix: %d of %d scenarios held with %s copies%s", held, len(m.Scenarios), g.Expect.Copies, zero)}, scenarioLines(g.Expect, m)...)
}

func scenarioLines(e expectation, m *matrixReport) []string {
	classless := classlessCopies(e)
	var out []string
	for _, s := range m.Scenarios {
		class, _ := unheldByClass(s.Expectations)
		switch {
		case classless && s.Run == nil:
			out = append(out, fmt.Sprintf("matrix: %s not run: %s", s.Name, s.NotApplicable))
		case classless && !scenarioHeld(e, s), !classless && !s.Held:
			out = append(out, fmt.Sprintf("matrix: %s DIFFERS (expected %s)", s.Name, s.Outcome))
		case classless && len(class) > 0:
			var names []string
			for _, c := range class {
				names = append(names, c.Expect)
			}
			out = append(out, fmt.Sprintf("matrix: %s held but for %s: fault classes need the x86 fault tracepoints", s.Name, strings.Join(names, ", ")))
		}
		if s.Finding != "" {
			out = append(out, fmt.Sprintf("matrix finding: %s: %s", s.Name, s.Finding))
		}
		for _, x := range s.Expectations {
			if x.NotChecked != "" {
				out = append(out, fmt.Sprintf("matrix: %s: not checked: %s: %s", s.Name, x.Expect, x.NotChecked))
			}
		}
	}
	return out
}

// seedLine gives the numbers of `cowtrace run -- cow_seed` for the report.
func (g *guestRun) seedLine() []string {
	rep, _, r, w, err := seedRows(g)
	if err != nil {
		return nil
	}
	return []string{fmt.Sprintf("run seed (copies by %s): writer %s page faults, %s copies, %d wp faults, %d do_wp_page; reader %s page faults, %s copies, %d wp faults",
		shortMethod(rep.Methods["copies"]), fmtp(w.PageFaults), fmtp(w.Copies), w.WPFaults, w.Probes["do_wp_page"], fmtp(r.PageFaults), fmtp(r.Copies), r.WPFaults)}
}

// checkCountMode: --mode count counts write-protect faults in the kernel
// behind filters; the writer's must be the classified run's, in total and
// in the region.
func checkCountMode(g *guestRun) error {
	t, err := againstTouched(g, "count")
	if err != nil {
		return err
	}
	w, cw := t.w, t.tw
	var errs []error
	if m := t.rep.Methods["wp_faults"]; !strings.HasPrefix(m, "counter:") {
		errs = append(errs, fmt.Errorf("methods.wp_faults = %q: the count run did not count in the kernel", m))
	}
	if w.WPFaults != cw.WPFaults {
		errs = append(errs, fmt.Errorf("writer wp_faults: count %d, classify %d", w.WPFaults, cw.WPFaults))
	}
	if a, b := w.InRegion["wp"], cw.InRegion["wp"]; a != b {
		errs = append(errs, fmt.Errorf("writer in_region.wp: count %d, classify %d", a, b))
	}
	return errors.Join(errs...)
}

// undecidableRE matches the measures that the software events cannot
// take: copies, and write-protect faults and every other class of fault,
// which the page-fault event's address does not tell apart.
var undecidableRE = regexp.MustCompile(`\.(copies|inferred_copies|wp_faults)\b|\.in_region\.(wp|write_not_present|read|exec|inferred_copies|kernel_mode)\b`)

// countersOnlyExpectations counts the matrix's expectations that the
// software events decide, those of them that held, and the others.
func countersOnlyExpectations(m *matrixReport) (decided, held, undecided int) {
	for _, s := range m.Scenarios {
		for _, e := range s.Expectations {
			switch {
			case e.NotChecked != "", undecidableRE.MatchString(e.Expect):
				undecided++
			case e.Held:
				decided++
				held++
			default:
				decided++
			}
		}
	}
	return
}

// checkMatrixCountersOnly: where only the software events are permitted,
// every scenario runs, with the region split by address; every
// expectation they decide (page faults, the pagemap proof) holds, and the
// others, on copies and classes of fault, fail only for want of their
// measure.
func checkMatrixCountersOnly(g *guestRun) error {
	m, err := g.matrix()
	if err != nil {
		return err
	}
	var errs []error
	for _, s := range m.Scenarios {
		if s.Run == nil {
			if !(s.NotApplicable != "" && s.Name == "thp" && !g.Boot.Info.THP) {
				errs = append(errs, fmt.Errorf("%s: no run (%s)", s.Name, s.NotApplicable))
			}
			continue
		}
		if mth := s.Run.Methods["in_region"]; mth != cow.FaultAddrMethod {
			errs = append(errs, fmt.Errorf("%s: methods.in_region = %q, want %q", s.Name, mth, cow.FaultAddrMethod))
		}
		if c, ok := s.Run.Methods["copies"]; ok {
			errs = append(errs, fmt.Errorf("%s: methods.copies = %q where nothing permits copies", s.Name, c))
		}
		for _, e := range s.Expectations {
			if !e.Held && e.NotChecked == "" && !undecidableRE.MatchString(e.Expect) {
				errs = append(errs, fmt.Errorf("%s: %s", s.Name, e.Detail))
			}
		}
	}
	if decided, _, _ := countersOnlyExpectations(m); decided == 0 {
		errs = append(errs, errors.New("no expectation decided by the software events"))
	}
	return errors.Join(errs...)
}

// checkCountModeFaults: --mode count with the software events only counts
// the writer's faults as the classified run does.
func checkCountModeFaults(g *guestRun) error {
	t, err := againstTouched(g, "count")
	if err != nil {
		return err
	}
	w, cw := t.w, t.tw
	if w.PageFaults == nil || cw.PageFaults == nil || *w.PageFaults != *cw.PageFaults {
		return fmt.Errorf("writer page_faults: count %s, classify %s", fmtp(w.PageFaults), fmtp(cw.PageFaults))
	}
	return nil
}

// doctorReport holds the fields of `cowtrace doctor --format json` that the
// checks look at.
type doctorReport struct {
	Kernel      string `json:"kernel"`
	Lockdown    string `json:"lockdown"`
	KprobePMU   *int   `json:"kprobe_pmu_type"`
	THP         string `json:"thp"`
	Tracepoints []struct {
		Name string  `json:"name"`
		ID   *uint64 `json:"id"`
		Why  string  `json:"why"`
	} `json:"tracepoints"`
	Run *struct {
		KprobeMethod string            `json:"kprobe_method"`
		Methods      map[string]string `json:"methods"`
	} `json:"run"`
	RunError string `json:"run_error"`
	Measures []struct {
		Key    string `json:"key"`
		Method string `json:"method"`
		Better string `json:"better"`
	} `json:"measures"`
}

// checkDoctor: doctor tells what the guest sees: the same kernel, lockdown
// mode, kprobe PMU and THP as the guest's own look, the tracepoints the
// kernel lets root see, a run's copies by the kernel's best method, and,
// where a policy refuses a better one, the policy.
func checkDoctor(g *guestRun) error {
	var d doctorReport
	if err := g.decode("doctor-json", 0, &d); err != nil {
		return err
	}
	i := g.Boot.Info
	var errs []error
	if d.Kernel != i.Release {
		errs = append(errs, fmt.Errorf("kernel %q, the guest's %q", d.Kernel, i.Release))
	}
	if d.Lockdown != i.Lockdown {
		errs = append(errs, fmt.Errorf("lockdown %q, the guest's %q", d.Lockdown, i.Lockdown))
	}
	pmu := -1
	if d.KprobePMU != nil {
		pmu = *d.KprobePMU
	}
	if pmu != i.KprobePMUType {
		errs = append(errs, fmt.Errorf("kprobe_pmu_type %d, the guest's %d", pmu, i.KprobePMUType))
	}
	if (d.THP != "") != i.THP {
		errs = append(errs, fmt.Errorf("thp %q, the guest has THP: %v", d.THP, i.THP))
	}
	for _, tp := range d.Tracepoints {
		// Lockdown's confidentiality mode leaves tracefs empty; arm64 has
		// kmem:mm_page_alloc but no x86 fault tracepoints.
		want := g.Expect.Faults == faultsTracepoint
		if tp.Name == "kmem:mm_page_alloc" {
			want = g.Expect.Lockdown != "confidentiality"
		}
		if (tp.ID != nil) != want {
			errs = append(errs, fmt.Errorf("tracepoint %s: id %s (%s), want one: %v", tp.Name, fmtU(tp.ID), tp.Why, want))
		}
	}
	if len(d.Tracepoints) != 3 {
		errs = append(errs, fmt.Errorf("%d tracepoints, want 3", len(d.Tracepoints)))
	}
	if d.Run == nil {
		return errors.Join(append(errs, fmt.Errorf("no run: %s", d.RunError))...)
	}
	copies := ""
	for _, m := range d.Measures {
		if m.Key != "copies" {
			continue
		}
		copies = m.Method
		if g.Expect.Lockdown == "confidentiality" && !strings.Contains(m.Better, "lockdown") {
			errs = append(errs, fmt.Errorf("copies: better %q does not name the lockdown", m.Better))
		}
	}
	if want := copiesPrefix[g.Expect.Copies]; !strings.HasPrefix(copies, want) || (want == "") != (copies == "") {
		errs = append(errs, fmt.Errorf("copies by %q, want a %q prefix", copies, want))
	}
	return errors.Join(errs...)
}

func checkDoctorText(g *guestRun) error {
	r, err := g.result("doctor")
	if err != nil {
		return err
	}
	if r.Signaled != "" || r.ExitCode != 0 || !strings.HasPrefix(r.Stdout, "cowtrace doctor: kernel ") {
		return fmt.Errorf("%s, stdout %q", exitStatus(r), shorten(r.Stdout, 200))
	}
	return nil
}

func fmtU(p *uint64) string {
	if p == nil {
		return "null"
	}
	return fmt.Sprint(*p)
}

// doctorText is what `cowtrace doctor` printed in the guest, for the log.
func (g *guestRun) doctorText() string {
	if r := g.results["doctor"]; r != nil {
		return r.Stdout + r.Stderr
	}
	return ""
}
