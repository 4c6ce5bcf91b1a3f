package perfevents

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Where OpenTracefs looks for, and if need be mounts, tracefs.
const (
	tracefsDir      = "/sys/kernel/tracing"
	debugTracefsDir = "/sys/kernel/debug/tracing"
	mountinfoPath   = "/proc/self/mountinfo"
)

// Tracefs is a handle on the kernel's tracing file system.
//
// A Tracefs built by hand (&Tracefs{Dir: "testdata/tracefs"}) reads that
// directory and never mounts or unmounts anything, which is how the parsing
// is tested against fake trees.
type Tracefs struct {
	// Dir is the tracefs mount point, e.g. /sys/kernel/tracing.
	Dir string

	// mounted is set when this handle holds a reference on the mount
	// cowtrace made; see ourMount.
	mounted bool
	closed  atomic.Bool
}

// ourMount is the process-wide record of a tracefs mount that cowtrace made.
// Every handle returned while it exists holds one reference, and the last
// Close unmounts. A sync.Once would not do: after the last Close the mount is
// gone, and a later OpenTracefs has to be able to mount again.
//
// The count is per process. A second cowtrace process that starts while this
// one has tracefs mounted finds the mount in mountinfo, treats it as not its
// own, and loses it when this process unmounts: the kernel offers no way to
// share ownership of a mount between processes.
var ourMount struct {
	sync.Mutex
	refs int
	dir  string
}

// OpenTracefs finds tracefs, mounting it at /sys/kernel/tracing when it is
// mounted nowhere.
//
// The search order is: a "tracefs" entry in /proc/self/mountinfo (which finds
// mounts at unusual places, e.g. bind mounts into containers), then
// /sys/kernel/tracing if statfs says it is tracefs, then
// /sys/kernel/debug/tracing (tracefs automounted under debugfs, or the tracing
// directory of debugfs itself on kernels before 4.1).
//
// Mounting needs CAP_SYS_ADMIN; without it the error wraps ErrPermission. A
// kernel without tracefs (ENODEV) gives ErrNotSupported.
//
// Concurrent calls are safe. While a mount made by this process is in use,
// further calls share it instead of mounting again; Close unmounts when the
// last handle sharing it is closed. Mounts found already in place are never
// unmounted.
func OpenTracefs() (*Tracefs, error) {
	ourMount.Lock()
	defer ourMount.Unlock()

	if ourMount.refs > 0 {
		ourMount.refs++
		return &Tracefs{Dir: ourMount.dir, mounted: true}, nil
	}

	if dir, ok := findTracefs(); ok {
		return &Tracefs{Dir: dir}, nil
	}

	if err := unix.Mount("nodev", tracefsDir, "tracefs", 0, ""); err != nil {
		switch {
		case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
			return nil, fmt.Errorf("tracefs is not mounted, and mounting it at %s needs CAP_SYS_ADMIN: %w", tracefsDir, ErrPermission)
		case errors.Is(err, unix.ENODEV):
			return nil, fmt.Errorf("mount tracefs: kernel has no tracefs: %w", ErrNotSupported)
		case errors.Is(err, unix.ENOENT):
			return nil, fmt.Errorf("mount tracefs: %s does not exist (kernel without tracefs?): %w", tracefsDir, ErrNotSupported)
		}
		return nil, fmt.Errorf("mount tracefs at %s: %w", tracefsDir, err)
	}
	ourMount.refs = 1
	ourMount.dir = tracefsDir
	return &Tracefs{Dir: tracefsDir, mounted: true}, nil
}

// Mounted reports whether cowtrace mounted this tracefs (and so will unmount
// it when the last handle on it is closed).
func (t *Tracefs) Mounted() bool { return t.mounted }

// Close releases the handle. It unmounts tracefs only if cowtrace mounted it
// and this is the last open handle on that mount. Calling Close again does
// nothing. Other methods return ErrClosed afterwards.
func (t *Tracefs) Close() error {
	if t.closed.Swap(true) || !t.mounted {
		return nil
	}

	ourMount.Lock()
	defer ourMount.Unlock()
	ourMount.refs--
	if ourMount.refs > 0 {
		return nil
	}
	err := unix.Unmount(ourMount.dir, 0)
	if errors.Is(err, unix.EBUSY) {
		// Something (another tool, a shell cd'ed into it) still uses the
		// mount; a lazy unmount still leaves the system as we found it
		// once that user lets go.
		err = unix.Unmount(ourMount.dir, unix.MNT_DETACH)
	}
	if err != nil {
		return fmt.Errorf("unmount tracefs at %s: %w", ourMount.dir, err)
	}
	return nil
}

// EventID returns the id of tracepoint group:name, the value that goes into
// perf_event_attr.config for PERF_TYPE_TRACEPOINT. A missing event wraps
// ErrNotFound.
func (t *Tracefs) EventID(group, name string) (uint64, error) {
	path, err := t.eventPath(group, name, "id")
	if err != nil {
		return 0, err
	}
	b, err := os.ReadFile(path)
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
	f, err := os.Open(path)
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
	if t.closed.Load() {
		return false
	}
	_, err := os.Stat(filepath.Join(t.Dir, "kprobe_events"))
	return err == nil
}

func (t *Tracefs) eventPath(group, name, file string) (string, error) {
	if t.closed.Load() {
		return "", fmt.Errorf("tracefs: %w", ErrClosed)
	}
	// Names come from users and from kallsyms: keep them from walking out
	// of events/.
	if !validEventName(group) || !validEventName(name) {
		return "", fmt.Errorf("tracepoint %q:%q: invalid name: %w", group, name, ErrNotFound)
	}
	return filepath.Join(t.Dir, "events", group, name, file), nil
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

func findTracefs() (string, bool) {
	if f, err := os.Open(mountinfoPath); err == nil {
		dir, ok := tracefsFromMountinfo(f)
		f.Close()
		if ok {
			return dir, true
		}
	}

	var st unix.Statfs_t
	if unix.Statfs(tracefsDir, &st) == nil && st.Type == unix.TRACEFS_MAGIC {
		return tracefsDir, true
	}
	// Statting debug/tracing also makes the kernel automount tracefs there
	// when debugfs is mounted.
	if unix.Statfs(debugTracefsDir, &st) == nil &&
		(st.Type == unix.TRACEFS_MAGIC || st.Type == unix.DEBUGFS_MAGIC) {
		if _, err := os.Stat(filepath.Join(debugTracefsDir, "events")); err == nil {
			return debugTracefsDir, true
		}
	}
	return "", false
}

// tracefsFromMountinfo returns the mount point of the first tracefs mount of
// its file system's root in a /proc/PID/mountinfo stream.
func tracefsFromMountinfo(r io.Reader) (string, bool) {
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
		return unescapeMountinfo(before[4]), true
	}
	return "", false
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
