package report

import (
	"slices"
	"strings"
)

// Count is a per-process count that compare shows and the regression gate
// bounds, named as in the JSON contract.
type Count struct {
	Key   string // JSON field: "copies", "probes.do_wp_page"
	Title string // column header: "copies", "do_wp_page"
	Get   func(p *Process) *uint64
}

// Counts are the gate's measures, in the JSON contract's order.
var Counts = []Count{
	{"page_faults", "page faults", func(p *Process) *uint64 { return p.PageFaults }},
	{"minor_faults", "minor faults", func(p *Process) *uint64 { return p.MinorFaults }},
	{"major_faults", "major faults", func(p *Process) *uint64 { return p.MajorFaults }},
	{"wp_faults", "wp faults", func(p *Process) *uint64 { return p.WPFaults }},
	{"copies", "copies", func(p *Process) *uint64 { return p.Copies }},
	{"inferred_copies", "inferred copies", func(p *Process) *uint64 { return p.InferredCopies }},
	{"lost_records", "lost records", func(p *Process) *uint64 { return &p.LostRecords }},
}

// CountByKey finds a measure by its JSON name; "probes.FUNC" is any probed
// kernel function.
func CountByKey(key string) (Count, bool) {
	if fn, ok := strings.CutPrefix(key, "probes."); ok && validProbeName(fn) {
		return ProbeCount(fn), true
	}
	i := slices.IndexFunc(Counts, func(c Count) bool { return c.Key == key })
	if i < 0 {
		return Count{}, false
	}
	return Counts[i], true
}

// ProbeCount is the hits of kernel function fn, a count of every row that
// probed it.
func ProbeCount(fn string) Count {
	return Count{"probes." + fn, fn, func(p *Process) *uint64 {
		// follow and the experiment list every probed function,
		// with 0 for none: an absent name was not probed.
		if v, ok := p.Probes[fn]; ok {
			return &v
		}
		return nil
	}}
}

func validProbeName(fn string) bool {
	if fn == "" {
		return false
	}
	for _, c := range fn {
		if !(c == '_' || c == '.' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// TreeTotal sums a run's process rows into one: the totals row. Thread rows
// are left out, since each process row already counts all its threads. A
// measure no row has stays nil, not 0.
func TreeTotal(r *Run) *Process {
	t := &Process{Role: "total"}
	add := func(dst **uint64, v *uint64) {
		if v == nil {
			return
		}
		if *dst == nil {
			*dst = U64(0)
		}
		**dst += *v
	}
	for i := range r.Processes {
		p := &r.Processes[i]
		if p.Lineage != nil && p.Tid != 0 {
			continue
		}
		add(&t.PageFaults, p.PageFaults)
		add(&t.MinorFaults, p.MinorFaults)
		add(&t.MajorFaults, p.MajorFaults)
		add(&t.WPFaults, p.WPFaults)
		add(&t.Copies, p.Copies)
		add(&t.InferredCopies, p.InferredCopies)
		t.LostRecords += p.LostRecords
		for fn, v := range p.Probes {
			if t.Probes == nil {
				t.Probes = map[string]uint64{}
			}
			t.Probes[fn] += v
		}
	}
	// Records lost before their task was known belong to no row.
	t.LostRecords = max(t.LostRecords, r.LostRecords)
	return t
}
