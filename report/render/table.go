package render

import (
	"io"

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
