package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/cowtrace/cowtrace/engine"
	"github.com/cowtrace/cowtrace/experiment"
	"github.com/cowtrace/cowtrace/perfevents"
	"github.com/cowtrace/cowtrace/report"
	"github.com/cowtrace/cowtrace/report/render"
	"github.com/cowtrace/cowtrace/scenario"
	"github.com/cowtrace/cowtrace/workload"
)

const matrixUsage = `Usage: cowtrace matrix [flags]

Runs every scenario of the experiment (or those of --only) and prints one
table, a row per scenario and process, then the outcome each scenario states
and whether it held on this kernel. Scenarios:

%s
Flags:
`

func scenarioHelp() string {
	var b strings.Builder
	for _, s := range scenario.All() {
		fmt.Fprintf(&b, "  %-13s %s.\n  %-13s Expect: %s, because %s.\n", s.Name, s.Does, "", s.Outcome, s.Why)
	}
	return b.String()
}

// flagSet says whether the flag was given on the command line.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// scenarioWorkload turns the layout flags into the named scenario's workload.
func scenarioWorkload(fs *flag.FlagSet, name string, cfg workload.Config, writers int) (workload.Config, error) {
	if name == "" {
		return cfg, usagef("--writers applies to --scenario many-writers only")
	}
	s, err := scenario.Lookup(name)
	if err != nil {
		return cfg, usageError{err}
	}
	if flagSet(fs, "no-touch") {
		return cfg, usagef("--no-touch and --scenario: the scenario says what is touched (untouched is --scenario untouched)")
	}
	if flagSet(fs, "writers") && name != "many-writers" {
		return cfg, usagef("--writers applies to --scenario many-writers only")
	}
	if writers < 1 || writers > 64 {
		return cfg, usagef("--writers must be between 1 and 64, got %d", writers)
	}
	c := s.Workload(cfg.Blocks, cfg.BlockSize, cfg.Offset, writers)
	if err := c.Validate(); err != nil {
		return cfg, usageError{err}
	}
	return c, nil
}

func cmdMatrix(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	seed := workload.Seed()
	fs := newFlagSet("cowtrace matrix", fmt.Sprintf(matrixUsage, scenarioHelp()))
	blocks := fs.Int("blocks", seed.Blocks, "number of blocks")
	blockSize := fs.Int("block-size", seed.BlockSize, "bytes per block")
	offset := fs.Int("offset", seed.Offset, "offset of the byte read or written in each block")
	writers := fs.Int("writers", scenario.DefaultWriters, "number of writer children of many-writers")
	format := fs.String("format", "table", "output format: table, json or markdown")
	method := fs.String("kprobe-method", "auto", "route to kernel functions: auto, pmu, tracefs or none")
	faultMethod := fs.String("fault-method", "auto", "faults from: auto (the x86 fault tracepoints where the kernel has them, else the page-fault event with its address) or address (the latter everywhere)")
	only := fs.String("only", "", "comma-separated `NAMES` of the scenarios to run (default: all)")
	strict := fs.Bool("strict", false, "exit 1 when a scenario's stated outcome does not hold")
	label := fs.String("label", "", "label of every run (shown by cowtrace compare)")
	proofName := fs.String("proof", "pagemap", "physical-frame proof of each scenario that allows it: pagemap or none")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q (see cowtrace matrix -h)", fs.Arg(0))
	}
	f, err := render.ParseFormat(*format)
	if err != nil || f == render.CSV {
		return usagef("unknown matrix format %q (want table, json or markdown)", *format)
	}
	km, err := perfevents.ParseKprobeMethod(*method)
	if err != nil {
		return usageError{err}
	}
	byAddr, err := engine.ParseFaultMethod(*faultMethod)
	if err != nil {
		return usageError{err}
	}
	if *writers < 1 || *writers > 64 {
		return usagef("--writers must be between 1 and 64, got %d", *writers)
	}
	var pf experiment.Proof
	if *proofName != "none" {
		if pf, err = experiment.ParseProof(*proofName); err != nil || pf == "" {
			return usagef("unknown proof %q (want pagemap or none)", *proofName)
		}
	}
	scenarios := scenario.All()
	if *only != "" {
		scenarios = nil
		for _, name := range strings.Split(*only, ",") {
			s, err := scenario.Lookup(strings.TrimSpace(name))
			if err != nil {
				return usageError{err}
			}
			scenarios = append(scenarios, s)
		}
	}
	// Every workload is checked before the first one runs.
	cfgs := make([]workload.Config, len(scenarios))
	for i, s := range scenarios {
		cfgs[i] = s.Workload(*blocks, *blockSize, *offset, *writers)
		if err := cfgs[i].Validate(); err != nil {
			return usagef("scenario %s: %v", s.Name, err)
		}
	}

	m := &report.Matrix{SchemaVersion: report.SchemaVersion, Kernel: perfevents.KernelRelease()}
	allHeld := true
	for i, s := range scenarios {
		if err := s.Applicable(); errors.Is(err, workload.ErrNotApplicable) {
			m.Scenarios = append(m.Scenarios, report.MatrixEntry{Name: s.Name, Does: s.Does, Outcome: s.Outcome, Why: s.Why,
				Held: true, NotApplicable: err.Error()})
			continue
		}
		opt := experiment.Options{Workload: cfgs[i], Scenario: s.Name, KprobeMethod: km, FaultsByAddress: byAddr}
		if s.Provable() {
			opt.Proof = pf
		}
		run, err := experiment.Run(ctx, opt)
		if err != nil {
			return fmt.Errorf("scenario %s: %w", s.Name, err)
		}
		run.Label = *label
		e := report.MatrixEntry{Name: s.Name, Does: s.Does, Outcome: s.Outcome, Why: s.Why, Run: run}
		e.Expectations, e.Held, e.Finding = s.Check(run, *writers)
		allHeld = allHeld && e.Held
		m.Scenarios = append(m.Scenarios, e)
	}
	if err := render.WriteMatrix(stdout, m, f); err != nil {
		return err
	}
	if *strict && !allHeld {
		return strictFailed{exitFailure, fmt.Errorf("a scenario's stated outcome did not hold (see DIFFERS above)")}
	}
	return nil
}

// strictFailed is matrix --strict's failure: exit code 1.
type strictFailed struct {
	code int
	err  error
}

func (e strictFailed) Error() string { return e.err.Error() }
func (e strictFailed) ExitCode() int { return e.code }

// scenarioNotes adds the scenario's stated outcome, and whether it held, to
// a single run's notes.
func scenarioNotes(run *report.Run, name string, writers int) {
	s, err := scenario.Lookup(name)
	if err != nil {
		return
	}
	results, held, finding := s.Check(run, writers)
	word := "as stated"
	if finding != "" {
		word = "finding"
	}
	if !held {
		word = "DIFFERS"
	}
	run.Notes = append(run.Notes, fmt.Sprintf("scenario %s: expected %s (%s)", s.Name, s.Outcome, word))
	if finding != "" {
		run.Notes = append(run.Notes, "finding: "+finding)
	}
	for _, r := range results {
		switch {
		case !r.Held:
			run.Notes = append(run.Notes, r.Detail)
		case r.NotChecked != "":
			run.Notes = append(run.Notes, fmt.Sprintf("not checked: %s: %s", r.Expect, r.NotChecked))
		}
	}
}

// checkProof refuses, before anything runs, a proof the workload cannot give.
func checkProof(pf experiment.Proof, cfg workload.Config) error {
	if pf != "" && cfg.Clone == workload.CloneVfork {
		return usagef("--proof %s needs the parent and its children alive together, and vfork suspends the parent", pf)
	}
	return nil
}
