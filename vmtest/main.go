// Command vmtest boots Debian's kernels under qemu and runs cowtrace and its
// kernel-facing test binaries inside them: kernels with kprobes (5.10, 6.1,
// 6.12), one without transparent huge pages (6.1's PREEMPT_RT flavour) and
// a boot whose lockdown policy refuses kprobes and tracefs to root (see
// kernels.go). The development and CI machines run a kernel without
// kprobes, so this is the only place where cowtrace's kprobe paths meet a
// real kernel. Each boot is checked against the best method it offers.
//
// Usage, from the module root:
//
//	go run ./vmtest [-kernels 5.10,6.1,...] [-kernel PATH] [-run REGEXP] [-guest-budget 90s] [-json FILE] [-readme README.md]
//	go run ./vmtest -rings 2,16,48 [-rings-compare OLD-COWTRACE]
//
// Each kernel's commands are spread over as many guests as it takes for
// each guest to stay within -guest-budget (see shard.go); the results of a
// kernel's guests are merged before its checks run.
//
// Each boot names its architecture, whose target (target.go) says which qemu
// runs it and which C compiler builds its programs: qemu-system-x86_64
// (Debian: qemu-system-x86) and gcc with a static libc (gcc libc6-dev) for
// amd64, qemu-system-aarch64 (qemu-system-arm) and aarch64-linux-gnu-gcc
// (gcc-aarch64-linux-gnu libc6-dev-arm64-cross) for arm64. Without the C
// compiler the checks of `cowtrace run` on the C programs of testdata/ are
// left out. apt-get and dpkg fetch the kernels; cpio is not needed.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"os/signal"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cowtrace/cowtrace/vmtest/internal/guest"
)

type options struct {
	cache      string
	kernels    string
	kernelPath string
	pkgs       string
	jsonOut    string
	readme     string
	workDir    string
	keep       bool
	verbose    bool
	parallel   int
	timeout    time.Duration
	memMB      int
	accel      string
	cpu        string
	skip       string
	only       string
	append     string
	budget     time.Duration
	// -rings: what cowtrace run costs by vCPU count (rings.go)
	rings         string
	ringsCompare  string
	ringsStartups int
}

func defaultCache() string {
	dir := os.Getenv("XDG_CACHE_HOME")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return filepath.Join(os.TempDir(), "cowtrace-vmtest")
		}
		dir = filepath.Join(home, ".cache")
	}
	return filepath.Join(dir, "cowtrace-vmtest")
}

func main() {
	var o options
	flag.StringVar(&o.cache, "cache", defaultCache(), "`dir` for downloaded kernels")
	flag.StringVar(&o.kernels, "kernels", strings.Join(specNames(), ","), "comma-separated kernels to boot ("+strings.Join(specNames(), ", ")+"); empty for none")
	flag.StringVar(&o.kernelPath, "kernel", "", "boot this vmlinuz `path` too (with -kernels '' only it)")
	flag.StringVar(&o.pkgs, "pkgs", "./perfevents,./workload,./experiment,./cmd/cowtrace,./scenario,./proof,./follow,./report", "comma-separated packages whose tests run in the guests")
	flag.StringVar(&o.jsonOut, "json", "", "write every guest's results to `file`")
	flag.StringVar(&o.readme, "readme", "", "replace the vmtest section of this markdown `file` with the results table")
	flag.StringVar(&o.workDir, "work", "", "build into `dir` (default: a temporary one, removed afterwards)")
	flag.BoolVar(&o.keep, "keep", false, "keep the temporary work dir (binaries, initramfs, console logs)")
	flag.BoolVar(&o.verbose, "v", false, "copy each guest's console to stderr as it runs")
	flag.IntVar(&o.parallel, "parallel", runtime.NumCPU(), "guests to run at once (each takes one host core under TCG)")
	flag.DurationVar(&o.timeout, "timeout", 0, "host-side limit for one guest, boot to power-off (default: the guest's command timeouts added up, plus 2m)")
	flag.IntVar(&o.memMB, "m", 2048, "guest memory in MiB")
	// KVM is the fast choice where it works; the default stays TCG because
	// nested KVM on the project's machines dies or hangs.
	flag.StringVar(&o.accel, "accel", "tcg", "qemu accelerator")
	flag.StringVar(&o.cpu, "cpu", "", "qemu CPU model of every guest (default: each architecture's, see target.go)")
	flag.StringVar(&o.append, "append", "", "more kernel command line, e.g. ignore_loglevel to see every kernel message on the console")
	flag.DurationVar(&o.budget, "guest-budget", 90*time.Second, "spread each kernel's commands over as many guests as it takes for each to stay within this time, boot to power-off, by the measured time of each command")
	flag.StringVar(&o.only, "run", "", "run only the commands whose name matches this `regexp` (the checks of the others are skipped)")
	flag.StringVar(&o.skip, "skip", "", "skip the checks whose name matches this `regexp` (they are reported as skipped)")
	flag.StringVar(&o.rings, "rings", "", "instead of the tests: boot a Debian 6.1 guest with each of these comma-separated vCPU counts and measure cowtrace run's memory, descriptors and start-up (rings.go)")
	flag.StringVar(&o.ringsCompare, "rings-compare", "", "with -rings, measure this static cowtrace `binary` too (e.g. one built before a change)")
	flag.IntVar(&o.ringsStartups, "rings-startups", 3, "with -rings, timed runs of cowtrace run -- true")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "vmtest: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	run := run
	if o.rings != "" {
		run = runRings
	}
	ok, err := run(ctx, o)
	if err != nil {
		fmt.Fprintf(os.Stderr, "vmtest: %v\n", err)
		os.Exit(1)
	}
	if !ok {
		os.Exit(1)
	}
}

// built is what the build step produced for the initramfs.
type built struct {
	files    []initramfsFile
	manifest guest.Manifest
	tests    []string // names of the test binaries in the manifest
	notes    []string // what was left out, and why
	cowtrace bool
	progs    bool // the C programs are in progsDir
	// cmdFor are the commands that only some boots run, with the test of
	// what the boot offers (cowtraceCommand.For).
	cmdFor map[string]func(expectation) bool
}

// archBuild is what the guests of one architecture share: the target, the
// build and the guest budget.
type archBuild struct {
	t      *target
	b      *built
	budget time.Duration
}

// buildArch builds everything for t's guests, with the busybox t names.
func buildArch(ctx context.Context, f *fetcher, root, work string, o options, t *target) (*archBuild, error) {
	bb := ""
	if t.BusyboxSuite != "" {
		var err error
		if bb, err = f.busybox(ctx, t.Arch, t.BusyboxSuite); err != nil {
			return nil, err
		}
	}
	b, err := buildAll(ctx, root, work, splitList(o.pkgs), t, bb)
	if err != nil {
		return nil, err
	}
	for _, n := range b.notes {
		logf("%s: %s", t.Arch, n)
	}
	return &archBuild{t: t, b: b, budget: o.budget}, nil
}

func run(ctx context.Context, o options) (bool, error) {
	start := time.Now()
	f := newFetcher(o.cache)
	var kernels []kernel
	if o.kernels != "" {
		ks, err := resolveKernels(ctx, f, splitList(o.kernels))
		if err != nil {
			return false, err
		}
		kernels = ks
	}
	if o.kernelPath != "" {
		if _, err := os.Stat(o.kernelPath); err != nil {
			return false, err
		}
		// A kernel of one's own is taken for one with kprobes, as
		// Debian's are; its THP is what its guest shows.
		kernels = append(kernels, kernel{Label: filepath.Base(o.kernelPath), Vmlinuz: o.kernelPath, Target: targets["amd64"], Expect: kprobes, THPFromGuest: true})
	}
	if len(kernels) == 0 {
		return false, errors.New("no kernel to boot: give -kernels or -kernel")
	}
	for _, k := range kernels {
		if err := k.Target.haveQemu(); err != nil {
			return false, err
		}
	}
	var skip *regexp.Regexp
	if o.skip != "" {
		re, err := regexp.Compile(o.skip)
		if err != nil {
			return false, fmt.Errorf("-skip: %w", err)
		}
		skip = re
	}

	work := o.workDir
	if work == "" {
		d, err := os.MkdirTemp("", "cowtrace-vmtest-")
		if err != nil {
			return false, err
		}
		work = d
		if o.keep {
			logf("work dir %s", work)
		} else {
			defer os.RemoveAll(work)
		}
	} else if err := os.MkdirAll(work, 0o755); err != nil {
		return false, err
	}

	root, err := moduleRoot(ctx)
	if err != nil {
		return false, err
	}
	var only *regexp.Regexp
	if o.only != "" {
		if only, err = regexp.Compile(o.only); err != nil {
			return false, fmt.Errorf("-run: %w", err)
		}
	}
	// One build per architecture, with its checks; kernels of an
	// architecture that run the same commands share a plan and its
	// initramfs images.
	buildStart := time.Now()
	archs := map[string]*archBuild{}
	plans := map[string]*kernelPlan{}
	kplans := make([]*kernelPlan, len(kernels))
	for i, k := range kernels {
		a := archs[k.Target.Arch]
		if a == nil {
			if a, err = buildArch(ctx, f, root, work, o, k.Target); err != nil {
				return false, err
			}
			archs[k.Target.Arch] = a
		}
		man := a.b.manifestFor(k, only)
		skips := testSkips(k.Expect)
		key := fmt.Sprint(k.Target.Arch, "/", commandNames(man), "/", skips)
		if plans[key] == nil {
			p, err := makePlan(work, len(plans)+1, a, man, skips)
			if err != nil {
				return false, err
			}
			plans[key] = p
		}
		kplans[i] = plans[key]
	}
	for _, k := range kernels {
		if k.Expect.NoTests != "" && len(archs[k.Target.Arch].b.tests) > 0 {
			logf("%s: no test binaries: %s", k.Label, k.Expect.NoTests)
		}
		for _, name := range slices.Sorted(maps.Keys(k.Expect.LeaveOut)) {
			logf("%s: no %s: %s", k.Label, name, k.Expect.LeaveOut[name])
		}
	}
	maxGuest := time.Duration(0)
	nGuests := 0
	for _, p := range kplans {
		maxGuest = max(maxGuest, p.a.t.predict(&p.shards[0]))
		nGuests += len(p.shards)
	}
	for _, a := range archs {
		logf("built for %s: cowtrace %v, %d test binaries, %d commands (-guest-budget %v)",
			a.t.Arch, a.b.cowtrace, len(a.b.tests), len(a.b.manifest.Commands), a.budget)
	}
	logf("built in %v: %d guests for %d kernels, each at most %v predicted",
		time.Since(buildStart).Round(time.Second/10), nGuests, len(kernels), maxGuest)

	// Every guest of every kernel goes into one pool of -parallel, the
	// heaviest guests first so that the short ones fill in at the end.
	type job struct {
		k, s int
		w    time.Duration
	}
	var jobs []job
	shards := make([][]*guestShard, len(kernels))
	for k, p := range kplans {
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
				k, p := kernels[j.k], kplans[j.k]
				t := p.a.t
				s := &p.shards[j.s]
				gs := &guestShard{Index: j.s + 1, Of: len(p.shards), Units: s.Units, Manifest: s.manifest()}
				label := fmt.Sprintf("%s %s", k.Label, gs.label())
				timeout := o.timeout
				if timeout <= 0 {
					// Boot and power-off take seconds; the slack is for a
					// slow host, where TCG can be several times slower.
					timeout = 2 * time.Minute
					for _, c := range gs.Manifest.Commands {
						timeout += c.Timeout
					}
				}
				logf("booting %s (%s), predicted %v", label, k.Vmlinuz, j.w.Round(time.Second/10))
				consoleLog, err := os.Create(filepath.Join(work, fmt.Sprintf("console-%s-%d.log", k.Label, j.s+1)))
				var console io.Writer = io.Discard
				if err == nil {
					console = consoleLog
				}
				if o.verbose {
					console = io.MultiWriter(console, &prefixWriter{mu: &logMu, prefix: "[" + label + "] ", w: os.Stderr})
				}
				gs.Boot = boot(ctx, bootOptions{
					Qemu: t.Qemu, Machine: t.Machine, TTY: t.TTY, Accel: o.accel, CPU: cmpOr(o.cpu, t.CPU), MemMB: o.memMB,
					Vmlinuz: k.Vmlinuz, Initrd: p.initrds[j.s], Append: strings.TrimSpace(k.Append + " " + o.append),
					Timeout: timeout, Console: console,
				})
				if consoleLog != nil {
					consoleLog.Close()
				}
				logf("%s %s", k.Label, gs.line())
				shards[j.k][j.s] = gs
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
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	runs := make([]*kernelRun, len(kernels))
	for i, k := range kernels {
		a := kplans[i].a
		g := newShardedRun(kplans[i].manifest, shards[i])
		g.Expect = k.Expect
		g.THPFromGuest = k.THPFromGuest
		// A kernel's checks: those for what it should offer, and one for
		// each test binary it ran.
		kchecks := checksFor(checks, k.Expect)
		var tests []string
		for _, t := range a.b.tests {
			if slices.ContainsFunc(g.Manifest.Commands, func(c guest.Command) bool { return c.Name == t }) {
				tests = append(tests, t)
				kchecks = append(kchecks, testBinaryCheck(t))
			}
		}
		runs[i] = &kernelRun{Kernel: k, Guest: g, Checks: runChecks(g, kchecks, skip), Tests: tests, Notes: a.b.notes, Skipped: kplans[i].skipped}
	}

	allOK := true
	for _, r := range runs {
		if !r.ok() {
			allOK = false
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
	table := resultsTable(runs)
	fmt.Print(table)
	var passed, failed, skipped int
	for _, r := range runs {
		p, f, s := r.counts()
		passed, failed, skipped = passed+p, failed+f, skipped+s
	}
	fmt.Printf("\nvmtest: %d kernels in %v\n", len(runs), time.Since(start).Round(time.Second))
	// The plain closing line CI summaries look for.
	fmt.Printf("vmtest: %d passed, %d failed, %d skipped\n", passed, failed, skipped)

	if o.jsonOut != "" {
		if err := writeJSON(o.jsonOut, runs); err != nil {
			return false, err
		}
	}
	if o.readme != "" {
		section := readmeSection(table+readmeNotes(runs, time.Since(start), o.parallel), time.Now().UTC(), shellJoin(append([]string{"go", "run", "./vmtest"}, figureArgs(os.Args[1:])...)), allOK)
		if err := replaceReadmeSection(o.readme, section); err != nil {
			return false, err
		}
	}
	return allOK, nil
}

// kernelPlan is what the guests of one set of commands of one architecture
// boot: the shards and their initramfs images.
type kernelPlan struct {
	a        *archBuild
	manifest guest.Manifest
	shards   []shard
	initrds  []string
	skipped  []string // the tests of the test binaries skipped, and why
}

// makePlan spreads man's commands over guests of a's target within its
// budget, the tests of skips skipped, and writes an initramfs for each: the
// common files, the files of its own commands and its own manifest, which
// is less to unpack at boot under TCG.
func makePlan(work string, n int, a *archBuild, man guest.Manifest, skips map[string][]string) (*kernelPlan, error) {
	t, b := a.t, a.b
	// The shards take bootCost for a guest's boot; a target that boots
	// slower has that much less room for commands.
	budget := a.budget - max(t.BootCost-bootCost, 0)
	units, err := makeUnits(man.Commands, t.weight, splitters(), budget)
	if err != nil {
		return nil, fmt.Errorf("guest budget: %w", err)
	}
	if len(units) == 0 {
		return nil, errors.New("no command to run (-run matches none)")
	}
	p := &kernelPlan{a: a, manifest: man, skipped: skipTests(units, skips)}
	for _, note := range p.skipped {
		logf("plan %d: %s", n, note)
	}
	p.shards = planShards(units, budget)
	for i := range p.shards {
		s := &p.shards[i]
		js, err := json.MarshalIndent(s.manifest(), "", "  ")
		if err != nil {
			return nil, err
		}
		bases := s.bases()
		var files []initramfsFile
		for _, f := range b.files {
			if f.For == "" || bases[f.For] {
				files = append(files, f)
			}
		}
		path := filepath.Join(work, fmt.Sprintf("initramfs-%s-%d-%d.cpio.gz", t.Arch, n, i+1))
		if err := writeInitramfs(path, files, map[string][]byte{guest.ManifestPath: js}); err != nil {
			return nil, fmt.Errorf("initramfs: %w", err)
		}
		p.initrds = append(p.initrds, path)
	}
	return p, nil
}

// manifestFor is the commands kernel k runs: the test binaries unless its
// expectation leaves them out, the commands for some boots only on those,
// and only those -run matches.
func (b *built) manifestFor(k kernel, only *regexp.Regexp) guest.Manifest {
	var m guest.Manifest
	for _, c := range b.manifest.Commands {
		switch {
		case only != nil && !only.MatchString(c.Name):
		case k.Expect.NoTests != "" && slices.Contains(b.tests, c.Name):
		case k.Expect.LeaveOut[c.Name] != "":
		case b.cmdFor[c.Name] != nil && !b.cmdFor[c.Name](k.Expect):
		default:
			m.Commands = append(m.Commands, c)
		}
	}
	return m
}

func commandNames(m guest.Manifest) string {
	var n []string
	for _, c := range m.Commands {
		n = append(n, c.Name)
	}
	return strings.Join(n, ",")
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("not inside the cowtrace module: run from the repository")
	}
	return filepath.Dir(mod), nil
}

// goCmdFor runs the go tool in the module root with cgo off (the initramfs
// has no libc, so every binary in it must be static), for goarch.
func goCmdFor(ctx context.Context, root, goarch string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOARCH="+goarch)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return out, nil
}

// pkgInfo is what `go list` says about one package; an absent or empty
// package is not an error here, since the packages are being written while
// the harness exists.
type pkgInfo struct {
	Dir          string
	Name         string
	GoFiles      []string
	TestGoFiles  []string
	XTestGoFiles []string
	Error        *struct{ Err string }
}

func listPkg(ctx context.Context, root, pkg string) (*pkgInfo, error) {
	cmd := exec.CommandContext(ctx, "go", "list", "-e", "-json", pkg)
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list %s: %w", pkg, err)
	}
	var p pkgInfo
	if err := json.Unmarshal(out, &p); err != nil {
		return nil, fmt.Errorf("go list %s: %w", pkg, err)
	}
	return &p, nil
}

// absent says why pkg cannot be built because it is not there yet, or ""
// if it is there.
func absent(p *pkgInfo, pkg string) string {
	if st, err := os.Stat(p.Dir); p.Dir == "" || err != nil || !st.IsDir() {
		return pkg + " does not exist"
	}
	if len(p.GoFiles) == 0 && len(p.TestGoFiles) == 0 && len(p.XTestGoFiles) == 0 {
		return pkg + " has no Go files"
	}
	return ""
}

func buildAll(ctx context.Context, root, work string, pkgs []string, t *target, bb string) (*built, error) {
	b := &built{cmdFor: map[string]func(expectation) bool{}}
	bin := filepath.Join(work, "bin-"+t.Arch)
	goCmd := func(ctx context.Context, root string, args ...string) ([]byte, error) {
		return goCmdFor(ctx, root, t.GOARCH, args...)
	}
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return nil, err
	}
	gi := filepath.Join(bin, "guestinit")
	if _, err := goCmd(ctx, root, "build", "-o", gi, "./vmtest/guestinit"); err != nil {
		return nil, err
	}
	b.files = append(b.files, initramfsFile{Src: gi, Dst: "init", Perm: 0o755})
	env := []string{"PATH=/bin:/tests", "HOME=/tmp", "TMPDIR=/tmp", "USER=root"}
	if files, why := busybox(bb); why != "" {
		b.notes = append(b.notes, why)
	} else {
		b.files = append(b.files, files...)
	}
	progs, why, err := buildProgs(ctx, root, bin, t.CC, t.CCPackages)
	if err != nil {
		return nil, err
	}
	if why != "" {
		b.notes = append(b.notes, "cowtrace run checks skipped, and tests that trace the C programs of testdata/ skip: "+why)
	} else {
		b.files = append(b.files, progs...)
		b.progs = true
		env = append(env, progsEnv+"="+progsDir)
	}

	p, err := listPkg(ctx, root, "./cmd/cowtrace")
	if err != nil {
		return nil, err
	}
	if why := absent(p, "./cmd/cowtrace"); why != "" {
		b.notes = append(b.notes, "cowtrace checks skipped: "+why)
	} else {
		ct := filepath.Join(bin, "cowtrace")
		if _, err := goCmd(ctx, root, "build", "-o", ct, "./cmd/cowtrace"); err != nil {
			return nil, err
		}
		b.cowtrace = true
		b.files = append(b.files, initramfsFile{Src: ct, Dst: "bin/cowtrace", Perm: 0o755})
		for _, c := range cowtraceCommands {
			if c.NeedsProgs && !b.progs {
				continue
			}
			timeout := c.Timeout
			if timeout == 0 {
				timeout = 90 * time.Second
			}
			cmd := guest.Command{
				Name: c.Name, Argv: append([]string{"/bin/cowtrace"}, c.Args...), Env: env, Dir: "/tmp",
				Timeout: timeout, InspectTracefs: true,
			}
			if c.Signal != 0 {
				cmd.WaitStderr, cmd.Signal = attachedLine, int(c.Signal)
			}
			b.cmdFor[c.Name] = c.For
			b.manifest.Commands = append(b.manifest.Commands, cmd)
		}
	}

	for _, pkg := range pkgs {
		p, err := listPkg(ctx, root, pkg)
		if err != nil {
			return nil, err
		}
		if why := absent(p, pkg); why != "" {
			b.notes = append(b.notes, "tests skipped: "+why)
			continue
		}
		if len(p.TestGoFiles)+len(p.XTestGoFiles) == 0 {
			b.notes = append(b.notes, "tests skipped: "+pkg+" has no tests")
			continue
		}
		name := strings.ReplaceAll(strings.Trim(path.Clean(pkg), "./"), "/", "_")
		exe := filepath.Join(bin, name+".test")
		if _, err := goCmd(ctx, root, "test", "-c", "-o", exe, pkg); err != nil {
			return nil, err
		}
		// A test binary runs with its package directory as the working
		// directory, so testdata must sit beside it in the guest too.
		dir := "/tests/" + name
		b.files = append(b.files, initramfsFile{Src: exe, Dst: dir + "/" + name + ".test", Perm: 0o755, For: name + ".test"})
		if td := filepath.Join(p.Dir, "testdata"); isDir(td) {
			fs, err := treeFiles(td, dir+"/testdata")
			if err != nil {
				return nil, err
			}
			for i := range fs {
				fs[i].For = name + ".test"
			}
			b.files = append(b.files, fs...)
		}
		b.manifest.Commands = append(b.manifest.Commands, guest.Command{
			// The test binary's own timeout fires first, so a hang ends with
			// Go's goroutine dump rather than the guest's silent SIGKILL.
			Name: name + ".test", Argv: []string{dir + "/" + name + ".test", "-test.v", "-test.count=1", "-test.timeout=170s"},
			Env: env, Dir: dir, Timeout: 3 * time.Minute,
		})
		b.tests = append(b.tests, name+".test")
	}
	return b, nil
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

// prefixWriter labels each console line with its kernel when several
// guests stream to one terminal.
type prefixWriter struct {
	mu     *sync.Mutex
	prefix string
	w      io.Writer
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, line := range strings.SplitAfter(string(b), "\n") {
		if line != "" {
			if _, err := io.WriteString(p.w, p.prefix+line); err != nil {
				return 0, err
			}
		}
	}
	return len(b), nil
}

// figureArgs are the arguments that decide the figures: without those that
// only say where vmtest writes (-json, -work, -keep, -v).
func figureArgs(args []string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		name, _, hasValue := strings.Cut(strings.TrimLeft(args[i], "-"), "=")
		switch name {
		case "json", "work":
			if !hasValue {
				i++
			}
			continue
		case "keep", "v":
			continue
		}
		out = append(out, args[i])
	}
	return out
}

// shellJoin quotes args so that the command written to the README can be
// pasted back into a shell.
func shellJoin(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a != "" && strings.Trim(a, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=,:+@") == "" {
			q[i] = a
		} else {
			q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
	}
	return strings.Join(q, " ")
}
