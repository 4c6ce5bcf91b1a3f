package render

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/cowtrace/cowtrace/report"
)

// WriteMatrix renders m: one table with a row per scenario and process, then
// each scenario's stated outcome and whether it held.
func WriteMatrix(w io.Writer, m *report.Matrix, f Format) error {
	switch f {
	case JSON:
		return writeJSON(w, m)
	case CSV:
		return fmt.Errorf("the matrix has no csv form (use json)")
	}
	markdown := f == Markdown
	if len(m.Scenarios) == 0 {
		return fmt.Errorf("the matrix has no scenarios")
	}
	bw := &errWriter{w: w}
	heading(bw, markdown, "cowtrace matrix: kernel "+m.Kernel)
	if bw.err != nil {
		return bw.err
	}
	methods, first := matrixMethods(m)
	if err := writeTable(w, markdown, 2, matrixHeader(methods, markdown), matrixRows(m)); err != nil {
		return err
	}
	if markdown {
		fmt.Fprintln(bw)
	}
	if first != nil {
		for _, line := range methodLines(first) {
			fmt.Fprintf(bw, "%s%s\n", bullet(markdown), line)
		}
	}
	fmt.Fprintf(bw, "%sshared frames at fork, private after writes: /proc/PID/pagemap of each child against the parent's, over the region's pages, right after the fork and once everyone did their work (before anyone exits); - where not run (vfork suspends the parent)\n", bullet(markdown))
	if markdown {
		fmt.Fprintln(bw)
	}
	for _, e := range m.Scenarios {
		writeOutcome(bw, e, markdown)
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

func matrixHeader(methods map[string]string, markdown bool) []string {
	tag := func(h, key string) string {
		t := shortMethod(methods[key])
		if key == "pagemap" && t != "" {
			t = "[pagemap]"
		}
		return stacked(h, t, markdown)
	}
	return []string{"scenario", "role", tag("page faults", "page_faults"), tag("wp faults", "wp_faults"),
		tag("wp in region", "in_region"), tag("first writes in region", "in_region"), tag("reads in region", "in_region"),
		tag("copies", "copies"), tag("shared frames at fork", "pagemap"), tag("private after writes", "pagemap"), "outcome"}
}

// matrixRows are a row per process of each scenario, the scenario's name
// and outcome on its first; a scenario without a run (not applicable) has
// one row of dashes.
func matrixRows(m *report.Matrix) [][]string {
	var rows [][]string
	wp := inRegion(func(f *report.FaultClasses) uint64 { return f.WP })
	firstWrites := inRegion(func(f *report.FaultClasses) uint64 { return f.WriteNotPresent })
	reads := inRegion(func(f *report.FaultClasses) uint64 { return f.Read })
	for _, e := range m.Scenarios {
		if e.Run == nil {
			rows = append(rows, []string{e.Name, "-", "-", "-", "-", "-", "-", "-", "-", "-", outcomeWord(e)})
			continue
		}
		for i := range e.Run.Processes {
			p := &e.Run.Processes[i]
			name, outcome := "", ""
			if i == 0 {
				name, outcome = e.Name, outcomeWord(e)
			}
			rows = append(rows, []string{name, p.Role, num(p.PageFaults), num(p.WPFaults), wp(p), firstWrites(p), reads(p),
				num(p.Copies), frames(p, true), frames(p, false), outcome})
		}
	}
	return rows
}

// writeOutcome says what the scenario states and whether it held, with the
// expectations that did not hold or could not be checked, the finding, and
// the notes that bear on the outcome (huge pages, mappings).
func writeOutcome(w io.Writer, e report.MatrixEntry, markdown bool) {
	if e.NotApplicable != "" {
		fmt.Fprintf(w, "%s%s: %s\n", bullet(markdown), e.Name, e.NotApplicable)
		return
	}
	fmt.Fprintf(w, "%s%s: %s (%s)\n", bullet(markdown), e.Name, e.Outcome, outcomeWord(e))
	for _, x := range e.Expectations {
		switch {
		case !x.Held:
			fmt.Fprintf(w, "  %s%s\n", bullet(markdown), x.Detail)
		case x.NotChecked != "":
			fmt.Fprintf(w, "  %snot checked: %s: %s\n", bullet(markdown), x.Expect, x.NotChecked)
		}
	}
	if e.Finding != "" {
		fmt.Fprintf(w, "  %sfinding: %s\n", bullet(markdown), e.Finding)
	}
	for _, n := range e.Run.Notes {
		if strings.HasPrefix(n, "thp:") || strings.Contains(n, "not mapped") {
			fmt.Fprintf(w, "  %snote: %s\n", bullet(markdown), n)
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
