package main

import (
	"fmt"
	"strings"

	"github.com/cowtrace/cowtrace/report"
	"github.com/cowtrace/cowtrace/report/expect"
)

// The rows of each kind of run, so that --expect can refuse a selector the
// run will never have before the run starts. run and attach give the roles
// of follow's rows: the command or the attached process, its descendants,
// and thread rows with --threads.
var (
	experimentRows = expect.Rows{} // roles depend on the scenario (writer1, ...)
	runRows        = expect.Rows{Roles: []string{"command", "child", "thread"}, Lineage: true}
	attachRows     = expect.Rows{Roles: []string{"attached", "child", "thread"}, Lineage: true}
)

// parseExpectations parses every --expect before anything runs: a mistake
// in one is a usage error (exit 2).
func parseExpectations(texts []string, rows expect.Rows) ([]expect.Expectation, error) {
	var es []expect.Expectation
	for _, t := range texts {
		e, err := expect.Parse(t)
		if err == nil {
			err = e.Fits(rows)
		}
		if err != nil {
			return nil, usageError{fmt.Errorf("--expect: %w", err)}
		}
		es = append(es, e)
	}
	return es, nil
}

// failures are the lines of a run that failed after its report was written:
// each failed expectation with the values seen, and a traced command's own
// failed status.
type failures struct {
	errs []error
	code int
}

func (f failures) Error() string {
	lines := make([]string, len(f.errs))
	for i, err := range f.errs {
		lines[i] = err.Error()
	}
	// main prints "cowtrace: " before the first line; the others get it here.
	return strings.Join(lines, "\ncowtrace: ")
}

func (f failures) ExitCode() int { return f.code }

// checkExpectations checks es on run after the report has been written.
func checkExpectations(run *report.Run, es []expect.Expectation) error {
	if failed := expect.CheckAll(run, es); len(failed) > 0 {
		return failures{failed, exitFailure}
	}
	return nil
}
