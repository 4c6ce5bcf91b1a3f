package perfevents

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cowtrace/cowtrace/internal/testenv"
)

const fixtureTracefs = "testdata/tracefs"

func TestTracefsCandidates(t *testing.T) {
	fixed := []string{tracefsDir, debugTracefsDir}
	for _, tc := range []struct {
		name, mountinfo string
		want            []string // before the fixed places
	}{
		{
			name: "canonical",
			mountinfo: "22 26 0:21 / /sys rw,relatime - sysfs sysfs rw\n" +
				"41 22 0:12 / /sys/kernel/tracing rw,nosuid,nodev,noexec,relatime shared:20 - tracefs nodev rw\n",
			want: nil, // /sys/kernel/tracing, once
		},
		{
			name:      "escaped mount point",
			mountinfo: `50 26 0:12 / /mnt/my\040trace rw,relatime - tracefs tracefs rw` + "\n",
			want:      []string{"/mnt/my trace"},
		},
		{
			name: "bind mount of a subdirectory is skipped",
			mountinfo: "50 26 0:12 /instances/foo /mnt/foo rw - tracefs nodev rw\n" +
				"51 26 0:12 / /srv/tracing rw - tracefs nodev rw\n",
			want: []string{"/srv/tracing"},
		},
		{
			name: "every mount, in mountinfo's order",
			mountinfo: "51 26 0:12 / /srv/tracing rw - tracefs nodev rw\n" +
				"52 26 0:12 / /mnt/t rw - tracefs tracefs rw\n" +
				"53 26 0:12 / /sys/kernel/debug/tracing rw - tracefs tracefs rw\n",
			want: []string{"/srv/tracing", "/mnt/t", debugTracefsDir, tracefsDir},
		},
		{
			// Another cowtrace's mount point, about to be detached.
			name:      "a private mount on its way",
			mountinfo: "52 26 0:12 / /tmp/cowtrace-tracefs-123 rw - tracefs tracefs rw\n",
		},
		{
			name:      "no tracefs",
			mountinfo: "21 26 0:20 / /proc rw,relatime - proc proc rw\n22 26 0:21 / /sys rw,relatime - sysfs sysfs rw\n",
		},
		{name: "garbage", mountinfo: "tracefs\n - tracefs\n"},
		{name: "no mountinfo", mountinfo: ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := tc.want
			for _, d := range fixed {
				if !slices.Contains(want, d) {
					want = append(want, d)
				}
			}
			got := tracefsCandidates(strings.NewReader(tc.mountinfo))
			if !slices.Equal(got, want) {
				t.Errorf("tracefsCandidates = %q, want %q", got, want)
			}
		})
	}
}

// A mountinfo entry is only a hint: what is at the path by the time it is
// opened may be an ordinary directory (a private mount of another cowtrace
// detached in between) or nothing. findTracefs must pass over both.
func TestFindTracefsChecksWhatItOpens(t *testing.T) {
	notTracefs := t.TempDir()
	gone := filepath.Join(t.TempDir(), "gone")
	mountinfo := "52 26 0:12 / " + notTracefs + " rw - tracefs tracefs rw\n" +
		"53 26 0:12 / " + gone + " rw - tracefs tracefs rw\n"
	tfs, ok := findTracefs(strings.NewReader(mountinfo))
	if !ok {
		return // tracefs is mounted at neither usual place either: right
	}
	defer tfs.Close()
	if tfs.Dir == notTracefs || tfs.Dir == gone {
		t.Fatalf("findTracefs took %s, which is not tracefs", tfs.Dir)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(tfs.Dir, &st); err != nil || st.Type != unix.TRACEFS_MAGIC && st.Type != unix.DEBUGFS_MAGIC {
		t.Errorf("findTracefs took %s: statfs type %#x, %v", tfs.Dir, st.Type, err)
	}
}

func TestTracefsFixtureEvents(t *testing.T) {
	tfs := &Tracefs{Dir: fixtureTracefs}
	id, err := tfs.EventID("exceptions", "page_fault_user")
	if err != nil {
		t.Fatal(err)
	}
	format, err := tfs.EventFormat("exceptions", "page_fault_user")
	if err != nil {
		t.Fatal(err)
	}
	if id != 190 || format.ID != id {
		t.Errorf("EventID = %d, format ID = %d; want both 190 (the fixture's)", id, format.ID)
	}

	if _, err := tfs.EventID("exceptions", "no_such_event"); !errors.Is(err, ErrNotFound) {
		t.Errorf("EventID of a missing event: %v, want ErrNotFound", err)
	}
	if _, err := tfs.EventFormat("nosuchgroup", "x"); !errors.Is(err, ErrNotFound) {
		t.Errorf("EventFormat of a missing event: %v, want ErrNotFound", err)
	}
	for _, bad := range [][2]string{{"..", "kmem"}, {"kmem/../sched", "x"}, {"", "x"}, {"kmem", "mm_page_alloc/../../sched"}} {
		if _, err := tfs.EventID(bad[0], bad[1]); err == nil {
			t.Errorf("EventID(%q, %q) succeeded; want an invalid name error", bad[0], bad[1])
		}
	}
	if tfs.HasKprobeEvents() {
		t.Error("fixture tracefs has no kprobe_events, HasKprobeEvents says it has")
	}
	if tfs.Mounted() {
		t.Error("a hand-built Tracefs claims cowtrace mounted it")
	}
	if got, want := tfs.String(), "tracefs at "+fixtureTracefs; got != want {
		t.Errorf("String = %q, want %q", got, want)
	}

	if err := tfs.Close(); err != nil {
		t.Fatal(err)
	}
	if err := tfs.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := tfs.EventID("exceptions", "page_fault_user"); !errors.Is(err, ErrClosed) {
		t.Errorf("EventID after Close: %v, want ErrClosed", err)
	}
	if _, err := os.Stat(fixtureTracefs + "/events"); err != nil {
		t.Errorf("Close of a hand-built Tracefs touched its directory: %v", err)
	}
}

// tfsRequireRoot skips tests that mount file systems.
func tfsRequireRoot(t *testing.T) {
	t.Helper()
	testenv.Require(t, testenv.Root)
}

// tfsMountedAt lists the tracefs mount points of this mount namespace.
func tfsMountedAt(t *testing.T) []string {
	t.Helper()
	f, err := os.Open(mountinfoPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return tracefsFromMountinfo(f)
}

// tfsRequireUnmounted skips unless tracefs is mounted nowhere, the state in
// which OpenTracefs has to make a mount of its own.
func tfsRequireUnmounted(t *testing.T) {
	t.Helper()
	if dirs := tfsMountedAt(t); len(dirs) > 0 {
		t.Skipf("tracefs is mounted (at %s) by someone else, so OpenTracefs will not mount it; "+
			"this test needs it unmounted and never unmounts a mount it did not make", strings.Join(dirs, ", "))
	}
}

// mountinfoLines is this mount namespace's mount table, a line a mount.
func mountinfoLines(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(mountinfoPath)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

func checkMountinfoUnchanged(t *testing.T, before []string, when string) {
	t.Helper()
	after := mountinfoLines(t)
	if slices.Equal(before, after) {
		return
	}
	var added, removed []string
	for _, l := range after {
		if !slices.Contains(before, l) {
			added = append(added, l)
		}
	}
	for _, l := range before {
		if !slices.Contains(after, l) {
			removed = append(removed, l)
		}
	}
	t.Errorf("mountinfo changed %s:\nadded:\n  %s\nremoved:\n  %s", when, strings.Join(added, "\n  "), strings.Join(removed, "\n  "))
}

// mountNSEnv holds the name of the test that runs in a child process with a
// mount namespace of its own (see inOwnMountNS).
const mountNSEnv = "COWTRACE_TEST_MOUNT_NS"

// inOwnMountNS runs the calling test again in a child process that has a
// mount namespace of its own, with private propagation, and reports whether
// this is that child: the test's body runs there, and its mounts are seen by
// no other process on the machine (other tests running at the same time
// check that tracefs is mounted nowhere). In the parent it waits for the
// child and passes on its verdict.
func inOwnMountNS(t *testing.T) bool {
	t.Helper()
	if os.Getenv(mountNSEnv) == t.Name() {
		return true
	}
	var run []string
	for _, part := range strings.Split(t.Name(), "/") {
		run = append(run, "^"+regexp.QuoteMeta(part)+"$")
	}
	cmd := exec.Command(os.Args[0], "-test.run="+strings.Join(run, "/"), "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), mountNSEnv+"="+t.Name())
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	out, err := cmd.CombinedOutput()
	switch {
	case err != nil:
		t.Fatalf("in a mount namespace of its own: %v\n%s", err, out)
	case bytes.Contains(out, []byte("--- SKIP")):
		t.Skipf("in a mount namespace of its own:\n%s", out)
	case !bytes.Contains(out, []byte("--- PASS: "+t.Name())):
		t.Fatalf("in a mount namespace of its own, the test did not run:\n%s", out)
	}
	return false
}

// With tracefs mounted nowhere, concurrent OpenTracefs calls each get a
// private mount that nobody else sees: mountinfo does not change while they
// are open nor after, and each handle reads event ids and formats. Both
// routes: fsmount (5.2+), and before it a temporary mount point detached at
// once, which mountinfo shows for an instant: in a mount namespace of its
// own, where that instant cannot mislead another test.
func TestOpenTracefsPrivate(t *testing.T) {
	tfsRequireRoot(t)
	tfsRequireUnmounted(t)
	for _, route := range []string{"fsmount", "detached"} {
		t.Run(route, func(t *testing.T) {
			if route == "detached" {
				if !inOwnMountNS(t) {
					return
				}
				fsmount = func() (int, error) { return -1, unix.ENOSYS }
				defer func() { fsmount = fsmountTracefs }()
			}
			before := mountinfoLines(t)
			const n = 8
			handles := make([]*Tracefs, n)
			errs := make([]error, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() { handles[i], errs[i] = OpenTracefs() })
			}
			wg.Wait()
			for i := range n {
				if errs[i] != nil {
					t.Fatalf("OpenTracefs #%d: %v", i, errs[i])
				}
				defer handles[i].Close()
			}
			checkMountinfoUnchanged(t, before, "with the handles open")
			var ids []uint64
			for i, tfs := range handles {
				if !tfs.Mounted() || !strings.HasPrefix(tfs.Dir, "/proc/self/fd/") {
					t.Errorf("handle #%d: Mounted() = %v, Dir = %q; want a private mount", i, tfs.Mounted(), tfs.Dir)
				}
				ids = append(ids, tfsCheckPageFaultID(t, tfs))
			}
			if slices.Min(ids) != slices.Max(ids) {
				t.Errorf("the private mounts disagree on the id of exceptions:page_fault_user: %v", ids)
			}
			// Dir works as a path in this process, for whoever builds one.
			if _, err := os.Stat(filepath.Join(handles[0].Dir, "events", "kmem", "mm_page_alloc", "format")); err != nil {
				t.Errorf("a path under Dir: %v", err)
			}
			if got := handles[0].String(); got != "tracefs (cowtrace's private mount)" {
				t.Errorf("String = %q", got)
			}

			for i, tfs := range handles {
				if err := tfs.Close(); err != nil {
					t.Errorf("Close #%d: %v", i, err)
				}
				if err := tfs.Close(); err != nil {
					t.Errorf("second Close #%d: %v", i, err)
				}
				if _, err := tfs.EventID("exceptions", "page_fault_user"); !errors.Is(err, ErrClosed) {
					t.Errorf("EventID after Close: %v, want ErrClosed", err)
				}
			}
			checkMountinfoUnchanged(t, before, "after Close")
			if left, _ := filepath.Glob(filepath.Join(os.TempDir(), "cowtrace-tracefs-*")); len(left) > 0 {
				t.Errorf("temporary mount points left: %v", left)
			}
		})
	}
}

// A tracefs that someone else mounted is used, and stays theirs: Close leaves
// it mounted, and when they unmount it while cowtrace still reads, cowtrace
// goes on reading through its descriptor and their unmount succeeds.
func TestOpenTracefsUsesForeignMount(t *testing.T) {
	tfsRequireRoot(t)
	tfsRequireUnmounted(t)
	// The foreign mount must not be anyone else's business: not at
	// /sys/kernel/tracing, and in a mount namespace of its own.
	if !inOwnMountNS(t) {
		return
	}
	dir := t.TempDir()
	if err := unix.Mount("tracefs", dir, "tracefs", 0, ""); err != nil {
		t.Fatalf("mount tracefs as another tool would: %v", err)
	}
	mounted := true
	defer func() {
		if mounted {
			unix.Unmount(dir, unix.MNT_DETACH)
		}
	}()

	tfs, err := OpenTracefs()
	if err != nil {
		t.Fatal(err)
	}
	defer tfs.Close()
	if tfs.Mounted() || tfs.Dir != dir {
		t.Fatalf("Mounted() = %v, Dir = %q; want the foreign mount at %s", tfs.Mounted(), tfs.Dir, dir)
	}
	tfsCheckPageFaultID(t, tfs)

	// The owner unmounts it under us; a plain umount says EBUSY while we
	// hold its root, as it does for any open file.
	if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
		t.Fatalf("the owner's unmount: %v", err)
	}
	mounted = false
	tfsCheckPageFaultID(t, tfs)
	if err := tfs.Close(); err != nil {
		t.Fatal(err)
	}
}

func tfsCheckPageFaultID(t *testing.T, tfs *Tracefs) uint64 {
	t.Helper()
	id, err := tfs.EventID("exceptions", "page_fault_user")
	if err != nil {
		t.Fatal(err)
	}
	format, err := tfs.EventFormat("exceptions", "page_fault_user")
	if err != nil {
		t.Fatal(err)
	}
	if id != format.ID || id == 0 {
		t.Errorf("EventID = %d, format file ID = %d; want equal and non-zero", id, format.ID)
	}
	if _, err := tfs.EventID("exceptions", "no_such_event"); !errors.Is(err, ErrNotFound) {
		t.Errorf("EventID of a missing event: %v, want ErrNotFound", err)
	}
	return id
}
