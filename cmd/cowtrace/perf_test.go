package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/cowtrace/cowtrace/internal/cow"
	"github.com/cowtrace/cowtrace/internal/testenv"
	"github.com/cowtrace/cowtrace/report"
)

// TestRunUnderPerf wraps `cowtrace run` in perf record, which then sees the
// very same processes take the very same faults. In classify mode, per
// process, every class of fault (user-mode and kernel-mode on user addresses
// together), the kernel-mode ones alone and the write-protect faults must
// equal perf's exactly; in count mode, counted in the kernel and reported at
// each exit, the write-protect faults must, and the page faults (the
// software counter, which misses the faults taken with page faults
// disabled) may not exceed perf's. The command's faults count from its
// exec, as cowtrace's events are enabled there.
func TestRunUnderPerf(t *testing.T) {
	testenv.Require(t, testenv.Root, testenv.Program("perf"),
		testenv.Tracepoint("exceptions", "page_fault_user"), testenv.Tracepoint("exceptions", "page_fault_kernel"))
	for _, tc := range []struct {
		prog  []string
		procs int
	}{{[]string{testenv.BuildC(t, "cow_seed")}, 3}, {[]string{testenv.BuildC(t, "cow_tree"), "5"}, 6}} {
		for _, mode := range []string{"classify", "count"} {
			t.Run(filepath.Base(tc.prog[0])+"/"+mode, func(t *testing.T) { underPerf(t, tc.prog, mode, tc.procs) })
		}
	}
}

func underPerf(t *testing.T, prog []string, mode string, procs int) {
	// perf's default ring (516 KiB) drops samples of the command's burst
	// of 25000 first writes when the machine is busy: the anchor must be
	// whole, so a bigger one, and its losses checked.
	run, script, err := cowtraceUnderPerf(t, []string{"-m", "16M", "-e", "exceptions:page_fault_user", "-e", "exceptions:page_fault_kernel"},
		append([]string{"run", "--format", "json", "--kprobe-method", "none", "--mode", mode, "--"}, prog...), nil)
	if err != nil {
		t.Fatal(err)
	}
	theirs := perfClasses(t, script, run.Processes[0].Pid)
	if len(run.Processes) != procs || len(theirs) != procs {
		t.Errorf("cowtrace saw %d processes, perf %d; want %d", len(run.Processes), len(theirs), procs)
	}
	counted := strings.HasSuffix(run.Methods["wp_faults"], report.AtExitMethod)
	if counted != (mode == "count") {
		t.Fatalf("--mode %s: wp faults by %q", mode, run.Methods["wp_faults"])
	}
	for _, p := range run.Processes {
		want := theirs[p.Pid]
		if p.WPFaults == nil || p.PageFaults == nil {
			t.Fatalf("pid %d: no wp faults or page faults", p.Pid)
		}
		if counted {
			t.Logf("pid %d (%s): wp faults %d, page faults %d; perf %d, %d", p.Pid, p.Lineage.Comm, *p.WPFaults, *p.PageFaults, want.WP, want.Total())
			if *p.WPFaults != want.WP || *p.PageFaults > want.Total() || *p.PageFaults < want.WP {
				t.Errorf("pid %d (%s): wp faults %d, page faults %d; perf %d, %d", p.Pid, p.Lineage.Comm, *p.WPFaults, *p.PageFaults, want.WP, want.Total())
			}
			continue
		}
		if p.Outside == nil {
			t.Fatalf("pid %d: no fault classes", p.Pid)
		}
		ours := *p.Outside
		ours.InferredCopies = 0
		if ours != want || *p.WPFaults != want.WP {
			t.Errorf("pid %d (%s): cowtrace %+v, wp_faults %d; perf %+v", p.Pid, p.Lineage.Comm, ours, *p.WPFaults, want)
		}
	}
	if run.LostRecords != 0 {
		t.Errorf("%d records lost", run.LostRecords)
	}
}

// errNoAnchor: perf record lost records, or perf script could not read
// them, so there is nothing to compare with.
var errNoAnchor = errors.New("no anchor to compare with")

// cowtraceUnderPerf runs `perf record PERFARGS -- cowtrace ARGS` (this test
// binary as cowtrace, with env added) and returns cowtrace's JSON report
// and perf script's lines (pid, time, event, trace, with the task events).
// perf runs in a mount namespace of its own: it mounts tracefs where it
// finds none and leaves it mounted, and that mount goes with it.
func cowtraceUnderPerf(t *testing.T, perfArgs, args, env []string) (*report.Run, []byte, error) {
	data := filepath.Join(t.TempDir(), "perf.data")
	cmd := exec.Command("perf", append(append(append([]string{"record", "-q", "-o", data}, perfArgs...), "--", os.Args[0]), args...)...)
	cmd.Env = append(append(os.Environ(), asMainEnv+"=1"), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, nil, fmt.Errorf("perf record -- cowtrace %s: %v\n%s", args[0], err, stderr.Bytes())
	}
	var run report.Run
	if err := json.Unmarshal(out[bytes.IndexByte(out, '{'):], &run); err != nil {
		return nil, nil, fmt.Errorf("cowtrace's JSON: %v\n%s", err, out)
	}
	sc := exec.Command("perf", "script", "-i", data, "--ns", "-F", "pid,time,event,trace", "--show-task-events", "--show-lost-events")
	sc.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	stderr.Reset()
	sc.Stderr = &stderr
	script, err := sc.Output()
	if err != nil {
		return nil, nil, fmt.Errorf("%w: perf script: %v\n%s", errNoAnchor, err, lastLines(stderr.String(), 3))
	}
	if n := bytes.Count(script, []byte("PERF_RECORD_LOST")); n > 0 {
		return nil, nil, fmt.Errorf("%w: perf record lost samples (%d PERF_RECORD_LOST records)", errNoAnchor, n)
	}
	return &run, script, nil
}

// lastLines is the last n lines of s.
func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(l[max(0, len(l)-n):], "\n")
}

var (
	perfExec  = regexp.MustCompile(`^\s*(\d+)\s+(\d+)\.(\d+):\s+PERF_RECORD_COMM exec: `)
	perfFork  = regexp.MustCompile(`PERF_RECORD_FORK\((\d+):\d+\):\((\d+):\d+\)`)
	perfFault = regexp.MustCompile(`^\s*(\d+)\s+(\d+)\.(\d+):\s+exceptions:page_fault_(user|kernel): address=(0x[0-9a-f]+) .*error_code=(0x[0-9a-f]+)`)
)

// perfClasses counts perf script's faults per process of the command's tree
// (pid command and the processes it and they forked) by class, those of the
// command only from its exec on, and kernel-mode faults only on user
// addresses, as cowtrace counts them. cowtrace's own processes are not in
// the tree.
func perfClasses(t *testing.T, script []byte, command int) map[int]report.FaultClasses {
	t.Helper()
	out, execed := perfTreeClasses(script, command, true)
	if !execed {
		t.Fatalf("perf script shows no exec of the command (pid %d)", command)
	}
	return out
}

// perfTreeClasses counts perf script's faults per process of command's
// tree by class, command's own only from its exec on when fromExec; it
// says whether that exec was seen.
func perfTreeClasses(script []byte, command int, fromExec bool) (map[int]report.FaultClasses, bool) {
	ns := func(s, frac string) uint64 {
		a, _ := strconv.ParseUint(s, 10, 64)
		b, _ := strconv.ParseUint(frac, 10, 64)
		return a*1e9 + b
	}
	var execNs uint64
	out := map[int]report.FaultClasses{}
	tree := map[int]bool{command: true}
	if !fromExec {
		execNs = 1 // every fault of command's counts
	}
	sc := bufio.NewScanner(bytes.NewReader(script))
	for sc.Scan() {
		line := sc.Text()
		if m := perfExec.FindStringSubmatch(line); m != nil {
			if pid, _ := strconv.Atoi(m[1]); pid == command && execNs == 0 {
				execNs = ns(m[2], m[3])
			}
			continue
		}
		if m := perfFork.FindStringSubmatch(line); m != nil {
			child, _ := strconv.Atoi(m[1])
			parent, _ := strconv.Atoi(m[2])
			if tree[parent] {
				tree[child] = true
			}
			continue
		}
		m := perfFault.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		pid, _ := strconv.Atoi(m[1])
		if !tree[pid] {
			continue
		}
		if pid == command && (execNs == 0 || ns(m[2], m[3]) < execNs) {
			continue
		}
		addr, _ := strconv.ParseUint(m[5], 0, 64)
		code, _ := strconv.ParseUint(m[6], 0, 64)
		kernel := m[4] == "kernel"
		if kernel && !cow.UserAddress(addr) {
			continue
		}
		var s cow.Stream
		s.Fault(addr, code, report.Region{}, kernel)
		c := out[pid]
		cow.AddClasses(&c, s.Outside)
		out[pid] = c
	}
	return out, execNs != 0
}
