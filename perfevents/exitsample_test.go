package perfevents

import (
	"errors"
	"testing"

	"github.com/cowtrace/cowtrace/internal/testenv"
)

// TestExitSampled: the probe answers the same twice and leaves no
// descriptor and no child behind. Which answer is right is the kernel's:
// make vmtest checks it per kernel (6.12 no, 7.x yes).
func TestExitSampled(t *testing.T) {
	testenv.Require(t, testenv.Root, testenv.Tracepoint("sched", "sched_process_exit"))
	tfs, err := OpenTracefs()
	if err != nil {
		t.Fatal(err)
	}
	defer tfs.Close()
	id, err := tfs.EventID("sched", "sched_process_exit")
	if err != nil {
		t.Fatal(err)
	}
	before := testenv.OpenFDs(t)
	first, err := askExitSampled(id)
	if errors.Is(err, ErrNoSampleRead) {
		t.Skipf("%v (make vmtest covers 6.12 and 7.x)", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	second, err := askExitSampled(id)
	if err != nil {
		t.Fatal(err)
	}
	if first != second {
		t.Fatalf("ExitSampled gave %v, then %v", first, second)
	}
	if after := testenv.OpenFDs(t); after != before {
		t.Errorf("descriptors: %d before, %d after", before, after)
	}
	t.Logf("exit sampled: %v", first)
}
