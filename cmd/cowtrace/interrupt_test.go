package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cowtrace/cowtrace/internal/testenv"
	"github.com/cowtrace/cowtrace/report"
)

// interruptAfterAttach runs cowtrace (this test binary as main) with args,
// sends it SIGINT once it says "cowtrace: attached", and returns its exit
// code, stdout, the stderr lines after that one and its pid (for
// checkLeftovers).
func interruptAfterAttach(t *testing.T, args ...string) (code int, stdout string, stderr []string, pid int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), asMainEnv+"=1", "GOTRACEBACK=")
	var out bytes.Buffer
	cmd.Stdout = &out
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			lines <- sc.Text()
		}
		io.Copy(io.Discard, pipe)
	}()
	timeout := time.After(2 * time.Minute)
	for attached := false; !attached; {
		select {
		case line, ok := <-lines:
			if !ok {
				cmd.Wait()
				t.Fatalf("cowtrace %s ended before it attached: exit %d", strings.Join(args, " "), cmd.ProcessState.ExitCode())
			}
			attached = line == "cowtrace: attached"
		case <-timeout:
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("cowtrace %s did not attach in 2 minutes", strings.Join(args, " "))
		}
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	for line := range lines {
		stderr = append(stderr, line)
	}
	cmd.Wait()
	pid = cmd.Process.Pid
	return cmd.ProcessState.ExitCode(), out.String(), stderr, pid
}

// TestAttachInterrupted: attach stopped by SIGINT writes its report, then
// exits 130 with a line saying so.
func TestAttachInterrupted(t *testing.T) {
	testenv.Require(t, testenv.Root)
	sleeper := exec.Command("sleep", "120")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { sleeper.Process.Kill(); sleeper.Wait() }()
	code, stdout, stderr, pid := interruptAfterAttach(t, "attach", "-p", strconv.Itoa(sleeper.Process.Pid), "--format", "json")
	sleeper.Process.Kill()
	sleeper.Wait()
	checkLeftovers(t, "attach", pid)
	var run report.Run
	if err := json.Unmarshal([]byte(stdout), &run); err != nil || run.Trace == nil || run.Trace.EndedBy != "interrupt" {
		t.Errorf("report: %v, %+v\n%s", err, run.Trace, stdout)
	}
	want := []string{"cowtrace: attach: interrupted; the report covers the trace until then (interrupt signal received)"}
	if code != exitInterrupted || strings.Join(stderr, "\n") != want[0] {
		t.Errorf("exit %d, stderr %q: want %d and %q", code, stderr, exitInterrupted, want)
	}
}

// TestMatrixInterrupted: the matrix stopped by SIGINT in its second
// scenario shows the first, then exits 130 saying which it was in.
func TestMatrixInterrupted(t *testing.T) {
	testenv.Require(t, testenv.Root)
	code, stdout, stderr, pid := interruptAfterAttach(t, "matrix", "--only", "touched,untouched", "--blocks", "20", "--proof", "none",
		"--format", "json", "--pause-in", "untouched")
	checkLeftovers(t, "matrix", pid)
	var m report.Matrix
	if err := json.Unmarshal([]byte(stdout), &m); err != nil || len(m.Scenarios) != 1 || m.Scenarios[0].Name != "touched" {
		t.Errorf("matrix: %v, %d scenarios, want touched alone\n%s", err, len(m.Scenarios), stdout)
	}
	want := "cowtrace: matrix: interrupted in scenario untouched; shown are the 1 of 2 scenarios that finished (interrupt signal received)"
	if code != exitInterrupted || strings.Join(stderr, "\n") != want {
		t.Errorf("exit %d, stderr %q: want %d and %q", code, stderr, exitInterrupted, want)
	}
}
