package watch

import (
	"time"

	"github.com/cowtrace/cowtrace/internal/engine"
	"github.com/cowtrace/cowtrace/report"
)

// Records turns episodes and shared buckets into watch's records
// (report.Episode, report.SharedBucket): figures the session does not
// measure are null with the reason, copies are split by cause where the
// method tells, and times are the wall clock's.
type Records struct {
	Measures engine.Measures
	PageSize uint64
	// WallOffsetNs is the wall clock's time less CLOCK_MONOTONIC's, in
	// nanoseconds, as read at the trace's start.
	WallOffsetNs int64
}

// wall is the wall-clock time of a CLOCK_MONOTONIC instant.
func (r Records) wall(ns uint64) time.Time {
	return time.Unix(0, int64(ns)+r.WallOffsetNs)
}

// side is one side's figures of an episode (the parent's, the child's) or
// a bucket's, each nil where not measured.
type side struct {
	copies, wp *uint64
	byCause    *report.CopyCauses
}

// figures are c's figures as measured in this session.
func (r Records) figures(c engine.Counts) side {
	var s side
	if r.Measures.NoCopies == "" {
		s.copies = report.U64(c.Copies)
		// The split is known where the session tells causes and the
		// parts add up: a kprobe route whose do_cow_fault hits exceed the
		// copy routine's does not.
		if r.Measures.ByCause && c.FirstWriteCopies <= c.Copies && c.WPCopies+c.FirstWriteCopies == c.Copies {
			s.byCause = &report.CopyCauses{WriteProtect: c.WPCopies, PrivateFileFirstWrite: c.FirstWriteCopies}
		}
	}
	if r.Measures.NoWPFaults == "" {
		s.wp = report.U64(c.WPFaults)
	}
	return s
}

// unmeasured marks fields null for why, in m (made when nil).
func unmeasured(m map[string]string, why string, fields ...string) map[string]string {
	if why == "" {
		return m
	}
	if m == nil {
		m = map[string]string{}
	}
	for _, f := range fields {
		m[f] = why
	}
	return m
}

const causeUnknown = "copies are not split by cause here: the method cannot tell a write-protect fault's copy from a private file page's first write's"

// Episode is ep's record.
func (r Records) Episode(ep Episode) report.Episode {
	rec := report.Episode{Kind: report.KindEpisode, ID: ep.ID, ParentPid: ep.Parent.Pid, ParentComm: ep.Parent.Comm,
		ChildPid: ep.Child.Pid, Comm: ep.Child.Comm, Start: r.wall(ep.StartNs), DurationMs: ms(ep.EndNs - min(ep.EndNs, ep.StartNs)),
		Tasks: ep.Tasks, SharedWith: append([]int{}, ep.SharedWith...), Complete: ep.Why == ""}
	parent, child := r.figures(ep.ParentCounts), r.figures(ep.ChildCounts)
	rec.ParentPageFaults, rec.ChildPageFaults = ep.ParentCounts.PageFaults, report.U64(ep.ChildCounts.PageFaults)
	if ep.Why != "" {
		rec.ChildPageFaults = nil
		// The child's tree's counts are not whole: neither are the
		// episode's.
		child = side{}
		rec.Unmeasured = unmeasured(rec.Unmeasured, ep.Why, "child_page_faults", "child_copies", "child_wp_faults", "child_copies_by_cause", "copies", "bytes")
	}
	rec.ParentCopies, rec.ParentWPFaults, rec.ParentCopiesByCause = parent.copies, parent.wp, parent.byCause
	rec.ChildCopies, rec.ChildWPFaults, rec.ChildCopiesByCause = child.copies, child.wp, child.byCause
	if parent.copies != nil && child.copies != nil {
		rec.Copies = report.U64(*parent.copies + *child.copies)
		rec.Bytes = report.U64(*rec.Copies * r.PageSize)
	}
	m := r.Measures
	rec.Unmeasured = unmeasured(rec.Unmeasured, m.NoCopies, "parent_copies", "child_copies", "parent_copies_by_cause", "child_copies_by_cause", "copies", "bytes")
	rec.Unmeasured = unmeasured(rec.Unmeasured, m.NoWPFaults, "parent_wp_faults", "child_wp_faults")
	if m.NoCopies == "" {
		if parent.byCause == nil {
			rec.Unmeasured = unmeasured(rec.Unmeasured, causeUnknown, "parent_copies_by_cause")
		}
		if child.byCause == nil && ep.Why == "" {
			rec.Unmeasured = unmeasured(rec.Unmeasured, causeUnknown, "child_copies_by_cause")
		}
	}
	return rec
}

// Shared is s's record.
func (r Records) Shared(s Shared) report.SharedBucket {
	f := r.figures(s.Counts)
	rec := report.SharedBucket{Kind: report.KindShared, ParentPid: s.Parent.Pid, ParentComm: s.Parent.Comm,
		Episodes: append([]int{}, s.Episodes...), Start: r.wall(s.StartNs), DurationMs: ms(s.EndNs - min(s.EndNs, s.StartNs)),
		Copies: f.copies, WPFaults: f.wp, CopiesByCause: f.byCause}
	if f.copies != nil {
		rec.Bytes = report.U64(*f.copies * r.PageSize)
	}
	rec.Unmeasured = unmeasured(rec.Unmeasured, r.Measures.NoCopies, "copies", "copies_by_cause", "bytes")
	rec.Unmeasured = unmeasured(rec.Unmeasured, r.Measures.NoWPFaults, "wp_faults")
	if f.copies != nil && f.byCause == nil {
		rec.Unmeasured = unmeasured(rec.Unmeasured, causeUnknown, "copies_by_cause")
	}
	return rec
}

func ms(ns uint64) float64 { return float64(ns) / 1e6 }

// Totals add up the records reported: what watch's last line and its
// summary say. Copies and their split by cause are those of the complete
// episodes and the shared buckets, summed while every one of them has
// them (CopiesKnown, ByCauseKnown); an incomplete episode is counted
// apart.
type Totals struct {
	Episodes, SharedBuckets, IncompleteEpisodes int
	Copies                                      uint64
	ByCause                                     report.CopyCauses
	CopiesKnown, ByCauseKnown                   bool
}

// NewTotals are the totals of no record.
func NewTotals() *Totals { return &Totals{CopiesKnown: true, ByCauseKnown: true} }

// AddEpisode counts e.
func (t *Totals) AddEpisode(e *report.Episode) {
	t.Episodes++
	if !e.Complete {
		t.IncompleteEpisodes++
		return
	}
	t.add(e.Copies, e.ParentCopiesByCause, e.ChildCopiesByCause)
}

// AddShared counts s.
func (t *Totals) AddShared(s *report.SharedBucket) {
	t.SharedBuckets++
	t.add(s.Copies, s.CopiesByCause)
}

func (t *Totals) add(copies *uint64, causes ...*report.CopyCauses) {
	if copies == nil {
		t.CopiesKnown, t.ByCauseKnown = false, false
		return
	}
	t.Copies += *copies
	for _, c := range causes {
		if c == nil {
			t.ByCauseKnown = false
			continue
		}
		t.ByCause.WriteProtect += c.WriteProtect
		t.ByCause.PrivateFileFirstWrite += c.PrivateFileFirstWrite
	}
}
