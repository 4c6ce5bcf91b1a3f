// Package gate is compare's regression gate: --max-increase bounds, each
// held against the growth of a measure from a baseline run to the current
// one, on the tree's total and on each process matched in both.
package gate

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/cowtrace/cowtrace/report"
)

// Scope is where a bound of the regression gate applies.
type Scope string

const (
	// Both: the tree's total and every process found in both runs.
	Both Scope = "total and each process"
	// TotalOnly: the sum over the run's processes.
	TotalOnly Scope = "total"
	// EachOnly: every process found in both runs, not the total.
	EachOnly Scope = "each process"
)

// Bound is one term of --max-increase: how much a measure may grow from the
// baseline to the current run, as a count or a percentage of the baseline.
type Bound struct {
	Text    string  `json:"bound"`   // as typed: "copies=10%"
	Measure string  `json:"measure"` // JSON field: "copies", "probes.do_wp_page"
	Scope   Scope   `json:"scope"`
	Percent bool    `json:"percent"`
	Limit   float64 `json:"limit"` // a count, or a percentage when Percent
}

// ParseBounds parses the values of --max-increase, each comma-separated
// terms [total.|each.]MEASURE=N or [total.|each.]MEASURE=P%. MEASURE is a
// per-process count of the JSON report (page_faults, minor_faults,
// major_faults, wp_faults, copies, inferred_copies, lost_records,
// probes.FUNC); N is how much it may grow, P how much in percent of the
// baseline. Without a prefix a bound applies to the tree's total and to each
// process found in both runs; total. and each. keep one of them, since a
// percentage that suits a tree's total is noise on a process of a few
// faults. A measure may be bounded once per place.
func ParseBounds(values []string) ([]Bound, error) {
	var out []Bound
	for _, v := range values {
		for _, term := range strings.Split(v, ",") {
			b, err := parseBound(strings.TrimSpace(term))
			if err != nil {
				return nil, err
			}
			out = append(out, b)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("--max-increase: no bounds")
	}
	return out, boundedOnce(out)
}

func parseBound(term string) (Bound, error) {
	name, limit, ok := strings.Cut(term, "=")
	if !ok || name == "" || limit == "" {
		return Bound{}, fmt.Errorf("--max-increase %q: want MEASURE=N or MEASURE=P%%, e.g. copies=10%% or wp_faults=50", term)
	}
	b := Bound{Text: term, Measure: name, Scope: Both}
	if m, ok := strings.CutPrefix(name, "total."); ok {
		b.Measure, b.Scope = m, TotalOnly
	} else if m, ok := strings.CutPrefix(name, "each."); ok {
		b.Measure, b.Scope = m, EachOnly
	}
	if _, ok := report.CountByKey(b.Measure); !ok {
		var keys []string
		for _, c := range report.Counts {
			keys = append(keys, c.Key)
		}
		return Bound{}, fmt.Errorf("--max-increase %q: no measure %q (want %s or probes.FUNC, optionally after total. or each.)", term, b.Measure, strings.Join(keys, ", "))
	}
	digits, percent := strings.CutSuffix(limit, "%")
	b.Percent = percent
	v, err := strconv.ParseFloat(digits, 64)
	switch {
	case err != nil || math.IsNaN(v) || math.IsInf(v, 0):
		return Bound{}, fmt.Errorf("--max-increase %q: %q is neither a count nor a percentage", term, limit)
	case v < 0:
		return Bound{}, fmt.Errorf("--max-increase %q: a negative bound would fail an unchanged run", term)
	case !b.Percent && v != math.Trunc(v):
		return Bound{}, fmt.Errorf("--max-increase %q: a count bound is a whole number", term)
	}
	b.Limit = v
	return b, nil
}

// boundedOnce refuses a measure bounded twice in one place: which of two
// limits would hold is not for cowtrace to guess.
func boundedOnce(bounds []Bound) error {
	type place struct {
		measure string
		total   bool
	}
	seen := map[place]string{}
	for _, b := range bounds {
		var places []place
		if b.Scope != EachOnly {
			places = append(places, place{b.Measure, true})
		}
		if b.Scope != TotalOnly {
			places = append(places, place{b.Measure, false})
		}
		for _, p := range places {
			if prev, ok := seen[p]; ok {
				return fmt.Errorf("--max-increase bounds %s twice: %q and %q", b.Measure, prev, b.Text)
			}
			seen[p] = b.Text
		}
	}
	return nil
}

// Check is one measure of one row held against its bound.
type Check struct {
	Process   string  `json:"process"` // as in compare's rows; "total"
	Measure   string  `json:"measure"`
	Baseline  uint64  `json:"baseline"`
	Current   uint64  `json:"current"`
	Increase  int64   `json:"increase"`
	Allowed   float64 `json:"allowed"` // the bound as a count for this row
	Bound     string  `json:"bound"`
	Regressed bool    `json:"regressed"`
}

// Verdict is the regression gate's result, and its JSON (compare
// --baseline --format json), in report's contract of SchemaVersion.
type Verdict struct {
	SchemaVersion int     `json:"schema_version"`
	Passed        bool    `json:"passed"`
	Baseline      Side    `json:"baseline"`
	Current       Side    `json:"current"`
	Bounds        []Bound `json:"bounds"`
	Checks        []Check `json:"checks"`
	// OnlyInBaseline and OnlyInCurrent are processes that one run has and
	// the other not: shown, counted in the totals, not bounded one by one.
	OnlyInBaseline []string `json:"only_in_baseline"`
	OnlyInCurrent  []string `json:"only_in_current"`
	Notes          []string `json:"notes"`

	// Rows are the rows of the verdict's table, the total last, and
	// Measures its columns: what the renderer needs besides the checks.
	Rows     []report.Matched `json:"-"`
	Measures []report.Count   `json:"-"`
	checks   map[checkKey]int // index in Checks
}

type checkKey struct {
	row     int
	measure string
}

// Side names one of the gate's two runs.
type Side struct {
	Label  string `json:"label"`
	Kernel string `json:"kernel"`
	// Command is the traced command, null for an experiment or attach.
	Command []string `json:"command"`
}

// MarshalJSON writes the verdict with every list a list, [] when empty,
// as report's contract does.
func (v Verdict) MarshalJSON() ([]byte, error) {
	type plain Verdict
	p := plain(v)
	p.SchemaVersion = report.SchemaVersion
	p.Bounds, p.Checks = orEmpty(p.Bounds), orEmpty(p.Checks)
	p.OnlyInBaseline, p.OnlyInCurrent, p.Notes = orEmpty(p.OnlyInBaseline), orEmpty(p.OnlyInCurrent), orEmpty(p.Notes)
	return json.Marshal(p)
}

func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// CheckAt is the check of measure key on row i of Rows, if it has one.
func (v *Verdict) CheckAt(i int, key string) (Check, bool) {
	j, ok := v.checks[checkKey{i, key}]
	if !ok {
		return Check{}, false
	}
	return v.Checks[j], true
}

// Regressions are the checks past their bound.
func (v *Verdict) Regressions() []Check {
	var out []Check
	for _, c := range v.Checks {
		if c.Regressed {
			out = append(out, c)
		}
	}
	return out
}

// Hold holds current against baseline: every bound on every row it applies
// to. Processes are matched as compare matches them. A bounded measure that
// either run did not take is an error, not a pass.
func Hold(baseline, current report.Compared, bounds []Bound) (*Verdict, error) {
	if len(baseline.Runs) != 1 || len(current.Runs) != 1 {
		return nil, errors.New("the gate compares two single runs, not a matrix")
	}
	base, cur := baseline.Runs[0], current.Runs[0]
	if (base.Trace == nil) != (cur.Trace == nil) {
		return nil, errors.New("cannot hold a traced run (cowtrace run, attach) against an experiment's, or the reverse")
	}
	runs := []*report.Run{base, cur}
	totals := []*report.Process{report.TreeTotal(base), report.TreeTotal(cur)}
	v := &Verdict{
		SchemaVersion: report.SchemaVersion,
		Passed:        true,
		Baseline:      side(baseline.Label, base), Current: side(current.Label, cur),
		Bounds: bounds, checks: map[checkKey]int{},
		Rows: append(report.MatchProcesses(runs), report.Matched{Name: "total", Procs: totals}),
	}
	seen := map[string]bool{}
	for _, b := range bounds {
		c, _ := report.CountByKey(b.Measure)
		for i, r := range []report.Compared{baseline, current} {
			if c.Get(totals[i]) == nil {
				return nil, fmt.Errorf("--max-increase %q: %s has no %s (not measured on that run)", b.Text, r.Label, b.Measure)
			}
		}
		if !seen[c.Key] {
			seen[c.Key] = true
			v.Measures = append(v.Measures, c)
		}
	}
	for _, m := range v.Rows {
		switch {
		case m.Procs[0] == nil:
			v.OnlyInCurrent = append(v.OnlyInCurrent, m.Name)
		case m.Procs[1] == nil:
			v.OnlyInBaseline = append(v.OnlyInBaseline, m.Name)
		}
	}
	// The checks in row order, so that the JSON reads like the table.
	for ri, m := range v.Rows {
		if m.Procs[0] == nil || m.Procs[1] == nil {
			continue
		}
		for _, b := range bounds {
			v.check(ri, b)
		}
	}
	v.Notes = gateNotes(v, runs)
	return v, nil
}

// check holds row ri to bound b, where the bound applies to the row (the
// total is the last row) and both runs measured it there.
func (v *Verdict) check(ri int, b Bound) {
	m := v.Rows[ri]
	total := ri == len(v.Rows)-1
	if (total && b.Scope == EachOnly) || (!total && b.Scope == TotalOnly) {
		return
	}
	c, _ := report.CountByKey(b.Measure)
	bv, cv := c.Get(m.Procs[0]), c.Get(m.Procs[1])
	if bv == nil || cv == nil {
		return
	}
	allowed := b.Limit
	if b.Percent {
		allowed = float64(*bv) * b.Limit / 100
	}
	inc := int64(*cv) - int64(*bv)
	ch := Check{Process: m.Name, Measure: b.Measure, Baseline: *bv, Current: *cv, Increase: inc,
		Allowed: allowed, Bound: b.Text, Regressed: float64(inc) > allowed}
	v.Passed = v.Passed && !ch.Regressed
	v.Checks = append(v.Checks, ch)
	v.checks[checkKey{ri, c.Key}] = len(v.Checks) - 1
}

func side(label string, r *report.Run) Side {
	g := Side{Label: label, Kernel: r.Kernel}
	if r.Trace != nil {
		g.Command = r.Trace.Command
	}
	return g
}

// gateNotes are what a reader of a verdict must know to trust it.
func gateNotes(v *Verdict, runs []*report.Run) []string {
	var notes []string
	for _, c := range v.Measures {
		if a, b := runs[0].Methods[c.Key], runs[1].Methods[c.Key]; a != b {
			notes = append(notes, fmt.Sprintf("%s measured differently: %s by %s, %s by %s", c.Key, v.Baseline.Label, cmp.Or(a, "-"), v.Current.Label, cmp.Or(b, "-")))
		}
	}
	for i, r := range runs {
		if r.LostRecords > 0 {
			label := []string{v.Baseline.Label, v.Current.Label}[i]
			notes = append(notes, fmt.Sprintf("%s lost %d records: its sampled counts are lower bounds", label, r.LostRecords))
		}
	}
	if len(v.OnlyInBaseline)+len(v.OnlyInCurrent) > 0 {
		notes = append(notes, fmt.Sprintf("processes in one run only (in the totals, not bounded one by one): baseline %s; current %s",
			cmp.Or(strings.Join(v.OnlyInBaseline, ", "), "-"), cmp.Or(strings.Join(v.OnlyInCurrent, ", "), "-")))
	}
	return notes
}
