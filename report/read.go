package report

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// Compared is one column of a comparison: the runs of one file (one run, or
// every scenario of a matrix) under a label.
type Compared struct {
	Label string
	Runs  []*Run
}

// ReadRuns decodes a report written with --format json, of any schema
// version up to SchemaVersion: one run, or a matrix. Anything else is an error that says what was wrong.
func ReadRuns(data []byte) ([]*Run, error) {
	var probe struct {
		SchemaVersion *int            `json:"schema_version"`
		Scenarios     json.RawMessage `json:"scenarios"`
		Processes     json.RawMessage `json:"processes"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&probe); err != nil {
		return nil, fmt.Errorf("not JSON: %w", err)
	}
	switch {
	case probe.SchemaVersion == nil:
		return nil, errors.New("not a cowtrace report (no schema_version)")
	case *probe.SchemaVersion < 1 || *probe.SchemaVersion > SchemaVersion:
		// Version 1 differs only in leaving keys out where version 2
		// writes null, which decodes the same.
		return nil, fmt.Errorf("schema_version %d, this cowtrace reads 1 to %d", *probe.SchemaVersion, SchemaVersion)
	case probe.Scenarios != nil:
		var m Matrix
		if err := json.Unmarshal(data, &m); err != nil {
			return nil, fmt.Errorf("matrix: %w", err)
		}
		var runs []*Run
		for _, e := range m.Scenarios {
			if e.Run == nil {
				return nil, fmt.Errorf("matrix: scenario %q has no run", e.Name)
			}
			runs = append(runs, e.Run)
		}
		return runs, nil
	case probe.Processes == nil:
		return nil, errors.New("not a cowtrace report (no processes)")
	}
	var r Run
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("run: %w", err)
	}
	return []*Run{&r}, nil
}
