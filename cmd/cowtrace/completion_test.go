package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cowtrace/cowtrace/internal/testenv"
)

// completionScript writes cowtrace completion SHELL to a file.
func completionScript(t *testing.T, shell string) string {
	t.Helper()
	code, script, stderr := runCLI("completion", shell)
	if code != exitOK || stderr != "" {
		t.Fatalf("completion %s: exit %d, stderr %q", shell, code, stderr)
	}
	path := filepath.Join(t.TempDir(), "cowtrace."+shell)
	if err := os.WriteFile(path, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestCompletionNames: each shell's script offers every command and every
// visible flag of each, as that shell writes them, and no hidden flag.
func TestCompletionNames(t *testing.T) {
	for _, shell := range shells {
		_, script, _ := runCLI("completion", shell)
		for _, c := range commands() {
			if !strings.Contains(script, c.name) {
				t.Errorf("%s: no command %s", shell, c.name)
			}
			for _, f := range c.flags() {
				var want string
				switch shell {
				case "bash":
					want = " " + flagName(f.name) + " "
					if !strings.Contains(script, want) && !strings.Contains(script, "'"+flagName(f.name)+" ") && !strings.Contains(script, " "+flagName(f.name)+"'") {
						t.Errorf("bash: %s has no %s", c.name, flagName(f.name))
					}
					continue
				case "zsh":
					want = flagName(f.name) + "["
					if f.kind != argNone {
						want = flagName(f.name) + "=["
					}
				case "fish":
					want = "-l " + f.name + " "
					if len(f.name) == 1 {
						want = "-s " + f.name + " "
					}
					want = "'__cowtrace_using " + c.name + "' " + want
				}
				if !strings.Contains(script, want) {
					t.Errorf("%s: %s has no %q", shell, c.name, want)
				}
			}
		}
		for _, hidden := range []string{"pause-after-attach", "pause-in"} {
			if strings.Contains(script, hidden) {
				t.Errorf("%s offers the testing aid %s", shell, hidden)
			}
		}
	}
	checkUsageError(t, []string{"completion", "tcsh"}, `unknown shell "tcsh" (want bash, zsh or fish)`)
	checkUsageError(t, []string{"completion"}, "want one shell")
}

// TestCompletionSyntax: each script is valid in its shell (-n parses
// without running).
func TestCompletionSyntax(t *testing.T) {
	for _, shell := range shells {
		t.Run(shell, func(t *testing.T) {
			testenv.Require(t, testenv.Program(shell))
			path := completionScript(t, shell)
			if out, err := exec.Command(shell, "-n", path).CombinedOutput(); err != nil || len(out) > 0 {
				t.Errorf("%s -n: %v\n%s", shell, err, out)
			}
		})
	}
}

// bashComplete runs the bash completion on the command line words, the
// last one being completed, and returns the candidates.
func bashComplete(t *testing.T, script string, words ...string) []string {
	t.Helper()
	quoted := make([]string, len(words))
	for i, w := range words {
		quoted[i] = zshQuote(w) // single quotes, as bash reads them too
	}
	prog := `source "$1" && COMP_WORDS=(` + strings.Join(quoted, " ") + `) && COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); _cowtrace; printf '%s\n' "${COMPREPLY[@]}"`
	cmd := exec.Command("bash", "--norc", "--noprofile", "-c", prog, "bash", script)
	cmd.Dir = t.TempDir()
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("bash completion of %q: %v", words, err)
	}
	return strings.Fields(string(out))
}

// TestBashCompletion: what bash offers for the commands, the flags of the
// command being typed, their values (after a space or an "=", which bash
// makes a word of its own) and the operands.
func TestBashCompletion(t *testing.T) {
	testenv.Require(t, testenv.Program("bash"))
	script := completionScript(t, "bash")
	for _, c := range []struct {
		words []string
		want  []string
	}{
		{[]string{"cowtrace", "ma"}, []string{"man", "matrix"}},
		{[]string{"cowtrace", "--sce"}, []string{"--scenario"}},
		{[]string{"cowtrace", "--scenario", "many"}, []string{"many-writers"}},
		{[]string{"cowtrace", "run", "--for"}, []string{"--format"}},
		{[]string{"cowtrace", "run", "--format", ""}, []string{"csv", "json", "markdown", "openmetrics", "table", "wide"}},
		{[]string{"cowtrace", "run", "--format", "=", "j"}, []string{"json"}},
		{[]string{"cowtrace", "matrix", "--format", "json", "--proof", ""}, []string{"none", "pagemap"}},
		{[]string{"cowtrace", "matrix", "-p"}, nil}, // -p is attach's
		{[]string{"cowtrace", "attach", "-p"}, []string{"-p"}},
		{[]string{"cowtrace", "doctor", "--format", ""}, []string{"json", "text"}},
		{[]string{"cowtrace", "compare", "--format", "m"}, []string{"markdown"}},
		{[]string{"cowtrace", "help", "r"}, []string{"run"}},
		{[]string{"cowtrace", "completion", ""}, []string{"bash", "fish", "zsh"}},
		{[]string{"cowtrace", "run", "--label", "x", "--", "--form"}, nil}, // CMD, not a flag
	} {
		got := bashComplete(t, script, c.words...)
		slices.Sort(got)
		if !slices.Equal(got, c.want) {
			t.Errorf("%q: %q, want %q", c.words, got, c.want)
		}
	}
	// run's CMD is a command name.
	if got := bashComplete(t, script, "cowtrace", "run", "--threads", "--", "ech"); !slices.Contains(got, "echo") {
		t.Errorf("cowtrace run --threads -- ech: %q, want echo among them", got)
	}
	if got := bashComplete(t, script, "cowtrace", "attach", "-p", "1"); !slices.Contains(got, "1") {
		t.Errorf("cowtrace attach -p 1: %q, want pid 1", got)
	}
}

// TestFishCompletion: fish's own completer, run on the script.
func TestFishCompletion(t *testing.T) {
	testenv.Require(t, testenv.Program("fish"))
	script := completionScript(t, "fish")
	for line, want := range map[string][]string{
		"cowtrace ma":                {"man", "matrix"},
		"cowtrace run --for":         {"--format"},
		"cowtrace matrix --proof ":   {"none", "pagemap"},
		"cowtrace --scenario zer":    {"zero-page"},
		"cowtrace completion ":       {"bash", "fish", "zsh"},
		"cowtrace attach --ready-f":  {"--ready-fd"},
		"cowtrace run --ready-f":     nil, // attach's flag
		"cowtrace help att":          {"attach"},
		"cowtrace doctor --format j": {"json"},
	} {
		cmd := exec.Command("fish", "--no-config", "-c", "source $argv[1]; complete -C $argv[2]", script, line)
		cmd.Dir = t.TempDir()
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("fish: complete -C %q: %v", line, err)
		}
		var got []string
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if word, _, _ := strings.Cut(l, "\t"); word != "" {
				got = append(got, word)
			}
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("fish: %q: %q, want %q", line, got, want)
		}
	}
}

// TestZshCompletionRegisters: sourced after compinit, the script registers
// _cowtrace for cowtrace (zsh has no way to list candidates without a
// terminal; the names and the syntax are checked above).
func TestZshCompletionRegisters(t *testing.T) {
	testenv.Require(t, testenv.Program("zsh"))
	script := completionScript(t, "zsh")
	cmd := exec.Command("zsh", "-f", "-c", `autoload -U compinit && compinit -u -D && source "$1" && print -r -- $_comps[cowtrace]`, "zsh", script)
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "HOME="+cmd.Dir)
	if out, err := cmd.CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "_cowtrace" {
		t.Errorf("zsh: %v, %q: want _cowtrace registered", err, out)
	}
}
