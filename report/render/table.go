package render

import (
	"fmt"
	"io"
	"strconv"

	"github.com/cowtrace/cowtrace/report"
	"github.com/olekukonko/tablewriter"
	"github.com/olekukonko/tablewriter/renderer"
	"github.com/olekukonko/tablewriter/tw"
)

// writeTable is every table cowtrace draws: headers centred, as written
// (tablewriter would upper-case them), numbers read from the right; the
// first leftColumns columns hold names (a scenario, a role, a process) and
// are read from the left. markdown draws it for a pull request or a CI job
// summary instead of a terminal.
func writeTable(w io.Writer, markdown bool, leftColumns int, header []string, rows [][]string) error {
	align := tw.CellAlignment{Global: tw.AlignRight}
	for range leftColumns {
		align.PerColumn = append(align.PerColumn, tw.AlignLeft)
	}
	opts := []tablewriter.Option{
		tablewriter.WithHeaderAutoFormat(tw.Off),
		tablewriter.WithHeaderAlignment(tw.AlignCenter),
		tablewriter.WithRowAlignmentConfig(align),
	}
	if markdown {
		opts = append(opts, tablewriter.WithRenderer(renderer.NewMarkdown()))
	}
	t := tablewriter.NewTable(w, opts...)
	t.Header(header)
	for _, row := range rows {
		if err := t.Append(row); err != nil {
			return err
		}
	}
	return t.Render()
}

// heading writes a table's title line: bold and followed by a blank line in
// markdown, where a table must not start right under a paragraph.
func heading(w io.Writer, markdown bool, title string) {
	if markdown {
		fmt.Fprintf(w, "**%s**\n\n", title)
		return
	}
	fmt.Fprintf(w, "%s\n", title)
}

// stacked is a header cell of two parts, a measure and what qualifies it
// (its method, a run's label): two lines in a terminal, where columns are
// narrow, one in markdown, whose cells have no line breaks.
func stacked(top, bottom string, markdown bool) string {
	switch {
	case bottom == "":
		return top
	case markdown:
		return top + " " + bottom
	}
	return top + "\n" + bottom
}

// bullet starts a line of the notes under a table: a list item in markdown.
func bullet(markdown bool) string {
	if markdown {
		return "- "
	}
	return ""
}

// inRegion reads one class of a row's faults in the experiment's region;
// "-" for rows without a region (traced runs, unclassified faults).
func inRegion(get func(f *report.FaultClasses) uint64) func(p *report.Process) string {
	return func(p *report.Process) string {
		if p.InRegion == nil {
			return "-"
		}
		return strconv.FormatUint(get(p.InRegion), 10)
	}
}
