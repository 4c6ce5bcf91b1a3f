package perfevents

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// groupPrefix names the tracefs groups of cowtrace's kprobes; the pid after
// it lets RemoveStale tell whose probes are left over.
const groupPrefix = "cowtrace_"

// maxEventName is the kernel's MAX_EVENT_NAME_LEN (64) minus the NUL.
const maxEventName = 63

// KprobeEvents creates kprobes through tracefs kprobe_events, the route for
// kernels that have CONFIG_KPROBE_EVENTS but no kprobe PMU (before 4.17), or
// when forced. Each probe becomes a tracepoint GROUP:EVENT whose id is opened
// with PERF_TYPE_TRACEPOINT like any other.
//
// Unlike kprobes opened through the PMU, these probes outlive the process:
// Close must run, and RemoveStale cleans up after a cowtrace that was killed.
//
// A KprobeEvents is safe for concurrent use.
type KprobeEvents struct {
	tfs   *Tracefs
	group string

	// write sends one command to kprobe_events. It is a field so that tests
	// can stand in for the kernel, which answers commands with errnos a
	// regular file cannot produce.
	write func(cmd string) error

	mu     sync.Mutex
	events []string // created and not yet removed
	closed bool
}

// NewKprobeEvents prepares to create kprobes in group "cowtrace_<pid of this
// process>" of t. Without kprobe_events in t the error wraps ErrNotSupported.
//
// Close the KprobeEvents before t: the probes are removed through t.
func NewKprobeEvents(t *Tracefs) (*KprobeEvents, error) {
	if t == nil || !t.HasKprobeEvents() {
		return nil, fmt.Errorf("tracefs has no kprobe_events (kernel built without CONFIG_KPROBE_EVENTS): %w", ErrNotSupported)
	}
	k := &KprobeEvents{
		tfs:   t,
		group: groupPrefix + strconv.Itoa(os.Getpid()),
	}
	k.write = func(cmd string) error { return writeKprobeEvents(k.tfs, cmd) }
	return k, nil
}

// Group returns the tracefs group of the probes, the GROUP in GROUP:EVENT.
func (k *KprobeEvents) Group() string { return k.group }

// Add places a kprobe at fn+offset by writing "p:GROUP/EVENT FN+OFFSET" to
// kprobe_events and returns the id of the resulting tracepoint, for
// perf_event_attr.config with PERF_TYPE_TRACEPOINT.
//
// EVENT is fn with every character outside [A-Za-z0-9_] replaced by '_'
// ("foo.isra.0" becomes "foo_isra_0"), followed by "_<offset in hex>" when
// offset is not zero, cut to the kernel's limit of 63 bytes.
//
// A symbol the kernel does not know wraps ErrNotFound; one it refuses to
// probe (blacklisted, notrace, offset not on an instruction boundary) wraps
// ErrNotProbeable. Kernels before 5.x may report an unknown symbol as EINVAL,
// and so as ErrNotProbeable: check kallsyms first where the difference
// matters. The error includes the kernel's explanation from tracefs
// error_log (5.4+) when there is one.
func (k *KprobeEvents) Add(fn string, offset uint64) (id uint64, err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return 0, fmt.Errorf("kprobe_events: %w", ErrClosed)
	}
	// fn is pasted into a command line the kernel parses: a space or a
	// newline in it would make a different command.
	if !validSymbolName(fn) {
		return 0, fmt.Errorf("kprobe %q: not a kernel symbol name: %w", fn, ErrNotFound)
	}
	event := kprobeEventName(fn, offset)
	if slices.Contains(k.events, event) {
		return 0, fmt.Errorf("kprobe %s/%s: already added: %w", k.group, event, fs.ErrExist)
	}

	// Our group carries our pid, so an event already in it was left by a
	// dead process that had the same pid. Writing over it fails with EEXIST
	// (or, before 4.x, silently adds a second probe): remove it first.
	if _, err := k.tfs.EventID(k.group, event); err == nil {
		if err := k.write("-:" + k.group + "/" + event); err != nil && !errors.Is(err, unix.ENOENT) {
			return 0, fmt.Errorf("kprobe %s/%s: remove leftover of an earlier process: %w", k.group, event, err)
		}
	}

	logBefore := readErrorLog(k.tfs)
	cmd := fmt.Sprintf("p:%s/%s %s+%d", k.group, event, fn, offset)
	if err := k.write(cmd); err != nil {
		return 0, kprobeWriteError(cmd, err, newErrorLogLine(logBefore, readErrorLog(k.tfs)))
	}

	id, err = k.tfs.EventID(k.group, event)
	if err != nil {
		// The kernel took the probe but shows no event for it: do not
		// leave it behind.
		_ = k.write("-:" + k.group + "/" + event)
		return 0, fmt.Errorf("kprobe %s/%s added, but no tracepoint id: %w", k.group, event, err)
	}
	k.events = append(k.events, event)
	return id, nil
}

// Close removes every probe this KprobeEvents created by writing
// "-:GROUP/EVENT" for each, going on past failures and returning them all.
//
// The kernel refuses (EBUSY) to remove a probe while a perf event is open on
// it: the caller must close the perf fds of the probes first. Probes whose
// removal failed are kept, and a later Close tries them again; once all are
// gone Close returns nil. Add fails with ErrClosed after the first Close.
func (k *KprobeEvents) Close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.closed = true
	var errs []error
	var left []string
	for _, event := range k.events {
		err := k.write("-:" + k.group + "/" + event)
		switch {
		case err == nil, errors.Is(err, unix.ENOENT):
			// ENOENT: somebody else removed it already.
		case errors.Is(err, unix.EBUSY):
			errs = append(errs, fmt.Errorf("remove kprobe %s/%s: still in use (close its perf events first): %w", k.group, event, err))
			left = append(left, event)
		default:
			errs = append(errs, fmt.Errorf("remove kprobe %s/%s: %w", k.group, event, err))
			left = append(left, event)
		}
	}
	k.events = left
	return errors.Join(errs...)
}

// RemoveStale removes the probes of groups "cowtrace_<pid>" whose process no
// longer exists, which a cowtrace killed before its Close leaves behind, and
// returns how many it removed. A tracefs without kprobe_events has none.
//
// A dead cowtrace's pid that has been reused by a live process keeps its
// probes; they are removed when a cowtrace with that pid uses them or once
// that process is gone.
func RemoveStale(t *Tracefs) (int, error) {
	if t == nil || !t.HasKprobeEvents() {
		return 0, nil
	}
	f, err := t.open("kprobe_events", os.O_RDONLY)
	if err != nil {
		return 0, fmt.Errorf("remove stale kprobes: %w", err)
	}
	var stale []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if ev, ok := staleProbe(sc.Text()); ok {
			stale = append(stale, ev)
		}
	}
	f.Close()
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("remove stale kprobes: read kprobe_events: %w", err)
	}

	removed := 0
	var errs []error
	for _, ev := range stale {
		err := writeKprobeEvents(t, "-:"+ev)
		if err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("remove stale kprobe %s: %w", ev, err))
			continue
		}
		removed++
	}
	return removed, errors.Join(errs...)
}

// staleProbe parses a kprobe_events line, "p:GROUP/EVENT SYM+OFFS [args]"
// ("r" or "r<N>" for return probes), and returns "GROUP/EVENT" when GROUP is
// cowtrace_<pid> of a process that does not exist.
func staleProbe(line string) (string, bool) {
	head, _, _ := strings.Cut(strings.TrimSpace(line), " ")
	_, ev, ok := strings.Cut(head, ":")
	if !ok {
		return "", false
	}
	group, _, ok := strings.Cut(ev, "/")
	if !ok || !strings.HasPrefix(group, groupPrefix) {
		return "", false
	}
	pid, err := strconv.Atoi(strings.TrimPrefix(group, groupPrefix))
	if err != nil || pid <= 0 || pid == os.Getpid() {
		return "", false
	}
	// EPERM means it exists but belongs to someone else.
	if err := unix.Kill(pid, 0); !errors.Is(err, unix.ESRCH) {
		return "", false
	}
	return ev, true
}

// writeKprobeEvents writes one command to kprobe_events of t. Each command
// is its own write(2): the kernel reports the error of a command as the
// result of the write that carried it.
func writeKprobeEvents(t *Tracefs, cmd string) error {
	// Never O_TRUNC: opening kprobe_events with truncation deletes every
	// kprobe on the system, other tools' included.
	f, err := t.open("kprobe_events", os.O_WRONLY|os.O_APPEND)
	if err != nil {
		return err
	}
	_, err = f.WriteString(cmd + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// kprobeWriteError maps the errno of a rejected kprobe_events command to the
// package's sentinels; kernelSays is the kernel's error_log line, if any.
func kprobeWriteError(cmd string, err error, kernelSays string) error {
	var sentinel error
	switch {
	case errors.Is(err, unix.ENOENT):
		sentinel = ErrNotFound
	case errors.Is(err, unix.EINVAL), errors.Is(err, unix.EILSEQ), errors.Is(err, unix.ERANGE):
		// EILSEQ: offset not on an instruction boundary (4.19+); ERANGE:
		// offset beyond the function.
		sentinel = ErrNotProbeable
	case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
		sentinel = ErrPermission
	}
	var errno unix.Errno
	errors.As(err, &errno)
	msg := fmt.Sprintf("kprobe_events %q", cmd)
	if kernelSays != "" {
		msg += " (kernel: " + kernelSays + ")"
	}
	if sentinel == nil {
		return fmt.Errorf("%s: %w", msg, err)
	}
	if errno != 0 {
		return fmt.Errorf("%s: %w (%w)", msg, sentinel, errno)
	}
	return fmt.Errorf("%s: %w (%w)", msg, sentinel, err)
}

func readErrorLog(t *Tracefs) string {
	b, err := t.readFile("error_log")
	if err != nil {
		return ""
	}
	return string(b)
}

// newErrorLogLine returns the kernel's message for the command that just
// failed: the last "error:" line of error_log, provided the log changed
// since before the command (otherwise it is someone else's old error). The
// log's very last line is a caret under the command, so it is not that one.
//
//	[  151.331131] trace_kprobe: error: Invalid argument
//	  Command: p:cowtrace_1/foo foo+3
//	                            ^
func newErrorLogLine(before, after string) string {
	if after == "" || after == before {
		return ""
	}
	lines := strings.Split(strings.TrimRight(after, "\n"), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		line := strings.TrimSpace(lines[i])
		if _, msg, ok := strings.Cut(line, "error: "); ok {
			return strings.TrimSpace(msg)
		}
	}
	for i := len(lines) - 1; i >= 0; i-- {
		if line := strings.TrimSpace(lines[i]); line != "" && line != "^" {
			return line
		}
	}
	return ""
}

// validSymbolName accepts kernel symbol names: C identifiers plus the '.'
// of compiler variants ("foo.isra.0", "foo.cold").
func validSymbolName(s string) bool {
	if s == "" || s[0] >= '0' && s[0] <= '9' || s[0] == '.' {
		return false
	}
	for _, c := range []byte(s) {
		if !isIdentByte(c) && c != '.' {
			return false
		}
	}
	return true
}

// kprobeEventName makes the EVENT of GROUP/EVENT from a symbol and offset.
// The kernel accepts only [A-Za-z0-9_] there, not starting with a digit, at
// most 63 bytes.
func kprobeEventName(fn string, offset uint64) string {
	b := []byte(fn)
	for i, c := range b {
		if !isIdentByte(c) {
			b[i] = '_'
		}
	}
	name := string(b)
	if offset != 0 {
		name += "_" + strconv.FormatUint(offset, 16)
	}
	if len(name) > maxEventName {
		name = name[:maxEventName]
	}
	return name
}
