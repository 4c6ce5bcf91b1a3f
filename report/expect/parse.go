// Package expect is --expect: conditions on a run's JSON fields, such as
// "writer.copies == 1000" or "sum(comm=worker).copies < 1000", parsed
// before the run starts and checked on its report.
package expect

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/cowtrace/cowtrace/report"
)

// Expectation is one --expect condition on a run, such as
// "writer.copies == 1000" or "sum.copies < 1000": two operands and a
// comparison. An operand is
//
//   - a number;
//   - a field of the run itself: "blocks", "run.lost_records",
//     "run.trace.exit_code", so that "writer.copies == blocks" holds at any
//     size;
//   - a field of each process a selector matches, by its JSON path: by role
//     ("writer.copies", "command.in_region.wp", "child.probes.do_wp_page"),
//     by command name ("comm(worker).wp_faults") or by depth in a traced
//     tree ("depth(1).copies");
//   - an aggregate over the processes: "sum.copies", "max.wp_faults",
//     "min.page_faults" or "count", narrowed by filters if wanted:
//     "sum(comm=worker).copies", "count(comm=sh,depth=1)".
//
// With a selector the expectation must hold for each process it matches, and
// fails when it matches none: a misspelt name must not pass a CI gate. The
// same selector twice names the same process ("child.copies <=
// child.wp_faults" compares each child with itself); two different ones,
// every pair. Selectors and aggregates see process rows: thread rows
// (--threads) count only when asked for by the role "thread", since their
// process's row already holds them.
type Expectation struct {
	Text        string
	left, right operand
	op          string
}

type operandKind int

const (
	number    operandKind = iota
	runField              // path from the run
	each                  // path from each process the filter matches
	aggregate             // agg over the processes the filter matches
)

type operand struct {
	text   string
	kind   operandKind
	number float64
	filter filter
	agg    string // "sum", "max", "min" or "count"
	sel    string // the operand's text before its path ("comm(worker)")
	path   []string
}

// filter selects process rows. Its zero value selects every process row.
type filter struct {
	role    string
	comm    string
	depth   int
	byDepth bool
}

func (f filter) String() string {
	var parts []string
	if f.role != "" {
		parts = append(parts, "role="+f.role)
	}
	if f.comm != "" {
		parts = append(parts, "comm="+f.comm)
	}
	if f.byDepth {
		parts = append(parts, "depth="+strconv.Itoa(f.depth))
	}
	return strings.Join(parts, ",")
}

// commLen is the longest name the kernel keeps for a task (TASK_COMM_LEN
// less its NUL): a longer comm(NAME) matches the kernel's cut name, or a
// program with a long name could never be selected.
const commLen = 15

func (f filter) matches(row map[string]any) bool {
	role, _ := row["role"].(string)
	switch {
	case f.role != "":
		if role != f.role {
			return false
		}
	case role == "thread":
		// A thread's faults are in its process's row too.
		return false
	}
	if f.comm != "" {
		comm, _ := row["comm"].(string)
		if comm != f.comm && (len(f.comm) <= commLen || comm != f.comm[:commLen]) {
			return false
		}
	}
	if f.byDepth {
		if d, ok := row["depth"].(float64); !ok || int(d) != f.depth {
			return false
		}
	}
	return true
}

var (
	// Compiled on first use, as are the key sets below: every cowtrace
	// start would pay for them, and most never parse an expectation.
	identRe = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*`) })
	fieldRe = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9_-]+$`) })
)

// Parse parses "OPERAND OP OPERAND" with OP one of == != < <= > >=.
func Parse(s string) (Expectation, error) {
	l, op, r, ok := splitComparison(s)
	if strings.Count(s, "(") != strings.Count(s, ")") {
		return Expectation{}, fmt.Errorf("expectation %q: unbalanced parentheses", s)
	}
	if !ok {
		return Expectation{}, fmt.Errorf("expectation %q: want OPERAND OP OPERAND, e.g. 'writer.copies == 1000' or 'sum.copies < 1000' (OP: == != < <= > >=)", s)
	}
	e := Expectation{Text: strings.TrimSpace(s), op: op}
	var err error
	if e.left, err = parseOperand(l); err != nil {
		return Expectation{}, fmt.Errorf("expectation %q: %w", s, err)
	}
	if e.right, err = parseOperand(r); err != nil {
		return Expectation{}, fmt.Errorf("expectation %q: %w", s, err)
	}
	if e.left.kind == number && e.right.kind == number {
		return Expectation{}, fmt.Errorf("expectation %q compares two numbers", s)
	}
	return e, nil
}

// splitComparison finds the one operator outside parentheses: a command
// name in comm(NAME) may hold anything but ')', spaces and '<' included.
func splitComparison(s string) (left, op, right string, ok bool) {
	at, depth := -1, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '(':
			depth++
			continue
		case ')':
			depth--
			continue
		}
		if depth != 0 {
			continue
		}
		o := ""
		for _, cand := range []string{"==", "!=", "<=", ">=", "<", ">"} {
			if strings.HasPrefix(s[i:], cand) {
				o = cand
				break
			}
		}
		if o == "" {
			continue
		}
		if at >= 0 {
			return "", "", "", false // a second operator
		}
		at, op = i, o
		i += len(o) - 1
	}
	if at < 0 {
		return "", "", "", false
	}
	left, right = strings.TrimSpace(s[:at]), strings.TrimSpace(s[at+len(op):])
	return left, op, right, left != "" && right != ""
}

const operandForms = "a number, ROLE.FIELD (writer.copies, command.copies), comm(NAME).FIELD, depth(N).FIELD, " +
	"an aggregate (sum.FIELD, max.FIELD, min.FIELD, count, sum(comm=NAME).FIELD) or a run field (blocks)"

func parseOperand(s string) (operand, error) {
	if v, err := strconv.ParseFloat(s, 64); err == nil && !math.IsInf(v, 0) && !math.IsNaN(v) {
		return operand{text: s, number: v}, nil
	}
	head, args, hasArgs, path, err := splitOperand(s)
	if err != nil {
		return operand{}, err
	}
	o := operand{text: s, path: path, sel: strings.TrimSuffix(s, "."+strings.Join(path, "."))}
	switch {
	case head == "comm" && hasArgs:
		if args == "" {
			return operand{}, fmt.Errorf("%q: comm() needs a command name, e.g. comm(worker).copies", s)
		}
		o.kind, o.filter = each, filter{comm: args}
	case head == "depth" && hasArgs:
		o.kind, o.filter.byDepth = each, true
		if o.filter.depth, err = parseDepth(args); err != nil {
			return operand{}, fmt.Errorf("%q: %w", s, err)
		}
	case head == "sum" || head == "max" || head == "min" || head == "count":
		o.kind, o.agg = aggregate, head
		if hasArgs {
			if o.filter, err = parseFilter(args); err != nil {
				return operand{}, fmt.Errorf("%q: %w", s, err)
			}
		}
		if head == "count" && path != nil {
			return operand{}, fmt.Errorf("%q: count takes no field (count, count(comm=NAME))", s)
		}
		if head != "count" && path == nil {
			return operand{}, fmt.Errorf("%q: %s of which field? e.g. %s.copies", s, head, head)
		}
	case hasArgs:
		return operand{}, fmt.Errorf("%q: no selector %s(); there are comm(NAME), depth(N) and sum, max, min, count", s, head)
	case head == "run" || path == nil:
		// A bare word is a field of the run ("blocks").
		o.kind, o.sel = runField, "run"
		if head != "run" {
			o.path = append([]string{head}, path...)
		}
		if len(o.path) == 0 {
			return operand{}, fmt.Errorf("%q: no field %q in the JSON contract", s, "")
		}
		if bad := unknownField(runSample(), o.path); bad != "" {
			return operand{}, fmt.Errorf("%q: no field %q in the JSON contract", s, bad)
		}
		return o, nil
	default:
		o.kind, o.filter = each, filter{role: head}
	}
	// A misspelt field is a mistake in the command line, found before
	// anything runs; roles, names and depths are known only from the run.
	if bad := unknownField(processSample(), path); path != nil && bad != "" {
		return operand{}, fmt.Errorf("%q: no field %q in the JSON contract", s, bad)
	}
	if o.kind == each && path == nil {
		return operand{}, fmt.Errorf("%q: which field? e.g. %s.copies", s, s)
	}
	return o, nil
}

// splitOperand splits "HEAD[(ARGS)][.PATH]".
func splitOperand(s string) (head, args string, hasArgs bool, path []string, err error) {
	bad := fmt.Errorf("%q is not %s", s, operandForms)
	head = identRe().FindString(s)
	if head == "" {
		return "", "", false, nil, bad
	}
	rest := s[len(head):]
	if strings.HasPrefix(rest, "(") {
		end := strings.IndexByte(rest, ')')
		if end < 0 {
			return "", "", false, nil, fmt.Errorf("%q: no ')' after %s(", s, head)
		}
		args, rest, hasArgs = strings.TrimSpace(rest[1:end]), rest[end+1:], true
	}
	if rest == "" {
		return head, args, hasArgs, nil, nil
	}
	if rest[0] != '.' {
		return "", "", false, nil, bad
	}
	path = strings.Split(rest[1:], ".")
	for _, p := range path {
		if !fieldRe().MatchString(p) {
			return "", "", false, nil, bad
		}
	}
	return head, args, hasArgs, path, nil
}

func parseDepth(s string) (int, error) {
	d, err := strconv.Atoi(s)
	if err != nil || d < 0 || strings.HasPrefix(s, "+") {
		return 0, fmt.Errorf("depth %q is not 0, 1, 2, ... (0 is the command or the attached process)", s)
	}
	return d, nil
}

// parseFilter parses an aggregate's "comm=NAME,depth=N,role=ROLE", any of
// them, each at most once.
func parseFilter(s string) (filter, error) {
	var f filter
	seen := map[string]bool{}
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(part, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || v == "" || seen[k] {
			return filter{}, fmt.Errorf("filter %q: want comm=NAME, depth=N or role=ROLE, each at most once, separated by commas", s)
		}
		seen[k] = true
		switch k {
		case "comm":
			f.comm = v
		case "role":
			f.role = v
		case "depth":
			d, err := parseDepth(v)
			if err != nil {
				return filter{}, err
			}
			f.depth, f.byDepth = d, true
		default:
			return filter{}, fmt.Errorf("filter %q: no key %q (comm, depth, role)", s, k)
		}
	}
	return f, nil
}

// Rows describes the rows a run will have, so that an expectation naming
// rows it cannot have is refused before the run starts rather than failing
// after it.
type Rows struct {
	Roles   []string // the roles its rows can have; nil: not known beforehand
	Lineage bool     // its rows have a command name and a depth (a traced run)
}

// Fits says why e cannot be checked on a run with rows r, or nil.
func (e Expectation) Fits(r Rows) error {
	for _, o := range []operand{e.left, e.right} {
		f := o.filter
		if !r.Lineage && (f.comm != "" || f.byDepth) {
			return fmt.Errorf("expectation %q: %s selects processes by command name or depth, which only cowtrace run and attach have", e.Text, o.text)
		}
		if f.role != "" && r.Roles != nil && !slices.Contains(r.Roles, f.role) {
			return fmt.Errorf("expectation %q: no role %q in this kind of run (roles: %s)", e.Text, f.role, strings.Join(r.Roles, ", "))
		}
	}
	return nil
}

// runSample and processSample are the JSON contract's objects with every
// nested object filled: each key is in every report (null where it does not
// apply), so a path is checked against them, down to the fault classes.
var (
	runSample = sync.OnceValue(func() map[string]any {
		// The experiment's region and a traced run's trace, together.
		doc := jsonDoc(&report.Run{Region: &report.Region{}})
		doc["trace"] = jsonDoc(&report.Trace{})
		return doc
	})
	processSample = sync.OnceValue(func() map[string]any {
		return jsonDoc(&report.Process{Pagemap: &report.Pagemap{}, Lineage: &report.Lineage{},
			InRegion: &report.FaultClasses{}, Outside: &report.FaultClasses{}})
	})
)

func jsonDoc(v any) map[string]any {
	b, _ := json.Marshal(v)
	var m map[string]any
	json.Unmarshal(b, &m)
	return m
}

// unknownField is the first key of path that sample does not have, or "".
// Below a key whose sample is not an object (probes: any function's name)
// any key goes.
func unknownField(sample map[string]any, path []string) string {
	var cur any = sample
	for _, key := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return ""
		}
		if cur, ok = m[key]; !ok {
			return key
		}
	}
	return ""
}
