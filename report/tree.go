package report

// Trace describes a run of `cowtrace run -- CMD` or `cowtrace attach -p PID`:
// a process tree followed across fork, clone and exec, one row per process
// (and per thread with --threads). It is nil for the experiment.
type Trace struct {
	Command     []string `json:"command"`                   // run: CMD ARGS...
	AttachedPid int      `json:"attached_pid" null:"empty"` // attach: the pid
	// DurationMs is how long cowtrace traced.
	DurationMs float64 `json:"duration_ms"`
	// EndedBy says what ended the trace: "exit" (CMD or the attached
	// process exited), "duration", "interrupt".
	EndedBy string `json:"ended_by"`
	// ExitCode is CMD's exit status as a shell reports it (128+N for a
	// signal); nil for attach.
	ExitCode *int `json:"exit_code"`
	// StillRunning are the pids of processes still alive when the trace
	// stopped: their rows cover the traced time only.
	StillRunning []int `json:"still_running"`
	// Threads says whether thread rows are included (--threads), after
	// the row of each process that had more than one thread.
	Threads bool `json:"threads"`
}

// Lineage places a row of a traced run in its process tree. It is embedded in
// Process, so its fields sit at the row's top level in JSON; it is nil on the
// experiment's rows.
type Lineage struct {
	// Tid is set on thread rows (--threads); process rows leave it 0 (null
	// in JSON) and count every thread of the process.
	Tid  int `json:"tid" null:"empty"`
	Ppid int `json:"ppid"`
	// Comm is the last command name (after exec); Comms every name the
	// process had, in order, when it had more than one (JSON lists the
	// one name otherwise).
	Comm  string   `json:"comm"`
	Comms []string `json:"comms"`
	// Depth is 0 for the traced command or the attached process, 1 for its
	// children, and so on.
	Depth int `json:"depth"`
	// StartMs is when the row's span began, in ms since the trace started;
	// LifetimeMs how long it lasted (to exit, or to the end of the trace).
	StartMs    float64 `json:"start_ms"`
	LifetimeMs float64 `json:"lifetime_ms"`
	Exited     bool    `json:"exited"`
	// Threads is the number of tasks the process had during the trace.
	Threads int `json:"threads"`
}
