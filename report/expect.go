package report

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"sync"
)

// Expectation is one --expect condition on a run, such as
// "writer.copies == 1000": two operands and a comparison. An operand is a
// number, a field of a process named by its role and its JSON path
// ("writer.in_region.wp", "writer.probes.do_wp_page"), or a field of the run
// itself ("blocks", "run.lost_records"), so that "writer.copies == blocks"
// holds at any size.
type Expectation struct {
	Text        string
	left, right operand
	op          string
}

type operand struct {
	text   string
	number float64
	path   []string // nil: a number
}

var (
	// Compiled on first use, as are the key sets below: every cowtrace
	// start would pay for them, and most never parse an expectation.
	exprRe    = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^\s*(\S+?)\s*(==|!=|<=|>=|<|>)\s*(\S+)\s*$`) })
	operandRe = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_.-]*)?$`)
	})
)

// ParseExpectation parses "OPERAND OP OPERAND" with OP one of == != < <= > >=.
func ParseExpectation(s string) (Expectation, error) {
	m := exprRe().FindStringSubmatch(s)
	if m == nil {
		return Expectation{}, fmt.Errorf("expectation %q: want OPERAND OP OPERAND, e.g. 'writer.copies == 1000' (OP: == != < <= > >=)", s)
	}
	e := Expectation{Text: strings.TrimSpace(s), op: m[2]}
	var err error
	if e.left, err = parseOperand(m[1]); err != nil {
		return Expectation{}, fmt.Errorf("expectation %q: %w", s, err)
	}
	if e.right, err = parseOperand(m[3]); err != nil {
		return Expectation{}, fmt.Errorf("expectation %q: %w", s, err)
	}
	if e.left.path == nil && e.right.path == nil {
		return Expectation{}, fmt.Errorf("expectation %q compares two numbers", s)
	}
	return e, nil
}

func parseOperand(s string) (operand, error) {
	if v, err := strconv.ParseFloat(s, 64); err == nil && !math.IsInf(v, 0) && !math.IsNaN(v) {
		return operand{text: s, number: v}, nil
	}
	if !operandRe().MatchString(s) || strings.HasSuffix(s, ".") || strings.Contains(s, "..") {
		return operand{}, fmt.Errorf("%q is neither a number nor ROLE.FIELD (e.g. writer.copies) nor a run field (e.g. blocks)", s)
	}
	path := strings.Split(s, ".")
	if len(path) == 1 {
		path = []string{"run", s}
	}
	// A misspelt field is a mistake in the command line, found before
	// anything runs; roles are known only from the run.
	known := processKeys()
	if path[0] == "run" {
		known = runKeys()
	}
	if len(path) < 2 || !known[path[1]] {
		return operand{}, fmt.Errorf("%q: no field %q in the JSON contract", s, path[1])
	}
	return operand{text: s, path: path}, nil
}

// runKeys and processKeys are the fields of the JSON contract.
var (
	runKeys     = sync.OnceValue(func() map[string]bool { return jsonKeys(&Run{}) })
	processKeys = sync.OnceValue(func() map[string]bool {
		return jsonKeys(&Process{Probes: map[string]uint64{"": 0}, Pagemap: &Pagemap{}})
	})
)

func jsonKeys(v any) map[string]bool {
	b, _ := json.Marshal(v)
	var m map[string]any
	json.Unmarshal(b, &m)
	keys := map[string]bool{}
	for k := range m {
		keys[k] = true
	}
	return keys
}

// Check evaluates e on run. A failed expectation, or one that names what the
// run does not have, is an error of one line that says the value seen.
func (e Expectation) Check(run *Run) error {
	doc, err := toJSONMap(run)
	if err != nil {
		return err
	}
	l, err := e.left.value(doc)
	if err != nil {
		return fmt.Errorf("expectation %s: %w", e.Text, err)
	}
	r, err := e.right.value(doc)
	if err != nil {
		return fmt.Errorf("expectation %s: %w", e.Text, err)
	}
	ok := false
	switch e.op {
	case "==":
		ok = l == r
	case "!=":
		ok = l != r
	case "<":
		ok = l < r
	case "<=":
		ok = l <= r
	case ">":
		ok = l > r
	case ">=":
		ok = l >= r
	}
	if ok {
		return nil
	}
	var seen []string
	for _, o := range []operand{e.left, e.right} {
		if o.path != nil {
			v, _ := o.value(doc)
			seen = append(seen, fmt.Sprintf("%s is %s", o.text, formatNumber(v)))
		}
	}
	return fmt.Errorf("expectation failed: %s (%s)", e.Text, strings.Join(seen, ", "))
}

// CheckAll evaluates every expectation and returns the failures.
func CheckAll(run *Run, es []Expectation) []error {
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
func toJSONMap(run *Run) (map[string]any, error) {
	b, err := json.Marshal(run)
	if err != nil {
		return nil, err
	}
	var doc map[string]any
	return doc, json.Unmarshal(b, &doc)
}

func (o operand) value(doc map[string]any) (float64, error) {
	if o.path == nil {
		return o.number, nil
	}
	var cur any
	if o.path[0] == "run" {
		cur = doc
	} else {
		procs, _ := doc["processes"].([]any)
		var roles []string
		for _, p := range procs {
			pm, _ := p.(map[string]any)
			if pm["role"] == o.path[0] {
				cur = pm
				break
			}
			roles = append(roles, fmt.Sprint(pm["role"]))
		}
		if cur == nil {
			return 0, fmt.Errorf("no process with role %q (roles: %s)", o.path[0], strings.Join(roles, ", "))
		}
	}
	for i, key := range o.path[1:] {
		m, ok := cur.(map[string]any)
		if !ok {
			return 0, fmt.Errorf("%s is not an object", strings.Join(o.path[:i+1], "."))
		}
		if cur, ok = m[key]; !ok {
			if key == "pagemap" {
				return 0, fmt.Errorf("%s is not in this run (it needs --proof pagemap)", o.text)
			}
			return 0, fmt.Errorf("%s: no field %q", strings.Join(o.path[:i+1], "."), key)
		}
	}
	switch v := cur.(type) {
	case float64:
		return v, nil
	case nil:
		return 0, fmt.Errorf("%s is not measured in this run (null)", o.text)
	case bool:
		if v {
			return 1, nil
		}
		return 0, nil
	}
	return 0, fmt.Errorf("%s is not a number", o.text)
}
