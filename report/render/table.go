package render

import (
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/cowtrace/cowtrace/report"
	"github.com/mattn/go-runewidth"
	"github.com/olekukonko/tablewriter"
	"github.com/olekukonko/tablewriter/renderer"
	"github.com/olekukonko/tablewriter/tw"
)

// style is how a table and the lines around it are drawn: the boxed wide
// layout with every method and window in full, the plain narrow one that
// fits a terminal (short headers, methods as footnote keys), or markdown.
type style struct {
	markdown bool
	// narrow: no box, short headers, footnotes for the methods; a table
	// still too wide is wrapped into blocks of columns.
	narrow bool
	// width is where prose wraps and a narrow table breaks; 0: nowhere.
	width int
}

// gap separates the columns of a narrow table, as kubectl's and ps's do.
const gap = "  "

// writeTable is every table cowtrace draws. Boxed and in markdown (for a
// pull request or a CI job summary) headers are centred, as written
// (tablewriter would upper-case them); narrow, they stand over their
// column, one word per line where written so. Columns whose left is true
// hold names (a scenario, a role, a command) and read from the left,
// the others numbers, from the right.
func writeTable(w io.Writer, st style, left []bool, header []string, rows [][]string) error {
	if st.narrow {
		return writePlain(w, st.width, left, header, rows)
	}
	align := tw.CellAlignment{Global: tw.AlignRight}
	for _, l := range left {
		a := tw.AlignRight
		if l {
			a = tw.AlignLeft
		}
		align.PerColumn = append(align.PerColumn, a)
	}
	opts := []tablewriter.Option{
		tablewriter.WithHeaderAutoFormat(tw.Off),
		tablewriter.WithHeaderAlignment(tw.AlignCenter),
		tablewriter.WithRowAlignmentConfig(align),
	}
	if st.markdown {
		// Markdown's alignment row follows the rows' alignment, and a
		// cell has no line break: stacked headers are one line there.
		opts = append(opts, tablewriter.WithRenderer(renderer.NewMarkdown()), tablewriter.WithHeaderAlignmentConfig(align))
		h := make([]string, len(header))
		for i, c := range header {
			h[i] = strings.ReplaceAll(c, "\n", " ")
		}
		header = h
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

// writePlain draws a narrow table: columns separated by gap, headers of
// several lines bottom-aligned over their column. Wider than width, the
// columns after the leading name columns are wrapped into blocks that each
// repeat the name columns, as R and pandas print a wide data frame.
func writePlain(w io.Writer, width int, left []bool, header []string, rows [][]string) error {
	n := len(header)
	widths := make([]int, n)
	lines := make([][]string, n)
	for i, h := range header {
		lines[i] = strings.Split(h, "\n")
		for _, l := range lines[i] {
			widths[i] = max(widths[i], runewidth.StringWidth(l))
		}
	}
	for _, row := range rows {
		for i, c := range row {
			widths[i] = max(widths[i], runewidth.StringWidth(c))
		}
	}
	keys := 0
	for keys < n && keys < len(left) && left[keys] {
		keys++
	}
	var blocks [][]int
	cur, used := []int{}, 0
	for i := range keys {
		cur = append(cur, i)
		used += widths[i] + len(gap)
	}
	keyUsed, first := used, len(cur)
	for i := keys; i < n; i++ {
		if width > 0 && len(cur) > first && used+widths[i] > width {
			blocks = append(blocks, cur)
			cur = append([]int{}, cur[:keys]...)
			used = keyUsed
			first = len(cur)
		}
		cur = append(cur, i)
		used += widths[i] + len(gap)
	}
	blocks = append(blocks, cur)
	var b bytes.Buffer
	cellText := func(i int, s string) string {
		pad := strings.Repeat(" ", widths[i]-runewidth.StringWidth(s))
		if i < len(left) && left[i] {
			return s + pad
		}
		return pad + s
	}
	line := func(block []int, cell func(i int) string) {
		var l strings.Builder
		for j, i := range block {
			if j > 0 {
				l.WriteString(gap)
			}
			l.WriteString(cellText(i, cell(i)))
		}
		b.WriteString(strings.TrimRight(l.String(), " ") + "\n")
	}
	for bi, block := range blocks {
		if bi > 0 {
			b.WriteString("\n")
		}
		height := 0
		for _, i := range block {
			height = max(height, len(lines[i]))
		}
		for k := range height {
			line(block, func(i int) string {
				// Bottom-aligned: a short header sits on the last lines.
				if j := k - (height - len(lines[i])); j >= 0 {
					return lines[i][j]
				}
				return ""
			})
		}
		for _, row := range rows {
			line(block, func(i int) string { return row[i] })
		}
	}
	_, err := w.Write(b.Bytes())
	return err
}

// leftColumns is the alignment of a table whose first n columns hold names.
func leftColumns(n, total int) []bool {
	left := make([]bool, total)
	for i := range min(n, total) {
		left[i] = true
	}
	return left
}

// heading writes a table's title line: bold and followed by a blank line in
// markdown, where a table must not start right under a paragraph; wrapped
// at the style's width in a terminal.
func heading(w io.Writer, st style, title string) {
	if st.markdown {
		fmt.Fprintf(w, "**%s**\n\n", title)
		return
	}
	prose(w, st, "", title)
}

// prose writes one line of the notes around a table: a list item in
// markdown (one paragraph per line would run them together), else wrapped
// at the style's width, its continuation lines indented under the text.
// prefix (a key, "note:") starts the line.
func prose(w io.Writer, st style, prefix, text string) {
	if st.markdown {
		fmt.Fprintf(w, "- %s%s\n", prefix, text)
		return
	}
	// Under a short prefix ("note: ", "[1] ") the text lines up; under a
	// long one (a scenario's name) it would leave too little room.
	indent := runewidth.StringWidth(prefix)
	if indent > 6 {
		indent = 2
	}
	fmt.Fprint(w, wrap(prefix+text, st.width, strings.Repeat(" ", indent)))
}

// subProse is a line under the previous prose line: a nested list item in
// markdown, indented by two in a terminal.
func subProse(w io.Writer, st style, text string) {
	if st.markdown {
		fmt.Fprintf(w, "  - %s\n", text)
		return
	}
	fmt.Fprint(w, wrap("  "+text, st.width, "    "))
}

// wrap breaks s into lines of at most width columns at spaces, the lines
// after the first starting with indent; a word longer than a line stays
// whole. width 0 leaves s one line.
func wrap(s string, width int, indent string) string {
	if width <= 0 || runewidth.StringWidth(s) <= width {
		return s + "\n"
	}
	var b strings.Builder
	lead := len(s) - len(strings.TrimLeft(s, " "))
	line := s[:lead]
	empty := true
	for _, word := range strings.Fields(s) {
		if !empty && runewidth.StringWidth(line)+1+runewidth.StringWidth(word) > width {
			b.WriteString(line + "\n")
			line, empty = indent, true
		}
		if !empty {
			line += " "
		}
		line += word
		empty = false
	}
	b.WriteString(line + "\n")
	return b.String()
}

// stacked is a header cell of two parts, a measure and what qualifies it
// (its method, a run's label): two lines in a terminal, where columns are
// narrow, one in markdown (writeTable joins them).
func stacked(top, bottom string) string {
	if bottom == "" {
		return top
	}
	return top + "\n" + bottom
}

// inRegion reads one class of a row's faults in the experiment's region;
// "-" where the row has no region or the run's method cannot tell the class.
func inRegion(run *report.Run, c report.Class) func(p *report.Process) string {
	return func(p *report.Process) string {
		v := run.Class(p, "in_region", c)
		if v == nil {
			return "-"
		}
		return strconv.FormatUint(*v, 10)
	}
}

// tableWidth is the widest line of the boxed tables in out: whether the wide
// layout fits a terminal is the tables' matter, prose wraps.
func tableWidth(out []byte) int {
	w := 0
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "┌") || strings.HasPrefix(l, "│") || strings.HasPrefix(l, "└") {
			w = max(w, runewidth.StringWidth(l))
		}
	}
	return w
}
