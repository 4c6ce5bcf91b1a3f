package render

import (
	"fmt"
	"io"
	"strconv"

	"github.com/cowtrace/cowtrace/report"
)

// attribRows is how many shares a process's table shows before it sums the
// rest into one line; the JSON report has them all.
const attribRows = 12

// writeAttribution renders, after the main table, one small table per
// process with copies: where they landed (or which code caused them), how
// many pages, and what share of the process's copies.
func writeAttribution(w io.Writer, run *report.Run, st style) error {
	if run.CopiesBy == "" {
		return nil
	}
	bw := &errWriter{w: w}
	for i := range run.Processes {
		p := &run.Processes[i]
		if len(p.CopiesBy) == 0 || p.Role == "thread" {
			continue
		}
		var total uint64
		for _, s := range p.CopiesBy {
			total += s.Copies
		}
		title := fmt.Sprintf("copies by %s: pid %d", run.CopiesBy, p.Pid)
		if p.Lineage != nil {
			title += " (" + p.Comm + ")"
		}
		title += fmt.Sprintf(", %d copies, %s", total, mib(total))
		fmt.Fprintln(bw)
		heading(bw, st, title)
		if bw.err != nil {
			return bw.err
		}
		var rows [][]string
		for _, s := range topShares(p.CopiesBy, attribRows) {
			rows = append(rows, []string{s.Name, strconv.FormatUint(s.Copies, 10), strconv.FormatUint(s.Pages, 10),
				fmt.Sprintf("%.2f", float64(s.Copies)*4096/(1<<20)), fmt.Sprintf("%.1f%%", 100*s.Share)})
		}
		if err := writeTable(w, st, leftColumns(1, 5), []string{run.CopiesBy, "copies", "pages", "MiB", "share"}, rows); err != nil {
			return err
		}
	}
	return bw.err
}

// topShares keeps the n-1 largest shares (they come sorted) and sums the
// others into one line.
func topShares(ss []report.Share, n int) []report.Share {
	if len(ss) <= n {
		return ss
	}
	out := append([]report.Share{}, ss[:n-1]...)
	rest := report.Share{Name: fmt.Sprintf("(%d others)", len(ss)-n+1)}
	for _, s := range ss[n-1:] {
		rest.Copies += s.Copies
		rest.Pages += s.Pages
		rest.Share += s.Share
	}
	return append(out, rest)
}

func mib(copies uint64) string {
	return fmt.Sprintf("%.2f MiB", float64(copies)*4096/(1<<20))
}
