package main

import (
	"fmt"
	"io"
	"strings"
)

// The shell completions are written from the command table and the flags
// each command's setup registers, the same that the help shows, so that a
// flag added or renamed completes without a second list to keep.

const completionLong = `Prints the completion script of SHELL (bash, zsh or fish) for cowtrace's
commands, flags and their values. make install installs all three; by hand:

  bash: cowtrace completion bash >/usr/share/bash-completion/completions/cowtrace
  zsh:  cowtrace completion zsh >"${fpath[1]}/_cowtrace"
  fish: cowtrace completion fish >~/.config/fish/completions/cowtrace.fish

or, for this shell only, source <(cowtrace completion bash).
`

// shells are the shells whose completion cowtrace writes.
var shells = []string{"bash", "zsh", "fish"}

func cmdCompletion(args []string, stdout io.Writer) error {
	if len(args) != 1 {
		return usagef("completion: want one shell, %s (usage: cowtrace completion bash|zsh|fish)", orList(shells))
	}
	var b strings.Builder
	switch args[0] {
	case "bash":
		writeBash(&b)
	case "zsh":
		writeZsh(&b)
	case "fish":
		writeFish(&b)
	default:
		return usagef("completion: unknown shell %q (want %s)", args[0], orList(shells))
	}
	_, err := io.WriteString(stdout, b.String())
	return err
}

// completed is one command as the completions see it.
type completed struct {
	name, what string
	flags      []flagInfo
	operands   argKind
	words      []string // the operands of argChoice and argCommandName
}

func completedCommands() []completed {
	var out []completed
	for _, c := range commands() {
		cc := completed{name: c.name, what: c.what, flags: c.flags(), operands: c.operands}
		switch c.operands {
		case argCommandName:
			cc.words = commandNames()
		case argChoice:
			cc.words = shells // completion's, the one command with such operands
		}
		out = append(out, cc)
	}
	return out
}

// brief is a flag's help cut to its first clause, for the one line that
// shells show beside a candidate.
func brief(usage string) string {
	cut := len(usage)
	for _, sep := range []string{": ", "; ", " ("} {
		if i := strings.Index(usage, sep); i > 0 && i < cut {
			cut = i
		}
	}
	return usage[:cut]
}

// optionName is the flag as completions offer it: -o, --format.
func (f flagInfo) optionName() string { return flagName(f.name) }

// writeBash writes the bash completion: the fixed parts of the script
// around the cases that the command table writes, a case per command.
func writeBash(w io.Writer) {
	cmds := completedCommands()
	names := strings.Join(commandNames(), " ")
	fmt.Fprintf(w, bashHead, strings.ReplaceAll(names, " ", "|"), names)
	for _, c := range cmds {
		writeBashFlags(w, c)
	}
	fmt.Fprint(w, bashWalk)
	for _, c := range cmds {
		writeBashValues(w, c)
	}
	fmt.Fprint(w, bashFlagsOrOperands)
	for _, c := range cmds {
		writeBashOperands(w, c)
	}
	fmt.Fprint(w, bashTail)
}

// bashHead starts _cowtrace: it finds the command (the experiment's flags
// when the first word is none), completes the command's name, and opens
// the case that sets the command's flags; %s are the command names, as a
// pattern and as a word list.
const bashHead = `# bash completion for cowtrace, written by "cowtrace completion bash": install
# it as /usr/share/bash-completion/completions/cowtrace, or source it.

_cowtrace() {
	local cur=${COMP_WORDS[COMP_CWORD]} cmd=experiment first=1
	case ${COMP_WORDS[1]-} in
	%s) cmd=${COMP_WORDS[1]} first=2 ;;
	esac
	if ((COMP_CWORD == 1)) && [[ $cur != -* ]]; then
		COMPREPLY=($(compgen -W '%s' -- "$cur"))
		return
	fi
	local flags= valued=
	case $cmd in
`

// writeBashFlags writes c's arm of the case bashHead opens: its flags,
// and those that take a value.
func writeBashFlags(w io.Writer, c completed) {
	var all, valued []string
	for _, f := range c.flags {
		all = append(all, f.optionName())
		if f.kind != argNone {
			valued = append(valued, f.name)
		}
	}
	fmt.Fprintf(w, "\t%s) flags='%s' valued=' %s ' ;;\n", c.name, strings.Join(all, " "), strings.Join(valued, " "))
}

// bashWalk finds where the operands start and whether the cursor is at a
// flag's value, then opens the case that completes that value.
const bashWalk = `	esac
	# Walk the words before the cursor: the operands start after "--" or at
	# the first word that is neither a flag nor a flag's value (bash splits
	# --flag=value into three words at the "=").
	local i w n value= start=
	for ((i = first; i < COMP_CWORD; i++)); do
		w=${COMP_WORDS[i]}
		if [[ $w == -- ]]; then start=$((i + 1)); break; fi
		if [[ $w != -* ]]; then start=$i; break; fi
		n=${w#-}; n=${n#-}
		[[ $valued == *" ${n%%=*} "* && $n != *=* ]] || continue
		if [[ ${COMP_WORDS[i+1]-} == = ]]; then
			if ((i + 1 == COMP_CWORD)); then value=$n cur=; break; fi
			if ((i + 2 == COMP_CWORD)); then value=$n; break; fi
			((i += 2))
		else
			if ((i + 1 == COMP_CWORD)); then value=$n; break; fi
			((i++))
		fi
	done
	if [[ -n $value ]]; then
		case $cmd:$value in
`

// writeBashValues writes c's arms of the case bashWalk opens: how each of
// its flags' values completes.
func writeBashValues(w io.Writer, c completed) {
	for _, f := range c.flags {
		if a := bashWords(f.kind, f.choices); a != "" {
			fmt.Fprintf(w, "\t\t%s:%s) %s ;;\n", c.name, f.name, a)
		}
	}
}

// bashFlagsOrOperands completes a flag before the operands, else opens the
// case that completes the command's operands.
const bashFlagsOrOperands = `		esac
		return
	fi
	if [[ -z $start && $cur == -* ]]; then
		COMPREPLY=($(compgen -W "$flags" -- "$cur"))
		return
	fi
	case $cmd in
`

// writeBashOperands writes c's arm of the case bashFlagsOrOperands opens:
// how its operands complete, if it takes any.
func writeBashOperands(w io.Writer, c completed) {
	switch c.operands {
	case argNone:
	case argCommand:
		// CMD, then its own arguments, by its own completion where
		// bash-completion is loaded.
		fmt.Fprintf(w, "\t%s)\n", c.name)
		fmt.Fprint(w, bashCommandOperands)
	default:
		fmt.Fprintf(w, "\t%s) %s ;;\n", c.name, bashWords(c.operands, c.words))
	}
}

// bashCommandOperands completes a command to run, then that command's
// arguments.
const bashCommandOperands = `		if [[ -n $start ]] && ((COMP_CWORD > start)); then
			if declare -F _command_offset >/dev/null; then _command_offset "$start"; return; fi
			compopt -o filenames 2>/dev/null
			COMPREPLY=($(compgen -f -- "$cur"))
		else
			COMPREPLY=($(compgen -c -- "$cur"))
		fi ;;
`

// bashTail closes the operands' case and _cowtrace, and registers it.
const bashTail = `	esac
}
complete -F _cowtrace cowtrace
`

// bashWords is the bash that completes an argument of kind k.
func bashWords(k argKind, words []string) string {
	switch k {
	case argChoice, argCommandName:
		return fmt.Sprintf(`COMPREPLY=($(compgen -W '%s' -- "$cur"))`, strings.Join(words, " "))
	case argFile:
		return `compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -f -- "$cur"))`
	case argJSON:
		return `compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -f -X '!*.json' -- "$cur") $(compgen -d -- "$cur"))`
	case argPID:
		return `COMPREPLY=($(compgen -W "$(cd /proc && echo [0-9]*)" -- "$cur"))`
	}
	return ""
}

func writeZsh(w io.Writer) {
	cmds := completedCommands()
	fmt.Fprint(w, `#compdef cowtrace
# zsh completion for cowtrace, written by "cowtrace completion zsh": install it
# as _cowtrace in a directory of $fpath, or source it.

_cowtrace() {
	local -a commands
	commands=(
`)
	for _, c := range cmds {
		fmt.Fprintf(w, "\t\t%s\n", zshQuote(c.name+":"+c.what))
	}
	fmt.Fprint(w, `	)
	if (( CURRENT == 2 )) && [[ $PREFIX != -* ]]; then
		_describe -t commands 'cowtrace command' commands
		return
	fi
	local cmd=experiment
	if [[ -n ${commands[(r)${(b)words[2]}:*]} ]]; then
		cmd=$words[2]
		words=("$words[1]" "${(@)words[3,-1]}")
		(( CURRENT-- ))
	fi
	case $cmd in
`)
	for _, c := range cmds {
		fmt.Fprintf(w, "\t(%s)\n\t\t_arguments -S :", c.name)
		for _, f := range c.flags {
			fmt.Fprintf(w, " \\\n\t\t\t%s", zshQuote(zshFlagSpec(f)))
		}
		switch c.operands {
		case argCommand:
			fmt.Fprint(w, ` \`+"\n\t\t\t'(-)1:command:_command_names -e' '*::argument:_normal'")
		case argJSON:
			fmt.Fprint(w, ` \`+"\n\t\t\t'*:report:_files -g \"*.json\"'")
		case argChoice, argCommandName:
			fmt.Fprintf(w, " \\\n\t\t\t%s", zshQuote("1:argument:("+strings.Join(c.words, " ")+")"))
		}
		fmt.Fprint(w, "\n\t\t;;\n")
	}
	fmt.Fprint(w, `	esac
}

if [[ $funcstack[1] == _cowtrace ]]; then
	_cowtrace "$@"
else
	compdef _cowtrace cowtrace
fi
`)
}

// zshFlagSpec is a flag as _arguments takes it: --name=[help]:ARG:action,
// with a * where it may be given again.
func zshFlagSpec(f flagInfo) string {
	help := zshEscape(brief(f.usage))
	spec := f.optionName()
	if f.repeats {
		spec = "*" + spec
	}
	if f.kind == argNone {
		return spec + "[" + help + "]"
	}
	action := " " // a message, no candidates
	switch f.kind {
	case argChoice:
		action = "(" + strings.Join(f.choices, " ") + ")"
	case argFile:
		action = "_files"
	case argJSON:
		action = `_files -g "*.json"`
	case argPID:
		action = "_pids"
	}
	return spec + "=[" + help + "]:" + zshEscape(f.arg) + ":" + action
}

// zshEscape escapes what _arguments reads in a help or a name.
func zshEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, "[", `\[`, "]", `\]`, ":", `\:`).Replace(s)
}

// zshQuote single-quotes s for zsh (and bash).
func zshQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func writeFish(w io.Writer) {
	cmds := completedCommands()
	fmt.Fprintf(w, `# fish completion for cowtrace, written by "cowtrace completion fish": install
# it as ~/.config/fish/completions/cowtrace.fish, or source it.

# The command is the first word, if it is one; else the experiment's flags.
function __cowtrace_command
    set -l tokens (commandline -opc)
    if set -q tokens[2]; and contains -- $tokens[2] %s
        echo $tokens[2]
    else
        echo experiment
    end
end

function __cowtrace_using
    test (__cowtrace_command) = $argv[1]
end

function __cowtrace_needs_command
    test (count (commandline -opc)) -eq 1
end

complete -c cowtrace -f
`, strings.Join(commandNames(), " "))
	for _, c := range cmds {
		fmt.Fprintf(w, "complete -c cowtrace -n __cowtrace_needs_command -a %s -d %s\n", c.name, fishQuote(c.what))
	}
	for _, c := range cmds {
		cond := fishQuote("__cowtrace_using " + c.name)
		for _, f := range c.flags {
			opt := "-l " + f.name
			if len(f.name) == 1 {
				opt = "-s " + f.name
			}
			switch f.kind {
			case argChoice:
				opt += " -xa " + fishQuote(strings.Join(f.choices, " "))
			case argFile:
				opt += " -rF"
			case argJSON:
				opt += " -xa " + fishQuote("(__fish_complete_suffix .json)")
			case argPID:
				opt += " -xa " + fishQuote("(__fish_complete_pids)")
			case argWord:
				opt += " -x"
			}
			fmt.Fprintf(w, "complete -c cowtrace -n %s %s -d %s\n", cond, opt, fishQuote(brief(f.usage)))
		}
		switch c.operands {
		case argCommand:
			fmt.Fprintf(w, "complete -c cowtrace -n %s -F -a %s\n", cond, fishQuote("(__fish_complete_command)"))
		case argJSON:
			fmt.Fprintf(w, "complete -c cowtrace -n %s -ka %s\n", cond, fishQuote("(__fish_complete_suffix .json)"))
		case argChoice, argCommandName:
			fmt.Fprintf(w, "complete -c cowtrace -n %s -xa %s\n", cond, fishQuote(strings.Join(c.words, " ")))
		}
	}
}

// fishQuote single-quotes s for fish, where \ and ' are escaped inside.
func fishQuote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, "'", `\'`).Replace(s) + "'"
}
