package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// Help is wrapped to the terminal it is printed to, as man and git wrap
// theirs: lines of several hundred columns broke into fragments in an
// 80-column terminal.
const (
	defaultHelpWidth = 80  // when stdout is no terminal (a pipe, a file, a test)
	minHelpWidth     = 40  // narrower, the flag column leaves no room
	maxHelpWidth     = 100 // wider lines are hard to read, as clap caps them too
)

// helpWidth is the width help is wrapped to, for output to w.
func helpWidth(w io.Writer) int {
	if f, ok := w.(*os.File); ok {
		if ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ); err == nil && ws.Col > 0 {
			return min(max(int(ws.Col), minHelpWidth), maxHelpWidth)
		}
	}
	return defaultHelpWidth
}

// A help text, in the source, is paragraphs of prose wrapped anyhow,
// separated by blank lines; a line indented by two spaces is kept as it is
// (an example), unless it is a row of a list: a term, two spaces or more, and
// its description, which may go on in lines indented to the description's
// column. reflow wraps it at a terminal's width, writeRoffText for man.

// textBlock is one paragraph, example line, list row or blank line.
type textBlock struct {
	kind textKind
	term string // a row's
	text string // a paragraph's or a row's words, joined; an example's line
	col  int    // where a row's description starts
}

type textKind int

const (
	textBlank textKind = iota
	textPara
	textExample
	textRow
)

// listRow is a row of a list: two spaces, a term without spaces, two spaces
// or more, a description.
var listRow = regexp.MustCompile(`^  (\S+)( {2,})(\S.*)$`)

func parseHelpText(text string) []textBlock {
	var blocks []textBlock
	for _, line := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
		var last *textBlock
		if len(blocks) > 0 {
			last = &blocks[len(blocks)-1]
		}
		switch m := listRow.FindStringSubmatch(line); {
		case line == "":
			blocks = append(blocks, textBlock{kind: textBlank})
		case m != nil:
			blocks = append(blocks, textBlock{kind: textRow, term: m[1], text: m[3], col: 2 + len(m[1]) + len(m[2])})
		case last != nil && last.kind == textRow && len(line) > last.col && strings.TrimSpace(line[:last.col]) == "":
			last.text += " " + strings.TrimSpace(line)
		case line[0] == ' ':
			blocks = append(blocks, textBlock{kind: textExample, text: line})
		case last != nil && last.kind == textPara:
			last.text += " " + line
		default:
			blocks = append(blocks, textBlock{kind: textPara, text: line})
		}
	}
	return blocks
}

// reflow fills the paragraphs and list rows of a help text to width.
func reflow(text string, width int) string {
	var b strings.Builder
	for _, bl := range parseHelpText(text) {
		switch bl.kind {
		case textBlank:
			b.WriteString("\n")
		case textExample:
			b.WriteString(bl.text + "\n")
		case textPara:
			writeWrapped(&b, "", bl.text, 0, width)
		case textRow:
			writeWrapped(&b, "  "+bl.term, bl.text, bl.col, width)
		}
	}
	return b.String()
}

// writeWrapped writes head, then text from column col on, wrapped at
// width; a head as wide as col puts the text on the next line. Where the
// column leaves less than a third of the width, the text goes under the head
// at a small indent instead.
func writeWrapped(w io.Writer, head, text string, col, width int) {
	if width-col < width/3 {
		col = min(col, 8)
		if head != "" {
			fmt.Fprintln(w, head)
			head = ""
		}
	}
	line := head
	if head != "" && len(line) >= col-1 {
		fmt.Fprintln(w, line)
		line = ""
	}
	indent := strings.Repeat(" ", col)
	line += indent[len(line):]
	fresh := true
	for _, word := range strings.Fields(text) {
		if !fresh && len(line)+1+len(word) > width {
			fmt.Fprintln(w, line)
			line, fresh = indent, true
		}
		if !fresh {
			line += " "
		}
		line += word
		fresh = false
	}
	fmt.Fprintln(w, line)
}

// flagCol is where a flag's help starts, after its name and argument.
const flagCol = 24

// flagName is a flag as the help writes it: -o, --format. Go's flag
// package takes either number of dashes.
func flagName(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// argKind is what a flag's argument or a command's operand is, for the
// shell completions.
type argKind int

const (
	argNone        argKind = iota // a bool flag; no operands
	argWord                       // anything: nothing to complete
	argChoice                     // one of choices
	argFile                       // a file's name
	argJSON                       // a JSON report's file name
	argPID                        // a process id
	argCommand                    // a command line (run's CMD [ARGS...])
	argCommandName                // one of cowtrace's commands
)

// flagInfo is one visible flag of a command, as the help, the man page and
// the completions show it.
type flagInfo struct {
	name    string // without dashes
	arg     string // the argument's name in the help, "" for a bool flag
	usage   string
	def     string // "" where the default goes unsaid (false, 0, "")
	kind    argKind
	choices []string
	repeats bool // it may be given again (--probe, --expect)
}

// flags are the visible flags of the command, from the flag set its setup
// registers, in the flag package's order (by name).
func (c *command) flags() []flagInfo {
	if c.setup == nil {
		return nil
	}
	fs := c.flagSet()
	c.setup(fs)
	var out []flagInfo
	for _, f := range fs.visible() {
		arg, usage := flag.UnquoteUsage(f)
		fi := flagInfo{name: f.Name, arg: arg, usage: usage, def: f.DefValue, choices: fs.choices[f.Name]}
		_, fi.repeats = f.Value.(repeatable)
		switch f.DefValue {
		case "false", "0", "0s":
			fi.def = ""
		}
		switch {
		case arg == "":
			fi.kind = argNone
		case len(fi.choices) > 0:
			fi.kind = argChoice
		case arg == "PID":
			fi.kind = argPID
		case strings.HasSuffix(arg, ".json"):
			fi.kind = argJSON
		case arg == "FILE":
			fi.kind = argFile
		default:
			fi.kind = argWord
		}
		out = append(out, fi)
	}
	return out
}

// writeFlag is one flag of the help: its name and argument, its help and
// its default where it has one.
func writeFlag(w io.Writer, f flagInfo, width int) {
	head := "  " + flagName(f.name)
	if f.arg != "" {
		head += " " + f.arg
	}
	usage := f.usage
	if f.def != "" {
		usage += " (default " + f.def + ")"
	}
	writeWrapped(w, head, usage, flagCol, width)
}

// repeatable is a flag.Value that takes every value it is given, as the
// completions must know.
type repeatable interface{ repeats() }

func (*stringList) repeats()  {}
func (*probesValue) repeats() {}
func (*expectValue) repeats() {}

// choose records the values a flag takes, for the shell completions; the
// flag's Value refuses the others itself.
func (fs *flagSet) choose(name string, values ...string) {
	fs.choices[name] = slices.Clone(values)
}
