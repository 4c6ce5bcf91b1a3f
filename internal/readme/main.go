// Command readme regenerates the figures of README.md and docs/*.md from
// the commands that produce them, so that none is typed in and none goes
// stale.
//
// A generated region is a command in a marker line, its output, and an end
// marker:
//
//	<!-- cowtrace-output: --blocks 1000 -->
//	...replaced by the output of cowtrace --blocks 1000...
//	<!-- end cowtrace-output -->
//
// The marker's words are split as a shell splits them, without expansion:
// 'single quotes' keep everything, "double quotes" keep everything but a
// backslash before " or \, and a backslash outside quotes keeps the next
// character. So a command to trace may be a shell's:
//
//	<!-- cowtrace-output: run -- sh -c 'sleep 0 & wait' -->
//
// A command that needs a running process (attach, watch -p) names it
// {target} and says after a ';' what to start as the target: it is started
// before cowtrace, in a process group of its own, and killed after.
//
//	<!-- cowtrace-output: attach -p {target} --duration 2s; target sh -c 'while :; do sleep 0.5; done' -->
//
// The output is fenced as a code block unless the command asks for
// --format markdown. Run as root (make readme): the commands trace.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const (
	beginMarker = "<!-- cowtrace-output: "
	endMarker   = "<!-- end cowtrace-output -->"
	// targetWord is where a marker's target command is put in its
	// cowtrace command: the target's pid.
	targetWord = "{target}"
)

// region is one generated part of the file: the lines [begin, end) hold
// the marker's command's output.
type region struct {
	args []string
	// target is the command whose pid replaces {target} in args; nil
	// when there is none.
	target     []string
	begin, end int
}

// splitWords splits s into words as a shell does, without expanding
// anything, and at each unquoted ';' into commands.
func splitWords(s string) ([][]string, error) {
	var (
		cmds  [][]string
		words []string
		word  strings.Builder
		// inWord: a word has begun, perhaps an empty one ('').
		inWord bool
	)
	endWord := func() {
		if inWord {
			words = append(words, word.String())
			word.Reset()
			inWord = false
		}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			endWord()
		case c == ';':
			endWord()
			cmds = append(cmds, words)
			words = nil
		case c == '\\':
			if i+1 == len(s) {
				return nil, errors.New("a backslash at the end")
			}
			i++
			word.WriteByte(s[i])
			inWord = true
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, errors.New("a ' without its end")
			}
			word.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && (s[i+1] == '"' || s[i+1] == '\\') {
					i++
				}
				word.WriteByte(s[i])
			}
			if i == len(s) {
				return nil, errors.New(`a " without its end`)
			}
			inWord = true
		default:
			word.WriteByte(c)
			inWord = true
		}
	}
	endWord()
	return append(cmds, words), nil
}

// parseMarker reads a marker's command: cowtrace's arguments, and the
// target command when {target} stands in them.
func parseMarker(s string) (args, target []string, err error) {
	cmds, err := splitWords(s)
	if err != nil {
		return nil, nil, err
	}
	args = cmds[0]
	switch {
	case len(cmds) > 2:
		return nil, nil, errors.New("more than one ';'")
	case len(cmds) == 2:
		t := cmds[1]
		if len(t) < 2 || t[0] != "target" {
			return nil, nil, errors.New("after ';', want: target CMD [ARGS...]")
		}
		target = t[1:]
	}
	uses := false
	for _, a := range args {
		uses = uses || strings.Contains(a, targetWord)
	}
	if uses != (target != nil) {
		return nil, nil, fmt.Errorf("%s and '; target CMD' go together", targetWord)
	}
	return args, target, nil
}

// regions finds the generated regions of a file's lines. A marker inside a
// fenced code block is an example of one, shown as it is.
func regions(lines []string) ([]region, error) {
	var out []region
	inFence := false
	for i := 0; i < len(lines); i++ {
		l := strings.TrimSpace(lines[i])
		if strings.HasPrefix(l, "```") {
			inFence = !inFence
			continue
		}
		if inFence || !strings.HasPrefix(l, beginMarker) {
			continue
		}
		if !strings.HasSuffix(l, "-->") {
			return nil, fmt.Errorf("line %d: marker without -->", i+1)
		}
		args, target, err := parseMarker(strings.TrimSuffix(strings.TrimPrefix(l, beginMarker), "-->"))
		if err != nil {
			return nil, fmt.Errorf("line %d: %v", i+1, err)
		}
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
		out = append(out, region{args: args, target: target, begin: i + 1, end: j})
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
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: readme [-cowtrace BIN] FILE.md...")
		os.Exit(2)
	}
	for _, path := range flag.Args() {
		if err := regenerate(path, *cowtrace); err != nil {
			fmt.Fprintf(os.Stderr, "readme: %v\n", err)
			os.Exit(1)
		}
	}
}

// regenerate runs the command of every region of the file at path and
// puts its output in the region. A file without regions is left alone.
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
	if len(rs) == 0 {
		return nil
	}
	// From the last region back, so that earlier line numbers hold.
	for i := len(rs) - 1; i >= 0; i-- {
		r := rs[i]
		stdout, err := output(cowtrace, r)
		if err != nil {
			return fmt.Errorf("%s:%d: %w", path, r.begin, err)
		}
		out := render(r.args, stdout)
		lines = append(lines[:r.begin], append(out, lines[r.end:]...)...)
		fmt.Fprintf(os.Stderr, "readme: %s: cowtrace %s: %d lines\n", path, strings.Join(r.args, " "), len(out))
	}
	return os.WriteFile(path, []byte(strings.Join(lines, "\n")), 0o644)
}

// output runs the region's command, with its target around it, and returns
// what it printed on stdout.
func output(cowtrace string, r region) (string, error) {
	args := r.args
	if r.target != nil {
		t := exec.Command(r.target[0], r.target[1:]...)
		t.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := t.Start(); err != nil {
			return "", fmt.Errorf("target %s: %v", strings.Join(r.target, " "), err)
		}
		defer func() {
			// The target and whatever it started.
			_ = syscall.Kill(-t.Process.Pid, syscall.SIGKILL)
			_ = t.Wait()
		}()
		// The target's own start-up (its exec, the loader) before the
		// command looks at it.
		time.Sleep(100 * time.Millisecond)
		pid := strconv.Itoa(t.Process.Pid)
		args = make([]string, len(r.args))
		for i, a := range r.args {
			args[i] = strings.ReplaceAll(a, targetWord, pid)
		}
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(cowtrace, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// A command may exit 1 on purpose (a failed --expect); its output is
	// what the file shows. Anything else is an error.
	if err := cmd.Run(); err != nil && stdout.Len() == 0 {
		return "", fmt.Errorf("cowtrace %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}
