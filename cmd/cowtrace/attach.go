package main

import (
	"context"
	"errors"
	"io"

	"github.com/cowtrace/cowtrace/follow"
)

const attachUsage = `Usage: cowtrace attach -p PID [--duration D] [flags]

Follows running process PID (every thread it has) and every process it forks
from then on, until Ctrl-C, the duration, or PID's exit, and prints one row
per process like cowtrace run. Children PID forked before the attach are not
followed.

--expect selects the attached process by the role "attached", its children
by "child"; see cowtrace run -h for the rest of the grammar.

Flags:
`

func cmdAttach(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	fs := newFlagSet("cowtrace attach", attachUsage)
	tf := addTraceFlags(fs)
	pid := fs.Int("p", 0, "the `PID` to attach to")
	duration := fs.Duration("duration", 0, "stop after `D` (e.g. 10s); 0: until Ctrl-C or the process's exit")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("attach: unexpected argument %q (see cowtrace attach -h)", fs.Arg(0))
	}
	if *pid <= 0 {
		return usagef("attach: -p PID is required (a positive process id)")
	}
	if *duration < 0 {
		return usagef("attach: --duration %v is negative", *duration)
	}
	ts, err := tf.setup(attachRows)
	if err != nil {
		return err
	}
	out, err := tf.output(&ts, stdout)
	if err != nil {
		return err
	}
	reported := false
	defer func() {
		if cerr := out.close(reported); err == nil {
			err = cerr
		}
	}()

	run, err := follow.Attach(ctx, ts.opt, follow.AttachSpec{Pid: *pid, Duration: *duration, Threads: *tf.threads})
	if err != nil {
		if errors.Is(err, follow.ErrNoProcess) {
			return usagef("attach: no process with pid %d", *pid)
		}
		return err
	}
	if err := tf.writeTrace(out, run, ts.format); err != nil {
		return err
	}
	reported = true
	return checkExpectations(run, ts.expect)
}
