package perfevents

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// fakeKprobeTracefs makes a tracefs directory with kprobe_events as an empty
// regular file.
func fakeKprobeTracefs(t *testing.T) *Tracefs {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "kprobe_events"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return &Tracefs{Dir: dir}
}

func writeFakeID(t *testing.T, dir, group, event string, id uint64) {
	t.Helper()
	d := filepath.Join(dir, "events", group, event)
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d, "id"), []byte(strconv.FormatUint(id, 10)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readKprobeEvents(t *testing.T, dir string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "kprobe_events"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimRight(string(b), "\n"), "\n")
}

// fakeKernel stands in for the kernel behind kprobe_events: the commands go
// to the regular file through the real writer, and the kernel's side
// effects (events/GROUP/EVENT/id appearing and disappearing, errnos,
// error_log) are simulated.
type fakeKernel struct {
	t      *testing.T
	tfs    *Tracefs
	dir    string
	nextID uint64
	refuse map[string]unix.Errno // symbol -> errno for "p:" commands
	busy   map[string]bool       // "GROUP/EVENT" -> EBUSY on removal
}

func newFakeKernel(t *testing.T, k *KprobeEvents) *fakeKernel {
	fk := &fakeKernel{t: t, tfs: k.tfs, dir: k.tfs.Dir, nextID: 2000, refuse: map[string]unix.Errno{}, busy: map[string]bool{}}
	k.write = fk.write
	return fk
}

func (fk *fakeKernel) write(cmd string) error {
	switch {
	case strings.HasPrefix(cmd, "p:"):
		fields := strings.Fields(cmd)
		ev := strings.TrimPrefix(fields[0], "p:")
		sym, _, _ := strings.Cut(fields[1], "+")
		if errno, ok := fk.refuse[sym]; ok {
			f, err := os.OpenFile(filepath.Join(fk.dir, "error_log"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
			if err != nil {
				return err
			}
			fmt.Fprintf(f, "[  151.331131] trace_kprobe: error: %s\n  Command: %s\n              ^\n", errno.Error(), cmd)
			f.Close()
			return &fs.PathError{Op: "write", Path: "kprobe_events", Err: errno}
		}
		group, event, _ := strings.Cut(ev, "/")
		writeFakeID(fk.t, fk.dir, group, event, fk.nextID)
		fk.nextID++
	case strings.HasPrefix(cmd, "-:"):
		ev := strings.TrimPrefix(cmd, "-:")
		if fk.busy[ev] {
			return &fs.PathError{Op: "write", Path: "kprobe_events", Err: unix.EBUSY}
		}
		if err := os.RemoveAll(filepath.Join(fk.dir, "events", ev)); err != nil {
			return err
		}
	}
	return writeKprobeEvents(fk.tfs, cmd)
}

func TestNewKprobeEventsNotSupported(t *testing.T) {
	for _, tfs := range []*Tracefs{nil, {Dir: fixtureTracefs}, {Dir: t.TempDir()}} {
		if _, err := NewKprobeEvents(tfs); !errors.Is(err, ErrNotSupported) {
			t.Errorf("NewKprobeEvents(%v): %v, want ErrNotSupported", tfs, err)
		}
	}
}

// The file protocol with the real writer: one command a line, appended, and
// the id read from the event's directory.
func TestKprobeEventsFileProtocol(t *testing.T) {
	tfs := fakeKprobeTracefs(t)
	if err := os.WriteFile(filepath.Join(tfs.Dir, "kprobe_events"), []byte("p:kprobes/other other+0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	k, err := NewKprobeEvents(tfs)
	if err != nil {
		t.Fatal(err)
	}
	group := "cowtrace_" + strconv.Itoa(os.Getpid())
	if k.Group() != group {
		t.Errorf("Group = %q, want %q", k.Group(), group)
	}

	// With no kernel behind the file, the id must be there beforehand; Add
	// takes such an event for the leftover of a dead process with our pid
	// and removes it before adding its own.
	writeFakeID(t, tfs.Dir, group, "do_wp_page", 1234)
	id, err := k.Add("do_wp_page", 0)
	if err != nil || id != 1234 {
		t.Fatalf("Add = %d, %v; want 1234", id, err)
	}
	if err := k.Close(); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"p:kprobes/other other+0", // untouched: no O_TRUNC
		"-:" + group + "/do_wp_page",
		"p:" + group + "/do_wp_page do_wp_page+0",
		"-:" + group + "/do_wp_page",
	}
	if got := readKprobeEvents(t, tfs.Dir); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("kprobe_events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestKprobeEventsAddClose(t *testing.T) {
	tfs := fakeKprobeTracefs(t)
	k, err := NewKprobeEvents(tfs)
	if err != nil {
		t.Fatal(err)
	}
	fk := newFakeKernel(t, k)
	g := k.Group()

	ids := map[string]uint64{}
	for _, p := range []struct {
		fn     string
		offset uint64
		event  string
	}{
		{"do_wp_page", 0, "do_wp_page"},
		{"wp_page_copy.isra.0", 0, "wp_page_copy_isra_0"},
		{"copy_mc_to_kernel", 0x1f, "copy_mc_to_kernel_1f"},
	} {
		id, err := k.Add(p.fn, p.offset)
		if err != nil {
			t.Fatalf("Add(%s, %d): %v", p.fn, p.offset, err)
		}
		if got, err := tfs.EventID(g, p.event); err != nil || got != id {
			t.Errorf("Add(%s) = %d, events/%s/%s/id = %d, %v", p.fn, id, g, p.event, got, err)
		}
		ids[p.event] = id
	}
	if len(ids) != 3 {
		t.Errorf("ids not distinct: %v", ids)
	}
	if _, err := k.Add("do_wp_page", 0); !errors.Is(err, fs.ErrExist) {
		t.Errorf("second Add of the same probe: %v, want fs.ErrExist", err)
	}

	// The perf fd on one probe is still open: its removal fails, the rest
	// go, and a later Close finishes the job.
	fk.busy[g+"/wp_page_copy_isra_0"] = true
	err = k.Close()
	if !errors.Is(err, unix.EBUSY) || !strings.Contains(err.Error(), "close its perf events first") {
		t.Errorf("Close with a busy probe: %v, want EBUSY and advice", err)
	}
	if _, err := tfs.EventID(g, "do_wp_page"); !errors.Is(err, ErrNotFound) {
		t.Errorf("do_wp_page not removed after a partly failed Close: %v", err)
	}
	if _, err := tfs.EventID(g, "copy_mc_to_kernel_1f"); !errors.Is(err, ErrNotFound) {
		t.Errorf("copy_mc_to_kernel_1f not removed after a partly failed Close: %v", err)
	}
	if _, err := k.Add("folio_copy", 0); !errors.Is(err, ErrClosed) {
		t.Errorf("Add after Close: %v, want ErrClosed", err)
	}

	delete(fk.busy, g+"/wp_page_copy_isra_0")
	if err := k.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := tfs.EventID(g, "wp_page_copy_isra_0"); !errors.Is(err, ErrNotFound) {
		t.Errorf("wp_page_copy_isra_0 still there after the retry: %v", err)
	}
	before := len(readKprobeEvents(t, tfs.Dir))
	if err := k.Close(); err != nil {
		t.Fatalf("third Close: %v", err)
	}
	if after := len(readKprobeEvents(t, tfs.Dir)); after != before {
		t.Errorf("a Close with nothing left wrote %d more commands", after-before)
	}

	var removes []string
	for _, line := range readKprobeEvents(t, tfs.Dir) {
		if strings.HasPrefix(line, "-:") {
			removes = append(removes, line)
		}
	}
	if len(removes) != 3 {
		t.Errorf("removal commands %q; want one per probe", removes)
	}
}

func TestKprobeEventsAddErrors(t *testing.T) {
	tfs := fakeKprobeTracefs(t)
	k, err := NewKprobeEvents(tfs)
	if err != nil {
		t.Fatal(err)
	}
	fk := newFakeKernel(t, k)
	fk.refuse["no_such_fn"] = unix.ENOENT
	fk.refuse["copy_page"] = unix.EINVAL
	fk.refuse["mid_insn"] = unix.EILSEQ
	fk.refuse["locked"] = unix.EACCES
	fk.refuse["weird"] = unix.ENOSPC

	for _, tc := range []struct {
		fn   string
		want error
	}{
		{"no_such_fn", ErrNotFound},
		{"copy_page", ErrNotProbeable},
		{"mid_insn", ErrNotProbeable},
		{"locked", ErrPermission},
		{"weird", unix.ENOSPC},
	} {
		_, err := k.Add(tc.fn, 0)
		if !errors.Is(err, tc.want) {
			t.Errorf("Add(%s): %v, want %v", tc.fn, err, tc.want)
			continue
		}
		// The kernel's words from error_log, not the caret line.
		errno := fk.refuse[tc.fn]
		if !strings.Contains(err.Error(), "(kernel: "+errno.Error()+")") {
			t.Errorf("Add(%s): %q lacks the error_log message", tc.fn, err)
		}
	}

	// An old error in error_log is not blamed on a new failure.
	if err := os.WriteFile(filepath.Join(tfs.Dir, "error_log"), []byte("[ 1.0] trace_kprobe: error: Old news\n  Command: x\n ^\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	k.write = func(string) error { return &fs.PathError{Op: "write", Path: "kprobe_events", Err: unix.EINVAL} }
	if _, err := k.Add("anything", 0); !errors.Is(err, ErrNotProbeable) || strings.Contains(err.Error(), "Old news") {
		t.Errorf("Add with a stale error_log: %v", err)
	}

	for _, bad := range []string{"", "foo bar", "foo\n-:kprobes/other", "1abc", "mod:sym", ".cold", "a/b"} {
		if _, err := k.Add(bad, 0); !errors.Is(err, ErrNotFound) {
			t.Errorf("Add(%q): %v, want ErrNotFound", bad, err)
		}
	}
	if err := k.Close(); err != nil {
		t.Errorf("Close after failed Adds: %v", err)
	}
}

// The kernel accepted the probe but no event id appears: the probe must not
// stay behind.
func TestKprobeEventsAddNoID(t *testing.T) {
	tfs := fakeKprobeTracefs(t)
	k, err := NewKprobeEvents(tfs)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.Add("do_wp_page", 0); !errors.Is(err, ErrNotFound) {
		t.Errorf("Add without an id file: %v, want ErrNotFound", err)
	}
	lines := readKprobeEvents(t, tfs.Dir)
	if len(lines) != 2 || lines[1] != "-:"+k.Group()+"/do_wp_page" {
		t.Errorf("kprobe_events after a failed Add: %q; want the probe removed again", lines)
	}
}

func TestKprobeEventName(t *testing.T) {
	for _, tc := range []struct {
		fn     string
		offset uint64
		want   string
	}{
		{"do_wp_page", 0, "do_wp_page"},
		{"foo.isra.0", 0, "foo_isra_0"},
		{"foo.cold", 0, "foo_cold"},
		{"copy_page", 4, "copy_page_4"},
		{"copy_page", 0x1f, "copy_page_1f"},
		{strings.Repeat("a", 70), 0, strings.Repeat("a", 63)},
	} {
		if got := kprobeEventName(tc.fn, tc.offset); got != tc.want {
			t.Errorf("kprobeEventName(%q, %d) = %q, want %q", tc.fn, tc.offset, got, tc.want)
		}
	}
}

func TestKprobeEventsErrorLogLine(t *testing.T) {
	const entry = "[  151.331131] trace_kprobe: error: Invalid argument\n  Command: p:cowtrace_1/foo foo+3\n                            ^\n"
	for _, tc := range []struct{ before, after, want string }{
		{"", entry, "Invalid argument"},
		{entry, entry, ""},
		{"", "", ""},
		{entry, entry + "[  152.0] trace_kprobe: error: Probe point is not found\n  Command: p:g/e nope\n  ^\n", "Probe point is not found"},
		{"", "something odd\n  ^\n", "something odd"},
	} {
		if got := newErrorLogLine(tc.before, tc.after); got != tc.want {
			t.Errorf("newErrorLogLine(%q, %q) = %q, want %q", tc.before, tc.after, got, tc.want)
		}
	}
}

func TestKprobeEventsRemoveStale(t *testing.T) {
	tfs := fakeKprobeTracefs(t)
	self := "cowtrace_" + strconv.Itoa(os.Getpid())
	// Pids above the kernel's PID_MAX_LIMIT (4194304) cannot be alive.
	content := strings.Join([]string{
		"p:cowtrace_999999999/do_wp_page do_wp_page+0",
		"p:" + self + "/mine mine+0",
		"p:cowtrace_1/init_owned x+0",
		"r16:cowtrace_999999998/ret_probe wp_page_copy+0",
		"p:kprobes/someone_else y+0",
		"p:cowtrace_abc/odd z+0",
		"p:cowtrace_/empty z+0",
		"garbage",
		"",
	}, "\n")
	if err := os.WriteFile(filepath.Join(tfs.Dir, "kprobe_events"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	n, err := RemoveStale(tfs)
	if err != nil || n != 2 {
		t.Fatalf("RemoveStale = %d, %v; want 2", n, err)
	}
	lines := readKprobeEvents(t, tfs.Dir)
	got := strings.Join(lines[len(lines)-2:], "\n")
	if want := "-:cowtrace_999999999/do_wp_page\n-:cowtrace_999999998/ret_probe"; got != want {
		t.Errorf("commands written:\n%s\nwant:\n%s", got, want)
	}

	if n, err := RemoveStale(&Tracefs{Dir: fixtureTracefs}); n != 0 || err != nil {
		t.Errorf("RemoveStale without kprobe_events = %d, %v; want 0, nil", n, err)
	}
}

func TestKprobeEventsRealKernel(t *testing.T) {
	tfsRequireRoot(t)
	tfs, err := OpenTracefs()
	if err != nil {
		t.Fatal(err)
	}
	defer tfs.Close()
	if !tfs.HasKprobeEvents() {
		t.Skip("kernel has no kprobe_events (built without CONFIG_KPROBES)")
	}
	if _, err := RemoveStale(tfs); err != nil {
		t.Errorf("RemoveStale: %v", err)
	}

	k, err := NewKprobeEvents(tfs)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	id, err := k.Add("do_wp_page", 0)
	if err != nil {
		t.Fatal(err)
	}
	idFile := filepath.Join(tfs.Dir, "events", k.Group(), "do_wp_page", "id")
	if got, err := tfs.EventID(k.Group(), "do_wp_page"); err != nil || got != id {
		t.Errorf("Add = %d; %s says %d, %v", id, idFile, got, err)
	}
	if _, err := k.Add("cowtrace_no_such_function", 0); !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrNotProbeable) {
		// Kernels before 5.x say EINVAL for a missing symbol.
		t.Errorf("Add of a missing function: %v, want ErrNotFound (or ErrNotProbeable on old kernels)", err)
	} else {
		t.Logf("missing function: %v", err)
	}

	if err := k.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(idFile); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s after Close: %v, want it gone", idFile, err)
	}
	b, err := os.ReadFile(filepath.Join(tfs.Dir, "kprobe_events"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), k.Group()+"/") {
		t.Errorf("kprobe_events still lists our probes after Close:\n%s", b)
	}
}
