package main

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cowtrace/cowtrace/vmtest/internal/guest"
)

// These run the guest init's command runner on the host: the signalling
// and timeout logic does not need a VM to be tested.

func TestRunCapturesExit(t *testing.T) {
	r := run(guest.Command{Name: "x", Argv: []string{"/bin/sh", "-c", "echo out; echo err >&2; exit 3"}, Timeout: 10 * time.Second})
	if r.Err != "" || r.ExitCode != 3 || r.Stdout != "out\n" || r.Stderr != "err\n" || r.TimedOut {
		t.Errorf("result = %+v", r)
	}
}

func TestRunSignalsAfterLine(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			// The trap exits with a code of its own, so a clean handled
			// exit is told apart from death by the signal.
			script := `trap 'echo caught >&2; exit 7' INT TERM; echo "cowtrace: attached" >&2; while :; do sleep 0.05; done`
			r := run(guest.Command{Name: "s", Argv: []string{"/bin/sh", "-c", script}, Timeout: 10 * time.Second,
				WaitStderr: "cowtrace: attached", Signal: int(sig)})
			if !r.WaitLineSeen || r.SignalSent != sig.String() || r.ExitCode != 7 || r.Signaled != "" || r.TimedOut {
				t.Errorf("result = %+v", r)
			}
			if !strings.Contains(r.Stderr, "cowtrace: attached\n") || !strings.Contains(r.Stderr, "caught") {
				t.Errorf("stderr = %q", r.Stderr)
			}
		})
	}
}

func TestRunTimeoutKillsGroup(t *testing.T) {
	start := time.Now()
	// The background sleep holds stdout open: only killing the whole
	// process group lets the run finish.
	r := run(guest.Command{Name: "t", Argv: []string{"/bin/sh", "-c", "sleep 30 & sleep 30"}, Timeout: 300 * time.Millisecond})
	if !r.TimedOut || r.Signaled != "killed" {
		t.Errorf("result = %+v", r)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
}

func TestRunWaitLineNeverComes(t *testing.T) {
	r := run(guest.Command{Name: "w", Argv: []string{"/bin/sh", "-c", "echo nope >&2"}, Timeout: 5 * time.Second,
		WaitStderr: "cowtrace: attached", Signal: int(syscall.SIGINT)})
	if r.WaitLineSeen || r.SignalSent != "" || r.ExitCode != 0 {
		t.Errorf("result = %+v", r)
	}
}

func TestRunMissingProgram(t *testing.T) {
	r := run(guest.Command{Name: "m", Argv: []string{"/nonexistent"}, Timeout: time.Second})
	if r.Err == "" || r.ExitCode != -1 {
		t.Errorf("result = %+v", r)
	}
}

func TestCappedTruncates(t *testing.T) {
	var c capped
	c.Write(make([]byte, captureLimit-1))
	c.Write([]byte("ab"))
	if !c.truncated || len(c.String()) != captureLimit {
		t.Errorf("truncated %v, len %d", c.truncated, len(c.String()))
	}
}
