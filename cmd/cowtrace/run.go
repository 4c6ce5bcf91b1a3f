package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/cowtrace/cowtrace/internal/engine"
	"github.com/cowtrace/cowtrace/internal/follow"
	"github.com/cowtrace/cowtrace/perfevents"
	"github.com/cowtrace/cowtrace/report"
	"github.com/cowtrace/cowtrace/report/expect"
	"github.com/cowtrace/cowtrace/report/plot"
	"github.com/cowtrace/cowtrace/report/render"
)

const runLong = `Runs CMD and follows it and every process it forks, clones or execs, like
perf stat: CMD inherits every event, opened before it is forked, and the
kernel turns them on at its exec, so counting starts at its first
instruction. Prints one row per process (pid, ppid, command after exec,
depth in the tree, lifetime, page faults, write-protect faults, copies,
--probe hits). CMD's exit status becomes cowtrace's (126 or 127 when it
cannot be executed, as in a shell); SIGINT, SIGTERM, SIGHUP, SIGQUIT,
SIGUSR1 and SIGUSR2 are forwarded to it. Under sudo, CMD runs as the
invoking user (SUDO_UID, SUDO_GID) unless --keep-root or --user says
otherwise. With -o FILE the report (and the timeline) go to FILE, and
stdout is CMD's alone.

--mode auto (the default) counts faults, copies and probe hits in the
kernel, each task's counts sampled as it leaves a CPU and as it exits, where
the kernel can (Linux 6.12 and later: cowtrace doctor says) and no flag needs
every fault (--timeline, --by, --plot, --counters); --mode classify records
every fault, for fault classes. A figure that does not add up is null, with
the reason; the report says whether the run is complete.

After CMD exits, the processes it left running are followed until they exit,
for at most --linger (1s).

--expect EXPR compares two operands with == != < <= > >=. An operand is a
number, a field of the JSON report (copies, wp_faults, page_faults, ...) of
some processes, or a run field (run.trace.duration_ms):
  command.FIELD     CMD itself (the root of the tree)
  child.FIELD       each of its descendants
  comm(NAME).FIELD  each process whose command name is NAME
  depth(N).FIELD    each process at depth N (0: CMD, 1: its children)
  sum.FIELD         the sum over every process, or over those of a filter:
                    sum(comm=NAME).FIELD; max.FIELD, min.FIELD and count
                    likewise, e.g. count(depth=1,comm=NAME)
A selector must hold for each process it matches, and fails if it matches
none. Examples:
  --expect 'command.copies == 0'
  --expect 'comm(worker).wp_faults <= 500'
  --expect 'sum.copies < 1000'
  --expect 'count(comm=worker) == 4'
A failed expectation prints its values and exits 1, unless CMD itself
failed: then CMD's status stays cowtrace's. A malformed one exits 2 before
CMD starts.
`

// traceFlags are the flags that run and attach share.
type traceFlags struct {
	fs         *flagSet
	format     *formatValue
	methods    *methodFlags
	mode       *modeValue
	counters   *bool
	crossCheck *bool
	threads    *bool
	timeline   *bool
	probes     *probesValue
	expect     *expectValue
	label      *string
	outPath    *string
	by         *byValue
	plotPath   *string
	ringSize   *sizeValue
}

// addTraceFlags adds the shared flags; mode is --mode's default, rows the
// rows --expect may select.
func addTraceFlags(fs *flagSet, mode engine.Mode, rows expect.Rows) *traceFlags {
	tf := &traceFlags{fs: fs, format: addReportFormatFlag(fs), methods: addMethodFlags(fs), probes: addProbeFlag(fs), label: addLabelFlag(fs)}
	tf.mode = addModeFlag(fs, mode, "how to measure faults, `MODE`: count: faults, copies and probe hits counted in the kernel, each task's counts sampled as it leaves a CPU and exits; "+
		"classify: every fault a record, classified (fault classes, --by, --plot, --timeline); "+
		"auto: count where the kernel gives each task's counts (Linux 6.12; cowtrace doctor says) and no flag needs every fault, else classify")
	tf.threads = fs.Bool("threads", false, "a row per thread too, under each process that has more than one")
	tf.crossCheck = fs.Bool("cross-check", false, "where a kprobe on the copy routine counts copies, tell them by their allocation's kernel stack too (inferred_copies), a record per copy")
	tf.counters = fs.Bool("counters", false, "sample the software counters page-faults and minor-faults per process too (a record per fault each); without it page faults are the faults the fault tracepoints classified")
	tf.timeline = fs.Bool("timeline", false, "print every write-protect fault and kprobe hit as it happens (JSON lines with --format json)")
	tf.outPath = fs.String("o", "", "write the report, and the timeline with --timeline, to `FILE` instead of stdout")
	tf.by = &byValue{}
	fs.Var(tf.by, "by", "split each process's copies by `WHAT`: mapping (heap, stack, anonymous mmap, a file's private mapping) or function (the user code whose write faulted)")
	fs.choose("by", report.ByMapping, report.ByFunction)
	tf.plotPath = fs.String("plot", "", "draw each process's cumulative copies and write-protect faults over time into `FILE`, .svg or .png")
	tf.ringSize = &sizeValue{}
	fs.Var(tf.ringSize, "ring-size", "ring buffer memory for all CPUs together, `SIZE` such as 8M: split over the CPUs the traced tasks may run on (default 32M, 512K-4M per CPU)")
	tf.expect = addExpectFlag(fs, rows, "exit 1 unless `EXPR` holds, e.g. 'sum.copies < 1000' (repeatable; the grammar is in cowtrace run -h)")
	return tf
}

// byValue is --by: how to split each process's copies.
type byValue struct {
	refused
	what string
}

func (v *byValue) String() string { return v.what }

func (v *byValue) Set(s string) error {
	switch s {
	case "", report.ByMapping, report.ByFunction:
		v.what = s
		return nil
	}
	return v.refuse(usagef("--by %q: want mapping or function", s))
}

// sizeValue is --ring-size: bytes with an optional binary unit, at least
// one CPU's ring.
type sizeValue struct {
	refused
	text  string
	bytes int64
}

func (v *sizeValue) String() string { return v.text }

func (v *sizeValue) Set(s string) error {
	n, err := parseSize(s)
	if err != nil {
		return v.refuse(usagef("--ring-size: %v", err))
	}
	if n > 0 && n < engine.MinRingSize {
		return v.refuse(usagef("--ring-size %s: want at least %dK, which one CPU's ring needs", s, engine.MinRingSize>>10))
	}
	// The engine splits the size over the CPUs the traced tasks may run
	// on, at most every online CPU, and refuses a share that no ring can
	// map; said here, before anything runs, in the flag's terms. (Fewer
	// CPUs by affinity make the engine refuse it, in the same words.)
	if cpus, err := perfevents.OnlineCPUs(); err == nil && n > engine.MaxRingSize*int64(len(cpus)) {
		return v.refuse(usagef("--ring-size %s: a CPU's ring holds at most %dG, and this machine's %d CPUs' rings at most %dG together",
			s, engine.MaxRingSize>>30, len(cpus), engine.MaxRingSize*int64(len(cpus))>>30))
	}
	v.text, v.bytes = s, n
	return nil
}

// traceSetup is what the shared flags ask for, checked before anything starts.
type traceSetup struct {
	opt    follow.Options
	format render.Format
	plot   *output // --plot's file, nil without
	plotAs plot.Format
}

// setup checks the shared flags together; the timeline is set up once the
// output is open (see output).
func (tf *traceFlags) setup() (traceSetup, error) {
	mode := tf.mode.mode
	if err := tf.methods.checkProbes(tf.probes); err != nil {
		return traceSetup{}, err
	}
	var plotAs plot.Format
	if *tf.plotPath != "" {
		var err error
		if plotAs, err = plot.FormatOf(*tf.plotPath); err != nil {
			return traceSetup{}, usagef("--plot %v", err)
		}
	}
	if mode == engine.ModeCount {
		for flag, set := range map[string]bool{"--by": tf.by.what != "", "--plot": *tf.plotPath != "", "--timeline": *tf.timeline,
			"--counters": *tf.counters, "--fault-method address": tf.methods.faults.byAddress} {
			if set {
				return traceSetup{}, usagef("--mode count: %s needs every fault sampled (--mode classify)", flag)
			}
		}
	}
	opt := follow.Options{KprobeMethod: tf.methods.kprobes.method, Probes: tf.probes.names, HandOff: handOff, FaultsByAddress: tf.methods.faults.byAddress,
		Counters: *tf.counters, By: tf.by.what, Plot: *tf.plotPath != "", RingSize: tf.ringSize.bytes, Mode: mode, CrossCheck: *tf.crossCheck}
	return traceSetup{opt: opt, format: tf.format.format(), plotAs: plotAs}, nil
}

// output opens -o FILE, or takes stdout, for the report and the timeline:
// with -o, stdout is left to the traced command alone.
func (tf *traceFlags) output(ts *traceSetup, stdout io.Writer) (*output, error) {
	out, err := openOutput(*tf.outPath, stdout)
	if err != nil {
		return nil, err
	}
	if *tf.timeline {
		ts.opt.Timeline = timelinePrinter(out, ts.format)
	}
	if *tf.plotPath != "" {
		// Opened now, as -o is: a path that cannot be written is said
		// before the command runs.
		f, err := os.OpenFile(*tf.plotPath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o666)
		if err != nil {
			out.close(false)
			return nil, usagef("--plot: %v", err)
		}
		ts.plot = &output{Writer: f, file: f}
	}
	return out, nil
}

// writePlot draws the run into --plot's file, which is removed when there
// is nothing to draw, as -o's is without a report.
func (ts *traceSetup) writePlot(run *report.Run, stderr io.Writer) error {
	if ts.plot == nil {
		return nil
	}
	f := ts.plot
	ts.plot = nil
	err := plot.Write(f, run, ts.plotAs)
	if errors.Is(err, plot.ErrNothing) {
		fmt.Fprintf(stderr, "cowtrace: --plot: %v\n", err)
		return f.close(false)
	}
	if err != nil {
		f.close(false)
		return fmt.Errorf("--plot: %w", err)
	}
	return f.close(true)
}

// dropPlot removes --plot's file when the trace ended without a report.
func (ts *traceSetup) dropPlot() {
	if ts.plot != nil {
		ts.plot.close(false)
		ts.plot = nil
	}
}

// timelinePrinter writes one line per event: the seed's
// `copy_page(@time):pid(N)` shape, or a JSON object.
func timelinePrinter(w io.Writer, f render.Format) func(follow.TimelineEvent) {
	if f == render.JSON {
		enc := json.NewEncoder(w)
		return func(e follow.TimelineEvent) {
			_ = enc.Encode(struct {
				TimeNs  uint64 `json:"time_ns"`
				Pid     int    `json:"pid"`
				Tid     int    `json:"tid"`
				Comm    string `json:"comm"`
				Event   string `json:"event"`
				Address string `json:"address"`
			}{e.TimeNs, e.Pid, e.Tid, e.Comm, e.Event, fmt.Sprintf("%#x", e.Address)})
		}
	}
	return func(e follow.TimelineEvent) {
		fmt.Fprintf(w, "%s(@%.6f):pid(%d) tid(%d) comm(%s) address(%#x)\n",
			e.Event, float64(e.TimeNs)/1e9, e.Pid, e.Tid, e.Comm, e.Address)
	}
}

// report labels the run and writes its report, then its plot. With
// --timeline and JSON the output is JSON lines throughout, so the report is
// one compact line too.
func (tf *traceFlags) report(out *output, ts *traceSetup, run *report.Run, stderr io.Writer) error {
	run.Label = *tf.label
	if *tf.timeline && ts.format == render.JSON {
		b, err := json.Marshal(run)
		if err == nil {
			_, err = fmt.Fprintf(out, "%s\n", b)
		}
		if err != nil {
			return err
		}
	} else if err := layout(out.Writer).Write(out, run, ts.format); err != nil {
		return err
	}
	out.reported = true
	return ts.writePlot(run, stderr)
}

// commandStatus makes CMD's exit status cowtrace's.
type commandStatus struct{ code int }

func (c commandStatus) Error() string {
	if c.code > 128 {
		return fmt.Sprintf("command killed by %v (exit status %d)", syscall.Signal(c.code-128), c.code)
	}
	return fmt.Sprintf("command exited with status %d", c.code)
}
func (c commandStatus) ExitCode() int { return c.code }

// runFlags are run's flags.
type runFlags struct {
	*traceFlags
	user     *string
	keepRoot *bool
	linger   *time.Duration
}

func setupRun(fs *flagSet) runner {
	f := &runFlags{traceFlags: addTraceFlags(fs, engine.ModeAuto, runRows)}
	f.user = fs.String("user", "", "run CMD as user `NAME` (its uid, gid and groups)")
	f.keepRoot = fs.Bool("keep-root", false, "under sudo, run CMD as root rather than as the invoking user")
	f.linger = fs.Duration("linger", time.Second, "after CMD exits, go on tracing the processes it left running until they exit, for at most `DURATION` (0: stop when CMD exits)")
	return f.run
}

func (f *runFlags) run(ctx context.Context, argv []string, stdout, stderr io.Writer) (err error) {
	if len(argv) == 0 {
		return usagef("run: no command (usage: cowtrace run [flags] -- CMD [ARGS...])")
	}
	// Without -o, the command's output and the timeline share stdout.
	// When it is not a file, os/exec copies the command's output into it
	// from another goroutine, and the two must take turns.
	if _, ok := stdout.(*os.File); !ok {
		stdout = &lockedWriter{w: stdout}
	}
	ts, err := f.setup()
	if err != nil {
		return err
	}
	path, cred, err := resolveCommand(argv[0], *f.user, *f.keepRoot)
	if err != nil {
		return err
	}
	out, err := f.output(&ts, stdout)
	if err != nil {
		return err
	}
	defer out.finish(&err)
	defer ts.dropPlot()

	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2)
	defer signal.Stop(sigs)

	run, err := follow.Run(ctx, ts.opt, follow.RunSpec{
		Path: path, Argv: argv, Cred: cred,
		Stdio:   follow.Stdio{Stdin: os.Stdin, Stdout: stdout, Stderr: stderr},
		Signals: sigs,
		Threads: *f.threads,
		Linger:  *f.linger,
	})
	if err != nil {
		return err
	}
	if err := f.report(out, &ts, run, stderr); err != nil {
		return err
	}
	return commandFailures(run, f.expect.list)
}

// commandFailures are what failed once the report is written: the
// command's own status first, kept as without --expect, then the failed
// expectations, still said.
func commandFailures(run *report.Run, es []expect.Expectation) error {
	failed := expect.CheckAll(run, es)
	if code := *run.Trace.ExitCode; code != 0 {
		return failures{append(failed, commandStatus{code}), code}
	}
	if len(failed) > 0 {
		return failures{failed, exitFailure}
	}
	if err := incomplete(run); err != nil {
		return failures{[]error{err}, exitIncomplete}
	}
	return nil
}

// resolveCommand finds CMD and whom it runs as, before anything starts.
func resolveCommand(name, userName string, keepRoot bool) (string, *syscall.Credential, error) {
	if userName != "" && keepRoot {
		return "", nil, usagef("--user and --keep-root exclude each other")
	}
	path, err := exec.LookPath(name)
	if err != nil {
		return "", nil, lookPathError(name, err)
	}
	cred, err := commandCredential(userName, keepRoot)
	return path, cred, err
}

// cannotExecute is a command that cowtrace run cannot start, found so
// before anything starts: the exit code is a shell's, 127 for a command
// that is not there and 126 for one that cannot be executed, so that a
// script sees the same status with cowtrace in front of the command as
// without (follow.ExecError gives the same for an exec that fails later).
type cannotExecute struct {
	msg  string
	code int
}

func (c cannotExecute) Error() string { return c.msg }
func (c cannotExecute) ExitCode() int { return c.code }

// lookPathError words exec.LookPath's error as a shell would, with a
// shell's status.
func lookPathError(name string, err error) error {
	switch {
	case errors.Is(err, exec.ErrNotFound):
		return cannotExecute{fmt.Sprintf("run: %s: command not found (not in PATH)", name), 127}
	case errors.Is(err, fs.ErrNotExist):
		return cannotExecute{fmt.Sprintf("run: %s: no such file or directory", name), 127}
	case errors.Is(err, fs.ErrPermission):
		return cannotExecute{fmt.Sprintf("run: %s: permission denied (not executable)", name), 126}
	case errors.Is(err, syscall.EISDIR):
		return cannotExecute{fmt.Sprintf("run: %s: is a directory", name), 126}
	}
	// exec.ErrDot: a relative PATH entry, which os/exec refuses to use.
	return usagef("run: %v", err)
}

// commandCredential decides whom CMD runs as: --user NAME; else, when
// cowtrace runs as root under sudo, the invoking user; else cowtrace's own
// identity (nil).
func commandCredential(name string, keepRoot bool) (*syscall.Credential, error) {
	var u *user.User
	var err error
	switch {
	case name != "":
		if u, err = user.Lookup(name); err != nil {
			// os/user's words, "user: unknown user NAME", name neither
			// the flag nor, to a reader, which user is meant.
			var unknown user.UnknownUserError
			if errors.As(err, &unknown) {
				return nil, usagef("--user %s: no such user", name)
			}
			if errors.Is(err, fs.ErrNotExist) {
				// A minimal system (an initramfs, a scratch container)
				// has no passwd file: nobody can be named there.
				return nil, usagef("--user %s: no such user (no /etc/passwd on this system)", name)
			}
			return nil, usagef("--user %s: %v", name, err)
		}
	case keepRoot || os.Getuid() != 0 || os.Getenv("SUDO_UID") == "":
		return nil, nil
	default:
		uid := os.Getenv("SUDO_UID")
		if u, err = user.LookupId(uid); err != nil {
			// The invoking user need not be in the passwd file.
			gid, err2 := strconv.ParseUint(os.Getenv("SUDO_GID"), 10, 32)
			id, err1 := strconv.ParseUint(uid, 10, 32)
			if err := errors.Join(err1, err2); err != nil {
				return nil, fmt.Errorf("SUDO_UID/SUDO_GID: %w", err)
			}
			return &syscall.Credential{Uid: uint32(id), Gid: uint32(gid)}, nil
		}
		if g := os.Getenv("SUDO_GID"); g != "" {
			u.Gid = g
		}
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("user %s: %w", u.Username, err)
	}
	cred := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	if ids, err := u.GroupIds(); err == nil {
		for _, g := range ids {
			if v, err := strconv.ParseUint(g, 10, 32); err == nil {
				cred.Groups = append(cred.Groups, uint32(v))
			}
		}
	}
	return cred, nil
}

// lockedWriter serialises writes. It has no ReadFrom on purpose: a
// bytes.Buffer's ReadFrom keeps a slice of the buffer across the read and
// would drop what another goroutine wrote meanwhile.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}
