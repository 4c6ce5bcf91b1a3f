// Package scenario names the variants of cowtrace's fork experiment. Each
// scenario is a workload.Config with a name, a sentence saying what it does,
// the outcome it should show and why the kernel behaves so, and that outcome
// as expectations (package report's --expect syntax) that the matrix and the
// tests check on every run.
//
// Expectations are written against the report's "copies" column, which is
// the kprobe count of the kernel's copy routine where kprobes exist and the
// tracepoint inference elsewhere, and against fault classes in the region,
// which the tracepoint measures on every kernel: the same scenario checks on
// any kernel, whichever method it has.
package scenario

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/cowtrace/cowtrace/internal/cow"
	"github.com/cowtrace/cowtrace/internal/workload"
	"github.com/cowtrace/cowtrace/report"
	"github.com/cowtrace/cowtrace/report/expect"
)

// Scenario is one named variant of the experiment.
type Scenario struct {
	Name    string
	Does    string // what the workload does
	Outcome string // what the run should show
	Why     string // why the kernel does that

	// set turns the seed's layout (blocks, block size, offset) into the
	// scenario's workload.
	set func(c *workload.Config, writers int)
	// expect lists the outcome as expectations; "blocks" is the run's.
	expect func(writers int) []string
	// frames hold on the pagemap proof (--proof pagemap).
	frames func(writers int) []string
	// decide adds expectations that depend on what the run found about
	// this kernel, with the finding in words ("" when none).
	decide func(run *report.Run) (expect []string, finding string)
}

// Provable says whether the pagemap proof can run: it needs the parent and
// the children alive together, which vfork does not allow.
func (s Scenario) Provable() bool {
	var c workload.Config
	s.set(&c, 1)
	return c.Clone != workload.CloneVfork
}

// Applicable says whether the scenario can run on this kernel. When it
// cannot (thp on a kernel built without transparent huge pages), the error
// wraps workload.ErrNotApplicable and its text is the whole message: "not
// applicable on this kernel: built without transparent huge pages". Running
// it anyway fails in workload.Start with that same error.
func (s Scenario) Applicable() error {
	return s.Workload(1, 4096, 0, DefaultWriters).Applicable()
}

// Check checks the scenario's stated outcome on run: every expectation that
// the run's methods can decide, and a reason for each that they cannot.
func (s Scenario) Check(run *report.Run, writers int) (results []report.ExpectResult, held bool, finding string) {
	held = true
	add := func(texts []string, reason string) {
		for _, text := range texts {
			e, err := expect.Parse(text)
			if err != nil {
				panic(fmt.Sprintf("scenario %s: %v", s.Name, err)) // a bug in this file, caught by its tests
			}
			r := report.ExpectResult{Expect: e.Text, Held: true}
			// Each expectation's own: a fault class left unchecked
			// does not leave the copies after it unchecked too.
			why := reason
			if why == "" {
				why = unclassified(run, e.Text)
			}
			switch {
			case why != "":
				r.NotChecked = why
			default:
				err := e.Check(run)
				switch {
				case errors.Is(err, expect.ErrNotMeasured):
					r.NotChecked = err.Error()
				case err != nil:
					r.Held, r.Detail, held = false, err.Error(), false
				}
			}
			results = append(results, r)
		}
	}
	add(s.expect(writers), "")
	if s.frames != nil {
		why := ""
		if run.Methods["pagemap"] == "" {
			why = "no --proof pagemap in this run"
		}
		add(s.frames(writers), why)
	}
	if s.decide != nil {
		var more []string
		more, finding = s.decide(run)
		add(more, "")
	}
	return results, held, finding
}

// faultClass matches an expectation on a fault class in or outside the
// region.
var faultClass = regexp.MustCompile(`\b(in_region|outside)\.(wp|write_not_present|read|exec)\b`)

// unclassified says why an expectation on a fault class cannot be decided
// on a run that counted faults by address only, where every class reads 0.
func unclassified(run *report.Run, text string) string {
	if run.Methods["in_region"] == cow.FaultAddrMethod && faultClass.MatchString(text) {
		return "faults counted by address only, without their class (" + noFaultTracepoints(run) + ")"
	}
	return ""
}

// noFaultTracepoints says why a run had no x86 fault tracepoints, from
// what its report says was unavailable: denied (tracefs, where they are,
// refused to this user or by lockdown, with what grants it), not used
// (--fault-method address), or not there (arm64). Saying "not here" of
// tracepoints that are only denied sends a user to another kernel instead
// of to sudo.
func noFaultTracepoints(run *report.Run) string {
	for _, u := range run.Unavailable {
		switch u.What {
		case "tracefs":
			return "the fault tracepoints were denied: " + u.Why
		case "tracepoint:exceptions:page_fault_user":
			return "exceptions:page_fault_user: " + u.Why
		}
	}
	return "no x86 fault tracepoints here"
}

// zeroPage decides the zero-page scenario. Whether a read of untouched
// anonymous memory maps the kernel's shared zero page is the kernel's
// choice: the 6.18 kernel of this project's CI gives every such read a
// zeroed page of its own (pagemap shows distinct frames), and then the
// writer's writes are ordinary copies. The pagemap proof says which.
func zeroPage(run *report.Run) ([]string, string) {
	w := run.Find("writer")
	if w == nil || w.Pagemap == nil {
		return nil, "whether the reads mapped the zero page is known only with --proof pagemap: writer.copies not checked"
	}
	if w.Pagemap.AtFork.ZeroPage == uint64(run.Blocks) {
		return []string{"writer.copies == 0"}, ""
	}
	return []string{"writer.pagemap.at_fork.zero_page == 0", "writer.copies == blocks"},
		"this kernel maps no shared zero page on a read of anonymous memory: each read got a zeroed page of its own (distinct frames in pagemap), which the writer then copies"
}

// Workload returns the scenario's workload for a region of blocks x
// blockSize bytes, touched at offset; writers matters to many-writers only.
func (s Scenario) Workload(blocks, blockSize, offset, writers int) workload.Config {
	c := workload.Seed()
	c.Blocks, c.BlockSize, c.Offset = blocks, blockSize, offset
	s.set(&c, writers)
	return c
}

// DefaultWriters is the number of writers of many-writers.
const DefaultWriters = 4

func list(ss ...string) func(int) []string { return func(int) []string { return ss } }

// eachWriter expands a template with %s for the role of each writer.
func eachWriter(templates ...string) func(int) []string {
	return func(writers int) []string {
		var out []string
		for i := 1; i <= writers; i++ {
			role := fmt.Sprintf("writer%d", i)
			if writers == 1 {
				role = "writer"
			}
			for _, t := range templates {
				out = append(out, fmt.Sprintf(t, role))
			}
		}
		return out
	}
}

var all = []Scenario{
	{
		Name:    "touched",
		frames:  list("writer.pagemap.at_fork.shared == writer.pagemap.at_fork.pages", "writer.pagemap.after_writes.private == blocks", "reader.pagemap.after_writes.private == 0"),
		Does:    "the seed's first run: the parent writes the whole region, then forks a reader and a writer child",
		Outcome: "the writer takes one write-protect fault and one page copy per block; the reader none",
		Why:     "fork shares every written page read-only; a write to a shared page is copied, a read of one is free because fork copied the page tables",
		set:     func(c *workload.Config, _ int) {},
		expect: list("writer.in_region.wp == blocks", "writer.copies == blocks",
			"reader.wp_faults == 0", "reader.in_region.read == 0", "reader.copies == 0", "parent.in_region.wp == 0"),
	},
	{
		Name:    "untouched",
		frames:  list("writer.pagemap.at_fork.neither == writer.pagemap.at_fork.pages", "writer.pagemap.after_writes.child_only == blocks"),
		Does:    "the seed's second run: nothing is written before the fork",
		Outcome: "the writer's writes are first writes to fresh zeroed pages, the reader's reads fault in pages of their own or the zero page; no copies",
		Why:     "an anonymous page that was never touched has no frame to share, so there is nothing to copy",
		set:     func(c *workload.Config, _ int) { c.Touch = false },
		expect: list("writer.in_region.write_not_present == blocks", "writer.in_region.wp == 0", "writer.copies == 0",
			"reader.in_region.read == blocks", "reader.copies == 0"),
	},
	{
		Name:    "zero-page",
		frames:  list("writer.pagemap.at_fork.shared == blocks", "writer.pagemap.after_writes.private == blocks"),
		Does:    "the parent only reads the region before the fork (which maps the shared zero page, where the kernel uses it); the children then read and write it",
		Outcome: "the writer faults once per block but nothing is copied, where the kernel mapped the zero page for the reads",
		Why: "a write over the zero page gets a new zeroed page: there is no data to copy. " +
			"Whether a read maps the zero page at all is the kernel's choice; the pagemap proof shows which",
		set:    func(c *workload.Config, _ int) { c.Touch, c.ReadBefore = false, true },
		expect: list("writer.page_faults == blocks", "reader.copies == 0"),
		decide: zeroPage,
	},
	{
		Name:    "parent-writes",
		frames:  list("reader.pagemap.after_writes.private == blocks", "writer.pagemap.after_writes.private == blocks"),
		Does:    "the seed's run, but the parent writes every block while both children are alive",
		Outcome: "the parent copies one page per block, as the writer does",
		Why:     "copy-on-write is symmetric: after fork the parent's pages are shared read-only too, and the reader still maps them when the parent writes",
		set: func(c *workload.Config, _ int) {
			c.ParentWrites, c.Hold = workload.ParentWritesDuring, true
		},
		expect: list("parent.in_region.wp == blocks", "parent.in_region.inferred_copies == blocks", "parent.copies >= blocks",
			"writer.copies == blocks", "reader.copies == 0"),
	},
	{
		Name:    "after-exit",
		frames:  list("reader.pagemap.after_writes.private == 0", "writer.pagemap.after_writes.private == blocks"),
		Does:    "the seed's run, but the parent writes every block after both children have exited",
		Outcome: "the parent takes a write-protect fault per block but copies nothing",
		Why:     "its pages are still mapped read-only from the fork, but no one else maps them any more, so the fault reuses the page",
		set:     func(c *workload.Config, _ int) { c.ParentWrites = workload.ParentWritesAfterExit },
		expect: list("parent.in_region.wp == blocks", "parent.in_region.inferred_copies == 0",
			"writer.copies == blocks", "reader.copies == 0"),
	},
	{
		Name:    "thp",
		frames:  list("writer.pagemap.at_fork.shared == writer.pagemap.at_fork.pages", "writer.pagemap.after_writes.private == blocks"),
		Does:    "the seed's run on a 2 MiB-aligned region with MADV_HUGEPAGE instead of MADV_NOHUGEPAGE",
		Outcome: "the writer still copies one 4 KiB page per block, not a 2 MiB page",
		Why:     "on a write fault to a shared huge page, Linux (since 5.8) splits the huge mapping and copies only the 4 KiB page written",
		set:     func(c *workload.Config, _ int) { c.Huge = true },
		expect:  list("writer.in_region.wp == blocks", "writer.copies == blocks", "reader.copies == 0"),
	},
	{
		Name:    "dontfork",
		frames:  list("writer.pagemap.at_fork.parent_only == writer.pagemap.at_fork.pages", "reader.pagemap.at_fork.shared == 0"),
		Does:    "the region gets MADV_DONTFORK before the fork",
		Outcome: "the children do not have the region at all: no faults, no copies",
		Why:     "fork skips mappings marked VM_DONTCOPY; the children check with mincore and leave the region alone",
		set:     func(c *workload.Config, _ int) { c.Advice = workload.AdviceDontFork },
		expect: list("writer.page_faults == 0", "writer.copies == 0", "reader.page_faults == 0", "reader.copies == 0",
			"parent.in_region.wp == 0"),
	},
	{
		Name:    "wipeonfork",
		frames:  list("writer.pagemap.at_fork.shared == 0", "writer.pagemap.after_writes.child_only == 0"),
		Does:    "the region gets MADV_WIPEONFORK before the fork",
		Outcome: "the children see the region empty: their writes and reads are first touches of fresh pages, no copies",
		Why:     "fork gives the child the mapping without the pages, as if freshly mapped",
		set:     func(c *workload.Config, _ int) { c.Advice = workload.AdviceWipeOnFork },
		expect: list("writer.in_region.write_not_present == blocks", "writer.in_region.wp == 0", "writer.copies == 0",
			"reader.in_region.read == blocks", "reader.copies == 0"),
	},
	{
		Name:    "vfork",
		Does:    "the children are created with clone(CLONE_VM|CLONE_VFORK): they run in the parent's address space, the parent suspended",
		Outcome: "no copy-on-write at all: the writer writes the parent's own pages without a fault",
		Why:     "there is no second address space to protect: the child runs on the parent's page tables",
		set:     func(c *workload.Config, _ int) { c.Clone = workload.CloneVfork },
		expect: list("writer.page_faults == 0", "writer.copies == 0", "reader.page_faults == 0", "reader.copies == 0",
			"parent.in_region.wp == 0"),
	},
	{
		Name:    "clone-vm",
		frames:  list("writer.pagemap.after_writes.shared == writer.pagemap.after_writes.pages", "writer.pagemap.after_writes.private == 0"),
		Does:    "the children are created with clone(CLONE_VM) on stacks of their own: the parent's address space, all running",
		Outcome: "no copy-on-write at all, as with vfork",
		Why:     "a CLONE_VM child shares the parent's memory and page tables: there is no second copy to protect",
		set:     func(c *workload.Config, _ int) { c.Clone = workload.CloneVM },
		expect: list("writer.page_faults == 0", "writer.copies == 0", "reader.page_faults == 0", "reader.copies == 0",
			"parent.in_region.wp == 0"),
	},
	{
		Name:    "many-writers",
		frames:  eachWriter("%s.pagemap.at_fork.private == 0", "%s.pagemap.after_writes.private == blocks"),
		Does:    "the parent writes the region and forks N writer children (--writers, default 4)",
		Outcome: "every writer copies its own page per block",
		Why:     "each writer's write breaks its own share; the parent keeps mapping the original, so none of them can reuse it",
		set: func(c *workload.Config, writers int) {
			c.Children = nil
			for range writers {
				c.Children = append(c.Children, workload.ActionWrite)
			}
		},
		expect: eachWriter("%s.copies == blocks", "%s.in_region.wp == blocks"),
	},
}

// All returns every scenario, in the matrix's order.
func All() []Scenario { return append([]Scenario{}, all...) }

// Lookup finds a scenario by name.
func Lookup(name string) (Scenario, error) {
	for _, s := range all {
		if s.Name == name {
			return s, nil
		}
	}
	return Scenario{}, fmt.Errorf("unknown scenario %q (want one of %s)", name, strings.Join(Names(), ", "))
}

// Names lists the scenario names, sorted.
func Names() []string {
	var out []string
	for _, s := range all {
		out = append(out, s.Name)
	}
	sort.Strings(out)
	return out
}
