package expect

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/cowtrace/cowtrace/report"
)

// ErrNotMeasured: an expectation names a measure the run did not take (null
// in its JSON), so it cannot be decided either way.
var ErrNotMeasured = errors.New("not measured in this run (null)")

// binding is an operand's value in one case of the check: for a selector, in
// one of the processes it matched.
type binding struct {
	value float64
	row   map[string]any // the process it comes from, if one
}

// Check evaluates e on run. A failed expectation, or one that names what the
// run does not have, is an error of one line that says the values seen.
func (e Expectation) Check(run *report.Run) error {
	doc, err := toJSONMap(run)
	if err != nil {
		return err
	}
	rows := processRows(doc)
	l, err := e.left.bind(doc, rows)
	if err != nil {
		return fmt.Errorf("expectation %s: %w", e.Text, err)
	}
	r, err := e.right.bind(doc, rows)
	if err != nil {
		return fmt.Errorf("expectation %s: %w", e.Text, err)
	}
	// The same selector on both sides is the same process.
	zip := e.left.kind == each && e.right.kind == each && e.left.filter == e.right.filter
	var failed [][2]binding
	total := 0
	for i, lb := range l {
		for j, rb := range r {
			if zip && i != j {
				continue
			}
			total++
			if !compare(lb.value, e.op, rb.value) {
				failed = append(failed, [2]binding{lb, rb})
			}
		}
	}
	if len(failed) == 0 {
		return nil
	}
	return fmt.Errorf("expectation failed: %s (%s)", e.Text, e.describe(failed, total, zip))
}

// describe says what the operands were in the failed cases: their values,
// and which process each came from where that is not obvious (several
// matched, or the rows are a traced tree, whose pids the reader looks up).
// It stays one line whatever the size of the tree.
func (e Expectation) describe(failed [][2]binding, total int, zip bool) string {
	const shown = 5
	more := ""
	if len(failed) > shown {
		more = fmt.Sprintf(", and %d more", len(failed)-shown)
	}
	head := ""
	if total > 1 {
		head = fmt.Sprintf("%d of %d fail: ", len(failed), total)
	}
	ops := [2]operand{e.left, e.right}
	// The usual case, one selector against a constant: its values in a
	// row, the constant once.
	if total > 1 && (ops[0].kind == each) != (ops[1].kind == each) {
		side := 0
		if ops[1].kind == each {
			side = 1
		}
		var vals []string
		for _, f := range failed[:min(shown, len(failed))] {
			vals = append(vals, formatNumber(f[side].value)+" in "+processName(f[side].row))
		}
		s := head + ops[side].text + " is " + strings.Join(vals, ", ") + more
		if other := ops[1-side]; other.kind != number {
			s += "; " + other.text + " is " + formatNumber(failed[0][1-side].value) + inProcess(failed[0][1-side], false)
		}
		return s
	}
	var cases []string
	for _, f := range failed[:min(shown, len(failed))] {
		var parts []string
		for i, o := range ops {
			if o.kind == number {
				continue
			}
			s := o.text + " is " + formatNumber(f[i].value)
			// Zipped, both sides are one process: named once, at the end.
			if !(zip && i == 0) {
				s += inProcess(f[i], total > 1)
			}
			parts = append(parts, s)
		}
		cases = append(cases, strings.Join(parts, ", "))
	}
	return head + strings.Join(cases, "; ") + strings.Replace(more, ",", ";", 1)
}

// inProcess names the process a value came from when the reader needs it:
// among several, or in a traced tree.
func inProcess(b binding, several bool) string {
	if b.row != nil && (several || tracedRow(b.row)) {
		return " in " + processName(b.row)
	}
	return ""
}

func compare(l float64, op string, r float64) bool {
	switch op {
	case "==":
		return l == r
	case "!=":
		return l != r
	case "<":
		return l < r
	case "<=":
		return l <= r
	case ">":
		return l > r
	case ">=":
		return l >= r
	}
	return false
}

// tracedRow says whether a row is a traced run's: the experiment's have a
// null depth.
func tracedRow(row map[string]any) bool { return row["depth"] != nil }

func processName(row map[string]any) string {
	s := "pid " + formatAny(row["pid"])
	if comm, _ := row["comm"].(string); comm != "" {
		s += " (" + comm + ")"
	}
	return s
}

func formatAny(v any) string {
	if f, ok := v.(float64); ok {
		return formatNumber(f)
	}
	return fmt.Sprint(v)
}

// CheckAll evaluates every expectation and returns the failures.
func CheckAll(run *report.Run, es []Expectation) []error {
	var failed []error
	for _, e := range es {
		if err := e.Check(run); err != nil {
			failed = append(failed, err)
		}
	}
	return failed
}

func formatNumber(v float64) string {
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		return strconv.FormatInt(int64(v), 10)
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// toJSONMap is the run as its JSON contract sees it: expectations name the
// contract's fields, so they work for every field added later too.
func toJSONMap(run *report.Run) (map[string]any, error) {
	b, err := json.Marshal(run)
	if err != nil {
		return nil, err
	}
	var doc map[string]any
	return doc, json.Unmarshal(b, &doc)
}

func processRows(doc map[string]any) []map[string]any {
	procs, _ := doc["processes"].([]any)
	rows := make([]map[string]any, 0, len(procs))
	for _, p := range procs {
		if pm, ok := p.(map[string]any); ok {
			rows = append(rows, pm)
		}
	}
	return rows
}

// bind is the operand's value, or for a selector its value in each process
// it matches.
func (o operand) bind(doc map[string]any, rows []map[string]any) ([]binding, error) {
	switch o.kind {
	case number:
		return []binding{{value: o.number}}, nil
	case runField:
		v, err := o.lookup(doc, "run")
		return []binding{{value: v}}, err
	case aggregate:
		b, err := o.aggregate(rows)
		return []binding{b}, err
	}
	var bs []binding
	for _, row := range rows {
		if !o.filter.matches(row) {
			continue
		}
		v, err := o.lookup(row, o.sel)
		if err != nil {
			if tracedRow(row) {
				err = fmt.Errorf("%w in %s", err, processName(row))
			}
			return nil, err
		}
		bs = append(bs, binding{value: v, row: row})
	}
	if len(bs) == 0 {
		return nil, noProcess(o.filter, rows)
	}
	return bs, nil
}

func (o operand) aggregate(rows []map[string]any) (binding, error) {
	var b binding
	n := 0
	for _, row := range rows {
		if !o.filter.matches(row) {
			continue
		}
		n++
		if o.agg == "count" {
			continue
		}
		v, err := o.lookup(row, o.sel)
		if err != nil {
			return binding{}, fmt.Errorf("%w in %s", err, processName(row))
		}
		switch {
		case o.agg == "sum":
			b.value += v
		case n == 1, o.agg == "max" && v > b.value, o.agg == "min" && v < b.value:
			b = binding{value: v, row: row}
		}
	}
	switch {
	case o.agg == "count":
		b.value = float64(n)
	case n == 0 && o.agg != "sum":
		// The max of nothing is no number; a sum of nothing is 0.
		return binding{}, noProcess(o.filter, rows)
	}
	return b, nil
}

// noProcess says that a filter matched no process, and what the run has.
func noProcess(f filter, rows []map[string]any) error {
	distinct := func(key string) string {
		var seen []string
		for _, row := range rows {
			if v := formatAny(row[key]); row[key] != nil && !slices.Contains(seen, v) {
				seen = append(seen, v)
			}
		}
		return strings.Join(seen, ", ")
	}
	switch f {
	case filter{role: f.role}:
		return fmt.Errorf("no process with role %q (roles: %s)", f.role, distinct("role"))
	case filter{comm: f.comm}:
		return fmt.Errorf("no process with command name %q (names: %s)", f.comm, distinct("comm"))
	case filter{depth: f.depth, byDepth: true}:
		return fmt.Errorf("no process at depth %d (depths: %s)", f.depth, distinct("depth"))
	}
	return fmt.Errorf("no process with %s", f)
}

// lookup follows the operand's path from v; what names the start of the path
// in messages.
func (o operand) lookup(v map[string]any, what string) (float64, error) {
	row := v
	var cur any = v
	for i, key := range o.path {
		if cur == nil && i > 0 {
			// An object that is null (in_region in a traced run)
			// has none of its fields.
			if o.path[i-1] == "pagemap" {
				return 0, fmt.Errorf("%s is not in this run (it needs --proof pagemap)", o.text)
			}
			break
		}
		m, ok := cur.(map[string]any)
		if !ok {
			return 0, fmt.Errorf("%s is not an object", strings.Join(append([]string{what}, o.path[:i]...), "."))
		}
		if cur, ok = m[key]; !ok {
			if key == "pagemap" {
				return 0, fmt.Errorf("%s is not in this run (it needs --proof pagemap)", o.text)
			}
			return 0, fmt.Errorf("%s: no field %q", strings.Join(append([]string{what}, o.path[:i]...), "."), key)
		}
	}
	switch v := cur.(type) {
	case float64:
		return v, nil
	case nil:
		// The row's unmeasured map says why, when the run knows.
		um, _ := row["unmeasured"].(map[string]any)
		if why, ok := um[strings.Join(o.path, ".")].(string); ok {
			return 0, fmt.Errorf("%s is %w: %s", o.text, ErrNotMeasured, why)
		}
		return 0, fmt.Errorf("%s is %w", o.text, ErrNotMeasured)
	case bool:
		if v {
			return 1, nil
		}
		return 0, nil
	}
	return 0, fmt.Errorf("%s is not a number", o.text)
}
