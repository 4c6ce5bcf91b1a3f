package watch

import (
	"reflect"
	"testing"
	"time"

	"github.com/cowtrace/cowtrace/internal/engine"
	"github.com/cowtrace/cowtrace/report"
)

func byCause(wp, fw uint64) engine.Counts {
	return engine.Counts{PageFaults: wp + fw + 10, WPFaults: wp + 2, Copies: wp + fw, WPCopies: wp, FirstWriteCopies: fw, ByCause: true}
}

// TestRecords: an episode's record has both sides' figures, their sum in
// copies and bytes, wall-clock times, and where a figure is not known, null
// with the reason: the session's (no method), or the episode's (a child
// still running).
func TestRecords(t *testing.T) {
	r := Records{Measures: engine.Measures{Sampled: true, ByCause: true}, PageSize: 4096, WallOffsetNs: 1_000_000_000_000}
	ep := Episode{ID: 3, Parent: Proc{100, "redis-server"}, Child: Proc{200, "redis-server"}, StartNs: 5_000_000, EndNs: 7_500_000, Tasks: 1,
		ParentCounts: byCause(4000, 0), ChildCounts: byCause(30, 2), SharedWith: []int{4}}
	got := r.Episode(ep)
	want := report.Episode{Kind: "episode", ID: 3, ParentPid: 100, ParentComm: "redis-server", ChildPid: 200, Comm: "redis-server",
		Start: time.Unix(1000, 5_000_000), DurationMs: 2.5, Tasks: 1,
		ParentPageFaults: 4010, ChildPageFaults: report.U64(42),
		ParentCopies: report.U64(4000), ParentWPFaults: report.U64(4002), ParentCopiesByCause: &report.CopyCauses{WriteProtect: 4000},
		ChildCopies: report.U64(32), ChildWPFaults: report.U64(32), ChildCopiesByCause: &report.CopyCauses{WriteProtect: 30, PrivateFileFirstWrite: 2},
		Copies: report.U64(4032), Bytes: report.U64(4032 * 4096), SharedWith: []int{4}, Complete: true}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("record:\n got %+v\nwant %+v", got, want)
	}

	// The child still running: its side and the total are not known.
	ep.Why = "still running when the trace ended"
	got = r.Episode(ep)
	if got.Complete || got.ChildCopies != nil || got.ChildWPFaults != nil || got.ChildPageFaults != nil || got.Copies != nil || got.Bytes != nil ||
		got.ParentCopies == nil || got.Unmeasured["child_copies"] != ep.Why || got.Unmeasured["bytes"] != ep.Why || got.Unmeasured["parent_copies"] != "" {
		t.Errorf("running child: %+v", got)
	}

	// No copy method: every copy figure null for the session's reason,
	// write-protect faults still there.
	r.Measures = engine.Measures{Sampled: true, NoCopies: "no copy routine"}
	ep.Why = ""
	got = r.Episode(ep)
	if got.ParentCopies != nil || got.ChildCopies != nil || got.ParentCopiesByCause != nil || got.Copies != nil ||
		got.ParentWPFaults == nil || got.Unmeasured["parent_copies"] != "no copy routine" || got.Unmeasured["bytes"] != "no copy routine" || !got.Complete {
		t.Errorf("no copies: %+v", got)
	}

	// Causes the method cannot tell (a kprobe route whose do_cow_fault
	// hits exceed the copy routine's): copies, no split.
	r.Measures = engine.Measures{Sampled: true, ByCause: true}
	ep.ChildCounts = engine.Counts{WPFaults: 3, Copies: 2, FirstWriteCopies: 5}
	got = r.Episode(ep)
	if got.ChildCopies == nil || *got.ChildCopies != 2 || got.ChildCopiesByCause != nil || got.Unmeasured["child_copies_by_cause"] == "" {
		t.Errorf("causes not adding up: %+v", got)
	}

	s := r.Shared(Shared{Parent: Proc{100, "redis-server"}, Episodes: []int{3, 4}, StartNs: 6_000_000, EndNs: 6_100_000, Counts: byCause(7, 1)})
	if s.Kind != "shared" || *s.Copies != 8 || *s.Bytes != 8*4096 || *s.CopiesByCause != (report.CopyCauses{WriteProtect: 7, PrivateFileFirstWrite: 1}) ||
		s.DurationMs != 0.1 || !reflect.DeepEqual(s.Episodes, []int{3, 4}) {
		t.Errorf("shared record %+v", s)
	}
}

// TestTotals: the totals add the copies and causes of every complete
// record while all have them.
func TestTotals(t *testing.T) {
	tot := NewTotals()
	tot.AddEpisode(&report.Episode{Complete: true, Copies: report.U64(10),
		ParentCopiesByCause: &report.CopyCauses{WriteProtect: 4}, ChildCopiesByCause: &report.CopyCauses{WriteProtect: 5, PrivateFileFirstWrite: 1}})
	tot.AddShared(&report.SharedBucket{Copies: report.U64(3), CopiesByCause: &report.CopyCauses{WriteProtect: 3}})
	if tot.Episodes != 1 || tot.SharedBuckets != 1 || tot.Copies != 13 || !tot.CopiesKnown || !tot.ByCauseKnown ||
		tot.ByCause != (report.CopyCauses{WriteProtect: 12, PrivateFileFirstWrite: 1}) {
		t.Errorf("totals %+v", *tot)
	}
	// An incomplete episode is counted, not summed.
	tot.AddEpisode(&report.Episode{Complete: false, ParentCopies: report.U64(5)})
	if tot.Episodes != 2 || tot.IncompleteEpisodes != 1 || tot.Copies != 13 || !tot.CopiesKnown || !tot.ByCauseKnown {
		t.Errorf("after an incomplete episode: %+v", *tot)
	}
	// A complete record without copies (a session that does not measure
	// them): no total.
	tot.AddShared(&report.SharedBucket{})
	if tot.CopiesKnown || tot.ByCauseKnown {
		t.Errorf("after a record without copies: %+v", *tot)
	}
}
