package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cowtrace/cowtrace/internal/testenv"
)

// What asMain does besides being cowtrace, for TestFaultInjection.
const (
	// mountsEnv names a file for the process's mountinfo before and after
	// the run, NUL between them.
	mountsEnv = "COWTRACE_TEST_MOUNTS"
	// hideDevEnv mounts an empty tmpfs over /dev first: no /dev/null. The
	// process must be in a mount namespace of its own.
	hideDevEnv = "COWTRACE_TEST_HIDE_DEV"
	// panicEnv gives run a stdout that panics: a bug below run.
	panicEnv = "COWTRACE_TEST_PANIC"
	// kprobeEventsEnv prints kprobe_events from a tracefs mounted in the
	// process's own mount namespace, instead of being cowtrace.
	kprobeEventsEnv = "COWTRACE_TEST_KPROBE_EVENTS"
)

// asMain runs this test binary as cowtrace, the whole process, with the
// faults and checks its environment asks for.
func asMain() {
	if os.Getenv(kprobeEventsEnv) == "1" {
		os.Exit(printKprobeEvents())
	}
	if os.Getenv(hideDevEnv) == "1" {
		if err := syscall.Mount("tmpfs", "/dev", "tmpfs", 0, "mode=0755"); err != nil {
			fmt.Fprintf(os.Stderr, "hide /dev: %v\n", err)
			os.Exit(99)
		}
	}
	var stdout io.Writer = os.Stdout
	if os.Getenv(panicEnv) == "1" {
		stdout = panicWriter{}
	}
	mounts := os.Getenv(mountsEnv)
	if mounts == "" {
		os.Exit(runProcess(os.Args[1:], stdout))
	}
	before, err1 := os.ReadFile("/proc/self/mountinfo")
	code := runProcess(os.Args[1:], stdout)
	after, err2 := os.ReadFile("/proc/self/mountinfo")
	if err := errors.Join(err1, err2); err != nil {
		after = []byte(err.Error())
	}
	if err := os.WriteFile(mounts, slices.Concat(before, []byte{0}, after), 0o644); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", mountsEnv, err)
	}
	os.Exit(code)
}

// printKprobeEvents prints kprobe_events, through a tracefs of its own in
// this process's mount namespace: a kprobe outlives the unmount of tracefs,
// and tracefs is to stay as cowtrace found it.
func printKprobeEvents() int {
	dir, err := os.MkdirTemp("", "tracefs")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.Remove(dir)
	if err := syscall.Mount("tracefs", dir, "tracefs", 0, ""); err != nil {
		fmt.Fprintf(os.Stderr, "mount tracefs: %v\n", err)
		return 1
	}
	defer syscall.Unmount(dir, syscall.MNT_DETACH)
	b, err := os.ReadFile(filepath.Join(dir, "kprobe_events"))
	if err != nil && !os.IsNotExist(err) { // no kprobes in this kernel
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	os.Stdout.Write(b)
	return 0
}

// fault is what a run of cowtrace is subjected to.
type fault struct {
	name    string
	nofile  int      // RLIMIT_NOFILE (soft and hard, as ulimit -n sets it); 0: unchanged
	stdout  *os.File // nil: a pipe to the test
	hideDev bool     // no /dev/null (nor any /dev)
	panics  bool
}

// TestFaultInjection runs cowtrace, as a whole process, through failures of
// its environment: each run succeeds or fails with one line and a
// documented exit code, and leaves nothing behind.
func TestFaultInjection(t *testing.T) {
	testenv.Require(t, testenv.Root)
	becomeSubreaper(t)
	experiment := []string{"--blocks", "20", "--format", "csv"}
	runTrue := []string{"run", "--", "true"}
	// The codes cowtrace documents for each, success included where the
	// fault need not be fatal. A shortage of cowtrace's own descriptors is
	// cowtrace's failure, never the command's 126.
	expOK, runOK := []int{exitOK, exitFailure}, []int{exitOK, exitFailure}

	t.Run("nofile", func(t *testing.T) {
		step := 1
		if os.Getenv(testenv.ProgsEnv) != "" {
			// In make vmtest's guests (TCG, a calibration at every start)
			// the sweep would take minutes: every eighth limit there, each
			// one on the host.
			step = 8
		}
		for n := 8; n <= 48; n += step {
			f := fault{name: fmt.Sprintf("ulimit -n %d", n), nofile: n}
			check(t, f, experiment, expOK)
			check(t, f, runTrue, runOK)
		}
	})
	t.Run("broken-pipe", func(t *testing.T) {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		r.Close()
		defer w.Close()
		f := fault{name: "stdout a broken pipe", stdout: w}
		check(t, f, experiment, []int{exitFailure})
		check(t, f, runTrue, []int{exitFailure})
		check(t, f, []string{"help"}, []int{exitFailure})
	})
	t.Run("dev-full", func(t *testing.T) {
		full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
		if err != nil {
			t.Skipf("no /dev/full: %v", err)
		}
		defer full.Close()
		f := fault{name: "stdout /dev/full", stdout: full}
		check(t, f, experiment, []int{exitFailure})
		check(t, f, runTrue, []int{exitFailure})
		check(t, f, []string{"-h"}, []int{exitFailure})
	})
	t.Run("no-dev-null", func(t *testing.T) {
		f := fault{name: "no /dev/null", hideDev: true}
		check(t, f, experiment, expOK)
		check(t, f, runTrue, runOK)
	})
	t.Run("kprobe-method", func(t *testing.T) {
		// Refused where the kernel lacks kprobes, used where it has them.
		for _, m := range []string{"pmu", "tracefs"} {
			f := fault{name: "--kprobe-method " + m}
			check(t, f, append([]string{"--kprobe-method", m}, experiment...), expOK)
			check(t, f, []string{"run", "--kprobe-method", m, "--", "true"}, []int{exitOK, exitFailure})
		}
	})
	t.Run("panic", func(t *testing.T) {
		check(t, fault{name: "a panic", panics: true}, experiment, []int{exitInternal})
	})
}

// becomeSubreaper makes this process a child subreaper for the test:
// whatever cowtrace leaves running (its closer, a worker, the workload's
// children) becomes this process's child, told apart from the processes of
// everyone else on the machine.
func becomeSubreaper(t *testing.T) {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Fatalf("become a child subreaper: %v", err)
	}
	t.Cleanup(func() {
		unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
		for _, c := range children(t) {
			syscall.Kill(c.pid, syscall.SIGKILL)
			var ws syscall.WaitStatus
			syscall.Wait4(c.pid, &ws, 0, nil)
		}
	})
}

// check runs cowtrace with args under fault f, in a mount namespace of its
// own (where no other process mounts or unmounts tracefs meanwhile), and
// checks how it ended and what it left behind.
func check(t *testing.T, f fault, args []string, codes []int) {
	t.Helper()
	what := fmt.Sprintf("%s: cowtrace %s", f.name, strings.Join(args, " "))
	cmd := exec.Command(os.Args[0], args...)
	if f.nofile > 0 {
		// Through a shell, as a user would: the limit holds from cowtrace's
		// first instruction, and the Go runtime cannot raise it.
		cmd = exec.Command("/bin/sh", append([]string{"-c", `ulimit -n "$0" && exec "$@"`, strconv.Itoa(f.nofile), os.Args[0]}, args...)...)
	}
	mounts := filepath.Join(t.TempDir(), "mounts")
	cmd.Env = append(os.Environ(), asMainEnv+"=1", mountsEnv+"="+mounts, "GOTRACEBACK=")
	// os/exec makes the new namespace's mounts private before exec.
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	if f.hideDev {
		cmd.Env = append(cmd.Env, hideDevEnv+"=1")
	}
	if f.panics {
		cmd.Env = append(cmd.Env, panicEnv+"=1")
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if f.stdout != nil {
		cmd.Stdout = f.stdout
	}
	var ee *exec.ExitError
	if err := cmd.Run(); err != nil && !errors.As(err, &ee) {
		t.Fatalf("%s: %v", what, err)
	}
	code := cmd.ProcessState.ExitCode()
	msg := stderr.String()
	t.Logf("%s: exit %d, stderr %q", what, code, msg)
	switch {
	case code < 0:
		t.Errorf("%s: %v, stderr %q", what, cmd.ProcessState, msg)
	case !slices.Contains(codes, code):
		t.Errorf("%s: exit %d, want one of %v (stderr %q)", what, code, codes, msg)
	case strings.Contains(msg, "panic") || strings.Contains(msg, "goroutine "):
		t.Errorf("%s: a Go panic on stderr:\n%s", what, msg)
	case code == exitOK && msg != "":
		t.Errorf("%s: exit 0 with stderr %q", what, msg)
	case code != exitOK && (strings.Count(msg, "\n") != 1 || !strings.HasSuffix(msg, "\n") || !strings.HasPrefix(msg, "cowtrace: ")):
		t.Errorf("%s: exit %d, stderr %q: want one line starting with \"cowtrace: \"", what, code, msg)
	}
	if b, err := os.ReadFile(mounts); err != nil {
		t.Errorf("%s: no record of its mounts: %v", what, err)
	} else if before, after, _ := strings.Cut(string(b), "\x00"); before != after {
		t.Errorf("%s: mounts changed: gone %q, new %q", what, missing(before, after), missing(after, before))
	}
	checkLeftovers(t, what, cmd.Process.Pid)
}

// checkLeftovers checks, once cowtrace (pid) has exited, that none of its
// processes still runs or is stopped and that no kprobe of its group is
// left.
func checkLeftovers(t *testing.T, what string, pid int) {
	t.Helper()
	// cowtrace-closer releases the events some 60 ms after cowtrace's exit;
	// a workload child takes a while to free its region.
	const grace = 5 * time.Second
	for deadline := time.Now().Add(grace); ; time.Sleep(5 * time.Millisecond) {
		var running []string
		for _, c := range children(t) {
			switch c.state {
			case 'Z':
				var ws syscall.WaitStatus
				syscall.Wait4(c.pid, &ws, syscall.WNOHANG, nil)
			case 'T', 't':
				t.Errorf("%s: left process %d (%s) stopped", what, c.pid, c.comm)
				syscall.Kill(c.pid, syscall.SIGKILL)
			default:
				running = append(running, fmt.Sprintf("%d (%s)", c.pid, c.comm))
			}
		}
		if len(running) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("%s: processes %v still running %v after cowtrace exited", what, running, grace)
			for _, c := range children(t) {
				syscall.Kill(c.pid, syscall.SIGKILL)
			}
			deadline = time.Now().Add(grace)
		}
	}
	group := fmt.Sprintf(":cowtrace_%d/", pid)
	for _, l := range strings.Split(kprobeEvents(t), "\n") {
		if strings.Contains(l, group) {
			t.Errorf("%s: left kprobe %q", what, l)
		}
	}
}

type child struct {
	pid   int
	state byte
	comm  string
}

// children lists this process's children, by /proc (os/exec's are reaped
// already: the others are what cowtrace left).
func children(t *testing.T) []child {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	self := strconv.Itoa(os.Getpid())
	var cs []child
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || end < open {
			continue
		}
		f := strings.Fields(s[end+1:]) // state ppid ...
		if len(f) < 2 || f[1] != self {
			continue
		}
		cs = append(cs, child{pid: pid, state: f[0][0], comm: s[open+1 : end]})
	}
	return cs
}

// kprobeEvents reads kprobe_events (see printKprobeEvents).
func kprobeEvents(t *testing.T) string {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), asMainEnv+"=1", kprobeEventsEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("read kprobe_events: %v: %s", err, stderr.String())
	}
	return string(out)
}

// missing returns the lines of a that b lacks.
func missing(a, b string) []string {
	in := strings.Split(b, "\n")
	var out []string
	for _, l := range strings.Split(a, "\n") {
		if !slices.Contains(in, l) {
			out = append(out, l)
		}
	}
	return out
}
