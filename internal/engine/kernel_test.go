package engine

import (
	"context"
	"os"
	"testing"

	"github.com/cowtrace/cowtrace/internal/testenv"
	"github.com/cowtrace/cowtrace/internal/workload"
	"github.com/cowtrace/cowtrace/perfevents"
)

func TestMain(m *testing.M) {
	// The calibration's worker is this binary.
	workload.RunIfWorker()
	os.Exit(m.Run())
}

// TestNewRefusedMethod: asking for a kprobe route the kernel lacks is an
// error that leaves nothing open.
func TestNewRefusedMethod(t *testing.T) {
	testenv.Require(t, testenv.Root)
	if testenv.KprobePMU() == "" {
		t.Skip("this kernel has the kprobe PMU; the refusal is what is tested here")
	}
	before := testenv.OpenFDs(t)
	if s, err := New(context.Background(), Config{KprobeMethod: perfevents.KprobePMU}); err == nil {
		s.Close()
		t.Fatal("New with --kprobe-method pmu and no kprobe PMU: no error")
	}
	if after := testenv.OpenFDs(t); after != before {
		t.Errorf("%d descriptors open before, %d after", before, after)
	}
}
