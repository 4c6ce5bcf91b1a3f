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

	"github.com/cowtrace/cowtrace/engine"
	"github.com/cowtrace/cowtrace/workload"
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

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "experiment":
			return cmdExperiment(ctx, args[1:], stdout, stderr)
		case "run":
			return cmdRun(ctx, args[1:], stdout, stderr)
		case "attach":
			return cmdAttach(ctx, args[1:], stdout, stderr)
		case "matrix":
			return cmdMatrix(ctx, args[1:], stdout, stderr)
		case "doctor":
			return cmdDoctor(ctx, args[1:], stdout)
		case "compare":
			return cmdCompare(args[1:], stdout)
		case "version", "--version", "-version":
			if len(args) > 1 {
				return usagef("version: unexpected argument %q", args[1])
			}
			fmt.Fprintln(stdout, versionLine())
			return nil
		case "help":
			_, err := fmt.Fprint(stdout, topUsage)
			return err
		}
	}
	return cmdExperiment(ctx, args, stdout, stderr)
}

const topUsage = `cowtrace proves and measures copy-on-write after fork with perf_event_open.

Usage:
  cowtrace [flags]              run the fork/copy-on-write experiment (as "experiment")
  cowtrace experiment [flags]   the same
  cowtrace matrix [flags]       every scenario of the experiment in one table
  cowtrace compare A.json B.json ...  runs side by side, differences marked
  cowtrace run [flags] -- CMD [ARGS...]  trace CMD and every process it forks, one row each
  cowtrace attach -p PID [flags]         trace a running process and the children it forks
  cowtrace doctor [--format json]  what this kernel and these privileges give: methods, and what better ones take
  cowtrace version              version, commit, Go release and platform (also --version)
  cowtrace help                 this text

Run "cowtrace -h" for the experiment's flags.

Exit status: 0 success; 1 the run failed (or an --expect did not hold); 2 bad
command line or input; 3 the measurement is incomplete (figures that do not
add up are null, the report says why); 70 internal error (a bug in cowtrace:
please report it); 130 interrupted. cowtrace run ends with CMD's status
instead when CMD fails.
`
