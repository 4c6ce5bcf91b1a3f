package report

import (
	"fmt"
	"strconv"
	"strings"
)

// Trace describes a run of `cowtrace run -- CMD` or `cowtrace attach -p PID`:
// a process tree followed across fork, clone and exec, one row per process
// (and per thread with --threads). It is nil for the experiment.
type Trace struct {
	Command     []string `json:"command,omitempty"`      // run: CMD ARGS...
	AttachedPid int      `json:"attached_pid,omitempty"` // attach: the pid
	// DurationMs is how long cowtrace traced.
	DurationMs float64 `json:"duration_ms"`
	// EndedBy says what ended the trace: "exit" (CMD or the attached
	// process exited), "duration", "interrupt".
	EndedBy string `json:"ended_by"`
	// ExitCode is CMD's exit status as a shell reports it (128+N for a
	// signal); nil for attach.
	ExitCode *int `json:"exit_code,omitempty"`
	// StillRunning are the pids of processes still alive when the trace
	// stopped: their rows cover the traced time only.
	StillRunning []int `json:"still_running,omitempty"`
	// Threads says whether thread rows are included (--threads).
	Threads bool `json:"threads"`
}

// Lineage places a row of a traced run in its process tree. It is embedded in
// Process, so its fields sit at the row's top level in JSON; it is nil on the
// experiment's rows.
type Lineage struct {
	// Tid is set on thread rows (--threads); process rows leave it 0 and
	// count every thread of the process.
	Tid  int `json:"tid,omitempty"`
	Ppid int `json:"ppid"`
	// Comm is the last command name (after exec); Comms every name the
	// process had, in order, when it had more than one.
	Comm  string   `json:"comm"`
	Comms []string `json:"comms,omitempty"`
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

// traceColumns are the columns of a traced run: the tree, then the measures.
func traceColumns(run *Run) []column {
	lin := func(get func(l *Lineage) string) func(p *Process) string {
		return func(p *Process) string {
			if p.Lineage == nil {
				return "-"
			}
			return get(p.Lineage)
		}
	}
	m := run.Methods
	cols := []column{
		{"pid", "", func(p *Process) string { return strconv.Itoa(p.Pid) }},
		{"ppid", "", lin(func(l *Lineage) string { return strconv.Itoa(l.Ppid) })},
	}
	if run.Trace.Threads {
		cols = append(cols, column{"tid", "", lin(func(l *Lineage) string {
			if l.Tid == 0 {
				return "all"
			}
			return strconv.Itoa(l.Tid)
		})})
	}
	cols = append(cols,
		column{"depth", "", lin(func(l *Lineage) string { return strconv.Itoa(l.Depth) })},
		column{"command", "", lin(func(l *Lineage) string { return l.Comm })},
		column{"lifetime", "", lin(func(l *Lineage) string {
			s := FormatMs(l.LifetimeMs)
			if !l.Exited {
				s += " (running)"
			}
			return s
		})},
	)
	cols = append(cols, faultColumns(m)...)
	if m["wp_faults"] != "" {
		cols = append(cols, column{"wp faults", m["wp_faults"], func(p *Process) string { return num(p.WPFaults) }})
	}
	return append(cols, copyColumns(run)...)
}

// FormatMs renders a duration in milliseconds for people.
func FormatMs(ms float64) string {
	switch {
	case ms >= 10000:
		return fmt.Sprintf("%.1f s", ms/1000)
	case ms >= 1000:
		return fmt.Sprintf("%.2f s", ms/1000)
	case ms >= 10:
		return fmt.Sprintf("%.0f ms", ms)
	}
	return fmt.Sprintf("%.2f ms", ms)
}

// traceTitle is the one-line description of a traced run.
func traceTitle(run *Run) string {
	t := run.Trace
	var b strings.Builder
	if len(t.Command) > 0 {
		fmt.Fprintf(&b, "cowtrace run: kernel %s, command %q", run.Kernel, strings.Join(t.Command, " "))
		if t.ExitCode != nil {
			fmt.Fprintf(&b, ", exit status %d", *t.ExitCode)
		}
	} else {
		fmt.Fprintf(&b, "cowtrace attach: kernel %s, pid %d", run.Kernel, t.AttachedPid)
	}
	fmt.Fprintf(&b, ", traced %s, ended by %s", FormatMs(t.DurationMs), t.EndedBy)
	if len(t.StillRunning) > 0 {
		fmt.Fprintf(&b, ", %d process(es) still running", len(t.StillRunning))
	}
	if len(run.Incomplete) > 0 {
		b.WriteString(", INCOMPLETE (see below)")
	}
	return b.String()
}
