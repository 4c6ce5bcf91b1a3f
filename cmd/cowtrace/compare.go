package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/cowtrace/cowtrace/report"
	"github.com/cowtrace/cowtrace/report/gate"
	"github.com/cowtrace/cowtrace/report/render"
)

const compareLong = `Shows runs saved with --format json (single runs or cowtrace matrix) side by
side: a column per file, labelled by --label, else by the run's own label,
else by its kernel; rows whose values differ are marked. Runs of cowtrace run
or attach get a row per process, matched across runs by command and place in
the tree, and a row for the tree's total. With --format markdown the table
pastes into a CI job summary or a pull request.

With --baseline, compare is a regression gate: it exits 1 when a measure of
CURRENT.json grew past its --max-increase bound over BASE.json, 0 when none
did, 2 for a malformed flag or report. A bound is MEASURE=N (a count) or
MEASURE=P% (of the baseline's value), for MEASURE one of page_faults,
minor_faults, major_faults, wp_faults, copies, inferred_copies, lost_records,
probes.FUNC. It applies to the tree's total and to each process found in
both runs; total.MEASURE=... or each.MEASURE=... keeps one of them. Example:
--max-increase total.copies=10%,each.copies=200,wp_faults=20%
`

// compareFlags are compare's flags.
type compareFlags struct {
	format      *formatValue
	labels      stringList
	baseline    *string
	maxIncrease stringList
}

func setupCompare(fs *flagSet) runner {
	// Which formats compare writes depends on --baseline: checked in run.
	f := &compareFlags{format: addFormatFlag(fs, "compare", nil, "table", "output `FORMAT`: table, wide or markdown; json too with --baseline")}
	fs.choose("format", string(render.Table), string(render.Wide), string(render.Markdown), string(render.JSON))
	fs.Var(&f.labels, "label", "`LABEL` of the next file's column, in order (repeatable); with --baseline the baseline's first")
	f.baseline = fs.String("baseline", "", "gate `BASE.json`: hold the one other report against it")
	fs.Var(&f.maxIncrease, "max-increase", "the gate's bounds, `MEASURE=N|P%,...` (repeatable)")
	return f.run
}

func (f *compareFlags) run(_ context.Context, files []string, stdout, _ io.Writer) error {
	gating := *f.baseline != ""
	format := f.format.format()
	if format != render.Table && format != render.Wide && format != render.Markdown && !(gating && format == render.JSON) {
		if gating {
			return usagef("unknown compare format %q (want table, wide, markdown or json)", format)
		}
		return usagef("unknown compare format %q (want table, wide or markdown)", format)
	}
	labels, maxIncrease := f.labels, f.maxIncrease
	var bounds []gate.Bound
	var err error
	switch {
	case len(maxIncrease) > 0 && !gating:
		return usagef("--max-increase needs --baseline BASE.json")
	case gating && len(maxIncrease) == 0:
		return usagef("--baseline needs --max-increase, the bounds to hold the current run to")
	case gating && len(files) != 1:
		return usagef("--baseline holds one report against it, got %d", len(files))
	case gating:
		if bounds, err = gate.ParseBounds(maxIncrease); err != nil {
			return usageError{err}
		}
		files = append([]string{*f.baseline}, files...)
	case len(files) < 2:
		return usagef("compare needs at least two JSON reports, got %d", len(files))
	}
	if len(labels) > len(files) {
		return usagef("%d labels for %d files", len(labels), len(files))
	}
	cols, err := readCompared(files, labels)
	if err != nil {
		return err
	}
	if !gating {
		// gate.Hold checks the kinds of its two itself.
		if err := checkKinds(files, cols); err != nil {
			return err
		}
		return layout(stdout).Compare(stdout, cols, format)
	}
	v, err := gate.Hold(cols[0], cols[1], bounds)
	if err != nil {
		return usageError{err}
	}
	if err := layout(stdout).WriteVerdict(stdout, v, format); err != nil {
		return err
	}
	if r := v.Regressions(); len(r) > 0 {
		return gateFailed{len(r), len(v.Checks)}
	}
	return nil
}

// gateFailed makes a regression exit 1, apart from bad input's 2.
type gateFailed struct{ regressions, checks int }

func (g gateFailed) Error() string {
	return fmt.Sprintf("gate: %d of %d checks grew past their --max-increase bound", g.regressions, g.checks)
}
func (g gateFailed) ExitCode() int { return exitFailure }

// readCompared reads each file's runs under its label.
func readCompared(files, labels []string) ([]report.Compared, error) {
	cols := make([]report.Compared, len(files))
	used := map[string]int{}
	for i, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			return nil, usageError{err}
		}
		runs, err := report.ReadRuns(data)
		if err != nil {
			return nil, usagef("%s: %v", name, err)
		}
		if len(runs) == 0 {
			return nil, usagef("%s: no runs", name)
		}
		label := ""
		switch {
		case i < len(labels):
			label = labels[i]
		case runs[0].Label != "":
			label = runs[0].Label
		default:
			label = runs[0].Kernel
		}
		used[label]++
		cols[i] = report.Compared{Label: label, Runs: runs}
	}
	// Two runs on one kernel would get one label twice: say which file.
	for i := range cols {
		if used[cols[i].Label] > 1 {
			cols[i].Label = fmt.Sprintf("%s (%s)", cols[i].Label, filepath.Base(files[i]))
		}
	}
	return cols, nil
}

// checkKinds refuses, as bad input (exit 2), reports that cannot stand side
// by side: a traced run's (cowtrace run, attach) beside an experiment's,
// whose rows are different things, or a traced report of several runs.
func checkKinds(files []string, cols []report.Compared) error {
	kind := func(i int) (traced bool, what string) {
		if cols[i].Runs[0].Trace != nil {
			return true, "a traced run's (cowtrace run or attach)"
		}
		return false, "an experiment's"
	}
	first, firstWhat := kind(0)
	for i, c := range cols {
		traced, what := kind(i)
		for _, r := range c.Runs {
			if (r.Trace != nil) != traced {
				return usagef("%s: holds traced runs and experiments together", files[i])
			}
		}
		if traced && len(c.Runs) != 1 {
			return usagef("%s: a traced report holds one run, this one %d", files[i], len(c.Runs))
		}
		if traced != first {
			return usagef("%s is %s report and %s %s: compare puts reports of one kind side by side", files[0], firstWhat, files[i], what)
		}
	}
	return nil
}
