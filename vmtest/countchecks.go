package main

import (
	"errors"
	"fmt"
)

// The checks of run's count mode: that each kernel gets the method its
// facts allow (docs/kernels.md: the exit tracepoint in time from 6.16, the
// exit calls and signals on 6.12, none before 6.12 and sampling instead),
// that its rows are those of classify mode, which records every fault, and
// that with kprobes it takes no record per copy.

// checkDoctorCountMethod: doctor says the method the boot declares.
func checkDoctorCountMethod(g *guestRun) error {
	var d struct {
		CountMethod string            `json:"count_method"`
		Problems    map[string]string `json:"problems"`
	}
	if err := g.decode("doctor-json", 0, &d); err != nil {
		return err
	}
	if d.CountMethod != g.Expect.CountMethod {
		return fmt.Errorf("count_method %q (%s), want %q", d.CountMethod, d.Problems["count_method"], g.Expect.CountMethod)
	}
	return nil
}

// treeBaseline: cow_tree 5's run is complete, and child k writes k pages
// on top of a baseline of wp faults the same for every child; it returns
// that baseline.
func treeBaseline(name string, rep *runReport) (int64, error) {
	var errs []error
	if !rep.Complete || len(rep.Incomplete) > 0 || rep.LostRecords != 0 {
		errs = append(errs, fmt.Errorf("%s run: complete %v %q, %d records lost", name, rep.Complete, rep.Incomplete, rep.LostRecords))
	}
	if len(rep.Processes) != 6 {
		return 0, errors.Join(append(errs, fmt.Errorf("%s run: %d rows, want the command and 5 children", name, len(rep.Processes)))...)
	}
	var base int64
	for k, p := range rep.Processes[1:] {
		pages := int64(k + 1)
		n, err := copies(&p.cowtraceProcess)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("%s run: %w", name, err))
		case n < pages:
			errs = append(errs, fmt.Errorf("%s run: child %d (%d pages): %d copies", name, k+1, pages, n))
		}
		if k == 0 {
			base = p.WPFaults - pages
		} else if p.WPFaults-pages != base {
			errs = append(errs, fmt.Errorf("%s run: child %d (%d pages): %d wp faults; child 1: pages + %d", name, k+1, pages, p.WPFaults, base))
		}
	}
	return base, errors.Join(errs...)
}

// checkTreeClassify: cow_tree 5 under --mode classify, which records
// every fault: complete, each child its pages on a common baseline.
func checkTreeClassify(g *guestRun) error {
	rep, err := g.runReport("run-tree-classify")
	if err != nil {
		return err
	}
	_, err = treeBaseline("classify", rep)
	return err
}

// checkTreeModes: cow_tree 5 under the default run uses the boot's count
// method ("" where it samples every fault), is complete, and each child's
// wp faults beyond its pages are classify mode's, within the page a
// different memory layout makes: count mode's rows are classify mode's.
func checkTreeModes(g *guestRun) error {
	count, err := g.runReport("run-tree")
	if err != nil {
		return err
	}
	classify, err := g.runReport("run-tree-classify")
	if err != nil {
		return err
	}
	want := g.Expect.CountMethod
	if want == countClassify {
		want = ""
	}
	var errs []error
	if count.CountMethod != want {
		errs = append(errs, fmt.Errorf("count_method %q, want %q", count.CountMethod, want))
	}
	base, err := treeBaseline("default", count)
	errs = append(errs, err)
	// The two runs lay memory out apart (ASLR): where the stack's random
	// offset puts a frame across a page boundary a child writes one stack
	// page more after the fork, in every child of that run alike.
	if cbase, err := treeBaseline("classify", classify); err == nil && (base > cbase+1 || cbase > base+1) {
		errs = append(errs, fmt.Errorf("each child's wp faults beyond its pages: %d in the default run, %d in classify mode's", base, cbase))
	}
	return errors.Join(errs...)
}

// checkFewRecords: with a kprobe on the copy routine, count mode takes no
// record per copy: cow_seed's writer copies its 1000 blocks, and the rings
// deliver a few records per process (context switches, exits, forks).
func checkFewRecords(g *guestRun) error {
	rep, err := g.runReport("run-seed-fast")
	if err != nil {
		return err
	}
	var total int64
	for i := range rep.Processes {
		n, err := copies(&rep.Processes[i].cowtraceProcess)
		if err != nil {
			return err
		}
		total += n
	}
	if !rep.Complete || total < seedBlocks || rep.Records > 300 {
		return fmt.Errorf("complete %v %q, %d copies, %d records: want 1000 copies and a few hundred records at most", rep.Complete, rep.Incomplete, total, rep.Records)
	}
	return nil
}

// checkRunBy: run --by mapping of cow_tree 5 names where each child's copies
// were, wherever copies are counted (a kprobe's count once left --by with
// no copies to place): child k's pages are among its placed copies, and no
// more are placed than it made.
func checkRunBy(g *guestRun) error {
	rep, err := g.runReport("run-by")
	if err != nil {
		return err
	}
	if len(rep.Processes) != 6 {
		return fmt.Errorf("%d rows, want the command and 5 children", len(rep.Processes))
	}
	var errs []error
	for k, p := range rep.Processes[1:] {
		n, err := copies(&p.cowtraceProcess)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var placed int64
		for _, s := range p.CopiesBy {
			placed += s.Copies
		}
		if placed < int64(k+1) || placed > n {
			errs = append(errs, fmt.Errorf("%s: %d copies, %d placed by mapping (%v); want %d to %d", &p, n, placed, p.CopiesBy, k+1, n))
		}
	}
	return errors.Join(errs...)
}
