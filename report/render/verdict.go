package render

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/cowtrace/cowtrace/report/gate"
)

// WriteVerdict renders the gate's result for DefaultWidth columns.
func WriteVerdict(w io.Writer, v *gate.Verdict, f Format) error {
	return Layout{}.WriteVerdict(w, v, f)
}

// WriteVerdict renders the gate's result: a verdict line, a table of the
// bounded measures per process and for the total, baseline, current and
// change, regressions marked, then each regression in words. JSON holds the
// verdict and every check.
func (l Layout) WriteVerdict(w io.Writer, v *gate.Verdict, f Format) error {
	switch f {
	case JSON:
		return writeJSON(w, v)
	case Table, Wide, Markdown:
	default:
		return fmt.Errorf("the gate writes table, wide, markdown or json")
	}
	return l.text(w, f, func(w io.Writer, st style) error { return writeVerdict(w, v, st) })
}

func writeVerdict(w io.Writer, v *gate.Verdict, st style) error {
	markdown := st.markdown
	bw := &errWriter{w: w}
	writeVerdictLine(bw, v, st)
	if markdown {
		fmt.Fprintln(bw)
	}
	if bw.err != nil {
		return bw.err
	}
	header := []string{"process"}
	for _, c := range v.Measures {
		for _, col := range []string{"baseline", "current", "change"} {
			header = append(header, stacked(c.Title, col))
		}
	}
	if err := writeTable(w, st, leftColumns(1, len(header)), header, verdictRows(v, markdown)); err != nil {
		return err
	}
	if markdown {
		fmt.Fprintln(bw)
	}
	for _, c := range v.Regressions() {
		prose(bw, st, "regression: ", fmt.Sprintf("%s %s %d -> %d, %s, past %s (%s)", c.Process, c.Measure, c.Baseline, c.Current,
			change(&c.Baseline, &c.Current), allowedText(c), c.Bound))
	}
	writeBoundScopes(bw, v.Bounds, st)
	for _, n := range v.Notes {
		prose(bw, st, "note: ", n)
	}
	return bw.err
}

// writeVerdictLine is the verdict in one line, with the bounds and the
// runs it held against each other.
func writeVerdictLine(w io.Writer, v *gate.Verdict, st style) {
	var bounds []string
	for _, b := range v.Bounds {
		bounds = append(bounds, b.Text)
	}
	verdict := "passed"
	detail := fmt.Sprintf("all %d checks within their bounds", len(v.Checks))
	if n := len(v.Regressions()); n > 0 {
		verdict = "FAILED"
		detail = fmt.Sprintf("%d of %d checks grew past their bound", n, len(v.Checks))
	}
	verdict = "cowtrace gate: " + verdict
	if st.markdown {
		verdict = "**" + verdict + "**"
	}
	line := fmt.Sprintf("%s, %s (--max-increase %s; baseline %s, current %s)", verdict, detail,
		strings.Join(bounds, ","), v.Baseline.Label, v.Current.Label)
	if st.markdown {
		fmt.Fprintln(w, line)
		return
	}
	prose(w, st, "", line)
}

// verdictRows are the verdict's rows, each bounded measure's baseline,
// current value and change, the regressions marked.
func verdictRows(v *gate.Verdict, markdown bool) [][]string {
	var rows [][]string
	for ri, m := range v.Rows {
		row := []string{m.Name}
		for _, c := range v.Measures {
			cells := [3]string{"-", "-", ""}
			for i, p := range m.Procs {
				if p != nil {
					cells[i] = num(c.Get(p))
				}
			}
			switch {
			case m.Procs[0] == nil:
				cells[2] = "new"
			case m.Procs[1] == nil:
				cells[2] = "gone"
			default:
				cells[2] = change(c.Get(m.Procs[0]), c.Get(m.Procs[1]))
			}
			if ch, ok := v.CheckAt(ri, c.Key); ok && ch.Regressed {
				cells[2] = "✗ " + cells[2] + " > " + allowedText(ch)
				if markdown {
					cells[2] = "**" + cells[2] + "**"
				}
			}
			row = append(row, cells[:]...)
		}
		rows = append(rows, row)
	}
	return rows
}

// writeBoundScopes says where the bounds applied, one line per scope in the
// order the bounds named them.
func writeBoundScopes(w io.Writer, bounds []gate.Bound, st style) {
	scopes := map[gate.Scope][]string{}
	var order []gate.Scope
	for _, b := range bounds {
		if scopes[b.Scope] == nil {
			order = append(order, b.Scope)
		}
		scopes[b.Scope] = append(scopes[b.Scope], b.Measure)
	}
	where := map[gate.Scope]string{
		gate.Both:      "the total and each process in both runs",
		gate.TotalOnly: "the total",
		gate.EachOnly:  "each process in both runs",
	}
	for _, s := range order {
		prose(w, st, "bounds on ", where[s]+": "+strings.Join(scopes[s], ", "))
	}
}

// change is an increase for people: "+12 (+30.0%)", "-3 (-2.1%)", "0", and
// no percentage of a baseline of 0.
func change(base, cur *uint64) string {
	if base == nil || cur == nil {
		return "-"
	}
	d := int64(*cur) - int64(*base)
	if d == 0 {
		return "0"
	}
	s := strconv.FormatInt(d, 10)
	if d > 0 {
		s = "+" + s
	}
	if *base > 0 {
		pct := 100 * float64(d) / float64(*base)
		// One decimal would round a change of 1 in 2571 to -0.0%.
		prec := 1
		if math.Abs(pct) < 0.1 {
			prec = 2
		}
		s += fmt.Sprintf(" (%+.*f%%)", prec, pct)
	}
	return s
}

// allowedText is a check's bound as the table shows it: "+10%" or "+50".
func allowedText(c gate.Check) string {
	_, limit, _ := strings.Cut(c.Bound, "=")
	return "+" + limit
}
