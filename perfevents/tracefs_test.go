package perfevents

import (
	"errors"
	"os"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

const fixtureTracefs = "testdata/tracefs"

func TestTracefsFromMountinfo(t *testing.T) {
	for _, tc := range []struct {
		name, mountinfo, want string
		ok                    bool
	}{
		{
			name: "canonical",
			mountinfo: "22 26 0:21 / /sys rw,relatime - sysfs sysfs rw\n" +
				"41 22 0:12 / /sys/kernel/tracing rw,nosuid,nodev,noexec,relatime shared:20 - tracefs nodev rw\n",
			want: "/sys/kernel/tracing", ok: true,
		},
		{
			name:      "escaped mount point",
			mountinfo: `50 26 0:12 / /mnt/my\040trace rw,relatime - tracefs tracefs rw` + "\n",
			want:      "/mnt/my trace", ok: true,
		},
		{
			name: "bind mount of a subdirectory is skipped",
			mountinfo: "50 26 0:12 /instances/foo /mnt/foo rw - tracefs nodev rw\n" +
				"51 26 0:12 / /srv/tracing rw - tracefs nodev rw\n",
			want: "/srv/tracing", ok: true,
		},
		{
			name:      "no tracefs",
			mountinfo: "21 26 0:20 / /proc rw,relatime - proc proc rw\n22 26 0:21 / /sys rw,relatime - sysfs sysfs rw\n",
		},
		{name: "garbage", mountinfo: "tracefs\n - tracefs\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := tracefsFromMountinfo(strings.NewReader(tc.mountinfo))
			if got != tc.want || ok != tc.ok {
				t.Errorf("tracefsFromMountinfo = %q, %v; want %q, %v", got, ok, tc.want, tc.ok)
			}
		})
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

// tfsRequireRoot skips tests that mount and unmount file systems.
func tfsRequireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("needs root to mount tracefs (euid %d)", os.Geteuid())
	}
}

// tfsMounts counts tracefs mounts at dir.
func tfsMounts(t *testing.T, dir string) int {
	t.Helper()
	b, err := os.ReadFile(mountinfoPath)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		f := strings.Fields(pre)
		if strings.HasPrefix(post, "tracefs ") && len(f) > 4 && unescapeMountinfo(f[4]) == dir {
			n++
		}
	}
	return n
}

// tfsWasMounted reports whether tracefs is mounted anywhere, and arranges
// for a tracefs left at /sys/kernel/tracing by a failed test to be removed
// when it was not there before.
func tfsWasMounted(t *testing.T) bool {
	t.Helper()
	f, err := os.Open(mountinfoPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	_, mounted := tracefsFromMountinfo(f)
	if !mounted {
		t.Cleanup(func() {
			for tfsMounts(t, tracefsDir) > 0 {
				t.Errorf("test left tracefs mounted at %s; unmounting", tracefsDir)
				if err := unix.Unmount(tracefsDir, unix.MNT_DETACH); err != nil {
					t.Errorf("unmount: %v", err)
					return
				}
			}
		})
	}
	return mounted
}

func TestOpenTracefsRealKernel(t *testing.T) {
	tfsRequireRoot(t)
	if tfsWasMounted(t) {
		tfs, err := OpenTracefs()
		if err != nil {
			t.Fatal(err)
		}
		if tfs.Mounted() {
			t.Error("tracefs was mounted before, yet Mounted() says cowtrace mounted it")
		}
		tfsCheckPageFaultID(t, tfs)
		if err := tfs.Close(); err != nil {
			t.Fatal(err)
		}
		if n := tfsMounts(t, tfs.Dir); n == 0 {
			t.Errorf("Close unmounted a tracefs cowtrace did not mount")
		}
		return
	}

	// Concurrent opens share one mount; the last Close removes it.
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
		if !handles[i].Mounted() || handles[i].Dir != tracefsDir {
			t.Errorf("handle #%d: Mounted() = %v, Dir = %q; want true, %q", i, handles[i].Mounted(), handles[i].Dir, tracefsDir)
		}
	}
	if got := tfsMounts(t, tracefsDir); got != 1 {
		t.Errorf("%d concurrent OpenTracefs made %d tracefs mounts at %s, want 1", n, got, tracefsDir)
	}
	tfsCheckPageFaultID(t, handles[0])

	for i := range n - 1 {
		if err := handles[i].Close(); err != nil {
			t.Fatalf("Close #%d: %v", i, err)
		}
		if err := handles[i].Close(); err != nil {
			t.Fatalf("second Close #%d: %v", i, err)
		}
	}
	if got := tfsMounts(t, tracefsDir); got != 1 {
		t.Fatalf("with one handle still open, %d tracefs mounts at %s; want 1", got, tracefsDir)
	}
	if _, err := handles[n-1].EventID("exceptions", "page_fault_user"); err != nil {
		t.Errorf("the remaining handle no longer works: %v", err)
	}
	if err := handles[n-1].Close(); err != nil {
		t.Fatal(err)
	}
	if got := tfsMounts(t, tracefsDir); got != 0 {
		t.Errorf("after the last Close, %d tracefs mounts at %s; want 0", got, tracefsDir)
	}

	// Once unmounted, opening again mounts again.
	again, err := OpenTracefs()
	if err != nil {
		t.Fatal(err)
	}
	if !again.Mounted() {
		t.Error("reopening after the last Close did not mount")
	}
	if err := again.Close(); err != nil {
		t.Fatal(err)
	}
}

// A tracefs that someone else mounted is used as it is and left mounted.
func TestOpenTracefsLeavesForeignMount(t *testing.T) {
	tfsRequireRoot(t)
	if tfsWasMounted(t) {
		t.Skip("tracefs is already mounted; TestOpenTracefsRealKernel covers this case")
	}
	if err := unix.Mount("nodev", tracefsDir, "tracefs", 0, ""); err != nil {
		t.Fatalf("mount tracefs as another tool would: %v", err)
	}
	tfs, err := OpenTracefs()
	if err != nil {
		t.Fatal(err)
	}
	if tfs.Mounted() {
		t.Error("Mounted() is true for a tracefs cowtrace did not mount")
	}
	tfsCheckPageFaultID(t, tfs)
	if err := tfs.Close(); err != nil {
		t.Fatal(err)
	}
	if got := tfsMounts(t, tracefsDir); got != 1 {
		t.Errorf("after Close, %d tracefs mounts at %s; want the foreign one left", got, tracefsDir)
	}
	if err := unix.Unmount(tracefsDir, 0); err != nil {
		t.Fatal(err)
	}
}

func tfsCheckPageFaultID(t *testing.T, tfs *Tracefs) {
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
}
