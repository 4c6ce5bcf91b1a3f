// Command cowtrace proves and measures copy-on-write after fork with
// perf_event_open: page faults, write-protect faults and page copies per
// process, with no BPF, kernel module or debug info.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/cowtrace/cowtrace/internal/engine"
	"github.com/cowtrace/cowtrace/internal/workload"
)

// Exit codes. cowtrace run also ends with its command's status.
const (
	exitOK          = 0
	exitFailure     = 1  // the run failed
	exitUsage       = 2  // bad command line or input
	exitIncomplete  = 3  // the run ended, but some figure does not add up: null, with its reason
	exitInternal    = 70 // a bug in cowtrace (a panic): sysexits.h's EX_SOFTWARE
	exitInterrupted = 130
)

// usageError marks errors in what the user typed: exit code 2.
type usageError struct{ err error }

func (u usageError) Error() string { return u.err.Error() }
func (u usageError) Unwrap() error { return u.err }

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

func main() {
	// The workload is this same binary re-executed: it must take over
	// before anything else runs.
	workload.RunIfWorker()
	os.Exit(runProcess(os.Args[1:], os.Stdout))
}

// runProcess is run as the whole process, which exits with its result.
func runProcess(args []string, stdout io.Writer) int {
	handOff = true
	// Killed by SIGPIPE (cowtrace | head, with --timeline), cowtrace would
	// leave tracefs mounted and its kprobe_events behind: with the signal
	// notified, the write fails with EPIPE instead and the run unwinds.
	// Notified, not ignored: an ignored signal stays ignored across exec,
	// in the command that cowtrace run starts.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	return run(args, stdout, os.Stderr)
}

// handOff: this process exits once its command is done, so a holder process
// may release its events after it (perfevents.HandOff), and cowtrace's user
// does not wait for the kernel's slow unregistering of each tracepoint.
// Tests run commands in their own process and leave it false.
var handOff bool

// run is main without the process around it, for tests.
func run(args []string, stdout, stderr io.Writer) (code int) {
	defer recoverInternal(stderr, &code)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	err := dispatch(ctx, args, stdout, stderr)
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, errHelp):
		return exitOK
	case ctx.Err() != nil && errors.Is(err, context.Canceled):
		fmt.Fprintln(stderr, "cowtrace: interrupted; everything it opened in the kernel was removed")
		return exitInterrupted
	}
	fmt.Fprintf(stderr, "cowtrace: %v\n", err)
	if errors.Is(err, engine.ErrInternal) {
		return exitInternal
	}
	var u usageError
	if errors.As(err, &u) {
		return exitUsage
	}
	var c exitCoder
	if errors.As(err, &c) {
		return c.ExitCode()
	}
	return exitFailure
}

// recoverInternal turns a panic of run's goroutine into one line and
// exitInternal: a user should see what broke and whom to tell, not a
// goroutine dump. By the time it runs, the deferred cleanups between the
// panic and run have removed what the run created in the kernel. With
// GOTRACEBACK set, it panics again for the stack trace.
func recoverInternal(stderr io.Writer, code *int) {
	v := recover()
	if v == nil {
		return
	}
	if tb := os.Getenv("GOTRACEBACK"); tb != "" && tb != "none" && tb != "0" {
		panic(v)
	}
	msg := strings.Join(strings.Fields(fmt.Sprint(v)), " ")
	fmt.Fprintf(stderr, "cowtrace: internal error: %s (please report)\n", msg)
	*code = exitInternal
}

// exitCoder lets a subcommand choose the exit code (expectations, a traced
// command's own status).
type exitCoder interface{ ExitCode() int }

var errHelp = errors.New("help requested")

// interruptedAfter is the line of a command that SIGINT or SIGTERM stopped
// after it wrote what it had (attach's report, the matrix's finished
// scenarios), for an exit of exitInterrupted all the same: a script can
// tell a trace cut short from one that ended as asked. what says what was
// written.
func interruptedAfter(ctx context.Context, what string) error {
	return fmt.Errorf("%s (%v)", what, context.Cause(ctx))
}
