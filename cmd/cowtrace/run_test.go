package main

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/cowtrace/cowtrace/internal/testenv"
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
