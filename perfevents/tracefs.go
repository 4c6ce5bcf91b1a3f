package perfevents

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Where OpenTracefs looks for tracefs, after the mounts in mountinfo.
const (
	tracefsDir      = "/sys/kernel/tracing"
	debugTracefsDir = "/sys/kernel/debug/tracing"
	mountinfoPath   = "/proc/self/mountinfo"
)

// Tracefs is a handle on the kernel's tracing file system.
//
// It holds a descriptor on the root of the tracefs it found, and reaches
// every file through it (openat), so a mount point that someone else
// unmounts or remounts while cowtrace runs does not change what it reads.
//
// A Tracefs built by hand (&Tracefs{Dir: "testdata/tracefs"}) reads that
// directory by path and never mounts or unmounts anything, which is how the
// parsing is tested against fake trees.
type Tracefs struct {
	// Dir is a path to the tracefs root that works in this process: the
	// mount point where tracefs was found mounted, "/proc/self/fd/N" for
	// cowtrace's private mount (see OpenTracefs), or the directory of a
	// Tracefs built by hand. Use the methods rather than paths under it;
	// String names it for messages.
	Dir string

	// mu guards root against Close while a method uses it: a closed
	// descriptor number may already be another file's.
	mu      sync.RWMutex
	root    int  // O_PATH descriptor of the tracefs root; -1 once closed
	hasRoot bool // false when built by hand: files are then reached by path
	private bool // cowtrace's own mount, attached nowhere
	closed  atomic.Bool
}

// OpenTracefs finds tracefs, or makes a private mount of it when it is
// mounted nowhere. Nothing global changes: cowtrace never mounts or unmounts
// anything another process can see.
//
// The search order is: every "tracefs" entry of /proc/self/mountinfo (which
// finds mounts at unusual places, e.g. bind mounts into containers), then
// /sys/kernel/tracing, then /sys/kernel/debug/tracing (tracefs automounted
// under debugfs, or the tracing directory of debugfs itself on kernels
// before 4.1). A candidate counts only if the directory it opens is tracefs
// (fstatfs): a mountinfo entry can be gone by the time it is hasRoot.
//
// A mount at a shared place would be a global change that other processes
// can see, rely on, and race on: two cowtrace runs mounting and unmounting
// /sys/kernel/tracing at once fail with EBUSY, or unmount it under each
// other. So when tracefs is mounted nowhere, OpenTracefs makes a mount that
// is attached nowhere at all (fsopen/fsmount, Linux 5.2+; before that, a
// mount on a fresh temporary directory that is detached at once with
// MNT_DETACH), and keeps only a descriptor on its root. Such a mount is
// invisible to other processes, lives as long as the descriptor, and
// vanishes with the process even on SIGKILL. tracefs has one superblock, so
// it shows the same events and kprobe_events as any other mount of it.
//
// Mounting needs CAP_SYS_ADMIN; without it the error wraps ErrPermission. A
// kernel without tracefs gives ErrNotSupported. Concurrent calls are safe;
// each returns a handle of its own.
func OpenTracefs() (*Tracefs, error) {
	var mounts io.Reader = strings.NewReader("")
	if f, err := os.Open(mountinfoPath); err == nil {
		defer f.Close()
		mounts = f
	}
	if t, ok := findTracefs(mounts); ok {
		return t, nil
	}
	return mountPrivateTracefs()
}

// Mounted reports whether cowtrace mounted this tracefs: a private mount,
// which disappears when the handle is closed (or the process exits).
func (t *Tracefs) Mounted() bool { return t.private }

// String names the tracefs for messages: its mount point, or that it is
// cowtrace's private mount.
func (t *Tracefs) String() string {
	if t.private {
		return "tracefs (cowtrace's private mount)"
	}
	return "tracefs at " + t.Dir
}

// Close releases the handle; a private mount goes with it. Calling Close
// again does nothing. Other methods return ErrClosed afterwards.
func (t *Tracefs) Close() error {
	if t.closed.Swap(true) || !t.hasRoot {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	err := unix.Close(t.root)
	t.root = -1
	if err != nil {
		return fmt.Errorf("close %s: %w", t, err)
	}
	return nil
}

// open opens name (a path relative to the tracefs root) with flag.
func (t *Tracefs) open(name string, flag int) (*os.File, error) {
	if t.closed.Load() {
		return nil, fmt.Errorf("tracefs: %w", ErrClosed)
	}
	if !t.hasRoot {
		return os.OpenFile(filepath.Join(t.Dir, name), flag, 0)
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.root < 0 {
		return nil, fmt.Errorf("tracefs: %w", ErrClosed)
	}
	for {
		fd, err := unix.Openat(t.root, name, flag|unix.O_CLOEXEC, 0)
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return nil, &fs.PathError{Op: "open", Path: filepath.Join(t.Dir, name), Err: err}
		}
		return os.NewFile(uintptr(fd), filepath.Join(t.Dir, name)), nil
	}
}

// readFile reads the file name of the tracefs.
func (t *Tracefs) readFile(name string) ([]byte, error) {
	f, err := t.open(name, os.O_RDONLY)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// EventID returns the id of tracepoint group:name, the value that goes into
// perf_event_attr.config for PERF_TYPE_TRACEPOINT. A missing event wraps
// ErrNotFound.
func (t *Tracefs) EventID(group, name string) (uint64, error) {
	path, err := t.eventPath(group, name, "id")
	if err != nil {
		return 0, err
	}
	b, err := t.readFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("tracepoint %s:%s: %w", group, name, ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("tracepoint %s:%s id: %w", group, name, err)
	}
	id, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("tracepoint %s:%s: parse %s: %w", group, name, path, err)
	}
	return id, nil
}

// EventFormat parses events/GROUP/NAME/format. A missing event wraps
// ErrNotFound.
func (t *Tracefs) EventFormat(group, name string) (*Format, error) {
	path, err := t.eventPath(group, name, "format")
	if err != nil {
		return nil, err
	}
	f, err := t.open(path, os.O_RDONLY)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("tracepoint %s:%s: %w", group, name, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("tracepoint %s:%s format: %w", group, name, err)
	}
	defer f.Close()
	format, err := ParseFormat(f)
	if err != nil {
		return nil, fmt.Errorf("tracepoint %s:%s: %w", group, name, err)
	}
	return format, nil
}

// HasKprobeEvents reports whether this tracefs has kprobe_events, i.e.
// whether the kernel was built with CONFIG_KPROBE_EVENTS.
func (t *Tracefs) HasKprobeEvents() bool {
	f, err := t.open("kprobe_events", unix.O_PATH)
	if err != nil {
		return false
	}
	f.Close()
	return true
}

// eventPath is the path of an event's file, relative to the tracefs root.
func (t *Tracefs) eventPath(group, name, file string) (string, error) {
	if t.closed.Load() {
		return "", fmt.Errorf("tracefs: %w", ErrClosed)
	}
	// Names come from users and from kallsyms: keep them from walking out
	// of events/.
	if !validEventName(group) || !validEventName(name) {
		return "", fmt.Errorf("tracepoint %q:%q: invalid name: %w", group, name, ErrNotFound)
	}
	return filepath.Join("events", group, name, file), nil
}

// validEventName accepts what the kernel allows in trace event system and
// event names (letters, digits, '_', and '-' and '.' that newer kernels
// allow in some groups), and rejects "..".
func validEventName(s string) bool {
	if s == "" || s == "." || s == ".." {
		return false
	}
	for _, c := range []byte(s) {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			c == '_', c == '-', c == '.':
		default:
			return false
		}
	}
	return true
}

// findTracefs opens the first candidate that is tracefs: the mounts listed
// in mountinfo, then the usual places.
func findTracefs(mountinfo io.Reader) (*Tracefs, bool) {
	for _, dir := range tracefsCandidates(mountinfo) {
		if fd, ok := openTracefsRoot(dir); ok {
			return &Tracefs{Dir: dir, root: fd, hasRoot: true}, true
		}
	}
	return nil, false
}

// tracefsCandidates lists where tracefs may be, in the order to try: the
// mount points of tracefs in a mountinfo stream, then /sys/kernel/tracing and
// /sys/kernel/debug/tracing, each once. It leaves out the temporary mount
// points of other cowtrace processes (detachedTracefs): those are about to
// be detached, and a handle on one would name a path that is gone.
func tracefsCandidates(mountinfo io.Reader) []string {
	dirs := append(tracefsFromMountinfo(mountinfo), tracefsDir, debugTracefsDir)
	var out []string
	for _, d := range dirs {
		if !slices.Contains(out, d) && !strings.HasPrefix(filepath.Base(d), detachedPrefix) {
			out = append(out, d)
		}
	}
	return out
}

// openTracefsRoot opens dir as an O_PATH descriptor if it is the root of a
// tracefs. Opening debug/tracing makes the kernel automount tracefs there
// when debugfs is mounted, as any tool that looks there does.
func openTracefsRoot(dir string) (int, bool) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, false
	}
	var st unix.Statfs_t
	if unix.Fstatfs(fd, &st) == nil {
		switch {
		case st.Type == unix.TRACEFS_MAGIC:
			return fd, true
		// Kernels before 4.1 have the tracing directory in debugfs
		// itself; an empty debugfs directory is not it.
		case st.Type == unix.DEBUGFS_MAGIC && unix.Faccessat(fd, "events", unix.F_OK, 0) == nil:
			return fd, true
		}
	}
	unix.Close(fd)
	return -1, false
}

// mountPrivateTracefs mounts tracefs where no one else can see it: see
// OpenTracefs.
func mountPrivateTracefs() (*Tracefs, error) {
	fd, err := fsmount()
	if errors.Is(err, unix.ENOSYS) {
		// Before Linux 5.2, or a seccomp filter that knows only mount(2).
		fd, err = detachedTracefs()
	}
	if err != nil {
		switch {
		case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
			return nil, fmt.Errorf("tracefs is not mounted, and mounting it needs CAP_SYS_ADMIN: %w", ErrPermission)
		case errors.Is(err, unix.ENODEV):
			return nil, fmt.Errorf("mount tracefs: kernel has no tracefs: %w", ErrNotSupported)
		}
		return nil, fmt.Errorf("mount tracefs: %w", err)
	}
	// The root is reached through this descriptor: the mount has no path.
	return &Tracefs{Dir: "/proc/self/fd/" + strconv.Itoa(fd), root: fd, hasRoot: true, private: true}, nil
}

// detachedPrefix starts the name of detachedTracefs's mount points.
const detachedPrefix = "cowtrace-tracefs-"

// fsmount makes the private mount; tests replace it with one that fails
// with ENOSYS to take the route of kernels before 5.2.
var fsmount = fsmountTracefs

// fsmountTracefs makes a tracefs mount that is attached nowhere and returns
// the O_PATH descriptor of its root.
func fsmountTracefs() (int, error) {
	fsfd, err := unix.Fsopen("tracefs", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return -1, err
	}
	defer unix.Close(fsfd)
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return -1, err
	}
	return unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV|unix.MOUNT_ATTR_NOEXEC)
}

// detachedTracefs is the private mount of kernels before 5.2, which have no
// fsmount: tracefs mounted on a fresh temporary directory, its root opened,
// and the mount detached at once (MNT_DETACH) and the directory removed. The
// mount then lives on, reachable only through the descriptor. For that
// instant it is in mountinfo, where another process may find it; another
// cowtrace passes over it by its name, and would find nothing but an empty
// directory there a moment later (see openTracefsRoot).
func detachedTracefs() (int, error) {
	dir, err := os.MkdirTemp("", detachedPrefix+"*")
	if err != nil {
		return -1, err
	}
	defer os.Remove(dir)
	if err := unix.Mount("tracefs", dir, "tracefs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return -1, err
	}
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if uerr := unix.Unmount(dir, unix.MNT_DETACH); uerr != nil {
		if err == nil {
			unix.Close(fd)
		}
		return -1, fmt.Errorf("detach the tracefs mounted at %s: %w", dir, uerr)
	}
	if err != nil {
		return -1, err
	}
	return fd, nil
}

// tracefsFromMountinfo returns the mount points of the mounts of a tracefs
// root in a /proc/PID/mountinfo stream, in its order.
func tracefsFromMountinfo(r io.Reader) []string {
	var dirs []string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		// 36 35 98:0 /root /mnt rw,noatime master:1 - fstype source opts
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		after := strings.Fields(post)
		before := strings.Fields(pre)
		if len(after) < 1 || len(before) < 5 || after[0] != "tracefs" {
			continue
		}
		// A bind mount of a subdirectory (root other than "/") has no
		// events/ at its top.
		if unescapeMountinfo(before[3]) != "/" {
			continue
		}
		dirs = append(dirs, unescapeMountinfo(before[4]))
	}
	return dirs
}

// unescapeMountinfo undoes the octal escapes (\040 for a space, \011, \012,
// \134) that the kernel writes into mountinfo paths.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
