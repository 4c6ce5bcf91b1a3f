// Command readme regenerates the figures of README.md from the commands
// that produce them, so that none is typed in and none goes stale.
//
// A generated region is a command in a marker line, its output, and an end
// marker:
//
//	<!-- cowtrace-output: --blocks 1000 -->
//	...replaced by the output of cowtrace --blocks 1000...
//	<!-- end cowtrace-output -->
//
// The output is fenced as a code block unless the command asks for
// --format markdown. Run as root (make readme): the commands trace.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

const (
	beginMarker = "<!-- cowtrace-output: "
	endMarker   = "<!-- end cowtrace-output -->"
)

// region is one generated part of the file: the lines [begin, end) hold
// the marker's command's output.
type region struct {
	args       []string
	begin, end int
}

// regions finds the generated regions of a README's lines.
func regions(lines []string) ([]region, error) {
	var out []region
	for i := 0; i < len(lines); i++ {
		l := strings.TrimSpace(lines[i])
		if !strings.HasPrefix(l, beginMarker) {
			continue
		}
		if !strings.HasSuffix(l, "-->") {
			return nil, fmt.Errorf("line %d: marker without -->", i+1)
		}
		args := strings.Fields(strings.TrimSuffix(strings.TrimPrefix(l, beginMarker), "-->"))
		j := i + 1
		for j < len(lines) && strings.TrimSpace(lines[j]) != endMarker {
			if strings.HasPrefix(strings.TrimSpace(lines[j]), beginMarker) {
				return nil, fmt.Errorf("line %d: a marker inside the region of line %d", j+1, i+1)
			}
			j++
		}
		if j == len(lines) {
			return nil, fmt.Errorf("line %d: no %s", i+1, endMarker)
		}
		out = append(out, region{args: args, begin: i + 1, end: j})
		i = j
	}
	return out, nil
}

// render wraps a command's output as the region shows it.
func render(args []string, output string) []string {
	output = strings.TrimRight(output, "\n")
	if strings.Contains(strings.Join(args, " "), "--format markdown") {
		return strings.Split(output, "\n")
	}
	return append(append([]string{"```"}, strings.Split(output, "\n")...), "```")
}

func main() {
	cowtrace := flag.String("cowtrace", "bin/cowtrace", "the cowtrace binary that runs the commands")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: readme [-cowtrace BIN] README.md")
		os.Exit(2)
	}
	if err := regenerate(flag.Arg(0), *cowtrace); err != nil {
		fmt.Fprintf(os.Stderr, "readme: %v\n", err)
		os.Exit(1)
	}
}

func regenerate(path, cowtrace string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	lines := strings.Split(string(b), "\n")
	rs, err := regions(lines)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	// From the last region back, so that earlier line numbers hold.
	for i := len(rs) - 1; i >= 0; i-- {
		r := rs[i]
		var stdout, stderr bytes.Buffer
		cmd := exec.Command(cowtrace, r.args...)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		// A command may exit 1 on purpose (a failed --expect); its output
		// is what the README shows. Anything else is an error.
		if err := cmd.Run(); err != nil && stdout.Len() == 0 {
			return fmt.Errorf("cowtrace %s: %v: %s", strings.Join(r.args, " "), err, stderr.String())
		}
		out := render(r.args, stdout.String())
		lines = append(lines[:r.begin], append(out, lines[r.end:]...)...)
		fmt.Fprintf(os.Stderr, "readme: cowtrace %s: %d lines\n", strings.Join(r.args, " "), len(out))
	}
	return os.WriteFile(path, []byte(strings.Join(lines, "\n")), 0o644)
}
