package render

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/cowtrace/cowtrace/report"
)

// WriteMatrix renders m for DefaultWidth columns.
func WriteMatrix(w io.Writer, m *report.Matrix, f Format) error { return Layout{}.WriteMatrix(w, m, f) }

// WriteMatrix renders m: one table with a row per scenario and process, then
// each scenario's stated outcome and whether it held.
func (l Layout) WriteMatrix(w io.Writer, m *report.Matrix, f Format) error {
	switch f {
	case JSON:
		return writeJSON(w, m)
	case CSV, OpenMetrics:
		return fmt.Errorf("the matrix has no %s form (use json)", f)
	}
	if len(m.Scenarios) == 0 {
		return fmt.Errorf("the matrix has no scenarios")
	}
	return l.text(w, f, func(w io.Writer, st style) error { return writeMatrix(w, m, st) })
}

func writeMatrix(w io.Writer, m *report.Matrix, st style) error {
	bw := &errWriter{w: w}
	heading(bw, st, "cowtrace matrix: kernel "+m.Kernel)
	if bw.err != nil {
		return bw.err
	}
	methods, first := matrixMethods(m)
	keys := footnotes{}
	header := matrixHeader(methods, st, &keys)
	left := leftColumns(2, len(header))
	left[len(left)-1] = true // the outcome
	if err := writeTable(w, st, left, header, matrixRows(m, st)); err != nil {
		return err
	}
	if st.markdown {
		fmt.Fprintln(bw)
	}
	if st.narrow {
		keys.write(bw, st)
	} else {
		if first != nil {
			for _, line := range methodLines(first) {
				prose(bw, st, "", line)
			}
		}
		prose(bw, st, "", "shared frames at fork, private after writes: /proc/PID/pagemap of each child against the parent's, over the region's pages, right after the fork and once everyone did their work (before anyone exits); - where not run (vfork suspends the parent)")
	}
	if st.markdown {
		fmt.Fprintln(bw)
	}
	for _, e := range m.Scenarios {
		writeOutcome(bw, e, st)
	}
	return bw.err
}

// matrixMethods are the methods of the matrix's columns, and a run to
// explain them. One kernel has one set of methods; the pagemap proof is
// missing from scenarios that cannot have it (vfork), so each method comes
// from any run that has it.
func matrixMethods(m *report.Matrix) (methods map[string]string, first *report.Run) {
	methods = map[string]string{}
	for _, e := range m.Scenarios {
		if e.Run == nil {
			continue
		}
		if first == nil {
			first = e.Run
		}
		for k, v := range e.Run.Methods {
			if methods[k] == "" {
				methods[k] = v
			}
		}
	}
	return methods, first
}

// matrixHeader is the matrix's header: each measure with its method's tag,
// or in the narrow layout a short name and its footnote key.
func matrixHeader(methods map[string]string, st style, keys *footnotes) []string {
	tag := func(h, short, key string) string {
		if st.narrow {
			return stacked(short, keys.key(methodNote(methods[key])))
		}
		t := shortMethod(methods[key])
		if key == "pagemap" && t != "" {
			t = "[pagemap]"
		}
		return stacked(h, t)
	}
	if st.narrow {
		// The region's classes in one column: eleven columns of this
		// table do not fit 80.
		return []string{"scenario", "role", tag("", "faults", "page_faults"), tag("", "wp", "wp_faults"),
			tag("", "region\nwp/1st/rd", "in_region"), tag("", "copies", "copies"),
			tag("", "shared\nat fork", "pagemap"), tag("", "private\nafter", "pagemap"), "outcome"}
	}
	return []string{"scenario", "role", tag("page faults", "faults", "page_faults"), tag("wp faults", "wp", "wp_faults"),
		tag("wp in region", "", "in_region"), tag("first writes in region", "", "in_region"),
		tag("reads in region", "", "in_region"), tag("copies", "", "copies"),
		tag("shared frames at fork", "", "pagemap"), tag("private after writes", "", "pagemap"), "outcome"}
}

// matrixRows are a row per process of each scenario, the scenario's name
// and outcome on its first; a scenario without a run (not applicable) has
// one row of dashes.
func matrixRows(m *report.Matrix, st style) [][]string {
	var rows [][]string
	word := outcomeWord
	if st.narrow {
		word = shortOutcome
	}
	for _, e := range m.Scenarios {
		if e.Run == nil {
			row := []string{e.Name, "-", "-", "-", "-", "-", "-", "-", "-", "-", word(e)}
			if st.narrow {
				row = append(row[:4], row[6:]...)
			}
			rows = append(rows, row)
			continue
		}
		wp, firstWrites, reads := inRegion(e.Run, report.ClassWP), inRegion(e.Run, report.ClassWriteNotPresent), inRegion(e.Run, report.ClassRead)
		for i := range e.Run.Processes {
			p := &e.Run.Processes[i]
			name, outcome := "", ""
			if i == 0 {
				name, outcome = e.Name, word(e)
			}
			region := []string{wp(p), firstWrites(p), reads(p)}
			if st.narrow {
				region = []string{strings.Join(region, "/")}
			}
			row := append([]string{name, p.Role, num(p.PageFaults), num(p.WPFaults)}, region...)
			rows = append(rows, append(row, num(p.Copies), frames(p, true), frames(p, false), outcome))
		}
	}
	return rows
}

// shortOutcome is outcomeWord in the narrow layout, where the scenarios'
// lines under the table say it in full.
func shortOutcome(e report.MatrixEntry) string {
	switch w := outcomeWord(e); w {
	case "as stated":
		return "ok"
	case "not applicable":
		return "n/a"
	default:
		return w
	}
}

// writeOutcome says what the scenario states and whether it held, with the
// expectations that did not hold or could not be checked, the finding, and
// the notes that bear on the outcome (huge pages, mappings).
func writeOutcome(w io.Writer, e report.MatrixEntry, st style) {
	if e.NotApplicable != "" {
		prose(w, st, e.Name+": ", e.NotApplicable)
		return
	}
	prose(w, st, e.Name+": ", fmt.Sprintf("%s (%s)", e.Outcome, outcomeWord(e)))
	for _, x := range e.Expectations {
		switch {
		case !x.Held:
			subProse(w, st, x.Detail)
		case x.NotChecked != "":
			subProse(w, st, "not checked: "+x.Expect+": "+x.NotChecked)
		}
	}
	if e.Finding != "" {
		subProse(w, st, "finding: "+e.Finding)
	}
	for _, n := range e.Run.Notes {
		if strings.HasPrefix(n, "thp:") || strings.Contains(n, "not mapped") {
			subProse(w, st, "note: "+n)
		}
	}
}

// frames is a child's pagemap count: region pages sharing the parent's frame
// right after fork, or private after the writes.
func frames(p *report.Process, atFork bool) string {
	switch {
	case p.Pagemap == nil:
		return "-"
	case atFork:
		return strconv.FormatUint(p.Pagemap.AtFork.Shared, 10)
	}
	return strconv.FormatUint(p.Pagemap.AfterWrites.Private, 10)
}

// outcomeWord says whether a scenario's stated outcome held: "as stated",
// "DIFFERS", or "finding" when this kernel's behaviour decided another,
// documented outcome (which then held).
func outcomeWord(e report.MatrixEntry) string {
	switch {
	case e.NotApplicable != "":
		return "not applicable"
	case !e.Held:
		return "DIFFERS"
	case e.Finding != "":
		return "finding"
	}
	return "as stated"
}
