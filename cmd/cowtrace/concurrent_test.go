package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/cowtrace/cowtrace/internal/testenv"
	"github.com/cowtrace/cowtrace/report"
)

// tracefsMounts lists the tracefs mount points of this mount namespace.
func tracefsMounts(t *testing.T) []string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var dirs []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if fields := strings.Fields(pre); ok && strings.HasPrefix(post, "tracefs ") && len(fields) > 4 {
			dirs = append(dirs, fields[4])
		}
	}
	return dirs
}

// TestConcurrentRuns starts eight cowtrace processes at once from a machine
// where tracefs is mounted nowhere, the case in which each must make a mount
// of its own. Each must get every tracepoint and exact counts, and none may
// leave a mount behind or take one away from the others.
func TestConcurrentRuns(t *testing.T) {
	testenv.Require(t, testenv.Root)
	if dirs := tracefsMounts(t); len(dirs) > 0 {
		t.Skipf("tracefs is mounted (at %s), not by this test: the case under test is tracefs mounted nowhere, "+
			"and this test never unmounts a mount it did not make", strings.Join(dirs, ", "))
	}
	const n, blocks = 8, 200
	type result struct {
		stdout, stderr bytes.Buffer
		err            error
	}
	results := make([]result, n)
	var wg sync.WaitGroup
	var gates []io.Closer
	for i := range n {
		cmd := exec.Command(os.Args[0], "--blocks", fmt.Sprint(blocks), "--format", "json")
		cmd.Env = append(os.Environ(), asMainEnv+"=1", startGateEnv+"=1")
		cmd.Stdout, cmd.Stderr = &results[i].stdout, &results[i].stderr
		gate, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		gates = append(gates, gate)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		wg.Go(func() { results[i].err = cmd.Wait() })
	}
	// All at the same instant: runs that shared one global mount of
	// tracefs raced on mount(2) then (EBUSY).
	for _, g := range gates {
		g.Close()
	}
	wg.Wait()

	for i, r := range results {
		if r.err != nil {
			t.Errorf("run %d: %v\n%s", i, r.err, r.stderr.String())
			continue
		}
		var run report.Run
		if err := json.Unmarshal(r.stdout.Bytes(), &run); err != nil {
			t.Errorf("run %d: %v\n%s", i, err, r.stdout.String())
			continue
		}
		for _, u := range run.Unavailable {
			if u.What == "tracefs" || strings.HasPrefix(u.What, "tracepoint:") {
				t.Errorf("run %d: %s unavailable: %s", i, u.What, u.Why)
			}
		}
		if got := counts(run.Find("writer")); got != fmt.Sprintf("wp %d, copies %d", blocks, blocks) {
			t.Errorf("run %d: writer %s; want %d and %d", i, got, blocks, blocks)
		}
		if got := counts(run.Find("reader")); got != "wp 0, copies 0" {
			t.Errorf("run %d: reader %s; want none", i, got)
		}
	}
	if dirs := tracefsMounts(t); len(dirs) > 0 {
		t.Errorf("tracefs mounted at %s after the runs, mounted nowhere before "+
			"(another program may have mounted it meanwhile: look before blaming cowtrace)", strings.Join(dirs, ", "))
	}
}

// counts says a row's write-protect faults and copies, "-" for a measure
// not taken.
func counts(p *report.Process) string {
	if p == nil {
		return "no row"
	}
	s := func(v *uint64) string {
		if v == nil {
			return "-"
		}
		return fmt.Sprint(*v)
	}
	return fmt.Sprintf("wp %s, copies %s", s(p.WPFaults), s(p.Copies))
}
