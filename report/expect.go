package report

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// ErrNotMeasured: an expectation names a measure the run did not take (null
// in its JSON), so it cannot be decided either way.
var ErrNotMeasured = errors.New("not measured in this run (null)")

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

// ParseExpectation parses "OPERAND OP OPERAND" with OP one of == != < <= > >=.
func ParseExpectation(s string) (Expectation, error) {
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
		if len(o.path) == 0 || !runKeys()[o.path[0]] {
			return operand{}, fmt.Errorf("%q: no field %q in the JSON contract", s, append(o.path, "")[0])
		}
		return o, nil
	default:
		o.kind, o.filter = each, filter{role: head}
	}
	// A misspelt field is a mistake in the command line, found before
	// anything runs; roles, names and depths are known only from the run.
	if path != nil && !processKeys()[path[0]] {
		return operand{}, fmt.Errorf("%q: no field %q in the JSON contract", s, path[0])
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

// runKeys and processKeys are the fields of the JSON contract.
var (
	runKeys     = sync.OnceValue(func() map[string]bool { return jsonKeys(&Run{Trace: &Trace{}, Notes: []string{""}}) })
	processKeys = sync.OnceValue(func() map[string]bool {
		return jsonKeys(&Process{Probes: map[string]uint64{"": 0}, Pagemap: &Pagemap{},
			Lineage: &Lineage{Tid: 1, Comms: []string{""}}})
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

// binding is an operand's value in one case of the check: for a selector, in
// one of the processes it matched.
type binding struct {
	value float64
	row   map[string]any // the process it comes from, if one
}

// Check evaluates e on run. A failed expectation, or one that names what the
// run does not have, is an error of one line that says the values seen.
func (e Expectation) Check(run *Run) error {
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
	if _, traced := b.row["depth"]; b.row != nil && (several || traced) {
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
			if _, traced := row["depth"]; traced {
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
