package perfevents

import (
	"errors"
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cowtrace/cowtrace/internal/testenv"
)

// TestExitCountsReported: the probe gives the same answer twice, and leaves
// neither a descriptor nor a child behind. Which answer is right depends on
// the kernel (6.12 none, 6.18 a READ); count mode's tests check that the
// counts it leads to are each task's own.
func TestExitCountsReported(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: opens perf events (perf_event_paranoid)")
	}
	before := testenv.OpenFDs(t)
	first, err := ExitCountsReported()
	if errors.Is(err, ErrNotSupported) {
		t.Skipf("needs inherited events with PERF_SAMPLE_READ (Linux 6.12; covered in make vmtest's 6.12 guest and on 6.18): %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	second, err := ExitCountsReported()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kernel %s reports counts at exit: %v", KernelRelease(), first)
	if first != second {
		t.Errorf("answers %v, then %v", first, second)
	}
	if after := testenv.OpenFDs(t); after != before {
		t.Errorf("%d descriptors before, %d after", before, after)
	}
	if _, err := unix.Wait4(-1, nil, unix.WNOHANG, nil); err != unix.ECHILD {
		t.Errorf("a child is left to reap (wait4: %v)", err)
	}
}
