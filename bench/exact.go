package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// exactPerfRecord watches the very same processes as cowtrace run, through
// the same tracepoints, from outside it: every user fault, every kernel-mode
// fault, and every order-0 allocation with its kernel stack. A large buffer
// (-m) so that perf itself loses nothing of a 1 GiB workload.
var exactPerfRecord = []string{"perf", "record", "-q", "-m", "64M",
	"-e", "exceptions:page_fault_user", "-e", "exceptions:page_fault_kernel",
	"-e", "kmem:mm_page_alloc/call-graph=fp/", "--filter", "order == 0", "--kernel-callchains", "-c", "1"}

// exactnessOfRun is exactness where the tools hold cowtrace run's row on
// the fork workload, "" where they do not.
func exactnessOfRun(ts []*tool, w workloadArgs) (string, error) {
	if !slices.ContainsFunc(ts, func(t *tool) bool { return t.workload == forkLoad && t.name == forkRunName }) {
		return "", nil
	}
	return exactness(w)
}

// exactness runs cowtrace run once more on the fork workload, itself under
// perf record, and compares cowtrace's report of that run with perf's
// samples, process by process: write-protect faults (user faults whose
// error code is a write to a present page, not a fetch, and kernel-mode ones
// on user addresses) and copies (order-0 movable user pages, not zeroed,
// allocated through do_wp_page or wp_page_copy). The rules are cowtrace's
// own (package cow); what this checks is that its rings lost nothing and
// gave every sample to the right process.
func exactness(w workloadArgs) (string, error) {
	data, rep := filepath.Join(w.tmp, "exact.data"), filepath.Join(w.tmp, "exact.json")
	argv := slices.Concat(exactPerfRecord, []string{"-o", data, "--", w.cowtrace, "run", "--format", "json", "-o", rep, "--"}, w.fork())
	if _, _, _, err := timed(argv); err != nil {
		return "", err
	}
	defer os.Remove(data)
	var quoted []string
	for _, a := range exactPerfRecord {
		if strings.ContainsAny(a, " =") {
			a = "'" + a + "'"
		}
		quoted = append(quoted, a)
	}
	how := fmt.Sprintf("one more `cowtrace run` under `%s`", strings.Join(quoted, " "))
	lost, _, _, err := perfStats(data)
	if err != nil {
		return "", err
	}
	if lost > 0 {
		return fmt.Sprintf("Exactness not checked: in %s, perf lost %d samples.", how, lost), nil
	}
	b, err := os.ReadFile(rep)
	if err != nil {
		return "", err
	}
	r, err := decodeCowtrace(b)
	if err != nil {
		return "", err
	}
	wp, copies, err := perfWPAndCopies(data)
	if err != nil {
		return "", err
	}
	var parts []string
	verdict := "equal"
	for _, p := range r.Processes {
		if p.WPFaults == nil || p.Copies == nil || p.Depth > 1 {
			continue
		}
		who := "writer"
		if p.Depth == 0 {
			who = "command"
		}
		parts = append(parts, fmt.Sprintf("%s (pid %d) wp faults %d, perf %d; copies %d, perf %d",
			who, p.PID, *p.WPFaults, wp[p.PID], *p.Copies, copies[p.PID]))
		if *p.WPFaults != wp[p.PID] || *p.Copies != copies[p.PID] {
			verdict = "DIFFERENT"
		}
	}
	return fmt.Sprintf("Exactness (%s; perf lost 0 samples): the command's and the writer's counts are %s to perf's: %s.", how, verdict, strings.Join(parts, "; ")), nil
}

var (
	perfScriptSample = regexp.MustCompile(`^\s*(\d+)\s+(\S+):\s+(.*)$`)
	perfScriptField  = regexp.MustCompile(`(\w+)=(\S+)`)
)

// isFunc says whether sym is one of fns or a compiler variant of one
// (do_wp_page.cold...).
func isFunc(sym string, fns ...string) bool {
	for _, f := range fns {
		if sym == f || strings.HasPrefix(sym, f+".") {
			return true
		}
	}
	return false
}

// copyStack tells a copy from perf's own resolution of an allocation's
// stack, independent of cowtrace's (cow.CopyPath): a frame of the
// write-protect fault's path, or of the first write to a private file
// mapping (do_cow_fault, inlined into do_fault on 6.18, where do_fault's
// only anonymous allocation is the copy's).
type copyStack struct{ path, fault, anon bool }

func (c *copyStack) frame(sym string) {
	c.path = c.path || isFunc(sym, "do_wp_page", "wp_page_copy", "do_cow_fault")
	c.fault = c.fault || isFunc(sym, "do_fault")
	c.anon = c.anon || isFunc(sym, "vma_alloc_folio", "vma_alloc_folio_noprof", "alloc_pages_vma")
}

func (c copyStack) copy() bool { return c.path || c.fault && c.anon }

// perfWPAndCopies counts each pid's write-protect faults and copies in
// exactPerfRecord's perf.data.
func perfWPAndCopies(data string) (wp, copies map[int]uint64, err error) {
	cmd := exec.Command("perf", "script", "-i", data, "-F", "pid,event,trace,ip,sym")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	c := scriptCounts{wp: map[int]uint64{}, copies: map[int]uint64{}}
	sc := bufio.NewScanner(pipe)
	for sc.Scan() {
		if err := c.line(sc.Text()); err != nil {
			return nil, nil, err
		}
	}
	c.endAlloc()
	if err := cmd.Wait(); err != nil {
		return nil, nil, fmt.Errorf("perf script: %w: %s", err, lastLine(stderr.String()))
	}
	return c.wp, c.copies, sc.Err()
}

// scriptCounts counts, line by line of perf script's output, each pid's
// write-protect faults and copies.
type scriptCounts struct {
	wp, copies map[int]uint64
	// An allocation shaped like a copy, whose stack is being read.
	allocPID int
	inAlloc  bool
	stack    copyStack
}

// line reads one line: a sample, or a frame of the stack of the sample
// before it.
func (c *scriptCounts) line(line string) error {
	if strings.HasPrefix(line, "\t") {
		if f := strings.Fields(line); c.inAlloc && len(f) >= 2 {
			c.stack.frame(f[1])
		}
		return nil
	}
	m := perfScriptSample.FindStringSubmatch(line)
	if m == nil {
		return nil
	}
	c.endAlloc()
	pid, _ := strconv.Atoi(m[1])
	fields := map[string]string{}
	for _, f := range perfScriptField.FindAllStringSubmatch(m[3], -1) {
		fields[f[1]] = f[2]
	}
	switch m[2] {
	case "exceptions:page_fault_user", "exceptions:page_fault_kernel":
		ec, err1 := strconv.ParseUint(strings.TrimPrefix(fields["error_code"], "0x"), 16, 64)
		addr, err2 := strconv.ParseUint(strings.TrimPrefix(fields["address"], "0x"), 16, 64)
		if err1 != nil || err2 != nil {
			return fmt.Errorf("perf script: cannot read %q", line)
		}
		// A write (0x2) to a present page (0x1), not a fetch (0x10); in
		// kernel mode, on a user address only.
		user := m[2] == "exceptions:page_fault_user" || addr>>56 == 0
		if user && ec&0x13 == 0x3 {
			c.wp[pid]++
		}
	case "kmem:mm_page_alloc":
		flags := strings.Split(fields["gfp_flags"], "|")
		if fields["order"] == "0" && slices.Contains(flags, "GFP_HIGHUSER_MOVABLE") && !slices.Contains(flags, "__GFP_ZERO") {
			c.allocPID, c.inAlloc = pid, true
		}
	}
	return nil
}

// endAlloc counts the allocation whose stack was being read, if its stack
// is a copy's.
func (c *scriptCounts) endAlloc() {
	if c.inAlloc && c.stack.copy() {
		c.copies[c.allocPID]++
	}
	c.inAlloc, c.stack = false, copyStack{}
}
