package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/cowtrace/cowtrace/report"
)

const compareUsage = `Usage: cowtrace compare [flags] A.json B.json ...

Shows runs saved with --format json (single runs or cowtrace matrix) side by
side: a column per file, labelled by --label, else by the run's own label,
else by its kernel; rows whose values differ are marked. With --format
markdown the table pastes into a CI job summary or a pull request.

Flags:
`

func cmdCompare(args []string, stdout io.Writer) error {
	fs := newFlagSet("cowtrace compare", compareUsage)
	format := fs.String("format", "table", "output format: table or markdown")
	var labels stringList
	fs.Var(&labels, "label", "`LABEL` of the next file's column, in order (repeatable)")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	f, err := report.ParseFormat(*format)
	if err != nil || (f != report.Table && f != report.Markdown) {
		return usagef("unknown compare format %q (want table or markdown)", *format)
	}
	files := fs.Args()
	if len(files) < 2 {
		return usagef("compare needs at least two JSON reports, got %d", len(files))
	}
	if len(labels) > len(files) {
		return usagef("%d labels for %d files", len(labels), len(files))
	}
	cols := make([]report.Compared, len(files))
	used := map[string]int{}
	for i, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			return usageError{err}
		}
		runs, err := report.ReadRuns(data)
		if err != nil {
			return usagef("%s: %v", name, err)
		}
		if len(runs) == 0 {
			return usagef("%s: no runs", name)
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
	return report.Compare(stdout, cols, f)
}
