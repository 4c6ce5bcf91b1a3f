package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cowtrace/cowtrace/internal/engine"
	"github.com/cowtrace/cowtrace/internal/follow"
)

const attachLong = `Follows running process PID (every thread it has) and every process it forks
from then on, until Ctrl-C, the duration, or PID's exit, and prints one row
per process like cowtrace run. Children PID forked before the attach are not
followed; one forked while the attach opens its events may not hold them
all, and has null figures that say so. Stopped by Ctrl-C (SIGINT) or
SIGTERM, it writes the report and exits 130 (1 when an --expect failed).

Once every event is open it prints "cowtrace: attached" on stderr, and with
--ready-fd N writes "attached" and a newline to descriptor N and closes it:
a script waits for that line instead of sleeping, and reads end of file
without the line if cowtrace failed before attaching:

  mkfifo ready
  cowtrace attach -p "$pid" --duration 10s -o out.json \
      --ready-fd 3 3>ready &
  # every fork of $pid from now on is traced:
  read line <ready && ./load.sh

--expect selects the attached process by the role "attached", its children
by "child"; see cowtrace run -h for the rest of the grammar.
`

// attachFlags are attach's flags.
type attachFlags struct {
	*traceFlags
	pid      *int
	duration *time.Duration
	readyFD  *int
}

func setupAttach(fs *flagSet) runner {
	f := &attachFlags{traceFlags: addTraceFlags(fs, engine.ModeAuto, attachRows)}
	f.pid = fs.Int("p", 0, "the `PID` to attach to")
	f.duration = fs.Duration("duration", 0, "stop after `D` (e.g. 10s); 0: until Ctrl-C or the process's exit")
	f.readyFD = fs.Int("ready-fd", -1, "once every event is open, write a line to descriptor `N` (3 or more) and close it")
	return f.run
}

func (f *attachFlags) run(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	if len(args) > 0 {
		return usagef("attach: unexpected argument %q (see cowtrace attach -h)", args[0])
	}
	if *f.pid <= 0 {
		return usagef("attach: -p PID is required (a positive process id)")
	}
	if *f.duration < 0 {
		return usagef("attach: --duration %v is negative", *f.duration)
	}
	if comm, ok := kernelThread(*f.pid); ok {
		return usagef("attach: %d (%s) is a kernel thread: it has no user memory, so no page of its own to fault, share or copy; attach to a user process", *f.pid, comm)
	}
	ts, err := f.setup()
	if err != nil {
		return err
	}
	var ready *os.File
	if f.fs.given("ready-fd") {
		if ready, err = openReadyFD(*f.readyFD); err != nil {
			return err
		}
	}
	// Closed on every path, so that a script waiting on it sees end of
	// file when the attach fails.
	defer ready.Close()
	out, err := f.output(&ts, stdout)
	if err != nil {
		return err
	}
	defer out.finish(&err)
	defer ts.dropPlot()

	attached := func() {
		// vmtest and scripts wait for exactly this line (vmtest/checks.go).
		fmt.Fprintln(stderr, "cowtrace: attached")
		if ready != nil {
			fmt.Fprintln(ready, "attached")
			ready.Close()
		}
	}
	run, err := follow.Attach(ctx, ts.opt, follow.AttachSpec{Pid: *f.pid, Duration: *f.duration, Threads: *f.threads, Attached: attached})
	if err != nil {
		if errors.Is(err, follow.ErrNoProcess) {
			return usagef("attach: no process with pid %d", *f.pid)
		}
		return err
	}
	if err := f.report(out, &ts, run, stderr); err != nil {
		return err
	}
	err = checkExpectations(run, f.expect.list)
	if ctx.Err() == nil {
		return err
	}
	// Stopped by a signal: 130 after the report, unless an --expect
	// failed, whose 1 is the verdict asked for; the lines of both are said.
	stop := interruptedAfter(ctx, "attach: interrupted; the report covers the trace until then")
	var fl failures
	if !errors.As(err, &fl) {
		return failures{[]error{stop}, exitInterrupted}
	}
	fl.errs = append(fl.errs, stop)
	if fl.code != exitFailure {
		fl.code = exitInterrupted
	}
	return fl
}

// openReadyFD takes over descriptor n of --ready-fd. It is made
// close-on-exec: the processes cowtrace starts (the copy routine's
// calibration, the closer of its events) would otherwise hold it open, and a
// script would wait for their end rather than cowtrace's.
func openReadyFD(n int) (*os.File, error) {
	if n < 3 {
		return nil, usagef("--ready-fd %d: want a descriptor of 3 or more (0, 1 and 2 are stdin, stdout and stderr)", n)
	}
	if _, err := unix.FcntlInt(uintptr(n), unix.F_GETFD, 0); err != nil {
		return nil, usagef("--ready-fd %d: not an open descriptor (%v)", n, err)
	}
	unix.CloseOnExec(n)
	return os.NewFile(uintptr(n), "ready-fd"), nil
}

// pfKthread is PF_KTHREAD of a task's flags (include/linux/sched.h).
const pfKthread = 0x00200000

// kernelThread says whether process pid is a kernel thread, and its name:
// the events would count nothing there (a kernel thread has no mm), and a
// report of zeros reads as a measurement. A process that cannot be read is
// left to the attach, which says why.
func kernelThread(pid int) (comm string, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", false
	}
	return parseKthread(string(b))
}

// parseKthread reads /proc/PID/stat: "PID (COMM) STATE PPID PGRP SESSION
// TTY TPGID FLAGS ...", COMM being any bytes, parentheses included.
func parseKthread(stat string) (comm string, ok bool) {
	open, end := strings.IndexByte(stat, '('), strings.LastIndexByte(stat, ')')
	if open < 0 || end < open {
		return "", false
	}
	fields := strings.Fields(stat[end+1:])
	if len(fields) < 7 {
		return "", false
	}
	flags, err := strconv.ParseUint(fields[6], 10, 64)
	return stat[open+1 : end], err == nil && flags&pfKthread != 0
}
