package render

import (
	"encoding/json"
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
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(m)
	case CSV:
		return fmt.Errorf("the matrix has no csv form (use json)")
	}
	markdown := f == Markdown
	if len(m.Scenarios) == 0 {
		return fmt.Errorf("the matrix has no scenarios")
	}
	// One kernel, one set of methods; the pagemap proof is missing from
	// scenarios that cannot have it (vfork), so take it from any run.
	methods := map[string]string{}
	var first *report.Run
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
	tag := func(h, key string) string {
		t := shortMethod(methods[key])
		if key == "pagemap" && t != "" {
			t = "[pagemap]"
		}
		switch {
		case t == "":
			return h
		case markdown:
			return h + " " + t
		}
		return h + "\n" + t
	}
	header := []string{"scenario", "role", tag("page faults", "page_faults"), tag("wp faults", "wp_faults"),
		tag("wp in region", "in_region"), tag("first writes in region", "in_region"), tag("reads in region", "in_region"),
		tag("copies", "copies"), tag("shared frames at fork", "pagemap"), tag("private after writes", "pagemap"), "outcome"}
	bw := &errWriter{w: w}
	if markdown {
		fmt.Fprintf(bw, "**cowtrace matrix: kernel %s**\n\n", m.Kernel)
	} else {
		fmt.Fprintf(bw, "cowtrace matrix: kernel %s\n", m.Kernel)
	}
	if bw.err != nil {
		return bw.err
	}
	var rows [][]string
	region := func(p *report.Process, get func(*report.FaultClasses) uint64) string {
		if p.InRegion == nil {
			return "-"
		}
		return strconv.FormatUint(get(p.InRegion), 10)
	}
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
			rows = append(rows, []string{name, p.Role, num(p.PageFaults), num(p.WPFaults),
				region(p, func(f *report.FaultClasses) uint64 { return f.WP }),
				region(p, func(f *report.FaultClasses) uint64 { return f.WriteNotPresent }),
				region(p, func(f *report.FaultClasses) uint64 { return f.Read }),
				num(p.Copies), frames(p, true), frames(p, false), outcome})
		}
	}
	if err := writeTable(w, markdown, 2, header, rows); err != nil {
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
		if e.NotApplicable != "" {
			fmt.Fprintf(bw, "%s%s: %s\n", bullet(markdown), e.Name, e.NotApplicable)
			continue
		}
		fmt.Fprintf(bw, "%s%s: %s (%s)\n", bullet(markdown), e.Name, e.Outcome, outcomeWord(e))
		for _, x := range e.Expectations {
			switch {
			case !x.Held:
				fmt.Fprintf(bw, "  %s%s\n", bullet(markdown), x.Detail)
			case x.NotChecked != "":
				fmt.Fprintf(bw, "  %snot checked: %s: %s\n", bullet(markdown), x.Expect, x.NotChecked)
			}
		}
		if e.Finding != "" {
			fmt.Fprintf(bw, "  %sfinding: %s\n", bullet(markdown), e.Finding)
		}
		for _, n := range e.Run.Notes {
			if strings.HasPrefix(n, "thp:") || strings.Contains(n, "not mapped") {
				fmt.Fprintf(bw, "  %snote: %s\n", bullet(markdown), n)
			}
		}
	}
	return bw.err
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

func bullet(markdown bool) string {
	if markdown {
		return "- "
	}
	return ""
}
