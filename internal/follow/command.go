package follow

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os/exec"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/cowtrace/cowtrace/internal/engine"
)

// Stdio is where the command's standard streams go.
type Stdio struct {
	Stdin io.Reader
	// Stdout and Stderr are passed as they are when they are *os.File,
	// else copied through pipes by os/exec.
	Stdout, Stderr io.Writer
}

// ExecError is a command that could not be executed; its exit code is the
// shell's: 127 when the file is missing, else 126.
type ExecError struct {
	Path string
	Err  error
}

func (e *ExecError) Error() string { return fmt.Sprintf("exec %s: %v", e.Path, e.Err) }
func (e *ExecError) Unwrap() error { return e.Err }

// ExitCode is the status a shell gives a command it cannot run.
func (e *ExecError) ExitCode() int {
	if errors.Is(e.Err, syscall.ENOENT) {
		return 127
	}
	return 126
}

// ownFailure says whether starting the command failed for want of
// cowtrace's own resources (descriptors for os/exec's pipes, memory or
// processes for the fork) rather than because the command cannot be
// executed: the former is cowtrace's error, not the command's 126.
func ownFailure(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOMEM) || errors.Is(err, syscall.EAGAIN)
}

// startCommand opens every event on a thread of this process with inherit,
// off until an exec, and forks the command from that thread: the command
// inherits them, and the kernel turns them on at its exec, before its first
// instruction, exactly as on a task perf stat holds at a gate, without a
// gate. The thread is this goroutine's, locked and never unlocked: the Go
// runtime ends a locked thread with its goroutine, so no other goroutine runs
// on it and it forks nothing else (the runtime starts new threads from a
// template thread, not from a locked one). Its own copies of the events stay
// off, since it never execs; they end with it, and what the command's copies
// record still goes to the rings.
func startCommand(s *engine.Session, spec RunSpec) (*exec.Cmd, error) {
	type started struct {
		cmd *exec.Cmd
		err error
	}
	ch := make(chan started, 1)
	go func() {
		runtime.LockOSThread()
		if err := s.OpenInherited(unix.Gettid(), true); err != nil {
			ch <- started{err: err}
			return
		}
		cmd := &exec.Cmd{Path: spec.Path, Args: spec.Argv,
			Stdin: spec.Stdin, Stdout: spec.Stdout, Stderr: spec.Stderr,
			SysProcAttr: &syscall.SysProcAttr{Credential: spec.Cred}}
		// Time zero precedes the exec, which every row starts from.
		s.MarkStart()
		if err := cmd.Start(); err != nil {
			var pe *fs.PathError // "fork/exec PATH: ERRNO"
			if errors.As(err, &pe) {
				err = pe.Err
			}
			if ownFailure(err) {
				ch <- started{err: fmt.Errorf("start %s: %w", spec.Path, err)}
				return
			}
			ch <- started{err: &ExecError{Path: spec.Path, Err: err}}
			return
		}
		ch <- started{cmd: cmd}
	}()
	st := <-ch
	return st.cmd, st.err
}
