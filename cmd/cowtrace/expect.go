package main

import (
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

// checkExpectations checks es on run after the report has been written.
func checkExpectations(run *report.Run, es []expect.Expectation) error {
	if failed := expect.CheckAll(run, es); len(failed) > 0 {
		return failures{failed, exitFailure}
	}
	return nil
}
