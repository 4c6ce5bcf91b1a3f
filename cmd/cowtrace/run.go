package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"strconv"
	"sync"
	"syscall"

	"github.com/cowtrace/cowtrace/follow"
	"github.com/cowtrace/cowtrace/perfevents"
	"github.com/cowtrace/cowtrace/report"
)

const runUsage = `Usage: cowtrace run [flags] [--] CMD [ARGS...]

Runs CMD and follows it and every process it forks, clones or execs, like
perf stat: CMD inherits every event, opened before it is forked, and the
kernel turns them on at its exec, so counting starts at its first
instruction. Prints one row per process (pid, ppid, command after exec,
depth in the tree, lifetime, page faults, write-protect faults, copies,
--probe hits). CMD's exit status becomes cowtrace's (126 or 127 when it
cannot be executed, as in a shell); SIGINT, SIGTERM, SIGHUP, SIGQUIT,
SIGUSR1 and SIGUSR2 are forwarded to it. Under sudo, CMD runs as the
invoking user (SUDO_UID, SUDO_GID) unless --keep-root or --user says
otherwise.

Flags:
`

// traceFlags are the flags that run and attach share.
type traceFlags struct {
	format   *string
	method   *string
	threads  *bool
	timeline *bool
	probes   stringList
}

func addTraceFlags(fs *flag.FlagSet) *traceFlags {
	tf := &traceFlags{
		format:   fs.String("format", "table", "output format: table, json, csv or markdown"),
		method:   fs.String("kprobe-method", "auto", "route to kernel functions: auto, pmu, tracefs or none"),
		threads:  fs.Bool("threads", false, "a row for every thread too, after its process's row"),
		timeline: fs.Bool("timeline", false, "print every write-protect fault and kprobe hit as it happens (JSON lines with --format json)"),
	}
	fs.Var(&tf.probes, "probe", "also count hits of kernel function `FUNC` per process (repeatable)")
	return tf
}

// options validates the shared flags into follow.Options.
func (tf *traceFlags) options(stdout io.Writer) (follow.Options, report.Format, error) {
	f, err := report.ParseFormat(*tf.format)
	if err != nil {
		return follow.Options{}, "", usageError{err}
	}
	km, err := perfevents.ParseKprobeMethod(*tf.method)
	if err != nil {
		return follow.Options{}, "", usageError{err}
	}
	for _, p := range tf.probes {
		if !validFunctionName(p) {
			return follow.Options{}, "", usagef("--probe %q is not a kernel function name", p)
		}
	}
	opt := follow.Options{KprobeMethod: km, Probes: tf.probes, HandOff: handOff}
	if *tf.timeline {
		opt.Timeline = timelinePrinter(stdout, f)
	}
	return opt, f, nil
}

// timelinePrinter writes one line per event: the seed's
// `copy_page(@time):pid(N)` shape, or a JSON object.
func timelinePrinter(w io.Writer, f report.Format) func(follow.TimelineEvent) {
	if f == report.JSON {
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

// writeTrace renders the run. With --timeline and JSON the output is JSON
// lines throughout, so the report is one compact line too.
func writeTrace(w io.Writer, run *report.Run, f report.Format, timeline bool) error {
	if timeline && f == report.JSON {
		b, err := json.Marshal(run)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	return report.Write(w, run, f)
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

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("cowtrace run", runUsage)
	tf := addTraceFlags(fs)
	userName := fs.String("user", "", "run CMD as user `NAME` (its uid, gid and groups)")
	keepRoot := fs.Bool("keep-root", false, "under sudo, run CMD as root rather than as the invoking user")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usagef("run: no command (usage: cowtrace run [flags] -- CMD [ARGS...])")
	}
	// The command's output and the timeline share stdout. When it is not
	// a file, os/exec copies the command's output into it from another
	// goroutine, and the two must take turns.
	if _, ok := stdout.(*os.File); !ok {
		stdout = &lockedWriter{w: stdout}
	}
	opt, f, err := tf.options(stdout)
	if err != nil {
		return err
	}
	if *userName != "" && *keepRoot {
		return usagef("--user and --keep-root exclude each other")
	}
	argv := fs.Args()
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return usagef("run: %v", err)
	}
	cred, err := commandCredential(*userName, *keepRoot)
	if err != nil {
		return err
	}

	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2)
	defer signal.Stop(sigs)

	run, err := follow.Run(ctx, opt, follow.RunSpec{
		Path: path, Argv: argv, Cred: cred,
		Stdio:   follow.Stdio{Stdin: os.Stdin, Stdout: stdout, Stderr: stderr},
		Signals: sigs,
		Threads: *tf.threads,
	})
	if err != nil {
		return err
	}
	if err := writeTrace(stdout, run, f, *tf.timeline); err != nil {
		return err
	}
	if code := *run.Trace.ExitCode; code != 0 {
		return commandStatus{code}
	}
	return nil
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
			return nil, usagef("--user: %v", err)
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
