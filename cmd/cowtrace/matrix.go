package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/cowtrace/cowtrace/internal/experiment"
	"github.com/cowtrace/cowtrace/internal/scenario"
	"github.com/cowtrace/cowtrace/internal/workload"
	"github.com/cowtrace/cowtrace/perfevents"
	"github.com/cowtrace/cowtrace/report"
	"github.com/cowtrace/cowtrace/report/render"
)

// matrixLong is the matrix's -h, with every scenario's outcome and why.
func matrixLong() string {
	var b strings.Builder
	b.WriteString(`Runs every scenario of the experiment (or those of --only) and prints one
table, a row per scenario and process, then the outcome each scenario states
and whether it held on this kernel. Stopped by Ctrl-C (SIGINT) or SIGTERM,
it shows the scenarios that finished and exits 130. Scenarios:

`)
	for _, s := range scenario.All() {
		// A list row each, which the help wraps (see parseHelpText).
		fmt.Fprintf(&b, "  %-14s %s. Expect: %s, because %s.\n", s.Name, s.Does, s.Outcome, s.Why)
	}
	return b.String()
}

// matrixFlags are the matrix's flags.
type matrixFlags struct {
	fs      *flagSet
	layout  *workloadFlags
	format  *formatValue
	methods *methodFlags
	only    *string
	strict  *bool
	label   *string
	proof   *proofValue
	pauseIn *string
}

func setupMatrix(fs *flagSet) runner {
	f := &matrixFlags{fs: fs, layout: addWorkloadFlags(fs)}
	f.format = addFormatFlag(fs, "matrix", []string{string(render.Table), string(render.Wide), string(render.JSON), string(render.Markdown)}, "table",
		"output `FORMAT`: table, wide, json or markdown")
	f.methods = addMethodFlags(fs)
	f.only = fs.String("only", "", "comma-separated `NAMES` of the scenarios to run (default: all)")
	fs.choose("only", scenario.Names()...)
	f.strict = fs.Bool("strict", false, "exit 1 when a scenario's stated outcome does not hold")
	f.label = fs.String("label", "", "`LABEL` of every run (shown by cowtrace compare)")
	f.proof = &proofValue{noneToo: true, text: "pagemap", proof: experiment.ProofPagemap}
	fs.Var(f.proof, "proof", "physical-frame proof of each scenario that allows it, `PROOF`: pagemap or none")
	fs.choose("proof", string(experiment.ProofPagemap), "none")
	f.pauseIn = fs.String("pause-in", "", "testing aid: in scenario `NAME`, print \"cowtrace: attached\" once every event is open, then wait for a signal")
	fs.hide("pause-in")
	return f.run
}

func (f *matrixFlags) run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		return usagef("unexpected argument %q (see cowtrace matrix -h)", args[0])
	}
	if err := f.layout.checkWriters(); err != nil {
		return err
	}
	scenarios, cfgs, err := f.workloads()
	if err != nil {
		return err
	}
	if slices.ContainsFunc(scenarios, scenario.Scenario.Provable) {
		if err := f.proof.checkFrames(f.fs.given("proof"), "add --proof none to leave the physical-frame proof out"); err != nil {
			return err
		}
	}
	m := &report.Matrix{SchemaVersion: report.SchemaVersion, Kernel: perfevents.KernelRelease()}
	allHeld := true
	for i, s := range scenarios {
		e, err := f.runScenario(ctx, s, cfgs[i], stderr)
		if err != nil && ctx.Err() != nil && len(m.Scenarios) > 0 {
			// Stopped by a signal: the scenarios that finished are
			// shown, then exit 130.
			if err := render.WriteMatrix(stdout, m, f.format.format()); err != nil {
				return err
			}
			return failures{[]error{interruptedAfter(ctx, fmt.Sprintf("matrix: interrupted in scenario %s; shown are the %d of %d scenarios that finished",
				s.Name, len(m.Scenarios), len(scenarios)))}, exitInterrupted}
		}
		if err != nil {
			return err
		}
		allHeld = allHeld && e.Held
		m.Scenarios = append(m.Scenarios, e)
	}
	if err := layout(stdout).WriteMatrix(stdout, m, f.format.format()); err != nil {
		return err
	}
	if *f.strict && !allHeld {
		return strictFailed{exitFailure, fmt.Errorf("a scenario's stated outcome did not hold (see DIFFERS above)")}
	}
	return nil
}

// workloads are the scenarios to run and their workloads, every one checked
// before the first one runs.
func (f *matrixFlags) workloads() ([]scenario.Scenario, []workload.Config, error) {
	scenarios := scenario.All()
	if *f.only != "" {
		scenarios = nil
		for _, name := range strings.Split(*f.only, ",") {
			s, err := scenario.Lookup(strings.TrimSpace(name))
			if err != nil {
				return nil, nil, usageError{err}
			}
			scenarios = append(scenarios, s)
		}
	}
	cfgs := make([]workload.Config, len(scenarios))
	for i, s := range scenarios {
		cfgs[i] = s.Workload(*f.layout.blocks, *f.layout.blockSize, *f.layout.offset, *f.layout.writers)
		if err := cfgs[i].Validate(); err != nil {
			return nil, nil, usagef("scenario %s: %v", s.Name, err)
		}
	}
	return scenarios, cfgs, nil
}

// runScenario runs one scenario and checks its stated outcome; a scenario
// this kernel cannot run is an entry that says why.
func (f *matrixFlags) runScenario(ctx context.Context, s scenario.Scenario, cfg workload.Config, stderr io.Writer) (report.MatrixEntry, error) {
	if err := s.Applicable(); errors.Is(err, workload.ErrNotApplicable) {
		return report.MatrixEntry{Name: s.Name, Does: s.Does, Outcome: s.Outcome, Why: s.Why, Held: true, NotApplicable: err.Error()}, nil
	}
	opt := experiment.Options{Workload: cfg, Scenario: s.Name, KprobeMethod: f.methods.kprobes.method, FaultsByAddress: f.methods.faults.byAddress}
	if s.Provable() {
		opt.Proof = f.proof.proof
	}
	if s.Name == *f.pauseIn {
		opt.AfterAttach = pauseAfterAttach(stderr)
	}
	run, err := experiment.Run(ctx, opt)
	if err != nil {
		return report.MatrixEntry{}, fmt.Errorf("scenario %s: %w", s.Name, err)
	}
	run.Label = *f.label
	e := report.MatrixEntry{Name: s.Name, Does: s.Does, Outcome: s.Outcome, Why: s.Why, Run: run}
	e.Expectations, e.Held, e.Finding = s.Check(run, *f.layout.writers)
	return e, nil
}

// strictFailed is matrix --strict's failure: exit code 1.
type strictFailed struct {
	code int
	err  error
}

func (e strictFailed) Error() string { return e.err.Error() }
func (e strictFailed) ExitCode() int { return e.code }
