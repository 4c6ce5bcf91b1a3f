package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/cowtrace/cowtrace/internal/engine"
	"github.com/cowtrace/cowtrace/internal/experiment"
	"github.com/cowtrace/cowtrace/internal/scenario"
	"github.com/cowtrace/cowtrace/internal/workload"
	"github.com/cowtrace/cowtrace/report"
	"github.com/cowtrace/cowtrace/report/expect"
)

const experimentLong = `Runs the fork/copy-on-write experiment: a worker process maps BLOCKS blocks of
BLOCK-SIZE bytes of private anonymous memory, writes all of it (unless
--no-touch), forks a reader child and a writer child that read or write the
byte at OFFSET of every block, and reads that byte itself at the end. Each
process is counted from the moment it may touch the region.
`

// experimentFlags are the experiment's flags.
type experimentFlags struct {
	fs       *flagSet
	layout   *workloadFlags
	noTouch  *bool
	format   *formatValue
	methods  *methodFlags
	mode     *modeValue
	probes   *probesValue
	scenario *string
	expect   *expectValue
	proof    *proofValue
	label    *string
	outPath  *string
	pause    *bool
}

func setupExperiment(fs *flagSet) runner {
	f := &experimentFlags{fs: fs, layout: addWorkloadFlags(fs)}
	f.noTouch = fs.Bool("no-touch", false, "do not write the memory before the fork (the seed's second run)")
	f.format = addReportFormatFlag(fs)
	f.methods = addMethodFlags(fs)
	f.mode = addModeFlag(fs, engine.ModeClassify, "how to measure faults, `MODE`: classify (sample and classify every fault) or count (in-kernel filtered counters only, no sampling)")
	f.probes = addProbeFlag(fs)
	f.scenario = fs.String("scenario", "", "run the scenario `NAME` (see cowtrace matrix -h): "+strings.Join(scenario.Names(), ", "))
	fs.choose("scenario", scenario.Names()...)
	f.expect = addExpectFlag(fs, experimentRows, "exit 1 unless `EXPR` holds, e.g. 'writer.copies == 1000' (repeatable)")
	f.proof = &proofValue{}
	fs.Var(f.proof, "proof", "add physical-frame evidence, `PROOF`: pagemap (/proc/PID/pagemap right after fork and after the writes)")
	fs.choose("proof", string(experiment.ProofPagemap))
	f.label = addLabelFlag(fs)
	f.outPath = fs.String("o", "", "write the report to `FILE` instead of stdout")
	f.pause = fs.Bool("pause-after-attach", false, "testing aid: print \"cowtrace: attached\" once every event is open, then wait for a signal")
	fs.hide("pause-after-attach")
	return f.run
}

func (f *experimentFlags) run(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	if len(args) > 0 {
		return usagef("unexpected argument %q (see cowtrace -h)", args[0])
	}
	opt, err := f.options(stderr)
	if err != nil {
		return err
	}
	out, err := openOutput(*f.outPath, stdout)
	if err != nil {
		return err
	}
	defer out.finish(&err)
	run, err := experiment.Run(ctx, opt)
	if err != nil {
		return err
	}
	run.Label = *f.label
	if *f.scenario != "" {
		scenarioNotes(run, *f.scenario, *f.layout.writers)
	}
	if err := layout(out.Writer).Write(out, run, f.format.format()); err != nil {
		return err
	}
	out.reported = true
	return checkExpectations(run, f.expect.list)
}

// options checks what the flags ask for together, before anything runs,
// and turns it into the experiment's options.
func (f *experimentFlags) options(stderr io.Writer) (experiment.Options, error) {
	cfg := workload.Seed()
	cfg.Blocks, cfg.BlockSize, cfg.Offset, cfg.Touch = *f.layout.blocks, *f.layout.blockSize, *f.layout.offset, !*f.noTouch
	if err := cfg.Validate(); err != nil {
		return experiment.Options{}, usageError{err}
	}
	scenarioLabel := "touched"
	if !cfg.Touch {
		scenarioLabel = "untouched"
	}
	if *f.scenario != "" || f.fs.given("writers") {
		var err error
		if cfg, err = f.scenarioWorkload(cfg); err != nil {
			return experiment.Options{}, err
		}
		scenarioLabel = *f.scenario
	}
	if err := checkProof(f.proof.proof, cfg); err != nil {
		return experiment.Options{}, err
	}
	if err := f.proof.checkFrames(true, "leave --proof out"); err != nil {
		return experiment.Options{}, err
	}
	if err := f.methods.checkProbes(f.probes); err != nil {
		return experiment.Options{}, err
	}
	// The roles depend on the scenario, known only now: --expect's Set
	// could not check them.
	rows := expect.Rows{Roles: experiment.Roles(cfg)}
	for _, e := range f.expect.list {
		if err := e.Fits(rows); err != nil {
			return experiment.Options{}, usagef("--expect: %v", err)
		}
	}
	opt := experiment.Options{Workload: cfg, Scenario: scenarioLabel, KprobeMethod: f.methods.kprobes.method, Probes: f.probes.names,
		Mode: f.mode.mode, Proof: f.proof.proof, FaultsByAddress: f.methods.faults.byAddress, HandOff: handOff}
	if *f.pause {
		opt.AfterAttach = pauseAfterAttach(stderr)
	}
	return opt, nil
}

// pauseAfterAttach is the testing aid of --pause-after-attach and the
// matrix's --pause-in: a test signals cowtrace at its most loaded moment,
// once it has read this line.
func pauseAfterAttach(stderr io.Writer) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		fmt.Fprintln(stderr, "cowtrace: attached")
		<-ctx.Done()
		return ctx.Err()
	}
}

// scenarioWorkload turns the layout flags into the named scenario's workload.
func (f *experimentFlags) scenarioWorkload(cfg workload.Config) (workload.Config, error) {
	name := *f.scenario
	if name == "" {
		return cfg, usagef("--writers applies to --scenario many-writers only")
	}
	s, err := scenario.Lookup(name)
	if err != nil {
		return cfg, usageError{err}
	}
	if f.fs.given("no-touch") {
		return cfg, usagef("--no-touch and --scenario: the scenario says what is touched (untouched is --scenario untouched)")
	}
	if f.fs.given("writers") && name != "many-writers" {
		return cfg, usagef("--writers applies to --scenario many-writers only")
	}
	if err := f.layout.checkWriters(); err != nil {
		return cfg, err
	}
	c := s.Workload(cfg.Blocks, cfg.BlockSize, cfg.Offset, *f.layout.writers)
	if err := c.Validate(); err != nil {
		return cfg, usageError{err}
	}
	return c, nil
}

// checkProof refuses, before anything runs, a proof the workload cannot give.
func checkProof(pf experiment.Proof, cfg workload.Config) error {
	if pf != "" && cfg.Clone == workload.CloneVfork {
		return usagef("--proof %s needs the parent and its children alive together, and vfork suspends the parent", pf)
	}
	return nil
}

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
