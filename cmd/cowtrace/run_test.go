package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cowtrace/cowtrace/internal/testenv"
	"github.com/cowtrace/cowtrace/perfevents"
	"github.com/cowtrace/cowtrace/report"
)

// TestRunBadInput: mistakes in run's and attach's command lines are one line
// on stderr and exit code 2, before anything starts.
func TestRunBadInput(t *testing.T) {
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Skipf("true: %v", err)
	}
	for _, args := range [][]string{
		{"run"},
		{"run", "--"},
		{"run", "--format", "xml", "--", "true"},
		{"run", "--user", "nobody", "--keep-root", "--", "true"},
		{"run", "--user", "no-such-user-here", "--", "true"},
		{"run", "--probe", "copy page", "--", "true"},
		{"attach"},
		{"attach", "-p", "-3"},
		{"attach", "-p", "1", "stray"},
		{"attach", "-p", "1", "--duration", "-1s"},
		{"attach", "-p", strconv.Itoa(gone.Process.Pid)},
		{"attach", "-p", "1", "--expect", "command.copies == 0"},
		{"attach", "-p", "1", "--expect", "depth(1).copies >"},
		{"attach", "-p", "1", "--ready-fd", "1"},
		{"attach", "-p", "1", "--ready-fd", "987"},
		{"attach", "-p", "1", "-o", "/nonexistent/dir/r.json"},
		{"run", "--by", "library", "--", "true"},
		{"attach", "-p", "1", "--by", "Mapping"},
		{"run", "--plot", "/nonexistent/dir/p.svg", "--", "true"},
	} {
		if args[0] == "attach" && len(args) == 3 && args[2] == strconv.Itoa(gone.Process.Pid) && (testing.Short() || testenv.Root() != "") {
			continue
		}
		code, stdout, stderr := runCLI(args...)
		if code != exitUsage {
			t.Errorf("cowtrace %q: exit %d, want %d (stderr %q)", args, code, exitUsage, stderr)
		}
		if n := strings.Count(stderr, "\n"); n != 1 || stdout != "" {
			t.Errorf("cowtrace %q: stderr %q (%d lines), stdout %q: want one line on stderr only", args, stderr, n, stdout)
		}
	}
}

// TestRunCannotExecute: a command that is not there exits 127, one that
// cannot be executed 126, as in a shell (the test asks sh for its status),
// with one line on stderr and before anything starts.
func TestRunCannotExecute(t *testing.T) {
	dir := t.TempDir()
	noX := filepath.Join(dir, "script.sh")
	if err := os.WriteFile(noX, []byte("echo ran\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		cmd  string
		code int
		says string
	}{
		{"/nonexistent/prog", 127, "/nonexistent/prog: no such file or directory"},
		{"no-such-command-here", 127, "no-such-command-here: command not found"},
		{noX, 126, noX + ": permission denied (not executable)"},
		{dir, 126, dir + ": is a directory"},
	} {
		code, stdout, stderr := runCLI("run", "--", c.cmd)
		if code != c.code || stdout != "" || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, c.says) {
			t.Errorf("run -- %s: exit %d, stdout %q, stderr %q: want %d and one line saying %q", c.cmd, code, stdout, stderr, c.code, c.says)
		}
		sh := exec.Command("sh", "-c", `"$0"`, c.cmd)
		if err := sh.Run(); sh.ProcessState == nil || sh.ProcessState.ExitCode() != c.code {
			t.Errorf("sh -c %s: %v, want exit %d as cowtrace's", c.cmd, err, c.code)
		}
	}
}

// TestRunCLI: the command's exit status becomes cowtrace's, with the rows
// in JSON.
func TestRunCLI(t *testing.T) {
	testenv.Require(t, testenv.Root)
	prog := testenv.BuildC(t, "cow_tree")
	code, stdout, stderr := runCLI("run", "--format", "json", "--kprobe-method", "none", "--", prog, "5", "3")
	if code != 3 || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "status 3") {
		t.Fatalf("exit %d, stderr %q: want 3 and one line saying so", code, stderr)
	}
	var run report.Run
	if err := json.Unmarshal([]byte(stdout), &run); err != nil {
		t.Fatalf("json: %v\n%s", err, stdout)
	}
	testenv.ValidateJSON(t, "run", []byte(stdout))
	if run.Trace == nil || len(run.Processes) != 6 || *run.Trace.ExitCode != 3 {
		t.Fatalf("trace %+v with %d rows: want 6 rows and exit code 3", run.Trace, len(run.Processes))
	}
	for _, p := range run.Processes[1:] {
		if p.Lineage == nil || p.Ppid != run.Processes[0].Pid || p.Comm != "cow_tree" {
			t.Errorf("row %+v %+v", p, p.Lineage)
		}
	}
}

// TestRunNotExecutable: a command found in PATH that the kernel refuses to
// execute is one line and the shell's 126, with nothing left open.
func TestRunNotExecutable(t *testing.T) {
	testenv.Require(t, testenv.Root)
	bad := filepath.Join(t.TempDir(), "garbage")
	if err := os.WriteFile(bad, []byte("\x00\x01 not a program\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	fds := testenv.OpenFDs(t)
	code, stdout, stderr := runCLI("run", "--kprobe-method", "none", "--", bad)
	if code != 126 || stdout != "" || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "exec format error") {
		t.Errorf("exit %d, stdout %q, stderr %q: want 126 and one line saying exec format error", code, stdout, stderr)
	}
	if n := testenv.OpenFDs(t); n != fds {
		t.Errorf("%d descriptors open after the run, %d before", n, fds)
	}
}

// TestRunHandOff runs cowtrace as a whole process, which leaves the release
// of its events to a cowtrace-closer process: its output must still end
// when it exits (the closer holds none of its streams), and the closer must
// end on its own.
func TestRunHandOff(t *testing.T) {
	testenv.Require(t, testenv.Root)
	prog := testenv.BuildC(t, "cow_tree")
	cmd := exec.Command(os.Args[0], "run", "--format", "json", "--kprobe-method", "none", "--", prog, "3")
	cmd.Env = append(os.Environ(), asMainEnv+"=1")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output() // returns at EOF of stdout
	if err != nil {
		t.Fatalf("cowtrace run: %v\n%s", err, stderr.String())
	}
	var run report.Run
	if err := json.Unmarshal(out, &run); err != nil || len(run.Processes) != 4 {
		t.Fatalf("%d rows (want 4), %v:\n%s", len(run.Processes), err, out)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		left := closers(t)
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cowtrace-closer processes %v still alive 30 s after cowtrace exited", left)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// closers lists the live (not zombie) cowtrace-closer processes.
func closers(t *testing.T) []int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
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
		if open < 0 || end+2 >= len(s) || s[open+1:end] != perfevents.HolderName || s[end+2] == 'Z' {
			continue
		}
		pids = append(pids, pid)
	}
	return pids
}

// TestRunTimelineJSON: --timeline --format json is JSON lines throughout,
// one per write-protect fault, and they add up to the rows.
func TestRunTimelineJSON(t *testing.T) {
	testenv.Require(t, testenv.Root)
	prog := testenv.BuildC(t, "cow_tree")
	code, stdout, stderr := runCLI("run", "--timeline", "--format", "json", "--kprobe-method", "none", "--", prog, "3")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	perPid := map[int]uint64{}
	var run *report.Run
	sc := bufio.NewScanner(strings.NewReader(stdout))
	sc.Buffer(nil, 1<<24)
	for sc.Scan() {
		line := sc.Bytes()
		if run != nil {
			t.Fatalf("a line after the report: %s", line)
		}
		var ev struct {
			Pid     int    `json:"pid"`
			Event   string `json:"event"`
			Address string `json:"address"`
			Comm    string `json:"comm"`
		}
		if err := json.Unmarshal(line, &ev); err != nil {
			t.Fatalf("not JSON: %s", line)
		}
		if ev.Event == "" {
			testenv.ValidateJSON(t, "run", line)
			run = new(report.Run)
			if err := json.Unmarshal(line, run); err != nil {
				t.Fatal(err)
			}
			continue
		}
		testenv.ValidateJSON(t, "timeline", line)
		if ev.Event != "wp_fault" || !strings.HasPrefix(ev.Address, "0x") || ev.Comm != "cow_tree" {
			t.Errorf("timeline line %s", line)
		}
		perPid[ev.Pid]++
	}
	if run == nil || len(run.Processes) != 4 {
		t.Fatalf("no report with 4 rows at the end:\n%s", stdout)
	}
	for _, p := range run.Processes {
		if perPid[p.Pid] != *p.WPFaults {
			t.Errorf("pid %d: %d timeline lines, %d wp faults in its row", p.Pid, perPid[p.Pid], *p.WPFaults)
		}
	}
}

// TestRunTableThreads: the table names each process and, with --threads,
// each thread under it.
func TestRunTableThreads(t *testing.T) {
	testenv.Require(t, testenv.Root)
	prog := testenv.BuildC(t, "cow_tree")
	code, stdout, stderr := runCLI("run", "--threads", "--kprobe-method", "none", "--", prog, "2")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"cowtrace run:", "ended by exit", "tid", "command", "cow_tree", "wp", "lost: 0"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("table lacks %q:\n%s", want, stdout)
		}
	}
	// The tid column is as wide as its longest tid: pad-agnostic; cow_tree
	// has one thread per process, so no thread rows (TestRunThreadRows).
	if n := len(regexp.MustCompile(`  all  `).FindAllString(stdout, -1)); n != 3 {
		t.Errorf("%d process rows marked 'all', want 3:\n%s", n, stdout)
	}
}

// TestRunThreadRows: --threads adds thread rows under a process of several
// threads (a Go program: its runtime starts some), and none under one of a
// single thread, whose thread row would repeat its own.
func TestRunThreadRows(t *testing.T) {
	testenv.Require(t, testenv.Root)
	t.Setenv(asMainEnv, "1") // the test binary is cowtrace: a Go program
	code, stdout, stderr := runCLI("run", "--threads", "--format", "json", "--kprobe-method", "none", "--", "sh", "-c", os.Args[0]+" version >/dev/null; true")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	testenv.ValidateJSON(t, "run", []byte(stdout))
	var run report.Run
	if err := json.Unmarshal([]byte(stdout), &run); err != nil {
		t.Fatal(err)
	}
	threadRows := map[int]int{}
	threads := map[int]int{}
	for _, p := range run.Processes {
		if p.Tid != 0 {
			threadRows[p.Pid]++
		} else {
			threads[p.Pid] = p.Threads
		}
	}
	several := 0
	for pid, n := range threads {
		switch {
		case n == 1 && threadRows[pid] != 0:
			t.Errorf("pid %d, one thread: %d thread rows, want none", pid, threadRows[pid])
		case n > 1 && threadRows[pid] != n:
			t.Errorf("pid %d, %d threads: %d thread rows", pid, n, threadRows[pid])
		case n > 1:
			several++
		}
	}
	if several == 0 || len(threads) < 2 {
		t.Errorf("%d processes, %d of several threads; want sh and the Go program:\n%s", len(threads), several, stdout)
	}
}

// TestRunAsSudoUser: under sudo (SUDO_UID/SUDO_GID set, running as root) the
// command runs as the invoking user, and --keep-root keeps root.
func TestRunAsSudoUser(t *testing.T) {
	testenv.Require(t, testenv.Root)
	id, err := exec.LookPath("id")
	if err != nil {
		t.Skip("no id(1)")
	}
	t.Setenv("SUDO_UID", "65534")
	t.Setenv("SUDO_GID", "65534")
	for _, c := range []struct {
		flags []string
		want  string
	}{
		{nil, "65534 65534"},
		{[]string{"--keep-root"}, "0 0"},
	} {
		args := append(append([]string{"run", "--format", "csv", "--kprobe-method", "none"}, c.flags...), "--", "sh", "-c", id+" -u >&2; "+id+" -g >&2")
		code, _, stderr := runCLI(args...)
		if code != 0 {
			t.Fatalf("%q: exit %d: %s", args, code, stderr)
		}
		if got := strings.Join(strings.Fields(stderr), " "); got != c.want {
			t.Errorf("%q: the command ran as uid, gid %q, want %q", args, got, c.want)
		}
	}
}

// TestRunExpect: --expect on real process trees, with each kind of
// selector, holding and failing. cow_tree N forks N children at depth 1, and
// child i takes i+1 write-protect faults on top of the same baseline.
func TestRunExpect(t *testing.T) {
	testenv.Require(t, testenv.Root)
	prog := testenv.BuildC(t, "cow_tree")
	shTree := []string{"sh", "-c", "sh -c true & sh -c true & wait"}
	expectRun := func(cmd []string, exprs ...string) (int, string, string) {
		args := []string{"run", "--format", "json", "--kprobe-method", "none"}
		for _, e := range exprs {
			args = append(args, "--expect", e)
		}
		return runCLI(append(append(args, "--"), cmd...)...)
	}
	for _, c := range []struct {
		cmd   []string
		holds []string
	}{
		{[]string{prog, "4"}, []string{"command.depth == 0", "count == 5", "count(depth=1) == 4", "count(comm=cow_tree) == 5",
			"depth(1).wp_faults >= 1", "comm(cow_tree).page_faults > 0", "sum(depth=1).wp_faults >= 10",
			"max(depth=1).wp_faults > min(depth=1).wp_faults", "child.copies <= child.wp_faults", "run.trace.exit_code == 0"}},
		{shTree, []string{"command.copies >= 0", "count(comm=sh) == 3", "depth(1).copies > 0", "sum.copies < 1000",
			"max.copies <= 300", "count(depth=2) == 0", "child.ppid != command.ppid"}},
	} {
		code, stdout, stderr := expectRun(c.cmd, c.holds...)
		if code != exitOK || stderr != "" {
			t.Errorf("%q: exit %d, stderr %q; want 0 and nothing", c.cmd, code, stderr)
		}
		var run report.Run
		if err := json.Unmarshal([]byte(stdout), &run); err != nil {
			t.Errorf("%q: the report is not JSON: %v", c.cmd, err)
		}
	}

	// A failed expectation is one line with its values after the report,
	// one that holds is silent, and the exit code is 1.
	code, stdout, stderr := expectRun([]string{prog, "4"}, "sum.copies < 1", "count == 5", "depth(1).wp_faults == min(depth=1).wp_faults",
		"count(comm=cow_tree) == 4", "comm(nosuch).copies == 0")
	wants := []*regexp.Regexp{
		regexp.MustCompile(`^cowtrace: expectation failed: sum\.copies < 1 \(sum\.copies is \d+\)$`),
		regexp.MustCompile(`^cowtrace: expectation failed: depth\(1\)\.wp_faults == min\(depth=1\)\.wp_faults \(3 of 4 fail: ` +
			`depth\(1\)\.wp_faults is \d+ in pid \d+ \(cow_tree\), \d+ in pid \d+ \(cow_tree\), \d+ in pid \d+ \(cow_tree\); ` +
			`min\(depth=1\)\.wp_faults is \d+ in pid \d+ \(cow_tree\)\)$`),
		regexp.MustCompile(`^cowtrace: expectation failed: count\(comm=cow_tree\) == 4 \(count\(comm=cow_tree\) is 5\)$`),
		regexp.MustCompile(`^cowtrace: expectation comm\(nosuch\)\.copies == 0: no process with command name "nosuch" \(names: cow_tree\)$`),
	}
	checkLines(t, "failing expectations", code, exitFailure, stderr, wants)
	if !json.Valid([]byte(stdout)) {
		t.Errorf("no report on stdout when expectations fail:\n%s", stdout)
	}

	// A command that fails keeps its status; the failed expectation is
	// still said.
	code, _, stderr = expectRun([]string{prog, "2", "3"}, "count == 1")
	checkLines(t, "failing command", code, 3, stderr, []*regexp.Regexp{
		regexp.MustCompile(`^cowtrace: expectation failed: count == 1 \(count is 3\)$`),
		regexp.MustCompile(`^cowtrace: command exited with status 3$`),
	})
}

func checkLines(t *testing.T, what string, code, wantCode int, stderr string, wants []*regexp.Regexp) {
	t.Helper()
	if code != wantCode {
		t.Errorf("%s: exit %d, want %d", what, code, wantCode)
	}
	lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
	if len(lines) != len(wants) {
		t.Fatalf("%s: stderr %q, want %d lines", what, stderr, len(wants))
	}
	for i, re := range wants {
		if !re.MatchString(lines[i]) {
			t.Errorf("%s: line %d: %q, want %s", what, i+1, lines[i], re)
		}
	}
}

// TestRunOutputFile: with -o the report (and the timeline) go to the file
// and stdout is the command's alone; a run without a report leaves no file.
func TestRunOutputFile(t *testing.T) {
	testenv.Require(t, testenv.Root)
	prog := testenv.BuildC(t, "cow_tree")
	dir := t.TempDir()
	file := filepath.Join(dir, "r.json")
	code, stdout, stderr := runCLI("run", "--format", "json", "--kprobe-method", "none", "--label", "ci", "-o", file,
		"--", "sh", "-c", "echo from-the-command")
	if code != exitOK || stdout != "from-the-command\n" || stderr != "" {
		t.Fatalf("exit %d, stdout %q, stderr %q: want 0 and only the command's line on stdout", code, stdout, stderr)
	}
	var run report.Run
	if b, err := os.ReadFile(file); err != nil || json.Unmarshal(b, &run) != nil || run.Label != "ci" || len(run.Processes) != 1 {
		t.Fatalf("%s: %v, label %q, %d rows:\n%s", file, err, run.Label, len(run.Processes), b)
	}

	// The timeline goes with the report.
	code, stdout, stderr = runCLI("run", "--format", "json", "--kprobe-method", "none", "--timeline", "-o", file,
		"--", "sh", "-c", "echo from-the-command; exec "+prog+" 2")
	if code != exitOK || stdout != "from-the-command\n" {
		t.Fatalf("--timeline: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	b, _ := os.ReadFile(file)
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) < 2 || !strings.Contains(lines[0], `"event":"wp_fault"`) ||
		json.Unmarshal([]byte(lines[len(lines)-1]), &run) != nil || len(run.Processes) != 3 {
		t.Errorf("--timeline -o: want timeline lines, then the report with 3 rows:\n%s", b)
	}

	// A command that cannot run gives no report: the file, old or new,
	// is gone.
	bad := filepath.Join(dir, "garbage")
	if err := os.WriteFile(bad, []byte("\x00 not a program\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	code, _, _ = runCLI("run", "--kprobe-method", "none", "-o", file, "--", bad)
	if _, err := os.Stat(file); code != 126 || err == nil {
		t.Errorf("exit %d, %s still there (%v): want 126 and no file", code, file, err)
	}
}

// TestAttachReady: attach says when it is live on stderr and on --ready-fd,
// and closes the descriptor; it writes its report to -o with its label and
// checks --expect. A failed attach closes the descriptor without the line.
func TestAttachReady(t *testing.T) {
	testenv.Require(t, testenv.Root)
	readyPipe := func() (*os.File, int) {
		var p [2]int
		if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
			t.Fatal(err)
		}
		// Non-blocking, so that os.File can put a deadline on reads.
		if err := unix.SetNonblock(p[0], true); err != nil {
			t.Fatal(err)
		}
		r := os.NewFile(uintptr(p[0]), "ready")
		t.Cleanup(func() { r.Close() })
		r.SetReadDeadline(time.Now().Add(30 * time.Second))
		return r, p[1] // cowtrace takes over the write end
	}

	sleeper := exec.Command("sleep", "30")
	if err := sleeper.Start(); err != nil {
		t.Skipf("sleep: %v", err)
	}
	defer sleeper.Process.Kill()
	file := filepath.Join(t.TempDir(), "a.json")
	r, w := readyPipe()
	type result struct {
		code           int
		stdout, stderr string
	}
	done := make(chan result, 1)
	go func() {
		code, stdout, stderr := runCLI("attach", "-p", strconv.Itoa(sleeper.Process.Pid), "--kprobe-method", "none", "--format", "json",
			"--label", "live", "-o", file, "--ready-fd", strconv.Itoa(w), "--expect", "attached.copies >= 0", "--expect", "count == 1")
		done <- result{code, stdout, stderr}
	}()
	got, err := io.ReadAll(r)
	if err != nil || string(got) != "attached\n" {
		t.Fatalf("ready descriptor: %q, %v; want one line and end of file", got, err)
	}
	sleeper.Process.Kill()
	sleeper.Wait()
	res := <-done
	if res.code != exitOK || res.stdout != "" || res.stderr != "cowtrace: attached\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q", res.code, res.stdout, res.stderr)
	}
	var run report.Run
	if b, err := os.ReadFile(file); err != nil || json.Unmarshal(b, &run) != nil || run.Label != "live" || run.Trace.EndedBy != "exit" {
		t.Errorf("%s: %v\n%s", file, err, b)
	} else {
		testenv.ValidateJSON(t, "run", b)
	}

	// No process: end of file at once, and no line.
	r, w = readyPipe()
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Skipf("true: %v", err)
	}
	code, _, _ := runCLI("attach", "-p", strconv.Itoa(gone.Process.Pid), "--ready-fd", strconv.Itoa(w))
	if got, err := io.ReadAll(r); code != exitUsage || err != nil || len(got) != 0 {
		t.Errorf("attach to a gone pid: exit %d, ready descriptor %q, %v; want 2 and end of file", code, got, err)
	}
}

// TestProbeRefused: a --probe that cannot be had (no kprobes on this
// kernel or for this user, or a function the kernel refuses) fails with
// exit 1 and a line naming it, before the command runs, the experiment's
// workload starts or the attach is made.
func TestProbeRefused(t *testing.T) {
	ran := filepath.Join(t.TempDir(), "ran")
	sleeper := exec.Command("sleep", "30")
	if err := sleeper.Start(); err != nil {
		t.Skipf("sleep: %v", err)
	}
	defer func() { sleeper.Process.Kill(); sleeper.Wait() }()
	for _, args := range [][]string{
		{"run", "--probe", "not_a_function", "--", "touch", ran},
		{"run", "--mode", "count", "--probe", "not_a_function", "--", "touch", ran},
		{"--probe", "not_a_function", "--blocks", "20"},
		{"attach", "-p", strconv.Itoa(sleeper.Process.Pid), "--probe", "not_a_function"},
	} {
		code, stdout, stderr := runCLI(args...)
		if code != exitFailure || stdout != "" || strings.Count(stderr, "\n") != 1 ||
			!strings.HasPrefix(stderr, "cowtrace: --probe not_a_function: cannot be probed: ") {
			t.Errorf("cowtrace %q: exit %d, stdout %q, stderr %q: want 1 and one line naming the probe", args, code, stdout, stderr)
		}
		if _, err := os.Stat(ran); err == nil {
			t.Fatalf("cowtrace %q: the command ran", args)
		}
	}
	// Asking for a probe and for no kprobes is a usage error.
	for _, args := range [][]string{
		{"run", "--probe", "do_wp_page", "--kprobe-method", "none", "--", "true"},
		{"--probe", "do_wp_page", "--kprobe-method", "none"},
	} {
		if code, _, stderr := runCLI(args...); code != exitUsage || !strings.Contains(stderr, "--kprobe-method none asks for none") {
			t.Errorf("cowtrace %q: exit %d, stderr %q", args, code, stderr)
		}
	}
}

// TestUnknownUser: --user names the user it could not find, and itself.
func TestUnknownUser(t *testing.T) {
	checkUsageError(t, []string{"run", "--user", "no-such-user-here", "--", "true"}, "--user no-such-user-here: no such user")
}

// TestRingSizeTooLarge: a --ring-size that the rings of this machine's
// CPUs cannot hold is refused before anything runs, with the limit in the
// flag's terms, not the reader's count of pages.
func TestRingSizeTooLarge(t *testing.T) {
	cpus, err := perfevents.OnlineCPUs()
	if err != nil {
		t.Skipf("online CPUs: %v", err)
	}
	size := strconv.Itoa(len(cpus)+1) + "G"
	want := fmt.Sprintf("--ring-size %s: a CPU's ring holds at most 1G, and this machine's %d CPUs' rings at most %dG together", size, len(cpus), len(cpus))
	checkUsageError(t, []string{"run", "--ring-size", size, "--", "true"}, want)
	checkUsageError(t, []string{"attach", "-p", "1", "--ring-size", size}, want)
}

// TestAttachKernelThread: a kernel thread is refused before anything is
// opened (exit 2): it has no user memory, and its row would be zeros.
func TestAttachKernelThread(t *testing.T) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Skipf("/proc: %v", err)
	}
	pid, comm := 0, ""
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if c, ok := kernelThread(n); ok {
			pid, comm = n, c
			break
		}
	}
	if pid == 0 {
		t.Skip("no kernel thread in this pid namespace")
	}
	checkUsageError(t, []string{"attach", "-p", strconv.Itoa(pid)}, fmt.Sprintf("attach: %d (%s) is a kernel thread", pid, comm))
	if _, ok := kernelThread(os.Getpid()); ok {
		t.Error("this test is taken for a kernel thread")
	}
}

// TestParseKthread: PF_KTHREAD is read from the flags after the command
// name, which may hold spaces and parentheses.
func TestParseKthread(t *testing.T) {
	for stat, want := range map[string]bool{
		"2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0":           true,
		"77 (kworker/0:1H-kblockd) I 2 0 0 0 -1 69238880 0 0": true,
		"900 (a) b (c)) S 1 900 900 0 -1 4194560 12 0":        false,
		"900 (sleep) S 1 900 900 0 -1":                        false, // too short
	} {
		if _, got := parseKthread(stat); got != want {
			t.Errorf("parseKthread(%q) = %v, want %v", stat, got, want)
		}
	}
	if comm, _ := parseKthread("900 (a) b (c)) S 1 900 900 0 -1 4194560 12 0"); comm != "a) b (c)" {
		t.Errorf("command name %q", comm)
	}
}
