package report

// Attribution kinds of Run.CopiesBy (--by).
const (
	// ByMapping splits a process's copies by the mapping each copied page
	// lies in: "[heap]", "[stack]", "[anon]", a file's path.
	ByMapping = "mapping"
	// ByFunction splits them by the user function whose write faulted.
	ByFunction = "function"
)

// Share is one line of a process's split copies (Process.CopiesBy): a
// mapping or a function and the copies that landed in it or that it caused.
type Share struct {
	Name   string `json:"name"`
	Copies uint64 `json:"copies"`
	// Pages is how many distinct pages those copies were of: fewer than
	// Copies when a page was copied again (after a later fork).
	Pages uint64 `json:"pages"`
	// Share is Copies over the process's copies that have a share (0..1).
	Share float64 `json:"share"`
}

// Timeseries is one process's cumulative copies and write-protect faults
// over the trace, for --plot. It is not part of the JSON contract.
type Timeseries struct {
	Pid    int
	Comm   string
	Copies []Point
	Faults []Point
}

// Point is a cumulative count at a time since the trace started.
type Point struct {
	Ms float64
	N  uint64
}
