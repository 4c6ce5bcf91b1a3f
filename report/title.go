package report

import (
	"fmt"
	"strings"
)

// Title is the one-line description of what was run.
func Title(run *Run) string {
	if run.Trace != nil {
		return traceTitle(run)
	}
	touched := "written before fork"
	if !run.Touched {
		touched = "not touched before fork"
	}
	scenario := ""
	if run.Scenario != "" {
		scenario = " [" + run.Scenario + "]"
	}
	return fmt.Sprintf("cowtrace%s: kernel %s, %d blocks x %d bytes (%.1f MiB) %s, one byte per block at offset %d",
		scenario, run.Kernel, run.Blocks, run.BlockSize,
		float64(run.Blocks)*float64(run.BlockSize)/(1<<20), touched, run.Offset)
}

// AtExitMethod ends the method of a counter that each inherited task's copy
// counts and its samples report (count mode on a followed program).
const AtExitMethod = ", each task's own, from samples of its counters as it leaves a CPU and exits"

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
