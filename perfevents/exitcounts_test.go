package perfevents

import (
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cowtrace/cowtrace/internal/testenv"
)

// TestExitCountsReported: the probe gives the same answer twice, and leaves
// neither a descriptor nor a child behind. Which answer is right depends on
// the kernel (6.12 none, 6.18 a READ); count mode's tests check that the
// counts it leads to are each task's own.
func TestExitCountsReported(t *testing.T) {
	testenv.Require(t, testenv.Root)
	before := testenv.OpenFDs(t)
	first, err := ExitCountsReported()
	testenv.SkipIfNotSupported(t, err, "6.12") // inherited events with PERF_SAMPLE_READ
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
