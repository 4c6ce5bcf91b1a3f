package main

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

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
		{"run", "--", "/no/such/program"},
		{"run", "--format", "xml", "--", "true"},
		{"run", "--user", "nobody", "--keep-root", "--", "true"},
		{"run", "--user", "no-such-user-here", "--", "true"},
		{"run", "--probe", "copy page", "--", "true"},
		{"attach"},
		{"attach", "-p", "-3"},
		{"attach", "-p", "1", "stray"},
		{"attach", "-p", "1", "--duration", "-1s"},
		{"attach", "-p", strconv.Itoa(gone.Process.Pid)},
	} {
		if args[0] == "attach" && len(args) == 3 && args[2] == strconv.Itoa(gone.Process.Pid) && os.Geteuid() != 0 {
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

func requireRoot(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("kernel test (-short)")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
}

// TestRunCLI: the command's exit status becomes cowtrace's, with the rows
// in JSON.
func TestRunCLI(t *testing.T) {
	requireRoot(t)
	prog := testenv.BuildC(t, "cow_tree")
	code, stdout, stderr := runCLI("run", "--format", "json", "--kprobe-method", "none", "--", prog, "5", "3")
	if code != 3 || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "status 3") {
		t.Fatalf("exit %d, stderr %q: want 3 and one line saying so", code, stderr)
	}
	var run report.Run
	if err := json.Unmarshal([]byte(stdout), &run); err != nil {
		t.Fatalf("json: %v\n%s", err, stdout)
	}
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
	requireRoot(t)
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
	requireRoot(t)
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
	requireRoot(t)
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
			run = new(report.Run)
			if err := json.Unmarshal(line, run); err != nil {
				t.Fatal(err)
			}
			continue
		}
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
	requireRoot(t)
	prog := testenv.BuildC(t, "cow_tree")
	code, stdout, stderr := runCLI("run", "--threads", "--kprobe-method", "none", "--", prog, "2")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"cowtrace run:", "ended by exit", "tid", "depth", "cow_tree", "wp faults", "lost records: 0"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("table lacks %q:\n%s", want, stdout)
		}
	}
	// The tid column is as wide as its longest tid: pad-agnostic.
	if n := len(regexp.MustCompile(`│ +all │`).FindAllString(stdout, -1)); n != 3 {
		t.Errorf("%d process rows marked 'all', want 3:\n%s", n, stdout)
	}
}

// TestRunAsSudoUser: under sudo (SUDO_UID/SUDO_GID set, running as root) the
// command runs as the invoking user, and --keep-root keeps root.
func TestRunAsSudoUser(t *testing.T) {
	requireRoot(t)
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
