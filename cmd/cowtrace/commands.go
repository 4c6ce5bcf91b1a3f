package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
)

// command is one of cowtrace's commands. The table of them, commands, is
// the one place that dispatch, cowtrace help, cowtrace help COMMAND, -h, the
// usage in docs/usage.md (cowtrace help --all), the man page and the shell
// completions read.
type command struct {
	name     string
	aliases  []string
	what     string // one line, for cowtrace help's list and the completions
	synopses []synopsis
	long     string // -h's text between the synopses and the flags
	// setup registers the command's flags on fs and returns what runs the
	// command once they are parsed. Commands without flags have run.
	setup func(fs *flagSet) runner
	run   func(args []string, stdout io.Writer) error
	// interspersed: flags may follow the operands (compare's files).
	interspersed bool
	// operands are what the command takes after its flags, for the shell
	// completions.
	operands argKind
}

// synopsis is one way to call a command, after "cowtrace ", and what it
// does, for cowtrace help.
type synopsis struct{ line, what string }

// runner runs a command with the arguments left after its flags.
type runner func(ctx context.Context, args []string, stdout, stderr io.Writer) error

// commands is the table of cowtrace's commands, in the order help lists
// them; the first is the default.
func commands() []*command {
	return []*command{
		{name: "experiment", what: "run the fork/copy-on-write experiment (the default command)", synopses: []synopsis{
			{"[flags]", "run the fork/copy-on-write experiment (the default command)"},
			{"experiment [flags]", "the same"},
		}, long: experimentLong, setup: setupExperiment},
		{name: "matrix", what: "every scenario of the experiment in one table", synopses: []synopsis{{"matrix [flags]", "every scenario of the experiment in one table"}},
			long: matrixLong(), setup: setupMatrix},
		{name: "compare", what: "runs side by side, differences marked; with --baseline, a regression gate", synopses: []synopsis{
			{"compare [flags] A.json B.json ...", "runs side by side, differences marked"},
			{"compare --baseline BASE.json --max-increase MEASURE=BOUND,... CURRENT.json", "a regression gate: exit 1 when a measure grew past its bound"},
		}, long: compareLong, setup: setupCompare, interspersed: true, operands: argJSON},
		{name: "run", what: "trace a command and every process it forks, one row each", synopses: []synopsis{{"run [flags] [--] CMD [ARGS...]", "trace CMD and every process it forks, one row each"}},
			long: runLong, setup: setupRun, operands: argCommand},
		{name: "attach", what: "trace a running process and the children it forks", synopses: []synopsis{{"attach -p PID [flags]", "trace a running process and the children it forks"}},
			long: attachLong, setup: setupAttach},
		{name: "watch", what: "each fork of a running process or of a command, billed as its child's tree ends", synopses: []synopsis{
			{"watch -p PID [flags]", "each fork of a running process, billed as its child's tree ends"},
			{"watch [flags] -- CMD [ARGS...]", "the same for CMD, which watch starts"},
		}, long: watchLong, setup: setupWatch, operands: argCommand},
		{name: "doctor", what: "what this kernel and these privileges offer, and how to get more", synopses: []synopsis{{"doctor [flags]", "what this kernel and these privileges give, and what better methods take"}},
			long: doctorLong, setup: setupDoctor},
		{name: "version", aliases: []string{"--version", "-version"}, what: "version, commit, Go release and platform (also --version)",
			synopses: []synopsis{{"version", "version, commit, Go release and platform (also --version)"}},
			long:     "Prints cowtrace's version, the commit it was built from, the Go release and the platform.\n", run: cmdVersion},
		{name: "help", what: "the commands, or what a command does and its flags", synopses: []synopsis{{"help [COMMAND]", "the commands, or what COMMAND does and its flags"}},
			long: "Lists the commands, or says what COMMAND does and lists its flags; with --all,\neverything: the command list and every command's flags.\n", run: cmdHelp,
			operands: argCommandName},
		{name: "completion", what: "the completion script of bash, zsh or fish", synopses: []synopsis{{"completion bash|zsh|fish", "the shell's completion script for cowtrace"}},
			long: completionLong, run: cmdCompletion, operands: argChoice},
		{name: "man", what: "the manual page, in roff", synopses: []synopsis{{"man", "the manual page, in roff (man -l <(cowtrace man))"}},
			long: "Prints cowtrace's manual page, cowtrace(1), in roff: every command and flag, as\nthe help says them. make install installs it.\n", run: cmdMan},
	}
}

// lookup finds the command named name.
func lookup(name string) *command {
	for _, c := range commands() {
		if c.name == name || slices.Contains(c.aliases, name) {
			return c
		}
	}
	return nil
}

// commandNames are the names of the commands, in the table's order.
func commandNames() []string {
	var names []string
	for _, c := range commands() {
		names = append(names, c.name)
	}
	return names
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return commands()[0].invoke(ctx, args, stdout, stderr)
	}
	if c := lookup(args[0]); c != nil {
		return c.invoke(ctx, args[1:], stdout, stderr)
	}
	switch {
	case len(args) == 1 && isHelpFlag(args[0]):
		// cowtrace --help: the commands, as git --help gives; the
		// experiment's flags are cowtrace experiment -h.
		return writeHelp(stdout, topUsage(helpWidth(stdout)))
	case !strings.HasPrefix(args[0], "-"):
		// The experiment takes no operands: a word is a command or a typo.
		return usagef("unknown command %q (commands: %s; cowtrace help says what each does)", args[0], strings.Join(commandNames(), ", "))
	}
	return commands()[0].invoke(ctx, args, stdout, stderr)
}

// isHelpFlag is -h, -help or --help, as the flag package takes them.
func isHelpFlag(arg string) bool {
	return arg == "-h" || arg == "-help" || arg == "--help" || arg == "--h"
}

// writeHelp writes text whole, then returns errHelp: a failed write
// (stdout closed or full) is the command's error, as any other output's.
func writeHelp(stdout io.Writer, text string) error {
	if _, err := io.WriteString(stdout, text); err != nil {
		return err
	}
	return errHelp
}

func (c *command) invoke(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	width := helpWidth(stdout)
	if c.setup == nil {
		// Commands without flags take -h too.
		if len(args) == 1 && isHelpFlag(args[0]) {
			var b strings.Builder
			c.writeUsage(&b, width)
			return writeHelp(stdout, b.String())
		}
		return c.run(args, stdout)
	}
	fs := c.flagSet()
	run := c.setup(fs)
	usage := func(w io.Writer) { c.writeUsage(w, width) }
	if c.interspersed {
		operands, err := parseInterspersed(fs, args, usage, stdout)
		if err != nil {
			return err
		}
		return run(ctx, operands, stdout, stderr)
	}
	if err := parseFlags(fs, args, usage, stdout); err != nil {
		return err
	}
	return run(ctx, fs.Args(), stdout, stderr)
}

func (c *command) flagSet() *flagSet { return newFlagSet("cowtrace " + c.name) }

// writeUsage is the command's -h: how to call it, what it does, its flags,
// wrapped at width.
func (c *command) writeUsage(w io.Writer, width int) {
	for i, s := range c.synopses {
		prefix := "Usage: "
		if i > 0 {
			prefix = "       "
		}
		fmt.Fprintf(w, "%scowtrace %s\n", prefix, s.line)
	}
	fmt.Fprintf(w, "\n%s", reflow(c.long, width))
	if flags := c.flags(); flags != nil {
		fmt.Fprint(w, "\nFlags:\n")
		for _, f := range flags {
			writeFlag(w, f, width)
		}
	}
}

func cmdVersion(args []string, stdout io.Writer) error {
	if len(args) > 0 {
		return usagef("version: unexpected argument %q", args[0])
	}
	_, err := fmt.Fprintln(stdout, versionLine())
	return err
}

// cmdHelp prints the command list, a command's -h, or with --all what the
// docs/usage.md shows: the list and every command's flags.
func cmdHelp(args []string, stdout io.Writer) error {
	width := helpWidth(stdout)
	switch {
	case len(args) == 0:
		_, err := io.WriteString(stdout, topUsage(width))
		return err
	case len(args) > 1:
		return usagef("help: unexpected argument %q (usage: cowtrace help [COMMAND])", args[1])
	case args[0] == "--all" || args[0] == "-all":
		_, err := io.WriteString(stdout, allUsage(width))
		return err
	}
	c := lookup(args[0])
	if c == nil {
		return usagef("help: no command %q (commands: %s)", args[0], strings.Join(commandNames(), ", "))
	}
	var b strings.Builder
	c.writeUsage(&b, width)
	_, err := io.WriteString(stdout, b.String())
	return err
}

const exitStatusHelp = `Exit status: 0 success; 1 the run failed (or an --expect did not hold); 2 bad
command line or input; 3 the measurement is incomplete (figures that do not
add up are null, the report says why); 70 internal error (a bug in cowtrace:
please report it); 130 interrupted. cowtrace run ends with CMD's status
instead when CMD fails (126 or 127 when it cannot be executed).
`

// topUsage is cowtrace help, wrapped at width: the list of commands.
func topUsage(width int) string {
	var b strings.Builder
	b.WriteString(reflow("cowtrace proves and measures copy-on-write after fork with perf_event_open.", width))
	b.WriteString("\nUsage: cowtrace [COMMAND] [flags] [ARGS...]\n\nCommands:\n")
	for _, c := range commands() {
		writeWrapped(&b, "  "+c.name, c.what, commandCol, width)
	}
	b.WriteString("\n")
	b.WriteString(reflow(`Run "cowtrace help COMMAND" or "cowtrace COMMAND -h" for what a command does and its flags, "cowtrace help --all" for every command's.`, width))
	b.WriteString("\n")
	b.WriteString(reflow(exitStatusHelp, width))
	return b.String()
}

// commandCol is where the descriptions of cowtrace help's list of commands
// start, and synopsisCol those of cowtrace help --all's synopses; a longer
// synopsis has its description on the next line.
const (
	commandCol  = 14
	synopsisCol = 46
)

func writeSynopses(w io.Writer, indent string, c *command, width int) {
	for _, s := range c.synopses {
		writeWrapped(w, indent+"cowtrace "+s.line, s.what, synopsisCol, width)
	}
}

// allUsage is cowtrace help --all, docs/usage.md's usage: every command with
// every flag it takes, wrapped at width. A flag that an earlier command
// takes with the same help and default is named, not described again.
func allUsage(width int) string {
	var b strings.Builder
	type description struct{ name, arg, usage, def string }
	first := map[description]string{} // the command that described it
	for _, c := range commands() {
		writeSynopses(&b, "", c, width)
		var origins []string
		same := map[string][]string{}
		for _, f := range c.flags() {
			d := description{f.name, f.arg, f.usage, f.def}
			if origin, ok := first[d]; ok {
				if same[origin] == nil {
					origins = append(origins, origin)
				}
				same[origin] = append(same[origin], flagName(f.name))
				continue
			}
			first[d] = c.name
			writeFlag(&b, f, width)
		}
		for _, origin := range origins {
			writeWrapped(&b, "  as in cowtrace "+origin+":", strings.Join(same[origin], ", "), flagCol, width)
		}
	}
	return b.String()
}
