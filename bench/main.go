// Command bench measures what cowtrace costs the workload it measures, side
// by side with the tools a user would pick instead (perf stat, perf record,
// bpftrace), and prints a markdown table per workload. Run it as root:
// go run ./bench.
//
// Two workloads, each with its own untraced baseline and table. "worker" is
// cowtrace's own experiment worker (package workload), 1 GiB of private
// memory written before the fork and a writer child that writes one byte in
// every 4 KiB page: cowtrace's experiment drives the worker itself; for the
// untraced baseline and the external tools this binary drives it, with the
// same gates opened at once (see untraced.go). "fork" is the same shape as a
// plain C program (testdata/cow_fork_write.c) under `cowtrace run`, as a user
// would trace their own command (see fork.go). Every tool of every workload
// runs in the same interleaved rounds, each round starting one tool further
// on (A B C, B C A, C A B ...), so that a change of the machine's load hits
// every tool alike; ratios are paired, per round, with the untraced run of
// the tool's workload.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cowtrace/cowtrace/bench/internal/stat"
	"github.com/cowtrace/cowtrace/internal/workload"
)

func main() {
	workload.RunIfWorker()
	if len(os.Args) > 1 && os.Args[1] == untracedArg {
		if err := runUntraced(os.Args[2:]); err != nil {
			fmt.Fprintf(os.Stderr, "bench: untraced workload: %v\n", err)
			os.Exit(1)
		}
		return
	}
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
}

// tool is one way of running a workload.
type tool struct {
	name string
	// workload is the program the tool runs: workerLoad or forkLoad.
	workload string
	argv     func(w workloadArgs) []string
	// check reads what the tool reported after a round.
	check   func(out []byte, w workloadArgs) (seen, error)
	times   []time.Duration
	cpu     []time.Duration // user+system of the whole command: tool and workload
	lost    int64
	thr     int64
	wp      []uint64
	copies  []int64
	records []int64
	rss     int64 // peak RSS of the tool's own process, KiB; 0 = not measured
	// ownCPU is the user+system time of the tool's own process (all its
	// threads, not the workload), from the peak-RSS run; -1 = not measured.
	ownCPU time.Duration
}

// seen is what a tool reported after one round; -1 where the tool does not
// say.
type seen struct {
	lost, throttled int64
	// records is how many records the rings delivered (cowtrace's
	// report says), -1 where the tool does not say.
	records int64
	// wp is the writer's write-protect faults, or what the tool counts in
	// their place (see the workload's note under its table).
	wp     uint64
	copies int64
}

type workloadArgs struct {
	self, cowtrace, tmp string
	// blocks is the number of 4 KiB pages the writer child writes, in
	// either workload.
	blocks int
	// other is a second cowtrace binary (-compare), to measure a change.
	other string
	// prog is the fork workload's C program, built by buildFork.
	prog string
}

func (w workloadArgs) untraced() []string {
	return []string{w.self, untracedArg, strconv.Itoa(w.blocks)}
}

func (w workloadArgs) cowtraceArgs(mode string) []string {
	return []string{w.cowtrace, "--blocks", strconv.Itoa(w.blocks), "--block-size", "4096", "--offset", "0",
		"--mode", mode, "--format", "json"}
}

const bpftraceProgram = `tracepoint:exceptions:page_fault_user /args->error_code == 7/ { @[pid] = count(); }`

const (
	workerLoad = "worker"
	forkLoad   = "fork"
)

// tools returns the tools of each workload named in loads, each workload's
// untraced baseline first. names filters them by prefix: a workload none of
// whose tools is named is left out, and a name that matches no tool of any
// of the workloads is an error.
func tools(names, loads string, compare bool) ([]*tool, error) {
	var out []*tool
	matched := map[string]bool{}
	for _, l := range strings.Split(loads, ",") {
		var all []*tool
		switch l {
		case workerLoad:
			all = workerTools(compare)
		case forkLoad:
			all = forkTools(compare)
		default:
			return nil, fmt.Errorf("no workload named %q (%s or %s)", l, workerLoad, forkLoad)
		}
		for _, t := range all {
			t.workload = l
		}
		if names == "" {
			out = append(out, all...)
			continue
		}
		sel := []*tool{all[0]}
		for _, n := range strings.Split(names, ",") {
			for _, t := range all[1:] {
				if strings.HasPrefix(t.name, n) && !slices.Contains(sel, t) {
					sel, matched[n] = append(sel, t), true
				}
			}
		}
		if len(sel) > 1 {
			out = append(out, sel...)
		}
	}
	for _, n := range strings.Split(names, ",") {
		if names != "" && !matched[n] {
			return nil, fmt.Errorf("no tool named %q in workloads %s", n, loads)
		}
	}
	return out, nil
}

// workerTools are the rows of the worker workload.
func workerTools(compare bool) []*tool {
	all := []*tool{
		{name: "untraced", argv: workloadArgs.untraced},
		{name: "cowtrace --mode count", argv: func(w workloadArgs) []string { return w.cowtraceArgs("count") },
			check: checkCowtrace},
		{name: "cowtrace --mode classify", argv: func(w workloadArgs) []string { return w.cowtraceArgs("classify") },
			check: checkCowtrace},
		{name: "perf stat -e page-faults", argv: func(w workloadArgs) []string {
			return append([]string{"perf", "stat", "-x", ",", "-e", "page-faults", "-o", filepath.Join(w.tmp, "stat.txt"), "--"}, w.untraced()...)
		}, check: checkPerfStat},
		// The same in-kernel filter as count mode's write-protect counter:
		// what counting a class of fault costs through perf.
		{name: "perf stat -e exceptions:page_fault_user --filter 'error_code == 7'", argv: func(w workloadArgs) []string {
			return append([]string{"perf", "stat", "-x", ",", "-e", "exceptions:page_fault_user", "--filter", "error_code == 7",
				"-o", filepath.Join(w.tmp, "stat.txt"), "--"}, w.untraced()...)
		}, check: checkPerfStat},
		{name: "perf record -e exceptions:page_fault_user -c 1", argv: func(w workloadArgs) []string {
			return append([]string{"perf", "record", "-q", "-e", "exceptions:page_fault_user", "-c", "1", "-o", filepath.Join(w.tmp, "perf.data"), "--"}, w.untraced()...)
		}, check: checkPerfRecord},
		{name: "bpftrace (error_code == 7 by pid, in kernel)", argv: func(w workloadArgs) []string {
			return []string{"bpftrace", "-e", bpftraceProgram, "-c", strings.Join(w.untraced(), " ")}
		}, check: checkBpftrace},
	}
	if compare {
		for _, mode := range []string{"count", "classify"} {
			all = append(all, &tool{name: "-compare cowtrace --mode " + mode, check: checkCowtrace,
				argv: func(w workloadArgs) []string {
					a := w.cowtraceArgs(mode)
					a[0] = w.other
					return a
				}})
		}
	}
	return all
}

// options are bench's flags.
type options struct {
	rounds, blocks, startRounds      int
	workloads, only, prebuilt, other string
}

func parseFlags() (options, error) {
	var o options
	flag.IntVar(&o.rounds, "rounds", 10, "interleaved rounds of every tool")
	flag.IntVar(&o.blocks, "blocks", 262144, "4 KiB pages the writer child writes (262144: 1 GiB)")
	flag.StringVar(&o.workloads, "workload", workerLoad+","+forkLoad, "comma-separated workloads: "+workerLoad+" (cowtrace's experiment worker), "+forkLoad+" (a C program under cowtrace run)")
	flag.StringVar(&o.only, "tools", "", "comma-separated name prefixes of the tools to run (default all; each workload's untraced baseline always runs)")
	flag.IntVar(&o.startRounds, "startup-rounds", 20, "interleaved rounds of the start-up measurement (0: none)")
	flag.StringVar(&o.prebuilt, "cowtrace", "", "a cowtrace binary to measure (default: build ./cmd/cowtrace statically)")
	flag.StringVar(&o.other, "compare", "", "a second cowtrace binary to measure in the same rounds (before/after a change)")
	flag.Parse()
	if o.rounds < 1 || o.blocks < 1 || o.startRounds < 0 {
		return o, fmt.Errorf("-rounds and -blocks must be positive, -startup-rounds not negative")
	}
	return o, nil
}

func run() error {
	o, err := parseFlags()
	if err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("needs root: cowtrace, perf and bpftrace open tracepoints on other processes")
	}
	ts, err := tools(o.only, o.workloads, o.other != "")
	if err != nil {
		return err
	}
	if err := checkInstalled(ts); err != nil {
		return err
	}
	fork := slices.ContainsFunc(ts, func(t *tool) bool { return t.workload == forkLoad })

	// perf and bpftrace mount tracefs when it is not mounted, and leave it
	// mounted; cowtrace unmounts what it mounted. Leave the machine as found.
	if !tracefsMounted() {
		defer unmountTracefs()
	}

	tmp, err := os.MkdirTemp("", "cowtrace-bench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	w, size, err := prepare(o, tmp, fork)
	if err != nil {
		return err
	}
	rounds, err := runRounds(ts, w, o.rounds)
	if err != nil {
		return err
	}
	measurePeakRSS(ts, w)
	exact, err := exactnessOfRun(ts, w)
	if err != nil {
		return fmt.Errorf("exactness: %w", err)
	}
	starts, startNote, err := startup(w, o.startRounds)
	if err != nil {
		return err
	}

	out := os.Stdout
	rounds.write(out)
	writeWorkloads(out, ts, strings.Split(o.workloads, ","), o.blocks, exact)
	writeStartup(out, starts, o.startRounds, startNote)
	writeBinary(out, o.prebuilt != "", size)
	return nil
}

// checkInstalled says which of the external tools the rows need is missing.
func checkInstalled(ts []*tool) error {
	for _, t := range ts {
		if a := t.argv(workloadArgs{}); strings.HasPrefix(t.name, "perf") || strings.HasPrefix(t.name, "bpftrace") {
			if _, err := exec.LookPath(a[0]); err != nil {
				return fmt.Errorf("%s is not installed (apt-get install -y linux-perf bpftrace)", a[0])
			}
		}
	}
	return nil
}

func unmountTracefs() {
	if tracefsMounted() {
		_ = syscall.Unmount("/sys/kernel/tracing", 0)
	}
}

// prepare finds or builds what the rounds run: this binary (the untraced
// worker), the cowtrace to measure and the one to compare it with, and the
// fork workload's program. size is the measured cowtrace's, in bytes.
func prepare(o options, tmp string, fork bool) (w workloadArgs, size int64, err error) {
	self, err := os.Executable()
	if err != nil {
		return w, 0, err
	}
	cow, size, err := cowtraceBinary(o.prebuilt, tmp)
	if err != nil {
		return w, 0, err
	}
	w = workloadArgs{self: self, cowtrace: cow, tmp: tmp, blocks: o.blocks, other: o.other}
	if o.other != "" {
		if w.other, err = filepath.Abs(o.other); err != nil {
			return w, 0, err
		}
	}
	if fork {
		if w.prog, err = buildFork(tmp); err != nil {
			return w, 0, err
		}
	}
	return w, size, nil
}

// cowtraceBinary is the cowtrace to measure: prebuilt (-cowtrace), or else
// one built into tmp, static like a release; and its size in bytes.
func cowtraceBinary(prebuilt, tmp string) (string, int64, error) {
	cow := prebuilt
	if cow == "" {
		cow = filepath.Join(tmp, "cowtrace")
		build := exec.Command(goTool(), "build", "-trimpath", "-o", cow, "./cmd/cowtrace")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		build.Stderr = os.Stderr
		if err := build.Run(); err != nil {
			return "", 0, fmt.Errorf("build cowtrace (run from the module root): %w", err)
		}
	} else {
		abs, err := filepath.Abs(cow)
		if err != nil {
			return "", 0, err
		}
		cow = abs
	}
	st, err := os.Stat(cow)
	if err != nil {
		return "", 0, err
	}
	return cow, st.Size(), nil
}

// roundsLog is when the timed rounds ran and under what load, for the
// header of the output.
type roundsLog struct {
	rounds             int
	started            time.Time
	elapsed            time.Duration
	loadStart, loadEnd string
	// loads is the 1-minute load average as each round started.
	loads []float64
}

// runRounds runs every tool once per round, in interleaved rounds.
func runRounds(ts []*tool, w workloadArgs, rounds int) (roundsLog, error) {
	l := roundsLog{rounds: rounds, loadStart: loadavg()}
	l.started = time.Now()
	for r := 0; r < rounds; r++ {
		l.loads = append(l.loads, load1())
		// Each round starts one tool further on (A B C, B C A, C A B...):
		// no tool always runs right after the same one, e.g. right after a
		// 1 GiB process was torn down.
		for i := range ts {
			t := ts[(i+r)%len(ts)]
			if err := t.runOnce(w); err != nil {
				return l, fmt.Errorf("round %d, %s: %w", r+1, t.name, err)
			}
		}
		fmt.Fprintf(os.Stderr, "bench: round %d/%d done (load %.2f)\n", r+1, rounds, l.loads[len(l.loads)-1])
	}
	l.loadEnd = loadavg()
	l.elapsed = time.Since(l.started)
	return l, nil
}

// runOnce runs the tool once, timed, and keeps what it reported.
func (t *tool) runOnce(w workloadArgs) error {
	d, cpu, out, err := timed(t.argv(w))
	if err != nil {
		return err
	}
	t.times = append(t.times, d)
	t.cpu = append(t.cpu, cpu)
	if t.check == nil {
		return nil
	}
	s, err := t.check(out, w)
	if err != nil {
		return err
	}
	t.lost += s.lost
	t.thr += s.throttled
	t.wp = append(t.wp, s.wp)
	t.copies = append(t.copies, s.copies)
	t.records = append(t.records, s.records)
	return nil
}

// measurePeakRSS runs each tool once more, apart from the timed rounds (see
// peakRSS), for its own peak memory and CPU time. A tool that cannot be
// measured so keeps its row, with a dash there.
func measurePeakRSS(ts []*tool, w workloadArgs) {
	for _, t := range ts {
		if t.name == "untraced" {
			continue
		}
		kb, cpu, err := peakRSS(t.argv(w))
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench: peak RSS of %s: %v\n", t.name, err)
			continue
		}
		t.rss, t.ownCPU = kb, cpu
	}
}

// write is the output's first line: when, where and under what load.
func (l roundsLog) write(out io.Writer) {
	fmt.Fprintf(out, "Measured %s on kernel %s, %d CPUs; load average at start %s, at end %s, 1-min load at each round %.2f-%.2f; %d interleaved rounds in %s.\n\n",
		l.started.UTC().Format("2006-01-02 15:04 MST"), kernel(), runtime.NumCPU(), l.loadStart, l.loadEnd,
		slices.Min(l.loads), slices.Max(l.loads), l.rounds, l.elapsed.Round(time.Second))
}

// writeStartup writes the start-up table, if it was measured.
func writeStartup(out io.Writer, starts []*startupCmd, rounds int, note string) {
	if len(starts) == 0 {
		return
	}
	fmt.Fprintf(out, "Start-up (median of %d interleaved rounds, wall time of the whole command)%s:\n\n", rounds, note)
	fmt.Fprintln(out, "| command | median ms | min-max ms |\n|---|---:|---:|")
	for _, s := range starts {
		fmt.Fprintf(out, "| `%s` | %.1f | %.1f-%.1f |\n", s.label, ms(stat.Median(s.times)), ms(slices.Min(s.times)), ms(slices.Max(s.times)))
	}
	fmt.Fprintln(out)
}

// writeBinary says how large the measured cowtrace binary is and where it
// came from.
func writeBinary(out io.Writer, given bool, size int64) {
	how := "built here with CGO_ENABLED=0 -trimpath"
	if given {
		how = "given with -cowtrace"
	}
	fmt.Fprintf(out, "cowtrace binary (%s): %.1f MB (%d bytes).\n", how, float64(size)/1e6, size)
}

// writeWorkloads writes each workload's description and table, and for the
// fork workload the checks of cowtrace run and the exactness line.
func writeWorkloads(out io.Writer, ts []*tool, workloads []string, blocks int, exact string) {
	for _, l := range workloads {
		lts := slices.DeleteFunc(slices.Clone(ts), func(t *tool) bool { return t.workload != l })
		if len(lts) == 0 {
			continue
		}
		switch l {
		case workerLoad:
			fmt.Fprintf(out, "Workload %q: %d MiB of private memory written before the fork, a writer child writing one byte in each of %d 4 KiB pages (%d copy-on-write faults) and a reader child reading them.\n\n",
				l, blocks*4096>>20, blocks, blocks)
		case forkLoad:
			fmt.Fprintf(out, "Workload %q: %s\n\n", l, forkNote(blocks))
		}
		writeTable(out, lts)
		if l == forkLoad {
			fmt.Fprintf(out, "\n%s\n", forkChecks(lts, blocks))
			if exact != "" {
				fmt.Fprintf(out, "\n%s\n", exact)
			}
		}
		fmt.Fprintln(out)
	}
}

func writeTable(out io.Writer, ts []*tool) {
	base := ts[0].times
	fmt.Fprintln(out, "| tool | median s | min-max s | ratio to untraced (median, paired) | added s (median, paired) | added CPU s (median, paired) | tool's own CPU s | writer wp faults seen | writer copies | records | lost | throttled | peak RSS MB |")
	fmt.Fprintln(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, t := range ts {
		var ratios, added, addedCPU []float64
		for i, d := range t.times {
			ratios = append(ratios, d.Seconds()/base[i].Seconds())
			added = append(added, (d - base[i]).Seconds())
			addedCPU = append(addedCPU, (t.cpu[i] - ts[0].cpu[i]).Seconds())
		}
		own := "-"
		if t.rss > 0 {
			own = fmt.Sprintf("%.2f", t.ownCPU.Seconds())
		}
		lost, thr, rss, wp, copies, records := "-", "-", "-", "-", "-", "-"
		if t.check != nil {
			if lo := slices.Min(t.records); lo >= 0 {
				records = fmt.Sprintf("%d-%d", lo, slices.Max(t.records))
			}
			if lo := slices.Min(t.copies); lo >= 0 {
				copies = fmt.Sprintf("%d-%d", lo, slices.Max(t.copies))
			}
			if t.lost >= 0 {
				lost = strconv.FormatInt(t.lost, 10)
			}
			if t.thr >= 0 {
				thr = strconv.FormatInt(t.thr, 10)
			}
			wp = fmt.Sprintf("%d-%d", slices.Min(t.wp), slices.Max(t.wp))
		}
		if t.rss > 0 {
			rss = fmt.Sprintf("%.1f", float64(t.rss)/1024)
		}
		fmt.Fprintf(out, "| %s | %.2f | %.2f-%.2f | %.2fx | %+.2f | %+.2f | %s | %s | %s | %s | %s | %s | %s |\n", t.name,
			stat.Median(t.times).Seconds(), slices.Min(t.times).Seconds(), slices.Max(t.times).Seconds(),
			stat.Median(ratios), stat.Median(added), stat.Median(addedCPU), own, wp, copies, records, lost, thr, rss)
	}
}

// timed runs argv and returns its wall time (fork to reaped), the CPU time
// of the whole command (wait4's rusage: it and every process it reaped, so
// the tool and the workload) and its stdout followed by its stderr.
func timed(argv []string) (time.Duration, time.Duration, []byte, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	t0 := time.Now()
	err := cmd.Run()
	d := time.Since(t0)
	if err != nil {
		return 0, 0, nil, fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, lastLine(stderr.String()))
	}
	cpu := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	return d, cpu, append(stdout.Bytes(), stderr.Bytes()...), nil
}

type startupCmd struct {
	label string
	argv  []string
	times []time.Duration
	// backToBack: each timed run follows an untimed run of the same
	// command at once.
	backToBack bool
}

// startPause separates the commands of the start-up measurement. cowtrace
// exits before its events are released (perfevents.HandOff), and the
// release, serialised with every tracepoint open in the kernel, goes on for
// some 60 ms: right after it, any tool that opens a tracepoint waits for it.
// The pause lets every command start on a kernel at rest; the back-to-back
// row shows the cost when it does not.
const startPause = 250 * time.Millisecond

// startup times commands that trace `true`, in rounds interleaved rounds
// (none for 0): what a tool costs before it measures anything. cowtrace's
// run subcommand is used when this build has it; otherwise the smallest
// experiment stands in, and the note says so.
func startup(w workloadArgs, rounds int) ([]*startupCmd, string, error) {
	if rounds == 0 {
		return nil, "", nil
	}
	cow := &startupCmd{label: "cowtrace run -- true", argv: []string{w.cowtrace, "run", "--", "true"}}
	note := ""
	if err := exec.Command(cow.argv[0], cow.argv[1:]...).Run(); err != nil {
		cow = &startupCmd{label: "cowtrace --blocks 1 --block-size 4096 --offset 0 --mode count",
			argv: []string{w.cowtrace, "--blocks", "1", "--block-size", "4096", "--offset", "0", "--mode", "count"}}
		note = "; this cowtrace has no `run` subcommand, so its smallest experiment stands in (a worker re-exec, three processes)"
	}
	noop, err := buildNoop(w.tmp)
	if err != nil {
		return nil, "", err
	}
	again := &startupCmd{label: cow.label + ", right after another", argv: cow.argv, backToBack: true}
	cmds := []*startupCmd{
		{label: "true", argv: []string{"/usr/bin/true"}},
		{label: "a Go program that does nothing (static, like cowtrace)", argv: []string{noop}},
		cow,
		again,
		{label: "perf stat -e page-faults -- true", argv: []string{"perf", "stat", "-e", "page-faults", "-o", os.DevNull, "--", "true"}},
		// What cowtrace run opens on this kernel, through perf stat: it
		// waits for the kernel to unregister each tracepoint at its exit.
		{label: "perf stat -e page-faults,minor-faults,major-faults,exceptions:page_fault_user,exceptions:page_fault_kernel,kmem:mm_page_alloc -- true",
			argv: []string{"perf", "stat", "-e", "page-faults,minor-faults,major-faults,exceptions:page_fault_user,exceptions:page_fault_kernel,kmem:mm_page_alloc",
				"-o", os.DevNull, "--", "true"}},
		{label: "perf record -e exceptions:page_fault_user -c 1 -- true", argv: []string{"perf", "record", "-q", "-e", "exceptions:page_fault_user", "-c", "1", "-o", filepath.Join(w.tmp, "start.data"), "--", "true"}},
		{label: "bpftrace -e '...' -c true", argv: []string{"bpftrace", "-e", bpftraceProgram, "-c", "/usr/bin/true"}},
	}
	for r := 0; r < rounds; r++ {
		for _, c := range cmds {
			time.Sleep(startPause)
			if c.backToBack {
				if _, _, _, err := timed(c.argv); err != nil {
					return nil, "", err
				}
			}
			d, _, _, err := timed(c.argv)
			if err != nil {
				return nil, "", err
			}
			c.times = append(c.times, d)
		}
	}
	return cmds, note + fmt.Sprintf("; each command starts %v after the previous one ended, except the second of the back-to-back pair", startPause), nil
}

// goTool is the go command: $GO (the Makefile sets it, since sudo's PATH
// may lack Go), else go from PATH.
func goTool() string {
	if g := os.Getenv("GO"); g != "" {
		return g
	}
	return "go"
}

// buildNoop builds the floor of any Go tool's start-up: a static Go binary
// whose main returns at once.
func buildNoop(tmp string) (string, error) {
	dir := filepath.Join(tmp, "noop")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\n\nfunc main() {}\n"), 0o644); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module noop\n"), 0o644); err != nil {
		return "", err
	}
	out := filepath.Join(dir, "noop")
	build := exec.Command(goTool(), "build", "-trimpath", "-o", out, ".")
	build.Dir = dir
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
	if b, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build the no-op Go program: %w: %s", err, b)
	}
	return out, nil
}

// cowtraceReport is what bench reads of cowtrace's JSON report, of the
// experiment or of run.
type cowtraceReport struct {
	LostRecords int64 `json:"lost_records"`
	Throttled   int64 `json:"throttled"`
	Records     int64 `json:"records"`
	Processes   []struct {
		Role     string  `json:"role"`
		PID      int     `json:"pid"`
		Depth    int     `json:"depth"`
		WPFaults *uint64 `json:"wp_faults"`
		Copies   *uint64 `json:"copies"`
	} `json:"processes"`
}

func decodeCowtrace(out []byte) (cowtraceReport, error) {
	var r cowtraceReport
	// stdout (the JSON) comes first; stderr after it is not JSON.
	if err := json.NewDecoder(bytes.NewReader(out)).Decode(&r); err != nil {
		return r, fmt.Errorf("cowtrace output: %w", err)
	}
	return r, nil
}

func checkCowtrace(out []byte, _ workloadArgs) (seen, error) {
	r, err := decodeCowtrace(out)
	if err != nil {
		return seen{}, err
	}
	s := seen{lost: r.LostRecords, throttled: r.Throttled, copies: -1, records: r.Records}
	for _, p := range r.Processes {
		if p.Role == "writer" && p.WPFaults != nil {
			s.wp = *p.WPFaults
		}
		if p.Role == "writer" && p.Copies != nil {
			s.copies = int64(*p.Copies)
		}
	}
	return s, nil
}

func checkPerfStat(_ []byte, w workloadArgs) (seen, error) {
	b, err := os.ReadFile(filepath.Join(w.tmp, "stat.txt"))
	if err != nil {
		return seen{}, err
	}
	// perf stat counts the whole process tree; the writer's faults are not
	// told apart, so "wp faults seen" is the total (every page fault, or
	// every write-protect fault with the filter).
	m := regexp.MustCompile(`(?m)^(\d+),[^,]*,(page-faults|exceptions:page_fault_user)`).FindSubmatch(b)
	if m == nil {
		return seen{}, fmt.Errorf("no count in %q", b)
	}
	n, _ := strconv.ParseUint(string(m[1]), 10, 64)
	return seen{lost: -1, throttled: -1, wp: n, copies: -1, records: -1}, nil
}

func checkPerfRecord(_ []byte, w workloadArgs) (seen, error) {
	lost, thr, samples, err := perfStats(filepath.Join(w.tmp, "perf.data"))
	// Samples of every fault of the tree (first touches too): "seen" is
	// the number of samples.
	return seen{lost: lost, throttled: thr, wp: samples, copies: -1, records: -1}, err
}

// perfStats reads a perf.data file's samples lost, THROTTLE records and
// samples.
//
// The aggregated "LOST events" line counts PERF_RECORD_LOST records, each of
// which stands for any number of samples; the per-event sections ("EVENT
// stats:") give the samples lost, the sum of those records' counts, as
// "LOST_SAMPLES events".
func perfStats(data string) (lost, thr int64, samples uint64, err error) {
	b, err := exec.Command("perf", "report", "-i", data, "--stats").CombinedOutput()
	if err != nil {
		return 0, 0, 0, fmt.Errorf("perf report --stats: %w: %s", err, lastLine(string(b)))
	}
	get := func(what string) int64 {
		m := regexp.MustCompile(`(?m)^\s*` + what + ` events:\s+(\d+)`).FindSubmatch(b)
		if m == nil {
			return 0
		}
		n, _ := strconv.ParseInt(string(m[1]), 10, 64)
		return n
	}
	if i := regexp.MustCompile(`(?m) stats:$`).FindIndex(b); i != nil {
		for _, m := range regexp.MustCompile(`(?m)^\s*LOST_SAMPLES events:\s+(\d+)`).FindAllSubmatch(b[i[1]:], -1) {
			n, _ := strconv.ParseInt(string(m[1]), 10, 64)
			lost += n
		}
	} else if get("LOST") > 0 {
		return 0, 0, 0, fmt.Errorf("perf report --stats: LOST records but no per-event count of the samples lost")
	}
	return lost, get("THROTTLE"), uint64(get("SAMPLE")), nil
}

func checkBpftrace(out []byte, _ workloadArgs) (seen, error) {
	// Maps count in the kernel: nothing to lose. The program counts every
	// process of the machine; the workload names its writer.
	pid, err := writerPID(out)
	if err != nil {
		return seen{}, err
	}
	m := regexp.MustCompile(`(?m)^@\[` + strconv.Itoa(pid) + `\]: (\d+)$`).FindSubmatch(out)
	if m == nil {
		return seen{}, fmt.Errorf("no @[%d] count in bpftrace's output: %s", pid, lastLine(string(out)))
	}
	wp, _ := strconv.ParseUint(string(m[1]), 10, 64)
	return seen{lost: -1, throttled: -1, wp: wp, copies: -1, records: -1}, nil
}

// writerPID reads the line in which either workload names its writer.
func writerPID(out []byte) (int, error) {
	m := regexp.MustCompile(`(?m)^` + writerLine + ` (\d+)$`).FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("the workload did not name its writer (%q)", writerLine)
	}
	return strconv.Atoi(string(m[1]))
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func load1() float64 {
	f, _ := strconv.ParseFloat(strings.Fields(loadavg() + " 0")[0], 64)
	return f
}

func tracefsMounted() bool {
	b, _ := os.ReadFile("/proc/self/mounts")
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 2 && f[1] == "/sys/kernel/tracing" && f[2] == "tracefs" {
			return true
		}
	}
	return false
}

func kernel() string {
	b, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return strings.TrimSpace(string(b))
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}
