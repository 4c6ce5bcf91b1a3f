package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
)

// command is one of cowtrace's commands. The table of them, commands, is
// the one place that dispatch, cowtrace help, cowtrace help COMMAND, -h and
// the README's usage (cowtrace help --all) read.
type command struct {
	name     string
	aliases  []string
	synopses []synopsis
	long     string // -h's text between the synopses and the flags
	// setup registers the command's flags on fs and returns what runs the
	// command once they are parsed. Commands without flags have run.
	setup func(fs *flagSet) runner
	run   func(args []string, stdout io.Writer) error
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
		{name: "experiment", synopses: []synopsis{
			{"[flags]", `run the fork/copy-on-write experiment (as "experiment")`},
			{"experiment [flags]", "the same"},
		}, long: experimentLong, setup: setupExperiment},
		{name: "matrix", synopses: []synopsis{{"matrix [flags]", "every scenario of the experiment in one table"}},
			long: matrixLong(), setup: setupMatrix},
		{name: "compare", synopses: []synopsis{
			{"compare [flags] A.json B.json ...", "runs side by side, differences marked"},
			{"compare --baseline BASE.json --max-increase MEASURE=BOUND,... CURRENT.json", "a regression gate: exit 1 when a measure grew past its bound"},
		}, long: compareLong, setup: setupCompare},
		{name: "run", synopses: []synopsis{{"run [flags] [--] CMD [ARGS...]", "trace CMD and every process it forks, one row each"}},
			long: runLong, setup: setupRun},
		{name: "attach", synopses: []synopsis{{"attach -p PID [flags]", "trace a running process and the children it forks"}},
			long: attachLong, setup: setupAttach},
		{name: "watch", synopses: []synopsis{
			{"watch -p PID [flags]", "each fork of a running process, billed as its child's tree ends"},
			{"watch [flags] -- CMD [ARGS...]", "the same for CMD, which watch starts"},
		}, long: watchLong, setup: setupWatch},
		{name: "doctor", synopses: []synopsis{{"doctor [flags]", "what this kernel and these privileges give, and what better methods take"}},
			long: doctorLong, setup: setupDoctor},
		{name: "version", aliases: []string{"--version", "-version"},
			synopses: []synopsis{{"version", "version, commit, Go release and platform (also --version)"}},
			long:     "Prints cowtrace's version, the commit it was built from, the Go release and the platform.\n", run: cmdVersion},
		{name: "help", synopses: []synopsis{{"help [COMMAND]", "this text, or what COMMAND does and its flags"}},
			long: "Lists the commands, or says what COMMAND does and lists its flags; with --all,\neverything: the command list and every command's flags.\n", run: cmdHelp},
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

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c *command
	if len(args) > 0 {
		c = lookup(args[0])
	}
	if c == nil {
		return commands()[0].invoke(ctx, args, stdout, stderr)
	}
	return c.invoke(ctx, args[1:], stdout, stderr)
}

func (c *command) invoke(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if c.setup == nil {
		return c.run(args, stdout)
	}
	fs := c.flagSet()
	run := c.setup(fs)
	if err := parseFlags(fs, args, func(w io.Writer) { c.writeUsage(w, fs) }, stdout); err != nil {
		return err
	}
	return run(ctx, fs.Args(), stdout, stderr)
}

func (c *command) flagSet() *flagSet { return newFlagSet("cowtrace " + c.name) }

// writeUsage is the command's -h: how to call it, what it does, its flags.
func (c *command) writeUsage(w io.Writer, fs *flagSet) {
	for i, s := range c.synopses {
		prefix := "Usage: "
		if i > 0 {
			prefix = "       "
		}
		fmt.Fprintf(w, "%scowtrace %s\n", prefix, s.line)
	}
	fmt.Fprintf(w, "\n%s", c.long)
	if fs != nil {
		fmt.Fprint(w, "\nFlags:\n")
		fs.printDefaults(w)
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
// README shows: the list and every command's flags.
func cmdHelp(args []string, stdout io.Writer) error {
	switch {
	case len(args) == 0:
		_, err := io.WriteString(stdout, topUsage())
		return err
	case len(args) > 1:
		return usagef("help: unexpected argument %q (usage: cowtrace help [COMMAND])", args[1])
	case args[0] == "--all" || args[0] == "-all":
		_, err := io.WriteString(stdout, allUsage())
		return err
	}
	c := lookup(args[0])
	if c == nil {
		var names []string
		for _, c := range commands() {
			names = append(names, c.name)
		}
		return usagef("help: no command %q (commands: %s)", args[0], strings.Join(names, ", "))
	}
	var fs *flagSet
	if c.setup != nil {
		fs = c.flagSet()
		c.setup(fs)
	}
	var b strings.Builder
	c.writeUsage(&b, fs)
	_, err := io.WriteString(stdout, b.String())
	return err
}

const exitStatusHelp = `Exit status: 0 success; 1 the run failed (or an --expect did not hold); 2 bad
command line or input; 3 the measurement is incomplete (figures that do not
add up are null, the report says why); 70 internal error (a bug in cowtrace:
please report it); 130 interrupted. cowtrace run ends with CMD's status
instead when CMD fails.
`

// topUsage is cowtrace help.
func topUsage() string {
	var b strings.Builder
	b.WriteString("cowtrace proves and measures copy-on-write after fork with perf_event_open.\n\nUsage:\n")
	for _, c := range commands() {
		writeSynopses(&b, "  ", c)
	}
	b.WriteString("\nRun \"cowtrace help COMMAND\" for what a command does and its flags (\"cowtrace -h\"\nfor the experiment's), \"cowtrace help --all\" for every command's.\n\n")
	b.WriteString(exitStatusHelp)
	return b.String()
}

// synopsisWidth is where the descriptions of cowtrace help's list start; a
// longer synopsis has its description on the next line.
const synopsisWidth = 46

func writeSynopses(w io.Writer, indent string, c *command) {
	for _, s := range c.synopses {
		line := indent + "cowtrace " + s.line
		if len(line) < synopsisWidth {
			fmt.Fprintf(w, "%-*s%s\n", synopsisWidth, line, s.what)
		} else {
			fmt.Fprintf(w, "%s\n%*s%s\n", line, synopsisWidth, "", s.what)
		}
	}
}

// flagWidth is where a flag's help starts in cowtrace help --all, and
// lineWidth where its lines end.
const (
	flagWidth = 24
	lineWidth = 100
)

// allUsage is cowtrace help --all, the README's usage: every command with
// every flag it takes. A flag that an earlier command takes with the same
// help and default is named, not described again.
func allUsage() string {
	var b strings.Builder
	type description struct{ name, usage, def string }
	first := map[description]string{} // the command that described it
	for _, c := range commands() {
		writeSynopses(&b, "", c)
		if c.setup == nil {
			continue
		}
		fs := c.flagSet()
		c.setup(fs)
		var origins []string
		same := map[string][]string{}
		for _, f := range fs.visible() {
			d := description{f.Name, f.Usage, f.DefValue}
			if origin, ok := first[d]; ok {
				if same[origin] == nil {
					origins = append(origins, origin)
				}
				same[origin] = append(same[origin], flagName(f))
				continue
			}
			first[d] = c.name
			writeFlag(&b, f)
		}
		for _, origin := range origins {
			writeWrapped(&b, "  as in cowtrace "+origin+":", strings.Join(same[origin], ", "))
		}
	}
	return b.String()
}

// flagName is a flag as the README writes it: -o, --format.
func flagName(f *flag.Flag) string {
	if len(f.Name) == 1 {
		return "-" + f.Name
	}
	return "--" + f.Name
}

// writeFlag is one flag of cowtrace help --all: its name and argument, its
// help and its default where it has one.
func writeFlag(w io.Writer, f *flag.Flag) {
	arg, usage := flag.UnquoteUsage(f)
	name := "  " + flagName(f)
	if arg != "" {
		name += " " + arg
	}
	switch f.DefValue {
	case "", "false", "0", "0s":
	default:
		usage += " (default " + f.DefValue + ")"
	}
	writeWrapped(w, name, usage)
}

// writeWrapped writes head, then text from column flagWidth on, wrapped at
// lineWidth.
func writeWrapped(w io.Writer, head, text string) {
	line := head
	if len(line) >= flagWidth {
		fmt.Fprintln(w, line)
		line = ""
	}
	line += strings.Repeat(" ", flagWidth-len(line))
	fresh := true
	for _, word := range strings.Fields(text) {
		if !fresh && len(line)+1+len(word) > lineWidth {
			fmt.Fprintln(w, line)
			line, fresh = strings.Repeat(" ", flagWidth), true
		}
		if !fresh {
			line += " "
		}
		line += word
		fresh = false
	}
	fmt.Fprintln(w, line)
}
