package follow

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cowtrace/cowtrace/internal/engine"
	"github.com/cowtrace/cowtrace/report"
)

// RunSpec is the command of `cowtrace run`.
type RunSpec struct {
	Path string   // resolved with exec.LookPath
	Argv []string // argv[0] as typed
	Cred *syscall.Credential
	Stdio
	// Signals are forwarded to the command while it runs.
	Signals <-chan os.Signal
	Threads bool
	// Linger is how long, after the command exits, the trace goes on
	// following the processes it left running, until they exit: 0 stops
	// at the command's exit.
	Linger time.Duration
	// Duration, when not 0, is how long the command may run: then it is
	// sent SIGTERM, as timeout(1) does, and followed until it exits; the
	// trace says it ended by "duration".
	Duration time.Duration
}

// Run opens every event, starts the command with them (see startCommand),
// and follows it and every descendant until the command exits. The
// command's status is in the run's Trace.ExitCode; a command that cannot be
// executed is an *ExecError. Cancelling ctx stops only the calibration that
// precedes the start; once the command runs, signals are forwarded to it
// instead and the trace ends when it exits.
func Run(ctx context.Context, opt Options, spec RunSpec) (_ *report.Run, err error) {
	s, tl, col, err := newSession(ctx, opt, true)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if spec.Linger > 0 {
		// The command's orphans become cowtrace's children instead of
		// init's, so that their exits can be waited for (lingerFor).
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			return nil, fmt.Errorf("become the subreaper of the command's orphans: %w", err)
		}
		defer unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
	}
	cmd, err := startCommand(s, spec)
	if err != nil {
		return nil, err
	}
	pid := cmd.Process.Pid
	// The records wait in the rings until Start: read after AddRoot, the
	// command's exec is known to be the root's.
	s.AddRoot(pid, pid, os.Getpid(), filepath.Base(spec.Argv[0]))
	opt.Stream.started(s, pid)
	s.Start()

	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var timeout <-chan time.Time
	if spec.Duration > 0 {
		tm := time.NewTimer(spec.Duration)
		defer tm.Stop()
		timeout = tm.C
	}
	endedBy := "exit"
	var waitErr error
wait:
	for {
		select {
		case sig := <-spec.Signals:
			_ = cmd.Process.Signal(sig)
		case <-timeout:
			_ = cmd.Process.Signal(syscall.SIGTERM)
			endedBy, timeout = "duration", nil
		case waitErr = <-done:
			break wait
		}
	}
	lingered := lingerFor(spec.Linger, spec.Signals)
	// The command's EXIT records, and those of every descendant it waited
	// for, were written before wait4 returned: Stop reads every ring to
	// the end.
	if err := s.Stop(); err != nil {
		return nil, err
	}
	tl.flush()
	run := result(s, spec.Threads, true)
	col.finish(s, run)
	run.Trace.Command = append([]string{}, spec.Argv...)
	run.Trace.EndedBy = endedBy
	if lingered != "" {
		run.Notes = append(run.Notes, lingered)
	}
	code, err := exitCode(cmd.ProcessState, waitErr)
	if err != nil {
		return nil, err
	}
	run.Trace.ExitCode = &code
	return run, nil
}

// lingerFor waits, after the command exited, for the processes it left
// running, which the subreaper setting made cowtrace's children: until
// none is left (wait4 says ECHILD), d passes, or a signal comes. It reaps
// them, and says what it did, "" when nothing was left.
func lingerFor(d time.Duration, signals <-chan os.Signal) string {
	if d <= 0 {
		return ""
	}
	start := time.Now()
	deadline := start.Add(d)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	reaped := 0
	for {
		for {
			var ws unix.WaitStatus
			pid, err := unix.Wait4(-1, &ws, unix.WNOHANG|unix.WALL, nil)
			if errors.Is(err, unix.ECHILD) {
				if reaped == 0 {
					return ""
				}
				return fmt.Sprintf("the command left %d processes running; the trace followed them until the last exited, %s after the command",
					reaped, report.FormatMs(float64(time.Since(start))/1e6))
			}
			if err != nil && !errors.Is(err, unix.EINTR) || pid <= 0 {
				break
			}
			reaped++
		}
		select {
		case <-tick.C:
			if time.Now().After(deadline) {
				return fmt.Sprintf("the command left processes running; the trace followed them for %s (--linger) and ended with some still running", d)
			}
		case <-signals:
			return "the command left processes running; a signal ended the trace before they exited"
		}
	}
}

// exitCode is the status as a shell reports it: the exit code, or 128+N for
// a death by signal N.
func exitCode(ps *os.ProcessState, waitErr error) (int, error) {
	if ps == nil {
		return 0, fmt.Errorf("wait for command: %w", waitErr)
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal()), nil
	}
	return ps.ExitCode(), nil
}

// AttachSpec is the process of `cowtrace attach`.
type AttachSpec struct {
	Pid      int
	Duration time.Duration // 0: until ctx is cancelled or the process exits
	Threads  bool
	// Attached, when set, runs once every event is open and being read.
	// Tests use it to make the process fork only after the attach.
	Attached func()
}

// Attach follows a running process (every thread it has) and every task it
// creates from then on, until ctx is cancelled, the duration passes or the
// process exits. A pid that does not exist wraps ErrNoProcess.
func Attach(ctx context.Context, opt Options, spec AttachSpec) (_ *report.Run, err error) {
	if spec.Pid <= 0 {
		return nil, fmt.Errorf("pid %d: %w", spec.Pid, ErrNoProcess)
	}
	// The pidfd pins the process: its exit is seen even if the pid is
	// reused at once.
	pidfd, err := unix.PidfdOpen(spec.Pid, 0)
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			return nil, fmt.Errorf("pid %d: %w", spec.Pid, ErrNoProcess)
		}
		return nil, fmt.Errorf("pidfd_open %d: %w", spec.Pid, err)
	}
	defer unix.Close(pidfd)
	if _, err := engine.Threads(spec.Pid); err != nil {
		return nil, err
	}

	s, tl, col, err := newSession(ctx, opt, false)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	if err := openProcess(s, spec.Pid); err != nil {
		return nil, err
	}
	if col != nil && col.by != "" {
		// Read once the events are open: a mapping made meanwhile is in
		// both, which does no harm.
		col.addInitial(spec.Pid)
	}
	opt.Stream.started(s, spec.Pid)
	s.Start()
	start := time.Now()
	if spec.Attached != nil {
		spec.Attached()
	}
	endedBy := waitEnd(ctx, pidfd, spec.Duration)
	if err := s.Stop(); err != nil {
		return nil, err
	}
	tl.flush()
	run := result(s, spec.Threads, false)
	col.finish(s, run)
	run.Trace.AttachedPid = spec.Pid
	run.Trace.EndedBy = endedBy
	if endedBy == "exit" {
		run.Notes = append(run.Notes, fmt.Sprintf("process %d exited during the trace, %s after the attach", spec.Pid, report.FormatMs(float64(time.Since(start))/1e6)))
	}
	return run, nil
}

// openProcess opens the events on every thread of process pid. Threads
// created while the first ones are being opened inherit from their creator
// if it was already open; list again until nothing new shows up.
func openProcess(s *engine.Session, pid int) error {
	opened := map[int]bool{}
	for {
		tids, err := engine.Threads(pid)
		if err != nil {
			return err
		}
		added := false
		for _, tid := range tids {
			if opened[tid] {
				continue
			}
			opened[tid] = true
			added = true
			if err := s.OpenInherited(tid, false); err != nil {
				if errors.Is(err, ErrNoProcess) && tid != pid {
					continue // a thread that ended meanwhile
				}
				return err
			}
			ppid, comm := procStat(pid, tid)
			s.AddRoot(pid, tid, ppid, comm)
		}
		if !added {
			return nil
		}
	}
}

// waitEnd waits for what ends an attach: ctx ("interrupt"), the duration
// when not 0 ("duration"), or the process's exit, seen on its pidfd ("exit").
func waitEnd(ctx context.Context, pidfd int, d time.Duration) string {
	var timer <-chan time.Time
	if d > 0 {
		tm := time.NewTimer(d)
		defer tm.Stop()
		timer = tm.C
	}
	exited := make(chan struct{})
	stopPoll := make(chan struct{})
	defer close(stopPoll)
	go func() {
		fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
		for {
			select {
			case <-stopPoll:
				return
			default:
			}
			n, err := unix.Poll(fds, 100)
			if err == nil && n > 0 {
				close(exited)
				return
			}
		}
	}()
	select {
	case <-ctx.Done():
		return "interrupt"
	case <-timer:
		return "duration"
	case <-exited:
		return "exit"
	}
}

// procStat reads a task's parent pid and name from /proc; zero values when
// the task is gone.
func procStat(pid, tid int) (ppid int, comm string) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/stat", pid, tid))
	if err != nil {
		return 0, ""
	}
	s := string(b)
	// The name is in parentheses and may itself hold spaces and ')'.
	open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || closing < open {
		return 0, ""
	}
	comm = s[open+1 : closing]
	fields := strings.Fields(s[closing+1:])
	if len(fields) >= 2 {
		ppid, _ = strconv.Atoi(fields[1])
	}
	return ppid, comm
}
