package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/cowtrace/cowtrace/internal/testenv"
	"github.com/cowtrace/cowtrace/report"
)

// TestAttachWhileForkingUnderPerf attaches again and again, briefly, to a
// shell that forks a process about every millisecond, under perf record of
// the whole system, so that children are created while the attach opens
// its events (a fork copies only the events already open) and end while it
// stops. Every child that ended inside the trace must have perf's counts
// exactly, or null ones that say it was created while the events were
// being opened; none may be short, and the run must call itself complete.
func TestAttachWhileForkingUnderPerf(t *testing.T) {
	testenv.Require(t, testenv.Root, testenv.Program("perf"), testenv.Program("sh"), testenv.Program("true"),
		testenv.Tracepoint("exceptions", "page_fault_user"), testenv.Tracepoint("exceptions", "page_fault_kernel"))
	truePath, _ := exec.LookPath("true")
	loop := exec.Command("sh", "-c", "while :; do "+truePath+"; done")
	if err := loop.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { loop.Process.Kill(); loop.Wait() }()
	for _, mode := range []string{"count", "classify"} {
		t.Run(mode, func(t *testing.T) {
			var compared, nulled int
			for r := 0; r < 4*soakRounds(t); r++ {
				c, n := attachUnderPerf(t, loop.Process.Pid, mode)
				compared, nulled = compared+c, nulled+n
			}
			t.Logf("%d children compared with perf, %d null as created while the events were being opened", compared, nulled)
			if compared == 0 {
				t.Error("no child ended inside an attach")
			}
		})
	}
}

// attachUnderPerf attaches to pid for 150 ms under perf record -a and
// compares each child that ended inside the trace; it returns how many it
// compared and how many were null.
func attachUnderPerf(t *testing.T, pid int, mode string) (compared, nulled int) {
	t.Helper()
	data := filepath.Join(t.TempDir(), "perf.data")
	c := exec.Command("perf", "record", "-q", "-a", "-m", "32M", "-c", "1", "-o", data,
		"-e", "exceptions:page_fault_user", "-e", "exceptions:page_fault_kernel", "-e", "page-faults", "--",
		os.Args[0], "attach", "-p", strconv.Itoa(pid), "--duration", "150ms", "--format", "json", "--kprobe-method", "none", "--mode", mode)
	c.Env = append(os.Environ(), asMainEnv+"=1")
	c.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	var stderr bytes.Buffer
	c.Stderr = &stderr
	out, err := c.Output()
	if err != nil {
		t.Fatalf("perf record -a -- cowtrace attach: %v\n%s", err, stderr.Bytes())
	}
	var run report.Run
	if err := json.Unmarshal(out[bytes.IndexByte(out, '{'):], &run); err != nil {
		t.Fatalf("cowtrace's JSON: %v\n%s", err, out)
	}
	sc := exec.Command("perf", "script", "-i", data, "--ns", "-F", "pid,time,event,trace", "--show-task-events", "--show-lost-events")
	sc.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	script, err := sc.Output()
	if err != nil {
		t.Fatalf("perf script: %v", err)
	}
	if n := bytes.Count(script, []byte("PERF_RECORD_LOST")); n > 0 {
		t.Skipf("perf record lost samples (%d PERF_RECORD_LOST records): no anchor to compare with", n)
	}
	if !run.Complete || len(run.Incomplete) > 0 {
		t.Errorf("attach incomplete: %q", run.Incomplete)
	}
	classes, _ := perfTreeClasses(script, pid, false)
	pageFaults := perfPageFaults(script, pid)
	var bad []string
	for _, p := range run.Processes {
		if p.Lineage == nil || p.Pid == pid || !p.Exited {
			continue // the attached shell, and children alive at the end
		}
		if p.WPFaults == nil || p.PageFaults == nil {
			nulled++
			if why := p.Unmeasured["wp_faults"]; !strings.Contains(why, "created while") {
				bad = append(bad, fmt.Sprintf("%d (%s): null, %q", p.Pid, p.Comm, p.Unmeasured))
			}
			continue
		}
		compared++
		want := classes[p.Pid]
		if *p.WPFaults != want.WP || mode == "count" && *p.PageFaults != pageFaults[p.Pid] {
			bad = append(bad, fmt.Sprintf("%d (%s): wp faults %d, page faults %d; perf %d, %d", p.Pid, p.Comm, *p.WPFaults, *p.PageFaults, want.WP, pageFaults[p.Pid]))
		}
	}
	if len(bad) > 0 {
		t.Errorf("%d children differ from perf record of the same attach: %s", len(bad), strings.Join(bad[:min(6, len(bad))], "; "))
	}
	return compared, nulled
}
