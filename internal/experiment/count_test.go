package experiment

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/cowtrace/cowtrace/internal/engine"
	"github.com/cowtrace/cowtrace/internal/workload"
	"github.com/cowtrace/cowtrace/perfevents"
)

// TestCountMode checks that the in-kernel filtered counters give the numbers
// that classifying every sample gives, on the same experiment, without a
// ring: the writer's write-protect faults and copies, none for the reader.
func TestCountMode(t *testing.T) {
	requireTracing(t)
	cfg := workload.Seed()
	cfg.Blocks, cfg.BlockSize, cfg.Offset = 4096, 4096, 0
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r, err := Run(ctx, Options{Workload: cfg, KprobeMethod: perfevents.KprobeNone, Mode: engine.ModeCount})
	if err != nil {
		t.Fatal(err)
	}
	if r.Methods["wp_faults"] == "" {
		t.Skipf("no exceptions:page_fault_user tracepoint: %v", r.Unavailable)
	}
	if !strings.HasPrefix(r.Methods["wp_faults"], "counter:") {
		t.Fatalf("wp_faults measured by %q, want in-kernel counters (notes: %v)", r.Methods["wp_faults"], r.Notes)
	}
	writer, reader := row(t, r, "writer"), row(t, r, "reader")
	const blocks = 4096
	if writer.InRegion.WP != blocks || *writer.WPFaults != blocks {
		t.Errorf("writer: %d wp faults in the region, %d in all, want %d", writer.InRegion.WP, *writer.WPFaults, blocks)
	}
	if got := writer.InRegion.WriteNotPresent + writer.InRegion.Read + writer.InRegion.Exec; got != 0 {
		t.Errorf("writer: %d other faults in the region, want 0", got)
	}
	if got := copies(t, writer); got != blocks {
		t.Errorf("writer: %d copies (%s), want %d", got, r.Methods["copies"], blocks)
	}
	if reader.InRegion.Total() != 0 || *reader.WPFaults != 0 || copies(t, reader) != 0 {
		t.Errorf("reader: %+v, %d wp faults, %d copies; want none", *reader.InRegion, *reader.WPFaults, *reader.Copies)
	}
	if writer.Outside != nil {
		t.Errorf("writer: outside classes %+v in count mode, which does not measure them", *writer.Outside)
	}
	if r.LostRecords != 0 || r.Throttled != 0 {
		t.Errorf("count mode has no ring, yet %d lost and %d throttled", r.LostRecords, r.Throttled)
	}
}
