package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/cowtrace/cowtrace/internal/cow"
	"github.com/cowtrace/cowtrace/vmtest/internal/guest"
)

// cowtraceReport holds the fields of `cowtrace --format json` that the
// checks look at; the rest of the document is ignored on purpose, so that
// adding fields to cowtrace does not break the harness.
type cowtraceReport struct {
	SchemaVersion    int               `json:"schema_version"`
	Kernel           string            `json:"kernel"`
	Scenario         string            `json:"scenario"`
	Blocks           int64             `json:"blocks"`
	Touched          bool              `json:"touched"`
	CopyRoutine      string            `json:"copy_routine"`
	CopyRoutineCheck string            `json:"copy_routine_check"`
	KprobeMethod     string            `json:"kprobe_method"`
	Methods          map[string]string `json:"methods"`
	Unavailable      []struct {
		What string `json:"what"`
		Why  string `json:"why"`
	} `json:"unavailable"`
	LostRecords int64             `json:"lost_records"`
	Processes   []cowtraceProcess `json:"processes"`
}

type cowtraceProcess struct {
	Role           string           `json:"role"`
	PID            int              `json:"pid"`
	PageFaults     *int64           `json:"page_faults"`
	WPFaults       int64            `json:"wp_faults"`
	Copies         *int64           `json:"copies"`
	InferredCopies *int64           `json:"inferred_copies"`
	InRegion       map[string]int64 `json:"in_region"`
	Probes         map[string]int64 `json:"probes"`
}

func (r *cowtraceReport) process(role string) (*cowtraceProcess, error) {
	for i := range r.Processes {
		if r.Processes[i].Role == role {
			return &r.Processes[i], nil
		}
	}
	return nil, fmt.Errorf("no %q process in the report", role)
}

// cowtraceCommand is one cowtrace run in every guest; checks refer to it by
// Name.
type cowtraceCommand struct {
	Name   string
	Args   []string
	Signal syscall.Signal // sent once cowtrace reports that it attached
	// NeedsProgs: the command runs a program of progsDir, so it is left
	// out when they could not be built.
	NeedsProgs bool
	// For says which boots run it, by what they offer (nil: every boot),
	// as check.For does.
	For     func(e expectation) bool
	Timeout time.Duration // 0: 90 s
}

// attachedLine is what `cowtrace --pause-after-attach` prints to stderr once
// every probe is in place.
const attachedLine = "cowtrace: attached"

var cowtraceCommands = []cowtraceCommand{
	{Name: "touched", Args: []string{"--format", "json"}},
	{Name: "no-touch", Args: []string{"--format", "json", "--no-touch"}},
	{Name: "blocks-5000", Args: []string{"--format", "json", "--blocks", "5000"}},
	{Name: "tracefs", Args: []string{"--format", "json", "--kprobe-method", "tracefs"}},
	{Name: "sigint", Args: []string{"--format", "json", "--kprobe-method", "tracefs", "--pause-after-attach"}, Signal: syscall.SIGINT, For: withKprobes},
	{Name: "sigterm", Args: []string{"--format", "json", "--kprobe-method", "tracefs", "--pause-after-attach"}, Signal: syscall.SIGTERM, For: withKprobes},
	{Name: "count", Args: []string{"--format", "json", "--mode", "count"}},
	{Name: "run-seed", Args: []string{"run", "--format", "json", "--cross-check", "--", progsDir + "/cow_seed"}, NeedsProgs: true},
	// The default run, and its twin that samples every fault.
	{Name: "run-seed-fast", Args: []string{"run", "--format", "json", "--", progsDir + "/cow_seed"}, NeedsProgs: true, For: counting},
	{Name: "run-tree", Args: []string{"run", "--format", "json", "--", progsDir + "/cow_tree", "5"}, NeedsProgs: true, For: withCopies},
	{Name: "run-by", Args: []string{"run", "--format", "json", "--by", "mapping", "--", progsDir + "/cow_tree", "5"}, NeedsProgs: true, For: withCopies},
	{Name: "run-tree-classify", Args: []string{"run", "--format", "json", "--mode", "classify", "--", progsDir + "/cow_tree", "5"}, NeedsProgs: true, For: withCopies},
	{Name: "run-tree-tracefs", Args: []string{"run", "--format", "json", "--kprobe-method", "tracefs", "--", progsDir + "/cow_tree", "5"}, NeedsProgs: true, For: withKprobes},
	{Name: "matrix", Args: []string{"matrix", "--format", "json"}, Timeout: 5 * time.Minute},
	// doctor's text goes to vmtest's output, its JSON to the checks.
	{Name: "doctor", Args: []string{"doctor"}},
	{Name: "doctor-json", Args: []string{"doctor", "--format", "json"}},
	// The method without kprobes, on a kernel that has them.
	{Name: "generic", Args: []string{"--format", "json", "--kprobe-method", "none"}, For: withoutKprobesToo},
	{Name: "generic-no-touch", Args: []string{"--format", "json", "--kprobe-method", "none", "--no-touch"}, For: withoutKprobesToo},
}

// errNoResult marks checks that could not look at anything because the
// guest never reported the command: one cause (the guest) shown once.
var errNoResult = errors.New("no result from the guest for")

// guestRun is everything known about one guest when the checks run.
type guestRun struct {
	Boot     *bootResult
	Manifest guest.Manifest
	results  map[string]*guest.Result
	reports  map[string]*cowtraceReport
	// runs and matrixRep are the decoded reports of runchecks.go's commands.
	runs      map[string]*runReport
	matrixRep *matrixReport
	// Guests are the guests the commands were spread over (none when the
	// guestRun was made from one boot); Boot is then all of them merged.
	Guests []*guestShard
	// parts are the results of the commands split over guests, in part
	// order (nil where a part never reported).
	parts map[string][]*guest.Result
	// Expect is what the kernel should offer; THPFromGuest takes whether
	// it has transparent huge pages from the guest instead.
	Expect       expectation
	THPFromGuest bool
}

// newGuestRun views one boot; its kernel is taken for one with kprobes
// unless Expect is set.
func newGuestRun(b *bootResult, m guest.Manifest) *guestRun {
	g := &guestRun{Boot: b, Manifest: m, results: map[string]*guest.Result{}, reports: map[string]*cowtraceReport{}, runs: map[string]*runReport{},
		Expect: kprobes}
	for _, r := range b.Results {
		g.results[r.Name] = r
	}
	return g
}

func (g *guestRun) result(name string) (*guest.Result, error) {
	r := g.results[name]
	if r == nil {
		return nil, fmt.Errorf("%w %q", errNoResult, name)
	}
	if r.Err != "" {
		return r, fmt.Errorf("%s: %s", name, r.Err)
	}
	if r.TimedOut {
		return r, fmt.Errorf("%s: timed out after %v", name, r.Duration.Round(1e6))
	}
	return r, nil
}

// report returns the decoded JSON of a cowtrace run that must have
// succeeded.
func (g *guestRun) report(name string) (*cowtraceReport, error) {
	if rep := g.reports[name]; rep != nil {
		return rep, nil
	}
	r, err := g.result(name)
	if err != nil {
		return nil, err
	}
	if r.Signaled != "" || r.ExitCode != 0 {
		return nil, fmt.Errorf("%s: %s", name, exitStatus(r))
	}
	var rep cowtraceReport
	if err := json.Unmarshal([]byte(r.Stdout), &rep); err != nil {
		return nil, fmt.Errorf("%s: stdout is not the JSON report: %w", name, err)
	}
	if rep.SchemaVersion < 1 || rep.SchemaVersion > 2 {
		return nil, fmt.Errorf("%s: schema_version %d, want 1 or 2", name, rep.SchemaVersion)
	}
	g.reports[name] = &rep
	return &rep, nil
}

// check is one assertion about a guest. Cmd names the command whose output
// is shown when the check fails ("" for none). For says which kernels it
// is for, by what they should offer (nil: every kernel): a kernel is checked
// for its own best method, never held to another's.
type check struct {
	Name string
	Cmd  string
	Fn   func(g *guestRun) error
	For  func(e expectation) bool
}

func withKprobes(e expectation) bool  { return e.Kprobes }
func withCopies(e expectation) bool   { return e.Copies != methodNone }
func countersOnly(e expectation) bool { return e.Copies == methodNone }

// byTracepoint: every fault has its class, from the x86 error code of
// exceptions:page_fault_*.
func byTracepoint(e expectation) bool { return e.Faults == faultsTracepoint }

// classlessCopies: copies are measured, but faults have no class (no
// fault tracepoint): only whether they are in the region.
func classlessCopies(e expectation) bool { return e.Copies != methodNone && e.Faults == faultsAddress }

// wpByProbe: write-protect faults are do_wp_page's kprobe hits, there
// being no fault class to count them by.
func wpByProbe(e expectation) bool { return e.Kprobes && e.Faults == faultsAddress }

func withoutKprobesToo(e expectation) bool { return e.WithoutKprobesToo }

// counting: run's default counts in the kernel, each task's counts sampled.
func counting(e expectation) bool {
	return e.CountMethod == countExitTracepoint || e.CountMethod == countExitSyscall
}

func declaredCountMethod(e expectation) bool { return e.CountMethod != "" }

func both(a, b func(expectation) bool) func(expectation) bool {
	return func(e expectation) bool { return a(e) && b(e) }
}

// checksFor are the checks of a kernel that should offer e.
func checksFor(all []check, e expectation) []check {
	var out []check
	for _, c := range all {
		if c.For == nil || c.For(e) {
			out = append(out, c)
		}
	}
	return out
}

type checkResult struct {
	Name    string `json:"name"`
	Cmd     string `json:"cmd,omitempty"`
	Skipped string `json:"skipped,omitempty"`
	Err     string `json:"err,omitempty"`
}

func (c checkResult) failed() bool { return c.Skipped == "" && c.Err != "" }

// checks are every assertion vmtest makes about a boot, each for the boots
// whose expectation it names; a kernel's are checksFor it. The checks of
// the test binaries are added to them per boot (testBinaryCheck).
var checks = []check{
	{Name: "guest finished and sent every result", Fn: checkGuestDone},
	{Name: "kernel offers what vmtest expects of it", Fn: checkKernelOffers},

	// The experiment: copies, and the faults of the region by their class
	// or, where they have none, by do_wp_page.
	{Name: "touched: copies by the kernel's best method", Cmd: "touched", Fn: checkCopyMethod, For: withCopies},
	{Name: "touched: writer copies == blocks", Cmd: "touched", Fn: checkWriterCopiesBlocks, For: withCopies},
	{Name: "touched: reader copies == 0", Cmd: "touched", Fn: checkReaderNoCopies, For: withCopies},
	{Name: "touched: parent copies present", Cmd: "touched", Fn: checkParentCopies, For: withCopies},
	{Name: "touched: writer do_wp_page == wp_faults", Cmd: "touched", Fn: checkDoWPPage, For: both(withKprobes, byTracepoint)},
	{Name: "touched: faults by address: writer in-region == blocks, reader 0", Cmd: "touched", Fn: checkInRegionByAddress("touched", 1000, 0), For: classlessCopies},
	{Name: "touched: writer wp_faults (do_wp_page) == blocks", Cmd: "touched", Fn: checkWPByProbe("touched", 1000), For: wpByProbe},
	{Name: "touched: inferred copies == copies", Cmd: "touched", Fn: checkInferred, For: withCopies},
	{Name: "no-touch: writer copies nothing", Cmd: "no-touch", Fn: checkNoTouch, For: both(withCopies, byTracepoint)},
	{Name: "no-touch: writer copies nothing, no do_wp_page; in-region faults == blocks for both", Cmd: "no-touch", Fn: checkNoTouchByAddress, For: both(classlessCopies, wpByProbe)},
	{Name: "blocks 5000: writer copies 5000", Cmd: "blocks-5000", Fn: checkBlocks5000, For: both(withCopies, byTracepoint)},
	{Name: "blocks 5000: writer copies, do_wp_page and in-region faults 5000", Cmd: "blocks-5000", Fn: checkBlocks5000ByAddress, For: both(classlessCopies, wpByProbe)},
	{Name: "tracefs kprobes agree with the PMU", Cmd: "tracefs", Fn: checkTracefsAgrees, For: withKprobes},
	{Name: "SIGINT mid-run exits clean, no kprobe left", Cmd: "sigint", Fn: checkSignalClean("sigint"), For: withKprobes},
	{Name: "SIGTERM mid-run exits clean, no kprobe left", Cmd: "sigterm", Fn: checkSignalClean("sigterm"), For: withKprobes},
	{Name: "no run leaves kprobes or tracefs mounts", Fn: checkNoLeftovers},

	// The same kernel without kprobes, stood in for by --kprobe-method none.
	{Name: "no kprobes (--kprobe-method none): writer copies == blocks, reader 0, by allocation stacks", Cmd: "generic", Fn: checkGeneric("generic", 1000), For: withoutKprobesToo},
	{Name: "no kprobes: writer in-region faults == blocks, reader 0", Cmd: "generic", Fn: checkInRegionByAddress("generic", 1000, 0), For: both(withoutKprobesToo, classlessCopies)},
	{Name: "no kprobes: copies == the kprobe run's, process by process", Cmd: "generic", Fn: checkGenericAgrees, For: withoutKprobesToo},
	{Name: "no-touch, no kprobes: writer copies nothing", Cmd: "generic-no-touch", Fn: checkGeneric("generic-no-touch", 0), For: withoutKprobesToo},

	// A kernel that permits only the software events: what they measure
	// must hold exactly, and what they cannot must be absent, not 0.
	{Name: "touched: software events only; copies and wp faults not measured", Cmd: "touched", Fn: checkCountersOnlyMethods, For: countersOnly},
	{Name: "touched: writer faults once per block in the region, reader never", Cmd: "touched", Fn: checkRegionFaults("touched", 1000, 0), For: countersOnly},
	{Name: "no-touch: writer and reader fault once per block in the region", Cmd: "no-touch", Fn: checkRegionFaults("no-touch", 1000, 1000), For: countersOnly},
	{Name: "blocks 5000: writer faults 5000 times in the region", Cmd: "blocks-5000", Fn: checkRegionFaults("blocks-5000", 5000, 0), For: countersOnly},
	{Name: "tracefs route refused in one line, nothing left", Cmd: "tracefs", Fn: checkTracefsRefused, For: countersOnly},
	{Name: "unavailable names the lockdown for kprobes and tracepoints", Cmd: "touched", Fn: checkPolicyNamed, For: func(e expectation) bool { return e.Lockdown != "none" }},

	// cowtrace run, the matrix and count mode (runchecks.go).
	{Name: "run seed: parent, reader, writer traced to the end", Cmd: "run-seed", Fn: checkSeedTree},
	{Name: "run seed: copies by the kernel's best method", Cmd: "run-seed", Fn: checkSeedMethod, For: withCopies},
	{Name: "run seed: writer 1000 <= copies <= wp faults == 1000 + reader's", Cmd: "run-seed", Fn: checkSeedWriter, For: withCopies},
	{Name: "run seed: reader copies <= its libc wp faults (<= 8)", Cmd: "run-seed", Fn: checkSeedReader, For: withCopies},
	{Name: "run seed: kprobe hits attributed per process", Cmd: "run-seed", Fn: checkSeedPerProcess, For: withKprobes},
	{Name: "run seed: writer faults once per block and a handful, reader a handful", Cmd: "run-seed", Fn: checkSeedFaults, For: countersOnly},
	{Name: "run tree (tracefs): exact per-child attribution", Cmd: "run-tree-tracefs", Fn: checkTreeTracefs, For: withKprobes},
	{Name: "run tree: the kernel's count method, complete, each child as classify mode counts it", Cmd: "run-tree", Fn: checkTreeModes, For: withCopies},
	{Name: "run --by mapping: each child's copies placed, its pages among them", Cmd: "run-by", Fn: checkRunBy, For: withCopies},
	{Name: "run tree (classify): complete, each child its pages on a common baseline", Cmd: "run-tree-classify", Fn: checkTreeClassify, For: withCopies},
	{Name: "run seed (count mode, kprobes): a few records per process, none per copy", Cmd: "run-seed-fast", Fn: checkFewRecords, For: both(counting, withKprobes)},
	{Name: "doctor: the per-task count method this kernel gets", Cmd: "doctor-json", Fn: checkDoctorCountMethod, For: declaredCountMethod},
	{Name: "run tree (tracefs): no kprobe or mount left", Cmd: "run-tree-tracefs", Fn: func(g *guestRun) error { return leftovers(g, "run-tree-tracefs") }, For: withKprobes},
	{Name: "matrix: every scenario's outcome holds with the best copies method", Cmd: "matrix", Fn: checkMatrix, For: withCopies},
	{Name: "matrix: every outcome the software events can decide holds", Cmd: "matrix", Fn: checkMatrixCountersOnly, For: countersOnly},
	{Name: "count mode: writer wp faults == classify mode's", Cmd: "count", Fn: checkCountMode, For: byTracepoint},
	{Name: "count mode: writer page faults == classify mode's", Cmd: "count", Fn: checkCountModeFaults, For: countersOnly},
	{Name: "count mode: kprobe copies; says its fault counters need the x86 tracepoint", Cmd: "count", Fn: checkCountClassless, For: classlessCopies},

	// cowtrace doctor (runchecks.go).
	{Name: "doctor: names this kernel's lockdown, kprobe PMU, tracepoints and best copies method", Cmd: "doctor-json", Fn: checkDoctor},
	{Name: "doctor: the text form reports", Cmd: "doctor", Fn: checkDoctorText},
}

func checkGuestDone(g *guestRun) error {
	if len(g.Guests) == 0 {
		return bootDone(g.Boot, g.Manifest, g.results, "")
	}
	var errs []error
	for _, s := range g.Guests {
		errs = append(errs, bootDone(s.Boot, s.Manifest, g.results, s.label()+": "))
	}
	return errors.Join(errs...)
}

// bootDone checks that one guest ran to the end and reported every command
// of its manifest; prefix names the guest among several.
func bootDone(b *bootResult, m guest.Manifest, results map[string]*guest.Result, prefix string) error {
	var errs []error
	if b.QemuErr != nil {
		errs = append(errs, fmt.Errorf("%sqemu: %w", prefix, b.QemuErr))
	}
	if b.TimedOut {
		errs = append(errs, fmt.Errorf("%sguest did not power off within %v", prefix, b.Elapsed.Round(1e9)))
	}
	if b.Info == nil {
		errs = append(errs, fmt.Errorf("%sno info frame from guestinit (did /init start?)", prefix))
	}
	if !b.Done {
		errs = append(errs, fmt.Errorf("%sno done marker from guestinit", prefix))
	} else if b.Sent != len(b.Results) {
		errs = append(errs, fmt.Errorf("%sguest sent %d results, %d arrived", prefix, b.Sent, len(b.Results)))
	}
	for _, c := range m.Commands {
		if results[c.Name] == nil {
			errs = append(errs, fmt.Errorf("%sno result for %q", prefix, c.Name))
		}
	}
	for _, f := range b.Frames {
		errs = append(errs, fmt.Errorf("%sframe: %s", prefix, f))
	}
	if b.Info != nil && len(b.Info.Errors) > 0 {
		errs = append(errs, fmt.Errorf("%sguestinit: %s", prefix, strings.Join(b.Info.Errors, "; ")))
	}
	return errors.Join(errs...)
}

// checkKernelOffers: the guest booted the kernel its expectation is
// about: every guest the same release, the lockdown mode and transparent
// huge pages as declared, the kprobe routes present where they are to be
// used, and tracefs empty where lockdown hides it.
func checkKernelOffers(g *guestRun) error {
	i := g.Boot.Info
	if i == nil {
		return errors.New("no info from the guest")
	}
	var errs []error
	for _, s := range g.Guests {
		if si := s.Boot.Info; si != nil && si.Release != i.Release {
			errs = append(errs, fmt.Errorf("%s booted %s, another guest %s", s.label(), si.Release, i.Release))
		}
	}
	e := g.Expect
	if lockdown := cmpOr(i.Lockdown, "none"); lockdown != e.Lockdown {
		errs = append(errs, fmt.Errorf("lockdown %q, want %q (kernel command line %q)", i.Lockdown, e.Lockdown, i.Cmdline))
	}
	if !g.THPFromGuest && i.THP != e.THP {
		errs = append(errs, fmt.Errorf("transparent huge pages: %v, want %v", i.THP, e.THP))
	}
	switch {
	case e.Kprobes && i.KprobePMUType < 0:
		errs = append(errs, errors.New("no /sys/bus/event_source/devices/kprobe/type"))
	case e.Kprobes && !i.KprobeEvents:
		errs = append(errs, fmt.Errorf("tracefs has no kprobe_events %s", i.TracefsErr))
	case e.Lockdown == "confidentiality" && i.KprobeEvents:
		errs = append(errs, errors.New("lockdown=confidentiality, yet tracefs shows kprobe_events"))
	}
	return errors.Join(errs...)
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// copiesPrefix is how a report's methods.copies starts with each best
// method.
var copiesPrefix = map[string]string{methodKprobe: "kprobe:", methodCallchain: "callchain:"}

// wantCopyMethod checks a run's copies method against the kernel's best.
func wantCopyMethod(g *guestRun, rep *cowtraceReport) error {
	want := copiesPrefix[g.Expect.Copies]
	if m := rep.Methods["copies"]; !strings.HasPrefix(m, want) {
		return fmt.Errorf("methods.copies = %q, want the best this kernel offers, a %q prefix (copy routine check: %s)", m, want, cmpOr(rep.CopyRoutineCheck, "none"))
	}
	if want == "kprobe:" && rep.CopyRoutine == "" {
		return errors.New("copy_routine is empty")
	}
	return nil
}

func checkCopyMethod(g *guestRun) error {
	rep, err := g.report("touched")
	if err != nil {
		return err
	}
	return wantCopyMethod(g, rep)
}

func writerReader(g *guestRun, name string) (rep *cowtraceReport, w, r *cowtraceProcess, err error) {
	if rep, err = g.report(name); err != nil {
		return
	}
	if w, err = rep.process("writer"); err != nil {
		return
	}
	r, err = rep.process("reader")
	return
}

// perRole holds the writer and the reader of run name to f, each with its
// own want.
func perRole(g *guestRun, name string, writer, reader int64, f func(rep *cowtraceReport, p *cowtraceProcess, want int64) []error) error {
	rep, w, r, err := writerReader(g, name)
	if err != nil {
		return err
	}
	return errors.Join(append(f(rep, w, writer), f(rep, r, reader)...)...)
}

// twoRuns are the writer and reader of a run and of the touched run it is
// compared with.
type twoRuns struct {
	rep    *cowtraceReport
	w, r   *cowtraceProcess
	tw, tr *cowtraceProcess
}

func againstTouched(g *guestRun, name string) (*twoRuns, error) {
	rep, w, r, err := writerReader(g, name)
	if err != nil {
		return nil, err
	}
	_, tw, tr, err := writerReader(g, "touched")
	if err != nil {
		return nil, fmt.Errorf("nothing to compare with: %w", err)
	}
	return &twoRuns{rep: rep, w: w, r: r, tw: tw, tr: tr}, nil
}

// sameCopies: the writer and the reader copied as many pages in both
// runs, told in the run by how and in the touched run by touchedHow.
func (t *twoRuns) sameCopies(how, touchedHow string) []error {
	var errs []error
	for _, pair := range [][2]*cowtraceProcess{{t.w, t.tw}, {t.r, t.tr}} {
		a, err1 := copies(pair[0])
		b, err2 := copies(pair[1])
		if err := errors.Join(err1, err2); err != nil {
			errs = append(errs, err)
		} else if a != b {
			errs = append(errs, fmt.Errorf("%s copies: %s %d, %s %d", pair[0].Role, how, a, touchedHow, b))
		}
	}
	return errs
}

func copies(p *cowtraceProcess) (int64, error) {
	if p.Copies == nil {
		return 0, fmt.Errorf("%s copies is null", p.Role)
	}
	return *p.Copies, nil
}

func wantCopies(p *cowtraceProcess, want int64) error {
	n, err := copies(p)
	if err != nil {
		return err
	}
	if n != want {
		return fmt.Errorf("%s copies = %d, want %d", p.Role, n, want)
	}
	return nil
}

func checkWriterCopiesBlocks(g *guestRun) error {
	rep, w, _, err := writerReader(g, "touched")
	if err != nil {
		return err
	}
	if rep.Blocks != 1000 {
		return fmt.Errorf("blocks = %d, want the default 1000", rep.Blocks)
	}
	return wantCopies(w, rep.Blocks)
}

func checkReaderNoCopies(g *guestRun) error {
	_, _, r, err := writerReader(g, "touched")
	if err != nil {
		return err
	}
	return wantCopies(r, 0)
}

func checkParentCopies(g *guestRun) error {
	rep, err := g.report("touched")
	if err != nil {
		return err
	}
	p, err := rep.process("parent")
	if err != nil {
		return err
	}
	_, err = copies(p)
	return err
}

func checkDoWPPage(g *guestRun) error {
	_, w, _, err := writerReader(g, "touched")
	if err != nil {
		return err
	}
	n, ok := w.Probes["do_wp_page"]
	if !ok {
		return errors.New(`writer probes has no "do_wp_page"`)
	}
	if n != w.WPFaults {
		return fmt.Errorf("writer do_wp_page = %d, wp_faults = %d", n, w.WPFaults)
	}
	return nil
}

func checkInferred(g *guestRun) error {
	rep, err := g.report("touched")
	if err != nil {
		return err
	}
	var errs []error
	for _, p := range rep.Processes {
		switch {
		case p.Copies == nil || p.InferredCopies == nil:
			errs = append(errs, fmt.Errorf("%s: copies %v, inferred_copies %v", p.Role, fmtp(p.Copies), fmtp(p.InferredCopies)))
		case *p.Copies != *p.InferredCopies:
			errs = append(errs, fmt.Errorf("%s: copies %d, inferred_copies %d", p.Role, *p.Copies, *p.InferredCopies))
		}
	}
	return errors.Join(errs...)
}

func fmtp(p *int64) string {
	if p == nil {
		return "null"
	}
	return fmt.Sprint(*p)
}

func checkNoTouch(g *guestRun) error {
	_, w, _, err := writerReader(g, "no-touch")
	if err != nil {
		return err
	}
	return errors.Join(wantCopies(w, 0), wantInRegionWP(w, 0))
}

func wantInRegionWP(p *cowtraceProcess, want int64) error {
	n, ok := p.InRegion["wp"]
	if !ok {
		return fmt.Errorf("%s in_region has no wp", p.Role)
	}
	if n != want {
		return fmt.Errorf("%s in_region.wp = %d, want %d", p.Role, n, want)
	}
	return nil
}

func checkBlocks5000(g *guestRun) error {
	_, w, _, err := writerReader(g, "blocks-5000")
	if err != nil {
		return err
	}
	return errors.Join(wantCopies(w, 5000), wantInRegionWP(w, 5000))
}

func checkTracefsAgrees(g *guestRun) error {
	t, err := againstTouched(g, "tracefs")
	if err != nil {
		return err
	}
	var errs []error
	if t.rep.KprobeMethod != "tracefs" {
		errs = append(errs, fmt.Errorf("kprobe_method = %q, want tracefs", t.rep.KprobeMethod))
	}
	errs = append(errs, t.sameCopies("tracefs", "pmu")...)
	errs = append(errs, leftovers(g, "tracefs"))
	return errors.Join(errs...)
}

// panicRE finds the marks of a Go crash: a panic, a fatal runtime error, or
// a goroutine dump.
var panicRE = regexp.MustCompile(`(?m)^(panic: |fatal error: |goroutine \d+ \[|SIGSEGV|SIGBUS)`)

// cleanSignalExits are the exit codes accepted after a signal: 0 (stopped
// and reported) and the shell convention 128+signo (stopped, said so).
// Being killed by the signal itself is not clean: it means no handler ran,
// and tracefs kprobes would outlive the process.
var cleanSignalExits = map[int]bool{0: true, 128 + int(syscall.SIGINT): true, 128 + int(syscall.SIGTERM): true}

func checkSignalClean(name string) func(g *guestRun) error {
	return func(g *guestRun) error {
		r, err := g.result(name)
		if err != nil {
			return err
		}
		var errs []error
		if !r.WaitLineSeen {
			errs = append(errs, fmt.Errorf("never printed %q on stderr, so no signal was sent", attachedLine))
		} else if r.SignalSent == "" {
			errs = append(errs, errors.New("the signal could not be sent"))
		}
		if r.Signaled != "" {
			errs = append(errs, fmt.Errorf("killed by %s: no handler ran", r.Signaled))
		} else if !cleanSignalExits[r.ExitCode] {
			errs = append(errs, fmt.Errorf("exit code %d (want 0, 130 or 143)", r.ExitCode))
		}
		if panicRE.MatchString(r.Stderr) {
			errs = append(errs, errors.New("stderr shows a Go panic or crash"))
		}
		errs = append(errs, leftovers(g, name))
		return errors.Join(errs...)
	}
}

// leftovers reports kprobes or tracefs mounts that a run left behind.
func leftovers(g *guestRun, name string) error {
	r := g.results[name]
	if r == nil {
		return fmt.Errorf("%w %q", errNoResult, name)
	}
	t := r.Tracefs
	if t == nil {
		return fmt.Errorf("%s: tracefs was not inspected after the run", name)
	}
	var errs []error
	// Where lockdown hides tracefs there is no kprobe_events to read,
	// nor anything a run could have left in it.
	if t.Err != "" && (g.Expect.Lockdown != "confidentiality" || !strings.Contains(t.Err, "kprobe_events")) {
		errs = append(errs, fmt.Errorf("%s: inspecting tracefs: %s", name, t.Err))
	}
	if s := strings.TrimSpace(t.KprobeEvents); s != "" {
		errs = append(errs, fmt.Errorf("%s: kprobe_events not empty afterwards:\n%s", name, s))
	}
	if len(t.StillMounted) > 0 {
		errs = append(errs, fmt.Errorf("%s: tracefs left mounted on %s", name, strings.Join(t.StillMounted, ", ")))
	}
	return errors.Join(errs...)
}

func checkNoLeftovers(g *guestRun) error {
	var errs []error
	for _, c := range g.Manifest.Commands {
		if c.InspectTracefs {
			errs = append(errs, leftovers(g, c.Name))
		}
	}
	return errors.Join(errs...)
}

func exitStatus(r *guest.Result) string {
	if r.Signaled != "" {
		return "killed by " + r.Signaled
	}
	return fmt.Sprintf("exit %d", r.ExitCode)
}

// testLineRE matches the per-test verdict lines of `go test -v`.
var testLineRE = regexp.MustCompile(`(?m)^\s*--- (PASS|SKIP|FAIL): `)

type testCounts struct{ Pass, Skip, Fail int }

func countTests(out string) testCounts {
	var c testCounts
	for _, m := range testLineRE.FindAllStringSubmatch(out, -1) {
		switch m[1] {
		case "PASS":
			c.Pass++
		case "SKIP":
			c.Skip++
		case "FAIL":
			c.Fail++
		}
	}
	return c
}

func testBinaryCheck(name string) check {
	return check{Name: "test binary " + name, Cmd: name, Fn: func(g *guestRun) error {
		r, err := g.result(name)
		if err != nil {
			return err
		}
		if r.Signaled != "" || r.ExitCode != 0 {
			c := countTests(r.Stdout)
			return fmt.Errorf("%s (%d passed, %d failed, %d skipped)", exitStatus(r), c.Pass, c.Fail, c.Skip)
		}
		return nil
	}}
}

// runChecks runs every check; those whose command is not in the manifest,
// or whose name skip matches, are skipped, with the reason. The caller
// picks the kernel's checks (checksFor).
func runChecks(g *guestRun, checks []check, skip *regexp.Regexp) []checkResult {
	inManifest := map[string]bool{}
	for _, c := range g.Manifest.Commands {
		inManifest[c.Name] = true
	}
	var out []checkResult
	for _, c := range checks {
		cr := checkResult{Name: c.Name, Cmd: c.Cmd}
		if skip != nil && skip.MatchString(c.Name) {
			cr.Skipped = "skipped by -skip"
		} else if c.Cmd != "" && !inManifest[c.Cmd] {
			cr.Skipped = fmt.Sprintf("%q was not run", c.Cmd)
		} else if err := c.Fn(g); err != nil {
			cr.Err = err.Error()
		}
		out = append(out, cr)
	}
	return out
}

// checkCountersOnlyMethods: where only the software events are permitted,
// the run measures with them and says so: no copies, no write-protect
// faults (null, never 0), the region split by the faults' addresses.
func checkCountersOnlyMethods(g *guestRun) error {
	rep, err := g.report("touched")
	if err != nil {
		return err
	}
	var errs []error
	for _, k := range []string{"copies", "inferred_copies", "wp_faults"} {
		if m, ok := rep.Methods[k]; ok {
			errs = append(errs, fmt.Errorf("methods.%s = %q: not permitted here, yet claimed", k, m))
		}
	}
	if m := rep.Methods["in_region"]; m != cow.FaultAddrMethod {
		errs = append(errs, fmt.Errorf("methods.in_region = %q, want %q", m, cow.FaultAddrMethod))
	}
	for _, p := range rep.Processes {
		if p.Copies != nil || p.InferredCopies != nil {
			errs = append(errs, fmt.Errorf("%s: copies %s, inferred_copies %s: want null", p.Role, fmtp(p.Copies), fmtp(p.InferredCopies)))
		}
	}
	return errors.Join(errs...)
}

// checkRegionFaults: the software page-fault event, sampled with its
// address, counts the writer's and the reader's faults in the region
// exactly (all their faults after the gate are there).
func checkRegionFaults(name string, writer, reader int64) func(g *guestRun) error {
	return func(g *guestRun) error {
		return perRole(g, name, writer, reader, func(_ *cowtraceReport, p *cowtraceProcess, want int64) (errs []error) {
			if n := p.InRegion["unclassified"]; n != want {
				errs = append(errs, fmt.Errorf("%s in_region.unclassified = %d, want %d", p.Role, n, want))
			}
			if p.PageFaults == nil || *p.PageFaults != want {
				errs = append(errs, fmt.Errorf("%s page_faults = %s, want %d", p.Role, fmtp(p.PageFaults), want))
			}
			return errs
		})
	}
}

// checkTracefsRefused: --kprobe-method tracefs where the kernel permits no
// kprobe is a failure of one line, with nothing left behind.
func checkTracefsRefused(g *guestRun) error {
	r, err := g.result("tracefs")
	if err != nil {
		return err
	}
	var errs []error
	if r.Signaled != "" || r.ExitCode != 1 {
		errs = append(errs, fmt.Errorf("%s, want exit 1", exitStatus(r)))
	}
	if lines := strings.Split(strings.TrimSpace(r.Stderr), "\n"); len(lines) != 1 || !strings.HasPrefix(lines[0], "cowtrace: ") {
		errs = append(errs, fmt.Errorf("stderr %q: want one line starting \"cowtrace: \"", r.Stderr))
	}
	if panicRE.MatchString(r.Stderr) {
		errs = append(errs, errors.New("stderr shows a Go panic or crash"))
	}
	return errors.Join(append(errs, leftovers(g, "tracefs"))...)
}

// checkPolicyNamed: where a policy refuses what the kernel has, the run
// says it is the policy: every reason for kprobes and for tracepoints
// being unavailable names the lockdown, as does the refused tracefs route.
func checkPolicyNamed(g *guestRun) error {
	rep, err := g.report("touched")
	if err != nil {
		return err
	}
	var errs []error
	groups := map[string]int{}
	for _, u := range rep.Unavailable {
		group := ""
		switch {
		case strings.HasPrefix(u.What, "kprobe"), u.What == "copy routine":
			group = "kprobes"
		case strings.HasPrefix(u.What, "tracepoint"), u.What == "tracefs":
			group = "tracepoints"
		default:
			continue
		}
		groups[group]++
		if !strings.Contains(u.Why, "lockdown") {
			errs = append(errs, fmt.Errorf("unavailable %s: %q does not name the lockdown", u.What, shorten(u.Why, 200)))
		}
	}
	for _, group := range []string{"kprobes", "tracepoints"} {
		if groups[group] == 0 {
			errs = append(errs, fmt.Errorf("unavailable says nothing about %s", group))
		}
	}
	if r, err := g.result("tracefs"); err == nil && !strings.Contains(r.Stderr, "lockdown") {
		errs = append(errs, fmt.Errorf("--kprobe-method tracefs: %q does not name the lockdown", shorten(strings.TrimSpace(r.Stderr), 200)))
	}
	return errors.Join(errs...)
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
