package main

import (
	"fmt"
	"strings"

	"github.com/cowtrace/cowtrace/report"
)

// parseExpectations parses every --expect before anything runs: a mistake
// in one is a usage error (exit 2).
func parseExpectations(texts []string) ([]report.Expectation, error) {
	var es []report.Expectation
	for _, t := range texts {
		e, err := report.ParseExpectation(t)
		if err != nil {
			return nil, usageError{fmt.Errorf("--expect: %w", err)}
		}
		es = append(es, e)
	}
	return es, nil
}

// expectationsFailed is exit code 1 with one line per failed expectation.
type expectationsFailed struct{ failed []error }

func (e expectationsFailed) Error() string {
	lines := make([]string, len(e.failed))
	for i, err := range e.failed {
		lines[i] = err.Error()
	}
	// main prints "cowtrace: " before the first line; the others get it here.
	return strings.Join(lines, "\ncowtrace: ")
}

func (expectationsFailed) ExitCode() int { return exitFailure }

// checkExpectations checks es on run after the report has been written.
func checkExpectations(run *report.Run, es []report.Expectation) error {
	if failed := report.CheckAll(run, es); len(failed) > 0 {
		return expectationsFailed{failed}
	}
	return nil
}
