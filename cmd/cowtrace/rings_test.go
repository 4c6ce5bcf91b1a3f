package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cowtrace/cowtrace/internal/testenv"
	"github.com/cowtrace/cowtrace/perfevents"
	"github.com/cowtrace/cowtrace/report"
)

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{
		"": 0, "65536": 65536, "512K": 512 << 10, "512k": 512 << 10, "32M": 32 << 20, "32MiB": 32 << 20,
		"32MB": 32 << 20, "1G": 1 << 30, "1g": 1 << 30,
	} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"0", "-1M", "M", "1.5M", "12X", "1KK", "1T", "99999999999G", " 1M"} {
		if got, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) = %d, want an error", in, got)
		}
	}
	for _, size := range []string{"lots", "32K"} {
		code, _, stderr := runCLI("run", "--ring-size", size, "--", "true")
		if code != exitUsage || !strings.Contains(stderr, "--ring-size") {
			t.Errorf("run --ring-size %s: exit %d, %q", size, code, stderr)
		}
	}
}

// runPinned runs this test binary as cowtrace (asMainEnv) with args, forked
// from a thread whose CPU affinity is cpu alone: what `taskset -c CPU
// cowtrace ...` does. The thread ends with its goroutine, affinity and all.
func runPinned(t *testing.T, cpu int, args ...string) *report.Run {
	t.Helper()
	return runPinnedExit(t, cpu, 0, args...)
}

// runPinnedExit is runPinned for a run that must exit with code.
func runPinnedExit(t *testing.T, cpu, code int, args ...string) *report.Run {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), asMainEnv+"=1")
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	started := make(chan error)
	go func() {
		runtime.LockOSThread()
		var set unix.CPUSet
		set.Set(cpu)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			started <- err
			return
		}
		started <- cmd.Start()
	}()
	if err := <-started; err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); cmd.ProcessState.ExitCode() != code {
		t.Fatalf("cowtrace %q on CPU %d: %v, want exit %d\n%s", args, cpu, err, code, stderr.String())
	}
	var run report.Run
	if err := json.Unmarshal([]byte(stdout.String()), &run); err != nil {
		t.Fatalf("json: %v\n%s", err, stdout.String())
	}
	return &run
}

// twoCPUs returns the first and the last online CPU, and skips unless the
// machine has a CPU to leave out.
func twoCPUs(t *testing.T) (first, last int) {
	t.Helper()
	cpus, err := perfevents.OnlineCPUs()
	if err != nil {
		t.Fatal(err)
	}
	if len(cpus) < 2 {
		t.Skipf("one online CPU: pinning leaves none out")
	}
	return cpus[0], cpus[len(cpus)-1]
}

func noteMatching(run *report.Run, re *regexp.Regexp) []string {
	for _, n := range run.Notes {
		if m := re.FindStringSubmatch(n); m != nil {
			return m
		}
	}
	return nil
}

// TestRunPinned: cowtrace run under an affinity of one CPU opens one ring,
// on that CPU, and still counts every fault of the command's tree: child k
// of cow_tree writes k shared pages, on top of a baseline that is the same
// for every child.
func TestRunPinned(t *testing.T) {
	testenv.Require(t, testenv.Root)
	_, cpu := twoCPUs(t)
	prog := testenv.BuildC(t, "cow_tree")
	run := runPinned(t, cpu, "run", "--format", "json", "--kprobe-method", "none", "--", prog, "20")
	ring := regexp.MustCompile(fmt.Sprintf(`^ring buffers: .* on each of 1 CPUs \(%d, of \S+ online, the traced tasks' CPU affinity`, cpu))
	if noteMatching(run, ring) == nil {
		t.Errorf("no note of one ring on CPU %d: %q", cpu, run.Notes)
	}
	if noteMatching(run, regexp.MustCompile(`^faults on CPUs without a ring: none`)) == nil {
		t.Errorf("no note that every fault was on the ring's CPU: %q", run.Notes)
	}
	if run.LostRecords != 0 || len(run.Processes) != 21 {
		t.Fatalf("%d records lost, %d rows: want none lost and 21 rows", run.LostRecords, len(run.Processes))
	}
	var base uint64
	for k, p := range run.Processes[1:] {
		pages := uint64(k + 1)
		if *p.WPFaults < pages {
			t.Fatalf("child %d: %d wp faults for %d pages", k+1, *p.WPFaults, pages)
		}
		if k == 0 {
			base = *p.WPFaults - pages
		} else if *p.WPFaults-pages != base {
			t.Errorf("child %d: %d wp faults for %d pages; child 1 had pages + %d", k+1, *p.WPFaults, pages, base)
		}
	}
}

// TestRunEscapes: a command that moves itself to a CPU without a ring
// (taskset, after cowtrace was pinned to another) is not traced there, and
// the run says how many page faults it missed.
func TestRunEscapes(t *testing.T) {
	testenv.Require(t, testenv.Root)
	other, cpu := twoCPUs(t)
	taskset, err := exec.LookPath("taskset")
	if err != nil {
		t.Skip("no taskset(1)")
	}
	prog := testenv.BuildC(t, "cow_tree")
	run := runPinnedExit(t, cpu, exitIncomplete, "run", "--format", "json", "--kprobe-method", "none", "--", taskset, "-c", strconv.Itoa(other), prog, "3")
	m := noteMatching(&report.Run{Notes: run.Incomplete}, regexp.MustCompile(`^faults on CPUs without a ring: (\d+) page faults`))
	if m == nil || run.Complete {
		t.Fatalf("no note of faults on CPUs without a ring, or the run calls itself complete: %q", run.Incomplete)
	}
	for _, p := range run.Processes {
		if p.Comm == "cow_tree" && (p.PageFaults != nil || p.Unmeasured["page_faults"] == "") {
			t.Errorf("cow_tree, which ran on CPU %d: page faults %v, unmeasured %q; want null with the reason", other, p.PageFaults, p.Unmeasured)
		}
	}
	// cow_tree writes its 256 pages and each child at least one.
	if n, _ := strconv.Atoi(m[1]); n < 256 {
		t.Errorf("%d page faults missed, want cow_tree's 256 and more: %q", n, run.Notes)
	}
}
