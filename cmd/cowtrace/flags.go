package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/cowtrace/cowtrace/internal/engine"
	"github.com/cowtrace/cowtrace/internal/experiment"
	"github.com/cowtrace/cowtrace/internal/proof"
	"github.com/cowtrace/cowtrace/internal/scenario"
	"github.com/cowtrace/cowtrace/internal/workload"
	"github.com/cowtrace/cowtrace/perfevents"
	"github.com/cowtrace/cowtrace/report/expect"
	"github.com/cowtrace/cowtrace/report/render"
)

// The flags that several commands take are declared here once each: a
// flag.Value that refuses a bad value as it is parsed, and a function that
// registers it with its help, as cmd/go's AddBuildFlags does.

// flagSet is a command's flags.
type flagSet struct {
	*flag.FlagSet
	hidden  map[string]bool     // testing aids, left out of the help
	choices map[string][]string // the values of a flag that takes one of a few
}

// newFlagSet returns a flag set whose messages go to a buffer: the flag
// package prints the whole usage on every mistake, but a mistake deserves one
// line (see parseFlags) and only -h the usage.
func newFlagSet(name string) *flagSet {
	fs := &flagSet{FlagSet: flag.NewFlagSet(name, flag.ContinueOnError), hidden: map[string]bool{}, choices: map[string][]string{}}
	fs.SetOutput(new(bytes.Buffer))
	return fs
}

// hide keeps a flag out of the help: a testing aid, not for users.
func (fs *flagSet) hide(name string) { fs.hidden[name] = true }

// visible are the flags the help shows, in order.
func (fs *flagSet) visible() []*flag.Flag {
	var out []*flag.Flag
	fs.VisitAll(func(f *flag.Flag) {
		if !fs.hidden[f.Name] {
			out = append(out, f)
		}
	})
	return out
}

// given says whether the flag was on the command line.
func (fs *flagSet) given(name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// parseFlags parses args; -h prints usage to stdout and returns errHelp, a
// mistake returns a usageError of one line.
func parseFlags(fs *flagSet, args []string, usage func(io.Writer), stdout io.Writer) error {
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		// Whole, so that a failed write (stdout closed or full) is
		// the command's error, as any other output's.
		var b bytes.Buffer
		usage(&b)
		if _, err := stdout.Write(b.Bytes()); err != nil {
			return err
		}
		return errHelp
	case err != nil:
		// The flag package words a Value's error as "invalid value %q
		// for flag -%s: %v"; cowtrace's Values word theirs to name the
		// flag already, as they were before they were Values.
		fs.VisitAll(func(f *flag.Flag) {
			if r, ok := f.Value.(interface{ refusal() error }); ok && r.refusal() != nil {
				err = r.refusal()
			}
		})
		return usageError{err}
	}
	return nil
}

// parseInterspersed is parseFlags for a command whose operands and flags
// may come in any order, as git's and GNU tools' do (compare a.json b.json
// --format markdown): the flag package stops at the first operand, and the
// flags after it were read as file names. After "--" every argument is an
// operand.
func parseInterspersed(fs *flagSet, args []string, usage func(io.Writer), stdout io.Writer) ([]string, error) {
	var operands []string
	for {
		if err := parseFlags(fs, args, usage, stdout); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" && (n < 2 || !fs.takesValue(args[n-2])) {
			return append(operands, rest...), nil
		}
		if len(rest) == 0 {
			return operands, nil
		}
		operands, args = append(operands, rest[0]), rest[1:]
	}
}

// takesValue says whether arg is a flag that takes the next argument as
// its value ("--label" in "--label --" does, "--label=x" and bools do not).
func (fs *flagSet) takesValue(arg string) bool {
	name, ok := strings.CutPrefix(arg, "-")
	if !ok || strings.Contains(name, "=") {
		return false
	}
	f := fs.Lookup(strings.TrimPrefix(name, "-"))
	if f == nil {
		return false
	}
	b, isBool := f.Value.(interface{ IsBoolFlag() bool })
	return !isBool || !b.IsBoolFlag()
}

// stringList is a repeatable flag.
type stringList []string

func (s *stringList) String() string { return strings.Join(*s, ",") }

func (s *stringList) Set(v string) error {
	if v == "" {
		return errors.New("empty value")
	}
	*s = append(*s, v)
	return nil
}

// refused keeps the error of a Value's Set for parseFlags.
type refused struct{ err error }

func (r *refused) refusal() error { return r.err }

func (r *refused) refuse(err error) error {
	r.err = err
	return err
}

// orList joins words as the messages name a choice: "a, b or c".
func orList(words []string) string {
	if len(words) < 2 {
		return strings.Join(words, "")
	}
	return strings.Join(words[:len(words)-1], ", ") + " or " + words[len(words)-1]
}

// formatValue is --format. Each command writes its own set of formats,
// named in its refusal ("unknown matrix format ..."); with no set the
// command checks the format itself, since compare's depend on --baseline.
type formatValue struct {
	refused
	command string // "" for the experiment, run and attach
	allowed []string
	value   string
}

func (v *formatValue) String() string        { return v.value }
func (v *formatValue) format() render.Format { return render.Format(v.value) }

func (v *formatValue) Set(s string) error {
	if v.allowed != nil && !slices.Contains(v.allowed, s) {
		what := "format"
		if v.command != "" {
			what = v.command + " format"
		}
		return v.refuse(fmt.Errorf("unknown %s %q (want %s)", what, s, orList(v.allowed)))
	}
	v.value = s
	return nil
}

// addFormatFlag registers --format for command, one of allowed (nil: the
// command checks), the first of them the default.
func addFormatFlag(fs *flagSet, command string, allowed []string, def, usage string) *formatValue {
	v := &formatValue{command: command, allowed: allowed, value: def}
	fs.Var(v, "format", usage)
	fs.choose("format", allowed...)
	return v
}

// addReportFormatFlag is --format of a single run's report: the
// experiment, run and attach.
func addReportFormatFlag(fs *flagSet) *formatValue {
	var formats []string
	for _, f := range render.Formats {
		formats = append(formats, string(f))
	}
	return addFormatFlag(fs, "", formats, "table", "output `FORMAT`: table (fits the terminal), wide, json, csv, markdown or openmetrics")
}

// methodFlags are the routes to the kernel's events that every traced
// command lets the user force.
type methodFlags struct {
	kprobes kprobeMethodValue
	faults  faultMethodValue
}

type kprobeMethodValue struct {
	refused
	method perfevents.KprobeMethod
}

func (v *kprobeMethodValue) String() string { return string(v.method) }

func (v *kprobeMethodValue) Set(s string) error {
	m, err := perfevents.ParseKprobeMethod(s)
	if err != nil {
		return v.refuse(err)
	}
	v.method = m
	return nil
}

type faultMethodValue struct {
	refused
	text      string
	byAddress bool // engine.Config.FaultsByAddress
}

func (v *faultMethodValue) String() string { return v.text }

func (v *faultMethodValue) Set(s string) error {
	byAddr, err := engine.ParseFaultMethod(s)
	if err != nil {
		return v.refuse(err)
	}
	v.text, v.byAddress = s, byAddr
	return nil
}

// addMethodFlags registers --kprobe-method and --fault-method.
func addMethodFlags(fs *flagSet) *methodFlags {
	m := &methodFlags{kprobes: kprobeMethodValue{method: perfevents.KprobeAuto}, faults: faultMethodValue{text: "auto"}}
	fs.Var(&m.kprobes, "kprobe-method", "reach kernel functions by `ROUTE`: auto, pmu, tracefs or none")
	fs.Var(&m.faults, "fault-method", "take faults from `SOURCE`: auto (the x86 fault tracepoints where the kernel has them, else the page-fault event with its address) or address (the latter everywhere)")
	fs.choose("kprobe-method", string(perfevents.KprobeAuto), string(perfevents.KprobePMU), string(perfevents.KprobeTracefs), string(perfevents.KprobeNone))
	fs.choose("fault-method", "auto", "address")
	return m
}

// checkProbes refuses --probe with --kprobe-method none before anything
// runs: the one asks for kprobes, the other for none.
func (m *methodFlags) checkProbes(p *probesValue) error {
	if len(p.names) > 0 && m.kprobes.method == perfevents.KprobeNone {
		return usagef("--probe %s needs kprobes, and --kprobe-method none asks for none", p.names[0])
	}
	return nil
}

type modeValue struct {
	refused
	def  engine.Mode // what "" stands for
	mode engine.Mode
}

func (v *modeValue) String() string { return string(v.mode) }

func (v *modeValue) Set(s string) error {
	m, err := engine.ParseMode(s, v.def)
	if err != nil {
		return v.refuse(err)
	}
	v.mode = m
	return nil
}

// addModeFlag registers --mode, def its default; the experiment's and the
// followed programs' say what each mode gives there.
func addModeFlag(fs *flagSet, def engine.Mode, usage string) *modeValue {
	v := &modeValue{def: def, mode: def}
	fs.Var(v, "mode", usage)
	fs.choose("mode", string(engine.ModeClassify), string(engine.ModeCount), string(engine.ModeAuto))
	return v
}

// probesValue is --probe: kernel functions whose hits are counted.
type probesValue struct {
	refused
	names []string
}

func (v *probesValue) String() string { return strings.Join(v.names, ",") }

func (v *probesValue) Set(s string) error {
	if s == "" {
		return errors.New("empty value")
	}
	if !validFunctionName(s) {
		return v.refuse(usagef("--probe %q is not a kernel function name", s))
	}
	v.names = append(v.names, s)
	return nil
}

func addProbeFlag(fs *flagSet) *probesValue {
	v := &probesValue{}
	fs.Var(v, "probe", "also count hits of kernel function `FUNC` per process (repeatable); one that cannot be probed fails the run (exit 1)")
	return v
}

// validFunctionName accepts C identifiers and the compiler's suffixed
// variants (foo.isra.0, foo.cold).
func validFunctionName(s string) bool {
	if s == "" || len(s) > 256 {
		return false
	}
	for i, c := range s {
		switch {
		case c == '_', c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case (c >= '0' && c <= '9') || c == '.':
			if i == 0 {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// expectValue is --expect: each expectation parsed, and checked against
// the rows this kind of run has, before anything runs.
type expectValue struct {
	refused
	rows  expect.Rows
	texts []string
	list  []expect.Expectation
}

func (v *expectValue) String() string { return strings.Join(v.texts, ",") }

func (v *expectValue) Set(s string) error {
	if s == "" {
		return errors.New("empty value")
	}
	e, err := expect.Parse(s)
	if err == nil {
		err = e.Fits(v.rows)
	}
	if err != nil {
		return v.refuse(fmt.Errorf("--expect: %w", err))
	}
	v.texts, v.list = append(v.texts, s), append(v.list, e)
	return nil
}

// addExpectFlag registers --expect for runs with rows; its usage shows an
// expectation that such a run can have.
func addExpectFlag(fs *flagSet, rows expect.Rows, usage string) *expectValue {
	v := &expectValue{rows: rows}
	fs.Var(v, "expect", usage)
	return v
}

// The rows of each kind of run, so that --expect can refuse a selector the
// run will never have before the run starts. run and attach give the roles
// of follow's rows: the command or the attached process, its descendants,
// and thread rows with --threads.
var (
	experimentRows = expect.Rows{} // roles depend on the scenario (writer1, ...)
	runRows        = expect.Rows{Roles: []string{"command", "child", "thread"}, Lineage: true}
	attachRows     = expect.Rows{Roles: []string{"attached", "child", "thread"}, Lineage: true}
)

// proofValue is --proof: the experiment's proof, or the matrix's, which
// also takes "none".
type proofValue struct {
	refused
	noneToo bool
	text    string
	proof   experiment.Proof
}

func (v *proofValue) String() string { return v.text }

func (v *proofValue) Set(s string) error {
	if v.noneToo && s == "none" {
		v.text, v.proof = s, ""
		return nil
	}
	p, err := experiment.ParseProof(s)
	switch {
	case v.noneToo && (err != nil || p == ""):
		return v.refuse(usagef("unknown proof %q (want pagemap or none)", s))
	case err != nil:
		return v.refuse(err)
	}
	v.text, v.proof = s, p
	return nil
}

// checkFrames refuses --proof pagemap, before anything runs, where this
// process is shown no frame numbers (no CAP_SYS_ADMIN), saying what to do
// instead: the proof failed only after the first scenario had run, and
// without a word of --proof none.
func (v *proofValue) checkFrames(given bool, instead string) error {
	if v.proof != experiment.ProofPagemap {
		return nil
	}
	err := proof.Check()
	if !errors.Is(err, proof.ErrNoFrameNumbers) {
		return err
	}
	flag := "--proof pagemap"
	if !given {
		flag += " (the default)"
	}
	return fmt.Errorf("%s: %v: run as root, or %s", flag, err, instead)
}

// workloadFlags are the experiment's layout: the matrix runs every
// scenario with the same.
type workloadFlags struct {
	blocks, blockSize, offset, writers *int
}

func addWorkloadFlags(fs *flagSet) *workloadFlags {
	seed := workload.Seed()
	return &workloadFlags{
		blocks:    fs.Int("blocks", seed.Blocks, "number of blocks"),
		blockSize: fs.Int("block-size", seed.BlockSize, "bytes per block"),
		offset:    fs.Int("offset", seed.Offset, "offset of the byte read or written in each block"),
		writers:   fs.Int("writers", scenario.DefaultWriters, "number of writer children of the scenario many-writers"),
	}
}

// checkWriters refuses a count of writers the workload cannot fork.
func (w *workloadFlags) checkWriters() error {
	if *w.writers < 1 || *w.writers > 64 {
		return usagef("--writers must be between 1 and 64, got %d", *w.writers)
	}
	return nil
}

// addLabelFlag registers --label of a single run: the experiment, run and
// attach.
func addLabelFlag(fs *flagSet) *string {
	return fs.String("label", "", "`LABEL` of this run in the report (and in cowtrace compare)")
}
