package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/cowtrace/cowtrace/vmtest/internal/guest"
)

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

// guestEnv is the environment of every command in the guests.
var guestEnv = []string{"PATH=/bin:/tests", "HOME=/tmp", "TMPDIR=/tmp", "USER=root"}

// builder builds the files of one target's initramfs into bin.
type builder struct {
	root, bin string
	t         *target
	b         *built
}

// goCmd runs the go tool for the target (goCmdFor).
func (bd *builder) goCmd(ctx context.Context, args ...string) ([]byte, error) {
	return goCmdFor(ctx, bd.root, bd.t.GOARCH, args...)
}

// buildAll builds what t's guests run: the guests' /init, busybox (bb, or
// the host's), the C programs, cowtrace with its commands, and a test
// binary for each of pkgs.
func buildAll(ctx context.Context, root, work string, pkgs []string, t *target, bb string) (*built, error) {
	bd := &builder{root: root, bin: filepath.Join(work, "bin-"+t.Arch), t: t, b: &built{cmdFor: map[string]func(expectation) bool{}}}
	if err := os.MkdirAll(bd.bin, 0o755); err != nil {
		return nil, err
	}
	if err := bd.addInit(ctx); err != nil {
		return nil, err
	}
	bd.addBusybox(bb)
	env, err := bd.addProgs(ctx, slices.Clone(guestEnv))
	if err != nil {
		return nil, err
	}
	if err := bd.addCowtrace(ctx, env); err != nil {
		return nil, err
	}
	for _, pkg := range pkgs {
		if err := bd.addTests(ctx, pkg, env); err != nil {
			return nil, err
		}
	}
	return bd.b, nil
}

func (bd *builder) addInit(ctx context.Context) error {
	gi := filepath.Join(bd.bin, "guestinit")
	if _, err := bd.goCmd(ctx, "build", "-o", gi, "./vmtest/guestinit"); err != nil {
		return err
	}
	bd.b.files = append(bd.b.files, initramfsFile{Src: gi, Dst: "init", Perm: 0o755})
	return nil
}

func (bd *builder) addBusybox(bb string) {
	if files, why := busybox(bb); why != "" {
		bd.b.notes = append(bd.b.notes, why)
	} else {
		bd.b.files = append(bd.b.files, files...)
	}
}

// addProgs adds the C programs of testdata/, and returns env with where
// the tests find them.
func (bd *builder) addProgs(ctx context.Context, env []string) ([]string, error) {
	progs, why, err := buildProgs(ctx, bd.root, bd.bin, bd.t.CC, bd.t.CCPackages)
	if err != nil {
		return nil, err
	}
	if why != "" {
		bd.b.notes = append(bd.b.notes, "cowtrace run checks skipped, and tests that trace the C programs of testdata/ skip: "+why)
		return env, nil
	}
	bd.b.files = append(bd.b.files, progs...)
	bd.b.progs = true
	return append(env, progsEnv+"="+progsDir), nil
}

// addCowtrace adds cowtrace and a command for each of cowtraceCommands
// that can run.
func (bd *builder) addCowtrace(ctx context.Context, env []string) error {
	p, err := listPkg(ctx, bd.root, "./cmd/cowtrace")
	if err != nil {
		return err
	}
	if why := absent(p, "./cmd/cowtrace"); why != "" {
		bd.b.notes = append(bd.b.notes, "cowtrace checks skipped: "+why)
		return nil
	}
	ct := filepath.Join(bd.bin, "cowtrace")
	if _, err := bd.goCmd(ctx, "build", "-o", ct, "./cmd/cowtrace"); err != nil {
		return err
	}
	bd.b.cowtrace = true
	bd.b.files = append(bd.b.files, initramfsFile{Src: ct, Dst: "bin/cowtrace", Perm: 0o755})
	for _, c := range cowtraceCommands {
		if c.NeedsProgs && !bd.b.progs {
			continue
		}
		cmd := guest.Command{
			Name: c.Name, Argv: append([]string{"/bin/cowtrace"}, c.Args...), Env: env, Dir: "/tmp",
			Timeout: cmp.Or(c.Timeout, 90*time.Second), InspectTracefs: true,
		}
		if c.Signal != 0 {
			cmd.WaitStderr, cmd.Signal = attachedLine, int(c.Signal)
		}
		bd.b.cmdFor[c.Name] = c.For
		bd.b.manifest.Commands = append(bd.b.manifest.Commands, cmd)
	}
	return nil
}

// addTests adds the test binary of pkg, with its testdata, and a command
// that runs it.
func (bd *builder) addTests(ctx context.Context, pkg string, env []string) error {
	p, err := listPkg(ctx, bd.root, pkg)
	if err != nil {
		return err
	}
	if why := absent(p, pkg); why != "" {
		bd.b.notes = append(bd.b.notes, "tests skipped: "+why)
		return nil
	}
	if len(p.TestGoFiles)+len(p.XTestGoFiles) == 0 {
		bd.b.notes = append(bd.b.notes, "tests skipped: "+pkg+" has no tests")
		return nil
	}
	// internal/ is left out of the name: follow.test, as its package.
	name := strings.ReplaceAll(strings.TrimPrefix(strings.Trim(path.Clean(pkg), "./"), "internal/"), "/", "_")
	exe := filepath.Join(bd.bin, name+".test")
	if _, err := bd.goCmd(ctx, "test", "-c", "-o", exe, pkg); err != nil {
		return err
	}
	// A test binary runs with its package directory as the working
	// directory, so testdata must sit beside it in the guest too.
	dir := "/tests/" + name
	bd.b.files = append(bd.b.files, initramfsFile{Src: exe, Dst: dir + "/" + name + ".test", Perm: 0o755, For: name + ".test"})
	if td := filepath.Join(p.Dir, "testdata"); isDir(td) {
		fs, err := treeFiles(td, dir+"/testdata")
		if err != nil {
			return err
		}
		for i := range fs {
			fs[i].For = name + ".test"
		}
		bd.b.files = append(bd.b.files, fs...)
	}
	bd.b.manifest.Commands = append(bd.b.manifest.Commands, guest.Command{
		// The test binary's own timeout fires first, so a hang ends with
		// Go's goroutine dump rather than the guest's silent SIGKILL.
		Name: name + ".test", Argv: []string{dir + "/" + name + ".test", "-test.v", "-test.count=1", "-test.timeout=170s"},
		Env: env, Dir: dir, Timeout: 3 * time.Minute,
	})
	bd.b.tests = append(bd.b.tests, name+".test")
	return nil
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
	p := &kernelPlan{a: a, manifest: man, skipped: skipTests(units, skips), shards: planShards(units, budget)}
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
