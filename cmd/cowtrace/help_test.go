package main

import (
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cowtrace/cowtrace/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite testdata/help and docs/usage.md's usage from the current output")

// TestHelpGolden pins the help text of every command: what -h prints is
// what a user reads first. After an intended change: go test -update, and
// read the diff of testdata/help.
func TestHelpGolden(t *testing.T) {
	for name, args := range map[string][]string{
		"help":       {"help"},
		"experiment": {"experiment", "-h"},
		"matrix":     {"matrix", "-h"},
		"compare":    {"compare", "-h"},
		"run":        {"run", "-h"},
		"attach":     {"attach", "-h"},
		"watch":      {"watch", "-h"},
		"doctor":     {"doctor", "-h"},
	} {
		code, stdout, stderr := runCLI(args...)
		if code != exitOK || stderr != "" {
			t.Errorf("%s: exit %d, stderr %q", strings.Join(args, " "), code, stderr)
		}
		testenv.Golden(t, filepath.Join("testdata", "help", name+".txt"), []byte(stdout), *update)
	}
}

// TestTopHelp: cowtrace help, -h, -help and --help alone list every
// command of the table, as git --help does, and fit 80 columns.
func TestTopHelp(t *testing.T) {
	_, help, _ := runCLI("help")
	for _, c := range commands() {
		if !strings.Contains(help, "\n  "+c.name+" ") {
			t.Errorf("help lists no %s:\n%s", c.name, help)
		}
	}
	for _, arg := range []string{"-h", "-help", "--help"} {
		if code, stdout, stderr := runCLI(arg); code != exitOK || stderr != "" || stdout != help {
			t.Errorf("%s: exit %d, stderr %q, stdout not cowtrace help:\n%s", arg, code, stderr, stdout)
		}
	}
}

// TestHelpWidth: every help text is wrapped to the width it is given, 80
// columns when stdout is no terminal; a long synopsis or a flag with a long
// name is the only line allowed past it.
func TestHelpWidth(t *testing.T) {
	texts := map[string]func(int) string{
		"help":       topUsage,
		"help --all": allUsage,
	}
	for _, c := range commands() {
		texts[c.name+" -h"] = func(width int) string {
			var b strings.Builder
			c.writeUsage(&b, width)
			return b.String()
		}
	}
	for name, text := range texts {
		// At 40 columns (minHelpWidth) an example may run past.
		for _, width := range []int{60, defaultHelpWidth, maxHelpWidth} {
			for _, line := range strings.Split(text(width), "\n") {
				if len([]rune(line)) > width && strings.Contains(strings.TrimSpace(line), "  ") {
					t.Errorf("%s at %d columns: a line of %d: %q", name, width, len([]rune(line)), line)
				}
			}
		}
	}
	if _, stdout, _ := runCLI("help"); stdout != topUsage(defaultHelpWidth) {
		t.Error("cowtrace help into a buffer is not wrapped at 80 columns")
	}
}

// TestReflow: the paragraphs of a help text are filled; indented lines
// (examples) and blank lines are kept.
func TestReflow(t *testing.T) {
	text := "one two\nthree four five\n\n  --expect 'x == 1'   kept as it is\nsix\n"
	want := "one two three\nfour five\n\n  --expect 'x == 1'   kept as it is\nsix\n"
	if got := reflow(text, 14); got != want {
		t.Errorf("reflow:\n%s\nwant:\n%s", got, want)
	}
}

// TestHelpFlagOnEveryCommand: -h is help, exit 0, for every command, those
// without flags (version, help, completion, man) included.
func TestHelpFlagOnEveryCommand(t *testing.T) {
	for _, c := range commands() {
		code, stdout, stderr := runCLI(c.name, "-h")
		if code != exitOK || stderr != "" || !strings.HasPrefix(stdout, "Usage: cowtrace "+strings.Fields(c.synopses[0].line)[0]) {
			t.Errorf("%s -h: exit %d, stderr %q, stdout %q", c.name, code, stderr, stdout)
		}
	}
}

// TestUnknownCommand: a word that is no command is said to be one, with
// the commands, not refused as an argument of the experiment.
func TestUnknownCommand(t *testing.T) {
	checkUsageError(t, []string{"nosuch"}, `unknown command "nosuch" (commands: experiment, matrix, compare, run, attach, watch, doctor, version, help, completion, man;`)
}

// TestHelpCommand: cowtrace help COMMAND is COMMAND's -h, for every
// command of the table, and names the commands when COMMAND is none.
func TestHelpCommand(t *testing.T) {
	for _, c := range commands() {
		code, help, stderr := runCLI("help", c.name)
		if code != exitOK || stderr != "" || !strings.HasPrefix(help, "Usage: cowtrace ") {
			t.Errorf("help %s: exit %d, stdout %q, stderr %q", c.name, code, help, stderr)
		}
		_, dashH, _ := runCLI(c.name, "-h")
		if help != dashH {
			t.Errorf("help %s differs from %s -h:\n%s\n---\n%s", c.name, c.name, help, dashH)
		}
	}
	code, stdout, stderr := runCLI("help", "nosuch")
	if code != exitUsage || stdout != "" || !strings.Contains(stderr, "commands: experiment, matrix, compare, run, attach, watch, doctor, version, help, completion, man") {
		t.Errorf("help nosuch: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

// TestHiddenFlags: a testing aid is accepted but not offered.
func TestHiddenFlags(t *testing.T) {
	for _, args := range [][]string{{"experiment", "-h"}, {"matrix", "-h"}, {"help", "--all"}, {"man"}, {"completion", "bash"}} {
		for _, hidden := range []string{"pause-after-attach", "pause-in"} {
			if _, stdout, _ := runCLI(args...); strings.Contains(stdout, hidden) {
				t.Errorf("%v shows -%s", args, hidden)
			}
		}
	}
	// Refused for its stray argument, not as an unknown flag.
	if _, _, stderr := runCLI("--pause-after-attach", "stray"); !strings.Contains(stderr, `unexpected argument "stray"`) {
		t.Errorf("--pause-after-attach stray: %q", stderr)
	}
}

// TestHelpWidthOfTerminal: on a terminal, help takes its width, within
// [minHelpWidth, maxHelpWidth]; a pseudo-terminal stands for it.
func TestHelpWidthOfTerminal(t *testing.T) {
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	defer ptmx.Close()
	if err := unix.IoctlSetPointerInt(int(ptmx.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Skipf("unlockpt: %v", err)
	}
	n, err := unix.IoctlGetInt(int(ptmx.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Skipf("ptsname: %v", err)
	}
	tty, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("open the terminal: %v", err)
	}
	defer tty.Close()
	for cols, want := range map[uint16]int{60: 60, 20: minHelpWidth, 250: maxHelpWidth} {
		if err := unix.IoctlSetWinsize(int(tty.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 24, Col: cols}); err != nil {
			t.Fatal(err)
		}
		if got := helpWidth(tty); got != want {
			t.Errorf("a terminal of %d columns: help %d wide, want %d", cols, got, want)
		}
	}
	f, err := os.CreateTemp(t.TempDir(), "help")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if got := helpWidth(f); got != defaultHelpWidth {
		t.Errorf("a file: help %d wide, want %d", got, defaultHelpWidth)
	}
}
