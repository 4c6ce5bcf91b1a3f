package main

import (
	"bufio"
	"bytes"
	_ "embed"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// forkSource is the fork workload: a C program that writes N pages, forks a
// child that writes one byte into each, and waits for it. Embedded, so that
// bench runs from any directory.
//
//go:embed testdata/cow_fork_write.c
var forkSource []byte

// forkRunName is the row of cowtrace run on the fork workload (its default,
// count mode where the kernel allows it); forkClassifyName samples every
// fault.
const (
	forkRunName      = "cowtrace run"
	forkClassifyName = "cowtrace run --mode classify"
)

// forkPerfRecord is the perf record of issue 11: no build-id collection at
// the end (-B, -N) and no BPF events, which would be its own costs.
var forkPerfRecord = []string{"perf", "record", "-B", "-N", "--no-bpf-event", "-e", "exceptions:page_fault_user", "-c", "1"}

// forkPerfRecordSame is perf record of what cowtrace run takes without
// kprobes, the yardstick of issue 19: the write-protect faults and the
// allocations shaped like a copy, with the kernel stacks that tell copies,
// a record each.
var forkPerfRecordSame = []string{"perf", "record", "-B", "-N", "--no-bpf-event", "-c", "1",
	"-e", "exceptions:page_fault_user", "--filter", "error_code == 7",
	"-e", "kmem:mm_page_alloc/call-graph=fp,max-stack=8/", "--filter", "order == 0 && !(gfp_flags & 0x100)"}

func (w workloadArgs) fork() []string {
	return []string{w.prog, strconv.Itoa(w.blocks)}
}

func (w workloadArgs) cowtraceRun(bin string, flags ...string) []string {
	return slices.Concat([]string{bin, "run", "--format", "json"}, flags, []string{"--"}, w.fork())
}

// forkTools are the rows of the fork workload.
func forkTools(compare bool) []*tool {
	all := []*tool{
		{name: "untraced", argv: workloadArgs.fork},
		{name: forkRunName, argv: func(w workloadArgs) []string { return w.cowtraceRun(w.cowtrace) }, check: checkCowtraceRun},
		{name: forkClassifyName, argv: func(w workloadArgs) []string { return w.cowtraceRun(w.cowtrace, "--mode", "classify") }, check: checkCowtraceRun},
		{name: "perf stat -e page-faults", argv: func(w workloadArgs) []string {
			return append([]string{"perf", "stat", "-x", ",", "-e", "page-faults", "-o", filepath.Join(w.tmp, "stat.txt"), "--"}, w.fork()...)
		}, check: checkPerfStat},
		{name: strings.Join(forkPerfRecord, " "), argv: func(w workloadArgs) []string {
			return slices.Concat(forkPerfRecord, []string{"-o", filepath.Join(w.tmp, "perf.data"), "--"}, w.fork())
		}, check: checkPerfRecordByPID},
		{name: "perf record (wp faults + copy-shaped allocations with stacks)", argv: func(w workloadArgs) []string {
			return slices.Concat(forkPerfRecordSame, []string{"-o", filepath.Join(w.tmp, "perf.data"), "--"}, w.fork())
		}, check: checkPerfRecordByPID},
		{name: "bpftrace (error_code == 7 by pid, in kernel)", argv: func(w workloadArgs) []string {
			return []string{"bpftrace", "-e", bpftraceProgram, "-c", strings.Join(w.fork(), " ")}
		}, check: checkBpftrace},
	}
	if compare {
		all = append(all, &tool{name: "-compare " + forkRunName, check: checkCowtraceRun,
			argv: func(w workloadArgs) []string { return w.cowtraceRun(w.other) }})
	}
	return all
}

// forkNote describes the fork workload and what each row's "writer" is.
func forkNote(pages int) string {
	return fmt.Sprintf("bench/testdata/cow_fork_write.c (gcc -O1), %d MiB of private anonymous memory written before the fork, "+
		"one child writing one byte in each of its %d 4 KiB pages, the parent waiting. The writer is that child: "+
		"for cowtrace run, its row (wp faults and copies: the region's %d plus the child's few of libc and stack); "+
		"for perf record and bpftrace, the write-protect faults (error_code 0x7, user mode only) of the pid the program names; "+
		"perf stat counts every page fault of the tree.", pages>>8, pages, pages)
}

// checkCowtraceRun reads cowtrace run's JSON report: the writer is the
// command's only child, the one the command names.
func checkCowtraceRun(out []byte, _ workloadArgs) (seen, error) {
	r, err := decodeCowtrace(out)
	if err != nil {
		return seen{}, err
	}
	writer, err := writerPID(out)
	if err != nil {
		return seen{}, err
	}
	var children []int
	s := seen{lost: r.LostRecords, throttled: r.Throttled, copies: -1, records: r.Records}
	for _, p := range r.Processes {
		if p.Depth != 1 {
			continue
		}
		children = append(children, p.PID)
		if p.WPFaults == nil || p.Copies == nil {
			return seen{}, fmt.Errorf("cowtrace run reports no wp_faults or copies for pid %d", p.PID)
		}
		s.wp, s.copies = *p.WPFaults, int64(*p.Copies)
	}
	if len(children) != 1 || children[0] != writer {
		return seen{}, fmt.Errorf("cowtrace run reports children %v of the command, want the writer, %d, alone", children, writer)
	}
	return s, nil
}

// checkPerfRecordByPID reads perf.data's samples lost, and the writer's
// write-protect faults (error_code 0x7).
func checkPerfRecordByPID(out []byte, w workloadArgs) (seen, error) {
	pid, err := writerPID(out)
	if err != nil {
		return seen{}, err
	}
	data := filepath.Join(w.tmp, "perf.data")
	lost, thr, _, err := perfStats(data)
	if err != nil {
		return seen{}, err
	}
	byPID, err := wpByPID(data)
	if err != nil {
		return seen{}, err
	}
	return seen{lost: lost, throttled: thr, wp: byPID[pid], copies: -1, records: -1}, nil
}

var perfScriptFault = regexp.MustCompile(`^\s*(\d+)\s.*\berror_code=0x([0-9a-f]+)`)

// wpByPID counts the user write-protect faults of each pid in a perf.data
// file of exceptions:page_fault_user samples.
func wpByPID(data string) (map[int]uint64, error) {
	cmd := exec.Command("perf", "script", "-i", data, "-F", "pid,trace")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	n := map[int]uint64{}
	sc := bufio.NewScanner(pipe)
	for sc.Scan() {
		m := perfScriptFault.FindSubmatch(sc.Bytes())
		if m == nil || string(m[2]) != "7" {
			continue
		}
		pid, _ := strconv.Atoi(string(m[1]))
		n[pid]++
	}
	if err := cmd.Wait(); err != nil {
		return nil, fmt.Errorf("perf script: %w: %s", err, lastLine(stderr.String()))
	}
	return n, sc.Err()
}

// forkChecks says whether every round of cowtrace run saw every page of the
// region fault and be copied in the writer, with nothing lost.
func forkChecks(ts []*tool, pages int) string {
	var lines []string
	for _, t := range ts {
		if !strings.Contains(t.name, forkRunName) {
			continue
		}
		var bad []string
		if t.lost != 0 {
			bad = append(bad, fmt.Sprintf("%d records lost", t.lost))
		}
		if lo := slices.Min(t.wp); lo < uint64(pages) {
			bad = append(bad, fmt.Sprintf("writer wp faults down to %d", lo))
		}
		if lo := slices.Min(t.copies); lo < int64(pages) {
			bad = append(bad, fmt.Sprintf("writer copies down to %d", lo))
		}
		verdict := "passed in every round"
		if len(bad) > 0 {
			verdict = "FAILED: " + strings.Join(bad, ", ")
		}
		lines = append(lines, fmt.Sprintf("Check of `%s` (0 lost, writer wp faults >= %d and copies >= %d in every round): %s; wp faults %d-%d (pages +%d to +%d), copies %d-%d.",
			t.name, pages, pages, verdict, slices.Min(t.wp), slices.Max(t.wp), int64(slices.Min(t.wp))-int64(pages), int64(slices.Max(t.wp))-int64(pages),
			slices.Min(t.copies), slices.Max(t.copies)))
	}
	return strings.Join(lines, "\n")
}

// buildFork compiles the fork workload into tmp.
func buildFork(tmp string) (string, error) {
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		return "", fmt.Errorf("the fork workload needs gcc (apt-get install -y gcc libc6-dev), or pass -workload %s", workerLoad)
	}
	src := filepath.Join(tmp, "cow_fork_write.c")
	if err := os.WriteFile(src, forkSource, 0o644); err != nil {
		return "", err
	}
	out := filepath.Join(tmp, "cow_fork_write")
	if b, err := exec.Command(gcc, "-O1", "-Wall", "-o", out, src).CombinedOutput(); err != nil {
		return "", fmt.Errorf("gcc cow_fork_write.c: %w: %s", err, b)
	}
	// Once on one page: it works, and the first timed run does not pay
	// for reading it from disk.
	if b, err := exec.Command(out, "1").CombinedOutput(); err != nil {
		return "", fmt.Errorf("cow_fork_write 1: %w: %s", err, b)
	}
	return out, nil
}
