package main

import (
	"fmt"
	"io"
	"regexp"
	"runtime/debug"
	"strings"
	"time"
)

// cmdMan prints cowtrace(1), written from the command table and the flags
// as the help is: a flag added or reworded is in the man page too.
func cmdMan(args []string, stdout io.Writer) error {
	if len(args) > 0 {
		return usagef("man: unexpected argument %q", args[0])
	}
	var b strings.Builder
	writeMan(&b)
	_, err := io.WriteString(stdout, b.String())
	return err
}

const manDescription = `cowtrace proves and measures copy-on-write after fork with perf_event_open:
page faults, write-protect faults and page copies per process, with no BPF,
kernel module or debug info. Without a command it runs the experiment.
Every flag takes one dash or two (-format or --format), and its value after
a space or an equals sign.
`

func writeMan(w io.Writer) {
	fmt.Fprintf(w, ".TH COWTRACE 1 %s cowtrace \"User Commands\"\n", manDate())
	fmt.Fprint(w, ".SH NAME\ncowtrace \\- prove and measure copy-on-write after fork with perf_event_open\n")
	fmt.Fprint(w, ".SH SYNOPSIS\n.nf\n")
	for _, c := range commands() {
		for _, s := range c.synopses {
			fmt.Fprintf(w, "\\fBcowtrace\\fR %s\n", roffLine(s.line))
		}
	}
	fmt.Fprint(w, ".fi\n.SH DESCRIPTION\n")
	writeRoffText(w, manDescription)
	fmt.Fprint(w, ".SH COMMANDS\n")
	for _, c := range commands() {
		fmt.Fprintf(w, ".SS %s\n", roffQuote("cowtrace "+c.synopses[0].line))
		for _, s := range c.synopses[1:] {
			fmt.Fprintf(w, "\\fBcowtrace\\fR %s\n.PP\n", roffLine(s.line))
		}
		writeRoffText(w, c.long)
		for _, f := range c.flags() {
			head := "\\fB" + roffLine(flagName(f.name)) + "\\fR"
			if f.arg != "" {
				head += " \\fI" + roffLine(f.arg) + "\\fR"
			}
			usage := f.usage
			if f.def != "" {
				usage += " (default " + f.def + ")"
			}
			fmt.Fprintf(w, ".TP\n%s\n%s\n", head, roffLine(usage))
		}
	}
	fmt.Fprint(w, ".SH \"EXIT STATUS\"\n")
	writeRoffText(w, exitStatusHelp)
	fmt.Fprint(w, ".SH \"SEE ALSO\"\n.BR perf\\-stat (1),\n.BR perf_event_open (2),\n.BR proc (5)\n")
}

// writeRoffText writes a help text as roff: paragraphs and list rows
// filled by the formatter, examples kept as they are, indented.
func writeRoffText(w io.Writer, text string) {
	example := false
	for i, bl := range parseHelpText(text) {
		if example && bl.kind != textExample {
			fmt.Fprint(w, ".fi\n.RE\n")
			example = false
		}
		switch bl.kind {
		case textBlank:
		case textExample:
			if !example {
				fmt.Fprint(w, ".RS 2\n.nf\n")
				example = true
			}
			fmt.Fprintln(w, roffLine(strings.TrimPrefix(bl.text, "  ")))
		case textPara:
			if i > 0 {
				fmt.Fprint(w, ".PP\n")
			}
			fmt.Fprintln(w, roffLine(bl.text))
		case textRow:
			fmt.Fprintf(w, ".TP\n\\fB%s\\fR\n%s\n", roffLine(bl.term), roffLine(bl.text))
		}
	}
	if example {
		fmt.Fprint(w, ".fi\n.RE\n")
	}
}

// optionDash is a dash that starts an option (-o, --format), and
// endOfFlags the "--" that ends them: roff must print those as minus signs,
// to be typed back; other dashes are hyphens.
var (
	optionDash = regexp.MustCompile(`(^|[\s(\[,'"=|])(--?)([A-Za-z])`)
	endOfFlags = regexp.MustCompile(`(^|[\s\[])--($|[\s\]])`)
)

// roffLine escapes one line of text for roff: backslashes, the dashes of
// options, and a leading dot or quote, which would be read as a request.
func roffLine(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	minus := func(m string) string { return strings.ReplaceAll(m, "-", `\-`) }
	s = optionDash.ReplaceAllStringFunc(s, minus)
	s = endOfFlags.ReplaceAllStringFunc(s, minus)
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		s = `\&` + s
	}
	return s
}

// roffQuote quotes an argument of a request.
func roffQuote(s string) string {
	return `"` + strings.ReplaceAll(roffLine(s), `"`, `""`) + `"`
}

// manDate is the page's date: the commit's, where the build stamped it or
// the go command did (a vcs.time, a pseudo-version's time), so that the
// page says which code it describes and is the same from build to build;
// else today's, as help2man's.
func manDate() string {
	const day = "2006-01-02"
	when := commitTime
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.time" {
				when = s.Value
			}
		}
		// v0.0.0-20261206230124-550d4b177788: the commit's time in UTC.
		if m := pseudoTime.FindStringSubmatch(bi.Main.Version); m != nil && when == "" {
			if t, err := time.Parse("20060102150405", m[1]); err == nil {
				when = t.Format(day)
			}
		}
	}
	if len(when) < len(day) {
		return time.Now().UTC().Format(day)
	}
	return when[:len(day)]
}

var pseudoTime = regexp.MustCompile(`[-.](\d{14})-[0-9a-f]{12}(?:\+dirty)?$`)
