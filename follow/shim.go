package follow

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// shimArg is the hidden first argument that makes cowtrace's own binary the
// gated exec shim of `cowtrace run`.
const shimArg = "__cowtrace_exec_shim"

// gateFd is where the shim finds the read end of its gate pipe (ExtraFiles[0]).
const gateFd = 3

// RunIfShim makes this process the exec shim when it was started as one by
// StartGated, and never returns then: it waits at its gate until the tracer
// has opened every event, and execs the command.
//
// It must run from an init function (package main's, or a test's): during
// init the Go runtime keeps the main goroutine on the main thread, so the
// exec below is made by the thread group leader, the task the tracer opened
// its events on. An exec from another thread would take over the leader's
// pid in a new task that has no events.
func RunIfShim() {
	if len(os.Args) < 4 || os.Args[1] != shimArg {
		return
	}
	runtime.LockOSThread()
	if unix.Gettid() != unix.Getpid() {
		fmt.Fprintln(os.Stderr, "cowtrace: exec shim: not on the main thread (RunIfShim must be called from init)")
		os.Exit(127)
	}
	// A raw read: the byte comes once every event is open; EOF means the
	// tracer gave up (or died) and nothing must run.
	var b [1]byte
	for {
		n, err := unix.Read(gateFd, b[:])
		if err == unix.EINTR {
			continue
		}
		if n != 1 {
			os.Exit(127)
		}
		break
	}
	unix.Close(gateFd)
	path, argv := os.Args[2], os.Args[3:]
	err := syscall.Exec(path, argv, os.Environ())
	fmt.Fprintf(os.Stderr, "cowtrace: exec %s: %v\n", path, err)
	if errors.Is(err, syscall.ENOENT) {
		os.Exit(127)
	}
	os.Exit(126)
}

// Command is a command started behind a gate: it exists (so that events can
// be opened on its pid) but runs nothing of its own until Release.
type Command struct {
	Cmd  *exec.Cmd
	gate *os.File // write end; nil once released or aborted
}

// Stdio is where the command's standard streams go.
type Stdio struct {
	Stdin io.Reader
	// Stdout and Stderr are passed as they are when they are *os.File,
	// else copied through pipes by os/exec.
	Stdout, Stderr io.Writer
}

// StartGated starts cowtrace's own binary as the shim of path (already
// resolved with exec.LookPath) with argv (argv[0] as the user typed it),
// running as cred when non-nil.
func StartGated(path string, argv []string, cred *syscall.Credential, stdio Stdio) (*Command, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find cowtrace's own binary for the exec shim: %w", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	cmd := exec.Command(self, append([]string{shimArg, path}, argv...)...)
	cmd.Stdin = stdio.Stdin
	cmd.Stdout, cmd.Stderr = stdio.Stdout, stdio.Stderr
	cmd.ExtraFiles = []*os.File{r}
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	if err := cmd.Start(); err != nil {
		w.Close()
		return nil, fmt.Errorf("start exec shim: %w", err)
	}
	return &Command{Cmd: cmd, gate: w}, nil
}

// Pid is the command's pid (the shim's until it execs).
func (c *Command) Pid() int { return c.Cmd.Process.Pid }

// Release lets the command exec.
func (c *Command) Release() error {
	if c.gate == nil {
		return errors.New("exec shim: already released")
	}
	_, err := c.gate.Write([]byte{1})
	c.gate.Close()
	c.gate = nil
	if err != nil {
		return fmt.Errorf("release exec shim: %w", err)
	}
	return nil
}

// Abort closes the gate without releasing: the shim exits with 127 without
// running anything, and Abort waits for it.
func (c *Command) Abort() {
	if c.gate != nil {
		c.gate.Close()
		c.gate = nil
		_ = c.Cmd.Wait()
	}
}
