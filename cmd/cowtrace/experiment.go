package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/cowtrace/cowtrace/engine"
	"github.com/cowtrace/cowtrace/experiment"
	"github.com/cowtrace/cowtrace/perfevents"
	"github.com/cowtrace/cowtrace/report/render"
	"github.com/cowtrace/cowtrace/scenario"
	"github.com/cowtrace/cowtrace/workload"
)

// stringList is a repeatable flag.
type stringList []string

func (s *stringList) String() string { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error {
	if v == "" {
		return fmt.Errorf("empty value")
	}
	*s = append(*s, v)
	return nil
}

// newFlagSet returns a flag set whose messages go to a buffer: the flag
// package prints the whole usage on every mistake, but a mistake deserves one
// line (see parseFlags) and only -h the usage.
func newFlagSet(name, usage string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(new(bytes.Buffer))
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args; -h prints the usage to stdout and returns errHelp,
// a mistake returns a usageError of one line.
func parseFlags(fs *flag.FlagSet, args []string, stdout io.Writer) error {
	err := fs.Parse(args)
	buf := fs.Output().(*bytes.Buffer)
	defer buf.Reset()
	switch {
	case err == flag.ErrHelp:
		if _, err := io.Copy(stdout, buf); err != nil {
			return err
		}
		return errHelp
	case err != nil:
		return usageError{err}
	}
	return nil
}

const experimentUsage = `Usage: cowtrace [experiment] [flags]

Runs the fork/copy-on-write experiment: a worker process maps BLOCKS blocks of
BLOCK-SIZE bytes of private anonymous memory, writes all of it (unless
--no-touch), forks a reader child and a writer child that read or write the
byte at OFFSET of every block, and reads that byte itself at the end. Each
process is counted from the moment it may touch the region.

Flags:
`

func cmdExperiment(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	seed := workload.Seed()
	fs := newFlagSet("cowtrace", experimentUsage)
	blocks := fs.Int("blocks", seed.Blocks, "number of blocks")
	blockSize := fs.Int("block-size", seed.BlockSize, "bytes per block")
	offset := fs.Int("offset", seed.Offset, "offset of the byte read or written in each block")
	noTouch := fs.Bool("no-touch", false, "do not write the memory before the fork (the seed's second run)")
	format := fs.String("format", "table", "output format: table, json, csv, markdown or openmetrics")
	method := fs.String("kprobe-method", "auto", "route to kernel functions: auto, pmu, tracefs or none")
	faultMethod := fs.String("fault-method", "auto", "faults from: auto (the x86 fault tracepoints where the kernel has them, else the page-fault event with its address) or address (the latter everywhere)")
	mode := fs.String("mode", "classify", "classify: sample and classify every fault; count: in-kernel filtered counters only, no sampling")
	var probes stringList
	fs.Var(&probes, "probe", "also count hits of kernel function `FUNC` per process (repeatable)")
	scenarioName := fs.String("scenario", "", "run the named scenario (see cowtrace matrix -h): "+strings.Join(scenario.Names(), ", "))
	writers := fs.Int("writers", scenario.DefaultWriters, "number of writer children of --scenario many-writers")
	var expects stringList
	fs.Var(&expects, "expect", "exit 1 unless `EXPR` holds, e.g. 'writer.copies == 1000' (repeatable)")
	proofName := fs.String("proof", "", "add physical-frame evidence: pagemap (/proc/PID/pagemap right after fork and after the writes)")
	label := fs.String("label", "", "label of this run in the report (and in cowtrace compare)")
	outPath := fs.String("o", "", "write the report to `FILE` instead of stdout")
	pause := fs.Bool("pause-after-attach", false, "testing aid: print \"cowtrace: attached\" once every event is open, then wait for a signal")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q (see cowtrace -h)", fs.Arg(0))
	}
	f, err := render.ParseFormat(*format)
	if err != nil {
		return usageError{err}
	}
	km, err := perfevents.ParseKprobeMethod(*method)
	if err != nil {
		return usageError{err}
	}
	byAddr, err := engine.ParseFaultMethod(*faultMethod)
	if err != nil {
		return usageError{err}
	}
	md, err := engine.ParseMode(*mode, engine.ModeClassify)
	if err != nil {
		return usageError{err}
	}
	for _, p := range probes {
		if !validFunctionName(p) {
			return usagef("--probe %q is not a kernel function name", p)
		}
	}
	cfg := seed
	cfg.Blocks, cfg.BlockSize, cfg.Offset, cfg.Touch = *blocks, *blockSize, *offset, !*noTouch
	if err := cfg.Validate(); err != nil {
		return usageError{err}
	}
	scenarioLabel := "touched"
	if !cfg.Touch {
		scenarioLabel = "untouched"
	}
	if *scenarioName != "" || flagSet(fs, "writers") {
		if cfg, err = scenarioWorkload(fs, *scenarioName, cfg, *writers); err != nil {
			return err
		}
		scenarioLabel = *scenarioName
	}
	es, err := parseExpectations(expects, experimentRows)
	if err != nil {
		return err
	}
	pf, err := experiment.ParseProof(*proofName)
	if err != nil {
		return usageError{err}
	}
	if err := checkProof(pf, cfg); err != nil {
		return err
	}
	out, err := openOutput(*outPath, stdout)
	if err != nil {
		return err
	}
	reported := false
	defer func() {
		if cerr := out.close(reported); err == nil {
			err = cerr
		}
	}()
	opt := experiment.Options{Workload: cfg, Scenario: scenarioLabel, KprobeMethod: km, Probes: probes, Mode: md, Proof: pf, FaultsByAddress: byAddr,
		HandOff: handOff}
	if *pause {
		opt.AfterAttach = func(ctx context.Context) error {
			fmt.Fprintln(stderr, "cowtrace: attached")
			<-ctx.Done()
			return ctx.Err()
		}
	}
	run, err := experiment.Run(ctx, opt)
	if err != nil {
		return err
	}
	run.Label = *label
	if *scenarioName != "" {
		scenarioNotes(run, *scenarioName, *writers)
	}
	if err := render.Write(out, run, f); err != nil {
		return err
	}
	reported = true
	return checkExpectations(run, es)
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
