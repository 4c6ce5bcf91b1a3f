package main

import (
	"flag"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cowtrace/cowtrace/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite testdata/help and the README's usage from the current output")

// TestHelpGolden pins the help text of every command: what -h prints is
// what a user reads first. After an intended change: go test -update, and
// read the diff of testdata/help.
func TestHelpGolden(t *testing.T) {
	for name, args := range map[string][]string{
		"help":       {"help"},
		"experiment": {"-h"},
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

// TestHelpCommand: cowtrace help COMMAND is COMMAND's -h, for every
// command of the table, and names the commands when COMMAND is none.
func TestHelpCommand(t *testing.T) {
	for _, c := range commands() {
		code, help, stderr := runCLI("help", c.name)
		if code != exitOK || stderr != "" || !strings.HasPrefix(help, "Usage: cowtrace ") {
			t.Errorf("help %s: exit %d, stdout %q, stderr %q", c.name, code, help, stderr)
		}
		if c.setup == nil {
			continue
		}
		_, dashH, _ := runCLI(c.name, "-h")
		if help != dashH {
			t.Errorf("help %s differs from %s -h:\n%s\n---\n%s", c.name, c.name, help, dashH)
		}
	}
	code, stdout, stderr := runCLI("help", "nosuch")
	if code != exitUsage || stdout != "" || !strings.Contains(stderr, "commands: experiment, matrix, compare, run, attach, watch, doctor, version, help") {
		t.Errorf("help nosuch: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

// TestHiddenFlags: a testing aid is accepted but not offered.
func TestHiddenFlags(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"help", "--all"}} {
		if _, stdout, _ := runCLI(args...); strings.Contains(stdout, "pause-after-attach") {
			t.Errorf("%v shows -pause-after-attach", args)
		}
	}
	// Refused for its stray argument, not as an unknown flag.
	if _, _, stderr := runCLI("--pause-after-attach", "stray"); !strings.Contains(stderr, `unexpected argument "stray"`) {
		t.Errorf("--pause-after-attach stray: %q", stderr)
	}
}
