package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/help from the current output")

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
		"doctor":     {"doctor", "-h"},
	} {
		code, stdout, stderr := runCLI(args...)
		if code != exitOK || stderr != "" {
			t.Errorf("%s: exit %d, stderr %q", strings.Join(args, " "), code, stderr)
		}
		path := filepath.Join("testdata", "help", name+".txt")
		if *update {
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(stdout), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (go test -update writes it)", err)
		}
		if !bytes.Equal([]byte(stdout), want) {
			t.Errorf("cowtrace %s differs from %s:\n%s", strings.Join(args, " "), path, stdout)
		}
	}
}
