package report

import (
	"slices"
	"strings"
)

// count is a per-process count that compare shows and the regression gate
// bounds, named as in the JSON contract.
type count struct {
	key   string // JSON field: "copies", "probes.do_wp_page"
	title string // column header: "copies", "do_wp_page"
	get   func(p *Process) *uint64
}

// counts are the gate's measures, in the JSON contract's order.
var counts = []count{
	{"page_faults", "page faults", func(p *Process) *uint64 { return p.PageFaults }},
	{"minor_faults", "minor faults", func(p *Process) *uint64 { return p.MinorFaults }},
	{"major_faults", "major faults", func(p *Process) *uint64 { return p.MajorFaults }},
	{"wp_faults", "wp faults", func(p *Process) *uint64 { return p.WPFaults }},
	{"copies", "copies", func(p *Process) *uint64 { return p.Copies }},
	{"inferred_copies", "inferred copies", func(p *Process) *uint64 { return p.InferredCopies }},
	{"lost_records", "lost records", func(p *Process) *uint64 { return &p.LostRecords }},
}

// countByKey finds a measure by its JSON name; "probes.FUNC" is any probed
// kernel function.
func countByKey(key string) (count, bool) {
	if fn, ok := strings.CutPrefix(key, "probes."); ok && validProbeName(fn) {
		return probeCount(fn), true
	}
	i := slices.IndexFunc(counts, func(c count) bool { return c.key == key })
	if i < 0 {
		return count{}, false
	}
	return counts[i], true
}

func probeCount(fn string) count {
	return count{"probes." + fn, fn, func(p *Process) *uint64 {
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

// treeTotal sums a run's process rows into one: the totals row. Thread rows
// are left out, since each process row already counts all its threads. A
// measure no row has stays nil, not 0.
func treeTotal(r *Run) *Process {
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
