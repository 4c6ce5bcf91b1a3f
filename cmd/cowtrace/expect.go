package main

import (
	"fmt"
	"strings"

	"github.com/cowtrace/cowtrace/report"
	"github.com/cowtrace/cowtrace/report/expect"
)

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

// incomplete says why the run's figures do not all add up, nil when they do.
func incomplete(run *report.Run) error {
	if len(run.Incomplete) == 0 {
		return nil
	}
	return fmt.Errorf("the measurement is incomplete, the figures it touches are null: %s", strings.Join(run.Incomplete, "; "))
}

// checkExpectations checks es on run after the report has been written; a
// run whose figures do not all add up exits exitIncomplete when nothing
// else failed.
func checkExpectations(run *report.Run, es []expect.Expectation) error {
	if failed := expect.CheckAll(run, es); len(failed) > 0 {
		return failures{failed, exitFailure}
	}
	if err := incomplete(run); err != nil {
		return failures{[]error{err}, exitIncomplete}
	}
	return nil
}
