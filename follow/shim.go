package follow

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
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
	if len(os.Args) < 5 || os.Args[1] != shimArg {
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
	// The identity changes here, not when the shim is started: cowtrace's
	// own binary need not be executable by the user CMD runs as.
	if err := become(os.Args[2]); err != nil {
		fmt.Fprintf(os.Stderr, "cowtrace: exec shim: %v\n", err)
		os.Exit(126)
	}
	path, argv := os.Args[3], os.Args[4:]
	err := syscall.Exec(path, argv, os.Environ())
	fmt.Fprintf(os.Stderr, "cowtrace: exec %s: %v\n", path, err)
	if errors.Is(err, syscall.ENOENT) {
		os.Exit(127)
	}
	os.Exit(126)
}

// credArg encodes cred for the shim's command line: "-" for none, else
// "uid:gid:group,group...".
func credArg(cred *syscall.Credential) string {
	if cred == nil {
		return "-"
	}
	groups := make([]string, len(cred.Groups))
	for i, g := range cred.Groups {
		groups[i] = strconv.FormatUint(uint64(g), 10)
	}
	return fmt.Sprintf("%d:%d:%s", cred.Uid, cred.Gid, strings.Join(groups, ","))
}

// become takes the identity credArg encoded: groups, then gid, then uid,
// the order in which each step is still allowed.
func become(arg string) error {
	if arg == "-" {
		return nil
	}
	parts := strings.Split(arg, ":")
	if len(parts) != 3 {
		return fmt.Errorf("bad credential %q", arg)
	}
	uid, err1 := strconv.Atoi(parts[0])
	gid, err2 := strconv.Atoi(parts[1])
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("bad credential %q: %w", arg, err)
	}
	groups := []int{}
	if parts[2] != "" {
		for _, g := range strings.Split(parts[2], ",") {
			v, err := strconv.Atoi(g)
			if err != nil {
				return fmt.Errorf("bad credential %q: %w", arg, err)
			}
			groups = append(groups, v)
		}
	}
	if err := syscall.Setgroups(groups); err != nil {
		return fmt.Errorf("setgroups: %w", err)
	}
	if err := syscall.Setgid(gid); err != nil {
		return fmt.Errorf("setgid %d: %w", gid, err)
	}
	if err := syscall.Setuid(uid); err != nil {
		return fmt.Errorf("setuid %d: %w", uid, err)
	}
	return nil
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
	cmd := exec.Command(self, append([]string{shimArg, credArg(cred), path}, argv...)...)
	cmd.Stdin = stdio.Stdin
	cmd.Stdout, cmd.Stderr = stdio.Stdout, stdio.Stderr
	cmd.ExtraFiles = []*os.File{r}
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
