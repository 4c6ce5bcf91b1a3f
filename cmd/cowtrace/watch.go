package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cowtrace/cowtrace/internal/engine"
	"github.com/cowtrace/cowtrace/internal/follow"
	"github.com/cowtrace/cowtrace/internal/watch"
	"github.com/cowtrace/cowtrace/report"
	"github.com/cowtrace/cowtrace/report/render"
)

const watchLong = `Follows running process PID, or runs CMD, and reports every fork it makes
from then on as an episode: the child and all it forks in turn, until the
last of them exits. As each episode ends it writes one record: the parent
and the child, when the fork was and how long the child's tree lived, the
pages the parent copied and its write-protect faults while the episode
alone was open (what sharing its memory with the child cost it, as a Redis
server pays while its child saves a snapshot), the same of the child's tree
over its whole life, and the episode's copies in bytes. Copies are split by
cause where the method tells: a write-protect fault's (a page shared since
the fork, or a private file page read before) apart from a first write's to
a private file page, which no fork causes.

While several episodes are open at once, which of them a copy of the parent
is due to is not known: what the parent does then goes to a shared bucket,
counted once and reported when the last of them ends.

It runs until Ctrl-C (SIGINT) or SIGTERM, --duration, or the target's exit,
with memory that does not grow with the faults or episodes it sees. Once
counting has started it prints "cowtrace: attached" on stderr, and with
--ready-fd N writes "attached" and a newline to descriptor N and closes it,
as cowtrace attach does. With CMD, signals are forwarded to CMD, --duration
sends it SIGTERM, and under sudo it runs as the invoking user.

--format table: a line per episode as it ends, in 80 columns, and a line of
totals at the end. --format json: JSON lines, an object per episode
("kind": "episode"), per shared bucket ("shared") and a summary at the end
("summary"), described by docs/schema/watch.schema.json; a figure not
measured is null, with the reason under "unmeasured". --format openmetrics
-o FILE: FILE is rewritten (a temporary file renamed over it) at the start
and after each record, with counters of episodes, copies, bytes and
write-protect faults by command, side and cause, and a histogram of the
copies per episode, in Prometheus' text format for node_exporter's textfile
collector.

In count mode (--mode auto where the kernel gives each task's counts) the
parent's share is cut at its own samples, as its threads leave a CPU; in
classify mode, where every fault is a record, at the end of the child's
tree itself.

Exit status: 0; 3 when a figure of an episode or of the trace is not known
whole; 130 when a signal stopped it, after everything is written; with CMD,
CMD's status when CMD failed.
`

// watchFormats are watch's --format values, the first the default.
var watchFormats = []string{"table", "json", "openmetrics"}

// watchFlags are watch's flags.
type watchFlags struct {
	fs       *flagSet
	pid      *int
	duration *time.Duration
	readyFD  *int
	format   *formatValue
	outPath  *string
	label    *string
	methods  *methodFlags
	mode     *modeValue
	ringSize *sizeValue
}

func setupWatch(fs *flagSet) runner {
	f := &watchFlags{fs: fs}
	f.pid = fs.Int("p", 0, "the `PID` to watch")
	f.duration = fs.Duration("duration", 0, "stop after `D` (e.g. 10s); 0: until Ctrl-C or the target's exit")
	f.readyFD = fs.Int("ready-fd", -1, "once every event is open, write a line to descriptor `N` (3 or more) and close it")
	f.format = addFormatFlag(fs, "watch", watchFormats, watchFormats[0], "output `FORMAT`: table, json (JSON lines) or openmetrics (with -o)")
	f.outPath = fs.String("o", "", "write the records to `FILE` instead of stdout (openmetrics: rewritten after each)")
	f.label = fs.String("label", "", "`LABEL` of this watch: in its summary, and a label of its metrics")
	f.methods = addMethodFlags(fs)
	f.mode = addModeFlag(fs, engine.ModeAuto, "how to measure faults, `MODE`: count (each task's counts sampled as it leaves a CPU and exits), classify (every fault a record; the parent's counts known at its forks only) or auto (count where the kernel allows)")
	f.ringSize = &sizeValue{}
	fs.Var(f.ringSize, "ring-size", "ring buffer memory for all CPUs together, `SIZE` such as 8M (default 32M, 512K-4M per CPU)")
	return f.run
}

func (f *watchFlags) run(ctx context.Context, argv []string, stdout, stderr io.Writer) (err error) {
	if err := f.check(argv); err != nil {
		return err
	}
	var path string
	var cred *syscall.Credential
	if len(argv) > 0 {
		if path, cred, err = resolveCommand(argv[0], "", false); err != nil {
			// A shell's status (127, 126), as run's, in watch's words.
			var ce cannotExecute
			if errors.As(err, &ce) {
				ce.msg = "watch" + strings.TrimPrefix(ce.msg, "run")
				return ce
			}
			return err
		}
		// CMD's output and the table share stdout without -o, and CMD's
		// errors and "cowtrace: attached" share stderr.
		if _, ok := stdout.(*os.File); !ok {
			stdout = &lockedWriter{w: stdout}
		}
		if _, ok := stderr.(*os.File); !ok {
			stderr = &lockedWriter{w: stderr}
		}
	}
	var ready *os.File
	if f.fs.given("ready-fd") {
		if ready, err = openReadyFD(*f.readyFD); err != nil {
			return err
		}
	}
	// Closed on every path: a script waiting on it sees end of file when
	// the watch fails before it attached.
	defer ready.Close()
	sink, err := f.openSink(stdout)
	if err != nil {
		return err
	}
	defer sink.finish(&err)

	// A failed write ends an attached watch: its ctx is cancelled.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wo := &watchOutput{sink: sink, label: *f.label, command: argv, pid: *f.pid, totals: watch.NewTotals(), page: os.Getpagesize(), stop: cancel}
	wo.attached = func() {
		// Scripts wait for exactly this line, as attach's.
		fmt.Fprintln(stderr, "cowtrace: attached")
		if ready != nil {
			fmt.Fprintln(ready, "attached")
			ready.Close()
		}
	}
	w := watch.New()
	w.Episode, w.Shared = wo.episode, wo.shared
	opt := follow.Options{KprobeMethod: f.methods.kprobes.method, FaultsByAddress: f.methods.faults.byAddress, HandOff: handOff,
		RingSize: f.ringSize.bytes, Mode: f.mode.mode, Forget: true,
		Stream: follow.StreamHooks{OnFork: w.OnFork, OnTaskEnd: w.OnTaskEnd, OnCounts: w.OnCounts, Started: wo.started}}

	var run *report.Run
	if *f.pid > 0 {
		run, err = follow.Attach(ctx, opt, follow.AttachSpec{Pid: *f.pid, Duration: *f.duration})
		if errors.Is(err, follow.ErrNoProcess) {
			return usagef("watch: no process with pid %d", *f.pid)
		}
	} else {
		sigs := make(chan os.Signal, 8)
		signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2)
		defer signal.Stop(sigs)
		run, err = follow.Run(ctx, opt, follow.RunSpec{Path: path, Argv: argv, Cred: cred, Signals: sigs, Duration: *f.duration,
			Stdio: follow.Stdio{Stdin: os.Stdin, Stdout: stdout, Stderr: stderr}})
	}
	if err != nil {
		return err
	}
	w.Flush(monotonicNs())
	if err := wo.end(run); err != nil {
		return err
	}
	return wo.verdict(ctx, run)
}

// check refuses a command line that cannot work, before anything starts.
func (f *watchFlags) check(argv []string) error {
	switch {
	case *f.pid < 0:
		return usagef("watch: -p %d: want a positive process id", *f.pid)
	case *f.pid > 0 && len(argv) > 0:
		return usagef("watch: -p PID and CMD exclude each other (see cowtrace watch -h)")
	case *f.pid == 0 && len(argv) == 0:
		return usagef("watch: -p PID or a command is required (usage: cowtrace watch -p PID, cowtrace watch -- CMD [ARGS...])")
	case *f.duration < 0:
		return usagef("watch: --duration %v is negative", *f.duration)
	case f.format.value == "openmetrics" && *f.outPath == "":
		return usagef("watch: --format openmetrics needs -o FILE, which is rewritten after each episode")
	}
	return nil
}

// watchSink is where the records go: a writer of the format, and for
// openmetrics the file rewritten after each record.
type watchSink struct {
	format  string
	out     *output            // table and json
	metrics *metricsFile       // openmetrics
	w       render.WatchWriter // set once the trace started (the table's header names the target)
}

// openSink opens -o (or takes stdout) before anything starts: a path that
// cannot be written is a usage error then, not a lost watch.
func (f *watchFlags) openSink(stdout io.Writer) (*watchSink, error) {
	s := &watchSink{format: f.format.value}
	if s.format == "openmetrics" {
		m, err := openMetricsFile(*f.outPath)
		if err != nil {
			return nil, err
		}
		s.metrics = m
		return s, nil
	}
	out, err := openOutput(*f.outPath, stdout)
	if err != nil {
		return nil, err
	}
	s.out = out
	return s, nil
}

// finish closes -o. A watch that failed before it attached removes it, as
// a report's is removed (output.close); once attached, what it wrote
// stays, the records of hours perhaps, summary or not.
func (s *watchSink) finish(err *error) {
	if s.out != nil {
		s.out.finish(err)
	}
}

// watchOutput turns the watcher's episodes into records, writes them and
// keeps the totals. Its methods run on the ring reader's goroutine, after
// started and before end.
type watchOutput struct {
	sink     *watchSink
	label    string
	command  []string
	pid      int
	page     int
	attached func()
	stop     func() // ends a watch of -p after a failed write (with CMD, CMD's exit does)

	mu        sync.Mutex
	records   watch.Records
	totals    *watch.Totals
	metrics   *render.WatchMetrics
	comm      string
	startWall time.Time
	err       error // the first failed write
}

// started is the stream's Started hook: counting has begun.
func (o *watchOutput) started(pid int, m engine.Measures) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.pid = pid
	o.startWall = time.Now()
	o.records = watch.Records{Measures: m, PageSize: uint64(o.page), WallOffsetNs: o.startWall.UnixNano() - int64(monotonicNs())}
	o.comm = processComm(pid)
	s := o.sink
	if s.out != nil {
		s.out.reported = true
	}
	switch s.format {
	case "openmetrics":
		o.metrics = render.NewWatchMetrics(o.label, pid, o.comm, o.page, float64(o.startWall.UnixNano())/1e9)
		o.keep(s.metrics.rewrite(o.metrics))
	case "json":
		s.w = render.WatchJSON(s.out)
	default:
		var err error
		s.w, err = render.WatchTable(s.out, pid, o.comm, o.command, o.page)
		o.keep(err)
	}
	o.attached()
}

func (o *watchOutput) episode(ep watch.Episode) {
	o.mu.Lock()
	defer o.mu.Unlock()
	rec := o.records.Episode(ep)
	o.totals.AddEpisode(&rec)
	o.write(func(m *render.WatchMetrics) { m.Episode(&rec) },
		func(w render.WatchWriter) error { return w.Episode(&rec) })
}

func (o *watchOutput) shared(sh watch.Shared) {
	o.mu.Lock()
	defer o.mu.Unlock()
	rec := o.records.Shared(sh)
	o.totals.AddShared(&rec)
	o.write(func(m *render.WatchMetrics) { m.Shared(&rec) },
		func(w render.WatchWriter) error { return w.Shared(&rec) })
}

// write adds a record to the metrics and rewrites their file whole (the
// textfile collector must never read half a file), or hands it to the
// format's writer.
func (o *watchOutput) write(toMetrics func(*render.WatchMetrics), toWriter func(render.WatchWriter) error) {
	if o.metrics != nil {
		toMetrics(o.metrics)
		o.keep(o.sink.metrics.rewrite(o.metrics))
		return
	}
	o.keep(toWriter(o.sink.w))
}

// keep remembers the first failed write, and ends the watch.
func (o *watchOutput) keep(err error) {
	if err != nil && o.err == nil {
		o.err = err
		o.stop()
	}
}

// end writes the summary once the trace stopped and every episode is out.
func (o *watchOutput) end(run *report.Run) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.err != nil {
		return o.err
	}
	sum := o.summary(run)
	var err error
	if o.metrics != nil {
		err = o.sink.metrics.rewrite(o.metrics)
	} else {
		err = o.sink.w.Summary(sum)
	}
	return err
}

// summary is the watch's last record: the totals, and how the trace went.
func (o *watchOutput) summary(run *report.Run) *report.WatchSummary {
	t := o.totals
	m := o.records.Measures
	s := &report.WatchSummary{Kind: report.KindSummary, Kernel: run.Kernel, Label: o.label, Command: o.command,
		Start: o.startWall, Episodes: t.Episodes, SharedBuckets: t.SharedBuckets, IncompleteEpisodes: t.IncompleteEpisodes,
		PageSize: o.page, Methods: run.Methods, LostRecords: run.LostRecords,
		Incomplete: append([]string{}, run.Incomplete...), Notes: append([]string{}, run.Notes...)}
	if len(o.command) == 0 {
		s.Pid = o.pid
	}
	if tr := run.Trace; tr != nil {
		s.EndedBy, s.ExitCode, s.DurationMs = tr.EndedBy, tr.ExitCode, tr.DurationMs
	}
	s.Mode = string(engine.ModeClassify)
	if m.Sampled {
		s.Mode = string(engine.ModeCount)
	}
	if m.NoCopies == "" && t.CopiesKnown {
		s.Copies, s.Bytes = report.U64(t.Copies), report.U64(t.Copies*uint64(o.page))
		if t.ByCauseKnown && m.ByCause {
			c := t.ByCause
			s.CopiesByCause = &c
		}
	}
	if m.NoCopies != "" {
		s.Notes = append(s.Notes, "copies not measured: "+m.NoCopies)
	}
	if m.NoWPFaults != "" {
		s.Notes = append(s.Notes, "write-protect faults not measured: "+m.NoWPFaults)
	}
	s.Complete = len(s.Incomplete) == 0 && t.IncompleteEpisodes == 0
	return s
}

// verdict is the watch's exit: interrupted, CMD's failure, or incomplete.
func (o *watchOutput) verdict(ctx context.Context, run *report.Run) error {
	if ctx.Err() != nil {
		return failures{[]error{interruptedAfter(ctx, "watch: interrupted; every episode that ended, and the summary, are written")}, exitInterrupted}
	}
	if c := run.Trace.ExitCode; c != nil && *c != 0 {
		return commandStatus{*c}
	}
	t := o.totals
	switch {
	case len(run.Incomplete) > 0:
		return failures{[]error{incomplete(run)}, exitIncomplete}
	case t.IncompleteEpisodes > 0:
		return failures{[]error{fmt.Errorf("the measurement is incomplete: %d of %d episodes have a figure not known whole (null, with the reason)", t.IncompleteEpisodes, t.Episodes)}, exitIncomplete}
	}
	return nil
}

// processComm is a process's command name, "" when it is gone.
func processComm(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// monotonicNs is CLOCK_MONOTONIC, the engine's clock.
func monotonicNs() uint64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return uint64(ts.Nano())
}

// metricsFile is -o of --format openmetrics: rewritten whole after each
// record through a temporary file in the same directory renamed over it,
// so that node_exporter's textfile collector, which may read it at any
// moment, sees the last version or the one before, never half of one. The
// temporary file's name does not end in .prom, which the collector reads.
type metricsFile struct{ path string }

// openMetricsFile checks, before anything starts, that FILE's directory
// takes the temporary file.
func openMetricsFile(path string) (*metricsFile, error) {
	m := &metricsFile{path: path}
	f, err := m.temp()
	if err != nil {
		return nil, usagef("-o: %v", err)
	}
	f.Close()
	os.Remove(f.Name())
	return m, nil
}

func (m *metricsFile) temp() (*os.File, error) {
	return os.CreateTemp(filepath.Dir(m.path), "."+filepath.Base(m.path)+".*.tmp")
}

// rewrite writes wm to the file, whole.
func (m *metricsFile) rewrite(wm *render.WatchMetrics) (err error) {
	f, err := m.temp()
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	// CreateTemp makes it 0600; the collector runs as another user.
	if err := f.Chmod(0o644); err != nil {
		return err
	}
	if err := wm.Write(f); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), m.path)
}
