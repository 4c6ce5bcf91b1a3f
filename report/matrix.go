package report

// Matrix is the result of cowtrace matrix: one run per scenario, each with
// the outcome the scenario states and whether it held.
type Matrix struct {
	SchemaVersion int           `json:"schema_version"`
	Kernel        string        `json:"kernel"`
	Scenarios     []MatrixEntry `json:"scenarios"`
}

// MatrixEntry is one scenario of a matrix.
type MatrixEntry struct {
	Name         string         `json:"name"`
	Does         string         `json:"does"`
	Outcome      string         `json:"outcome"`
	Why          string         `json:"why"`
	Expectations []ExpectResult `json:"expectations"`
	Held         bool           `json:"held"` // every expectation held
	// Finding is what the run found about this kernel that decides the
	// outcome (e.g. no shared zero page), in words.
	Finding string `json:"finding" null:"empty"`
	// NotApplicable says why this kernel cannot run the scenario (no
	// transparent huge pages, say); Run is then nil and Held true.
	NotApplicable string `json:"not_applicable" null:"empty"`
	Run           *Run   `json:"run"`
}

// ExpectResult is one checked expectation.
type ExpectResult struct {
	Expect string `json:"expect"`
	Held   bool   `json:"held"`
	Detail string `json:"detail" null:"empty"` // why not, with the values seen
	// NotChecked says why the run's methods cannot decide it (Held is
	// then true: nothing contradicted it).
	NotChecked string `json:"not_checked" null:"empty"`
}
