package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cowtrace/cowtrace/vmtest/internal/guest"
)

// run is vmtest's whole course: resolve the kernels, build for their
// architectures and plan their guests, boot every guest, check each
// kernel against its expectation, and report.
func run(ctx context.Context, o options) (bool, error) {
	start := time.Now()
	f := newFetcher(o.cache)
	kernels, err := resolveBoots(ctx, f, o)
	if err != nil {
		return false, err
	}
	only, skip, err := compileFilters(o)
	if err != nil {
		return false, err
	}
	work, cleanup, err := workDir(o)
	if err != nil {
		return false, err
	}
	defer cleanup()
	root, err := moduleRoot(ctx)
	if err != nil {
		return false, err
	}
	plans, err := planKernels(ctx, f, root, work, o, kernels, only)
	if err != nil {
		return false, err
	}
	shards := bootAll(ctx, o, work, kernels, plans)
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	runs := make([]*kernelRun, len(kernels))
	for i, k := range kernels {
		runs[i] = checkKernel(k, plans[i], shards[i], skip)
	}
	table, ok := printRuns(runs, time.Since(start))
	return ok, writeResults(o, runs, table, time.Since(start), ok)
}

// resolveBoots are the kernels of -kernels and -kernel, each with a qemu to
// run it.
func resolveBoots(ctx context.Context, f *fetcher, o options) ([]kernel, error) {
	var kernels []kernel
	if o.kernels != "" {
		ks, err := resolveKernels(ctx, f, splitList(o.kernels))
		if err != nil {
			return nil, err
		}
		kernels = ks
	}
	if o.kernelPath != "" {
		if _, err := os.Stat(o.kernelPath); err != nil {
			return nil, err
		}
		// A kernel of one's own is taken for one with kprobes, as
		// Debian's are; its THP is what its guest shows.
		kernels = append(kernels, kernel{Label: filepath.Base(o.kernelPath), Vmlinuz: o.kernelPath, Target: targets["amd64"], Expect: kprobes, THPFromGuest: true})
	}
	if len(kernels) == 0 {
		return nil, errors.New("no kernel to boot: give -kernels or -kernel")
	}
	for _, k := range kernels {
		if err := k.Target.haveQemu(); err != nil {
			return nil, err
		}
	}
	return kernels, nil
}

// compileFilters compiles -run and -skip.
func compileFilters(o options) (only, skip *regexp.Regexp, err error) {
	if o.only != "" {
		if only, err = regexp.Compile(o.only); err != nil {
			return nil, nil, fmt.Errorf("-run: %w", err)
		}
	}
	if o.skip != "" {
		if skip, err = regexp.Compile(o.skip); err != nil {
			return nil, nil, fmt.Errorf("-skip: %w", err)
		}
	}
	return only, skip, nil
}

// workDir is -work, or a temporary directory that cleanup removes unless
// -keep.
func workDir(o options) (dir string, cleanup func(), err error) {
	if o.workDir != "" {
		return o.workDir, func() {}, os.MkdirAll(o.workDir, 0o755)
	}
	dir, err = os.MkdirTemp("", "cowtrace-vmtest-")
	if err != nil {
		return "", nil, err
	}
	if o.keep {
		logf("work dir %s", dir)
		return dir, func() {}, nil
	}
	return dir, func() { os.RemoveAll(dir) }, nil
}

// planKernels builds once per architecture and plans each kernel's guests:
// kernels of an architecture that run the same commands, skipping the
// same tests, share a plan and its initramfs images.
func planKernels(ctx context.Context, f *fetcher, root, work string, o options, kernels []kernel, only *regexp.Regexp) ([]*kernelPlan, error) {
	start := time.Now()
	archs := map[string]*archBuild{}
	shared := map[string]*kernelPlan{}
	plans := make([]*kernelPlan, len(kernels))
	for i, k := range kernels {
		a := archs[k.Target.Arch]
		if a == nil {
			var err error
			if a, err = buildArch(ctx, f, root, work, o, k.Target); err != nil {
				return nil, err
			}
			archs[k.Target.Arch] = a
		}
		man := a.b.manifestFor(k, only)
		skips := testSkips(k.Expect)
		key := fmt.Sprint(k.Target.Arch, "/", commandNames(man), "/", skips)
		if shared[key] == nil {
			p, err := makePlan(work, len(shared)+1, a, man, skips)
			if err != nil {
				return nil, err
			}
			shared[key] = p
		}
		plans[i] = shared[key]
		if k.Expect.NoTests != "" && len(a.b.tests) > 0 {
			logf("%s: no test binaries: %s", k.Label, k.Expect.NoTests)
		}
		for _, name := range slices.Sorted(maps.Keys(k.Expect.LeaveOut)) {
			logf("%s: no %s: %s", k.Label, name, k.Expect.LeaveOut[name])
		}
		for _, note := range plans[i].skipped {
			logf("%s: %s", k.Label, note)
		}
	}
	maxGuest := time.Duration(0)
	nGuests := 0
	for _, p := range plans {
		maxGuest = max(maxGuest, p.a.t.predict(&p.shards[0]))
		nGuests += len(p.shards)
	}
	for _, arch := range slices.Sorted(maps.Keys(archs)) {
		a := archs[arch]
		logf("built for %s: cowtrace %v, %d test binaries, %d commands (-guest-budget %v)",
			arch, a.b.cowtrace, len(a.b.tests), len(a.b.manifest.Commands), a.budget)
	}
	logf("built in %v: %d guests for %d kernels, each at most %v predicted",
		time.Since(start).Round(time.Second/10), nGuests, len(kernels), maxGuest)
	return plans, nil
}

// bootAll boots every guest of every kernel in one pool of -parallel, the
// heaviest guests first so that the short ones fill in at the end. A guest
// that never started (the context ended) is left nil.
func bootAll(ctx context.Context, o options, work string, kernels []kernel, plans []*kernelPlan) [][]*guestShard {
	type job struct {
		k, s int
		w    time.Duration
	}
	var jobs []job
	shards := make([][]*guestShard, len(kernels))
	for k, p := range plans {
		shards[k] = make([]*guestShard, len(p.shards))
		for s := range p.shards {
			jobs = append(jobs, job{k, s, p.a.t.predict(&p.shards[s])})
		}
	}
	slices.SortStableFunc(jobs, func(a, b job) int { return int(b.w - a.w) })
	queue := make(chan job)
	var wg sync.WaitGroup
	var logMu sync.Mutex
	for range max(o.parallel, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range queue {
				shards[j.k][j.s] = bootGuest(ctx, o, work, kernels[j.k], plans[j.k], j.s, j.w, &logMu)
			}
		}()
	}
	for _, j := range jobs {
		if ctx.Err() != nil {
			break
		}
		queue <- j
	}
	close(queue)
	wg.Wait()
	return shards
}

// bootGuest boots guest s of kernel k's plan p, predicted to take w, with
// its console in the work dir (and on stderr with -v, under logMu).
func bootGuest(ctx context.Context, o options, work string, k kernel, p *kernelPlan, s int, w time.Duration, logMu *sync.Mutex) *guestShard {
	t := p.a.t
	sh := &p.shards[s]
	gs := &guestShard{Index: s + 1, Of: len(p.shards), Units: sh.Units, Manifest: sh.manifest()}
	label := fmt.Sprintf("%s %s", k.Label, gs.label())
	timeout := o.timeout
	if timeout <= 0 {
		// Boot and power-off take seconds; the slack is for a slow host,
		// where TCG can be several times slower.
		timeout = 2 * time.Minute
		for _, c := range gs.Manifest.Commands {
			timeout += c.Timeout
		}
	}
	logf("booting %s (%s), predicted %v", label, k.Vmlinuz, w.Round(time.Second/10))
	consoleLog, err := os.Create(filepath.Join(work, fmt.Sprintf("console-%s-%d.log", k.Label, s+1)))
	var console io.Writer = io.Discard
	if err == nil {
		console = consoleLog
		defer consoleLog.Close()
	}
	if o.verbose {
		console = io.MultiWriter(console, &prefixWriter{mu: logMu, prefix: "[" + label + "] ", w: os.Stderr})
	}
	gs.Boot = boot(ctx, bootOptions{
		Qemu: t.Qemu, Machine: t.Machine, TTY: t.TTY, Accel: o.accel, CPU: cmpOr(o.cpu, t.CPU), MemMB: o.memMB,
		Vmlinuz: k.Vmlinuz, Initrd: p.initrds[s], Append: strings.TrimSpace(k.Append + " " + o.append),
		Timeout: timeout, Console: console,
	})
	logf("%s %s", k.Label, gs.line())
	return gs
}

// checkKernel merges kernel k's guests and runs its checks: those for
// what it should offer, and one for each test binary it ran.
func checkKernel(k kernel, p *kernelPlan, shards []*guestShard, skip *regexp.Regexp) *kernelRun {
	g := newShardedRun(p.manifest, shards)
	g.Expect = k.Expect
	g.THPFromGuest = k.THPFromGuest
	kchecks := checksFor(checks, k.Expect)
	var tests []string
	for _, t := range p.a.b.tests {
		if slices.ContainsFunc(g.Manifest.Commands, func(c guest.Command) bool { return c.Name == t }) {
			tests = append(tests, t)
			kchecks = append(kchecks, testBinaryCheck(t))
		}
	}
	return &kernelRun{Kernel: k, Guest: g, Checks: runChecks(g, kchecks, skip), Tests: tests, Notes: p.a.b.notes, Skipped: p.skipped}
}

// printRuns prints the failures, a summary of each kernel, doctor's
// output, the results table and the totals; it returns the table and
// whether every check held.
func printRuns(runs []*kernelRun, elapsed time.Duration) (table string, ok bool) {
	ok = true
	for _, r := range runs {
		if !r.ok() {
			ok = false
			printFailure(os.Stdout, r)
		}
	}
	fmt.Println()
	for _, r := range runs {
		fmt.Println(summaryLine(r))
		for _, s := range r.Guest.Guests {
			fmt.Println("    " + s.line())
		}
		for _, l := range append(append(r.testLines(), r.Guest.seedLine()...), r.Guest.matrixLines()...) {
			fmt.Println("    " + l)
		}
	}
	for _, r := range runs {
		if out := r.Guest.doctorText(); out != "" {
			fmt.Printf("\n---- cowtrace doctor on %s (%s)\n%s", r.name(), r.Kernel.Label, indent(out))
			fmt.Println()
		}
	}
	fmt.Println()
	table = resultsTable(runs)
	fmt.Print(table)
	var passed, failed, skipped int
	for _, r := range runs {
		p, f, s := r.counts()
		passed, failed, skipped = passed+p, failed+f, skipped+s
	}
	fmt.Printf("\nvmtest: %d kernels in %v\n", len(runs), elapsed.Round(time.Second))
	// The plain closing line CI summaries look for.
	fmt.Printf("vmtest: %d passed, %d failed, %d skipped\n", passed, failed, skipped)
	return table, ok
}

// writeResults writes -json and -readme.
func writeResults(o options, runs []*kernelRun, table string, elapsed time.Duration, ok bool) error {
	if o.jsonOut != "" {
		if err := writeJSON(o.jsonOut, runs); err != nil {
			return err
		}
	}
	if o.readme != "" {
		section := readmeSection(table+readmeNotes(runs, elapsed, o.parallel), time.Now().UTC(), shellJoin(append([]string{"go", "run", "./vmtest"}, figureArgs(os.Args[1:])...)), ok)
		if err := replaceReadmeSection(o.readme, section); err != nil {
			return err
		}
	}
	return nil
}
