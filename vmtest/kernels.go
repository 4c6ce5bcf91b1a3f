package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// kernelSpec is one boot of the matrix: a Debian kernel, the suite whose
// package lists name its current image, the command line it boots with, and
// what vmtest expects this boot to offer cowtrace.
type kernelSpec struct {
	Name  string // the -kernels name
	Suite string // Debian suite; its -security suite is read too
	// Meta is the package whose dependency names the current image. The
	// image package names change with every ABI bump (security updates),
	// the meta packages do not.
	Meta string
	// Image matches the image packages of this series, to pick a cached
	// one when apt cannot answer.
	Image  *regexp.Regexp
	Append string // kernel command line of this boot, after vmtest's own
	Expect expectation
	About  string // what the boot is in the matrix for
}

// expectation is what a boot should offer, declared rather than read from
// the guest: a kernel that silently lost its kprobes must fail the checks of
// its best method, not pass those of a weaker one.
type expectation struct {
	// Kprobes: the kprobe routes (PMU and tracefs) are to be had.
	Kprobes bool
	// Copies is the best method for copies: methodKprobe (the copy
	// routine's hits), methodCallchain (allocations told by their kernel
	// stack, exact where no probe-able routine copies and only copies) or
	// methodNone (no copies at all: software counters only).
	Copies string
	// Faults is the best method for the faults in the region:
	// faultsTracepoint (classified by the x86 error code) or
	// faultsAddress (page faults sampled with their address).
	Faults string
	THP    bool
	// Lockdown is the mode /sys/kernel/security/lockdown selects.
	Lockdown string
	// NoTests, when set, says why the Go test binaries do not run on this
	// boot; LeaveOut names some that do not, and why.
	NoTests  string
	LeaveOut map[string]string
}

// The methods for copies, best first.
const (
	methodKprobe    = "kprobe"
	methodCallchain = "callchain"
	methodNone      = "counters only"

	faultsTracepoint = "tracepoint"
	faultsAddress    = "address"
)

// kprobes is a kernel with kprobes, tracefs and the fault tracepoints.
var kprobes = expectation{Kprobes: true, Copies: methodKprobe, Faults: faultsTracepoint, THP: true, Lockdown: "none"}

// cliTestsElsewhere leaves cmd/cowtrace's own tests (descriptor limits,
// broken pipes, concurrent runs, exit codes: the command line, not the
// kernel) to the 6.1 and 6.12 boots; they are the longest test binary
// under TCG.
var cliTestsElsewhere = map[string]string{"cmd_cowtrace.test": "the command line's own tests run on 6.1 and 6.12"}

var specs = []kernelSpec{
	{
		// 5.10 copies with copy_user_highpage (inline) and copy_page,
		// which cannot be probed: the only candidate that the calibration
		// sees hit is wp_page_copy, which also runs when a write replaces
		// the shared zero page and copies nothing. Allocation stacks tell
		// exactly.
		Name: "5.10", Suite: "bullseye", Meta: "linux-image-amd64",
		Image: regexp.MustCompile(`^linux-image-5\.10\.0-[0-9]+-amd64$`),
		Expect: expectation{Kprobes: true, Copies: methodCallchain, Faults: faultsTracepoint, THP: true, Lockdown: "none",
			LeaveOut: cliTestsElsewhere},
		About: "an older kernel: Debian 11's",
	},
	{
		Name: "6.1", Suite: "bookworm", Meta: "linux-image-amd64",
		Image: regexp.MustCompile(`^linux-image-6\.1\.0-[0-9]+-amd64$`), Expect: kprobes,
		About: "Debian 12's",
	},
	{
		Name: "6.1-rt", Suite: "bookworm", Meta: "linux-image-rt-amd64",
		Image: regexp.MustCompile(`^linux-image-6\.1\.0-[0-9]+-rt-amd64$`),
		Expect: expectation{Kprobes: true, Copies: methodKprobe, Faults: faultsTracepoint, THP: false, Lockdown: "none",
			LeaveOut: cliTestsElsewhere},
		About: "PREEMPT_RT, which has no transparent huge pages on 6.1",
	},
	{
		// Lockdown's confidentiality mode refuses kprobes
		// (LOCKDOWN_KPROBES) to root, and tracefs creates no file at all
		// (LOCKDOWN_TRACEFS): only the software events are left, the
		// page-fault event sampled with its address among them. The test
		// binaries are left out, as the same kernel runs them unlocked.
		Name: "6.1-lockdown", Suite: "bookworm", Meta: "linux-image-amd64",
		Image: regexp.MustCompile(`^linux-image-6\.1\.0-[0-9]+-amd64$`), Append: "lockdown=confidentiality",
		Expect: expectation{Copies: methodNone, Faults: faultsAddress, THP: true, Lockdown: "confidentiality",
			NoTests: "the same kernel runs them without lockdown"},
		About: "booted with lockdown=confidentiality: a policy that refuses kprobes and tracefs to root",
	},
	{
		Name: "6.12", Suite: "bookworm", Meta: "linux-image-6.12-amd64",
		Image: regexp.MustCompile(`^linux-image-6\.12\.[0-9]+\+deb12-amd64$`), Expect: kprobes,
		About: "Debian 12's newer series",
	},
}

func specNames() []string {
	var n []string
	for _, s := range specs {
		n = append(n, s.Name)
	}
	return n
}

func lookupSpec(name string) (kernelSpec, bool) {
	for _, s := range specs {
		if s.Name == name {
			return s, true
		}
	}
	return kernelSpec{}, false
}

// kernel is a vmlinuz to boot, how, and the name to show for it until the
// guest reports its real release.
type kernel struct {
	Label   string // a spec's name, or the path given with -kernel
	Package string // Debian package it came from, "" for -kernel
	Vmlinuz string
	// Arch is "" for x86 (the host's), whose boots carry their spec's
	// Append and Expect; "arm64" for arm64.go's guests, whose checks are
	// arm64checks.go's.
	Arch   string
	Append string
	Expect expectation
	// THPFromGuest: whether the kernel has transparent huge pages is what
	// its guest shows (a -kernel of one's own), not Expect.THP.
	THPFromGuest bool
}

// parseDepends returns the linux-image-* packages that `apt-cache depends`
// lists as hard dependencies, in order. Alternatives ("|Depends:") and
// virtual packages ("<...>") are left out: neither names one image.
func parseDepends(out string) []string {
	var pkgs []string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		name, ok := strings.CutPrefix(line, "Depends: ")
		if !ok {
			continue
		}
		name = strings.TrimSpace(name)
		if strings.HasPrefix(name, "linux-image-") && !strings.HasPrefix(name, "<") {
			pkgs = append(pkgs, name)
		}
	}
	return pkgs
}

// aptLists is a set of package lists of one Debian suite, kept in the cache
// apart from the machine's own: the matrix needs suites (bullseye) that the
// machine does not use, and must not depend on which one it does.
type aptLists struct {
	dir   string
	suite string
}

// opts point apt at the lists' own sources, lists and caches. The
// package cache (pkgcache.bin) goes there too: built from these lists in
// /var/cache/apt, it would stand in for the machine's own.
func (l aptLists) opts() []string {
	return []string{
		"-o", "Dir::Etc::SourceList=" + filepath.Join(l.dir, "sources.list"),
		"-o", "Dir::Etc::SourceParts=" + filepath.Join(l.dir, "sources.list.d"),
		"-o", "Dir::State::Lists=" + filepath.Join(l.dir, "lists"),
		"-o", "Dir::Cache=" + filepath.Join(l.dir, "cache"),
		// The lists and downloads are root's files in root's cache.
		"-o", "APT::Sandbox::User=root",
	}
}

// listsMaxAge: older lists are updated first, since security updates
// replace the image packages (and the mirror drops the old ones).
const listsMaxAge = 24 * time.Hour

// prepare writes the sources and updates the lists when they are missing or
// older than listsMaxAge. A failed update with lists at hand is said and
// passed over: they still name an image, perhaps one already cached.
func (l aptLists) prepare(ctx context.Context) error {
	for _, d := range []string{"sources.list.d", "lists/partial", "cache"} {
		if err := os.MkdirAll(filepath.Join(l.dir, d), 0o755); err != nil {
			return err
		}
	}
	main, security := debianMirrors("/etc/apt/sources.list.d/debian.sources")
	const key = "[signed-by=/usr/share/keyrings/debian-archive-keyring.gpg]"
	src := fmt.Sprintf("deb %s %s %s main\ndeb %s %s %s-security main\n", key, main, l.suite, key, security, l.suite)
	old, _ := os.ReadFile(filepath.Join(l.dir, "sources.list"))
	if string(old) != src {
		if err := os.WriteFile(filepath.Join(l.dir, "sources.list"), []byte(src), 0o644); err != nil {
			return err
		}
	}
	newest := time.Time{}
	lists, _ := filepath.Glob(filepath.Join(l.dir, "lists", "*_Packages*"))
	for _, p := range lists {
		if st, err := os.Stat(p); err == nil && st.ModTime().After(newest) {
			newest = st.ModTime()
		}
	}
	if string(old) == src && len(lists) > 0 && time.Since(newest) < listsMaxAge {
		return nil
	}
	logf("apt-get update for %s", l.suite)
	out, err := exec.CommandContext(ctx, "apt-get", append(l.opts(), "update")...).CombinedOutput()
	if err != nil {
		if len(lists) > 0 && string(old) == src {
			logf("apt-get update for %s: %v; using its lists of %s", l.suite, err, newest.Format(time.DateOnly))
			return nil
		}
		return fmt.Errorf("apt-get update for %s: %v: %s", l.suite, err, tail(string(out), 10))
	}
	return nil
}

// debianMirrors reads the Debian archive and security URIs of the machine's
// deb822 sources (file), so that the matrix fetches from the mirror the
// machine is allowed to reach; deb.debian.org where it names none.
func debianMirrors(file string) (main, security string) {
	main, security = "http://deb.debian.org/debian", "http://deb.debian.org/debian-security"
	b, err := os.ReadFile(file)
	if err != nil {
		return
	}
	gotMain, gotSec := false, false
	for _, line := range strings.Split(string(b), "\n") {
		v, ok := strings.CutPrefix(strings.TrimSpace(line), "URIs:")
		if !ok {
			continue
		}
		for _, uri := range strings.Fields(v) {
			uri = strings.TrimRight(uri, "/")
			switch {
			case strings.HasSuffix(uri, "/debian-security") && !gotSec:
				security, gotSec = uri, true
			case strings.HasSuffix(uri, "/debian") && !gotMain:
				main, gotMain = uri, true
			}
		}
	}
	return
}

func (l aptLists) resolveImage(ctx context.Context, meta string) (string, error) {
	out, err := exec.CommandContext(ctx, "apt-cache", append(l.opts(), "depends", meta)...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("apt-cache depends %s (%s): %v: %s", meta, l.suite, err, strings.TrimSpace(string(out)))
	}
	pkgs := parseDepends(string(out))
	if len(pkgs) == 0 {
		return "", fmt.Errorf("apt-cache depends %s (%s) names no linux-image package", meta, l.suite)
	}
	return pkgs[0], nil
}

// fetchKernel makes sure the vmlinuz of pkg is in the cache and returns its
// path. The cache is keyed by package name, which changes with every new
// kernel build, so a cached entry is never stale.
func (l aptLists) fetchKernel(ctx context.Context, cache, pkg string) (string, error) {
	return fetchKernel(ctx, cache, pkg, l.suite, l.opts()...)
}

// fetchKernel fetches pkg with apt-get run with aptOpts (a suite's lists, or
// the arm64 lists of arm64.go); from names those lists in the log.
func fetchKernel(ctx context.Context, cache, pkg, from string, aptOpts ...string) (string, error) {
	dir := filepath.Join(cache, "kernels", pkg)
	if vm, err := findVmlinuz(dir); err == nil {
		return vm, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	dl, err := os.MkdirTemp(cache, "download-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dl)
	logf("downloading %s (%s)", pkg, from)
	cmd := exec.CommandContext(ctx, "apt-get", append(aptOpts, "download", pkg)...)
	cmd.Dir = dl
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("apt-get download %s: %v: %s", pkg, err, tail(string(out), 10))
	}
	debs, _ := filepath.Glob(filepath.Join(dl, "*.deb"))
	if len(debs) != 1 {
		return "", fmt.Errorf("apt-get download %s left %d .deb files", pkg, len(debs))
	}
	x := filepath.Join(dl, "x")
	if out, err := exec.CommandContext(ctx, "dpkg", "-x", debs[0], x).CombinedOutput(); err != nil {
		return "", fmt.Errorf("dpkg -x %s: %v: %s", debs[0], err, tail(string(out), 10))
	}
	src, err := findVmlinuz(filepath.Join(x, "boot"))
	if err != nil {
		return "", fmt.Errorf("%s: %w", pkg, err)
	}
	b, err := os.ReadFile(src)
	if err != nil {
		return "", err
	}
	// Written under a temporary name and renamed, so an interrupted run
	// never leaves a half-written vmlinuz that later runs would trust.
	dst := filepath.Join(dir, filepath.Base(src))
	if err := os.WriteFile(dst+".part", b, 0o644); err != nil {
		return "", err
	}
	return dst, os.Rename(dst+".part", dst)
}

func findVmlinuz(dir string) (string, error) {
	m, _ := filepath.Glob(filepath.Join(dir, "vmlinuz-*"))
	var keep []string
	for _, p := range m {
		if !strings.HasSuffix(p, ".part") {
			keep = append(keep, p)
		}
	}
	if len(keep) == 0 {
		return "", fmt.Errorf("no vmlinuz-* in %s", dir)
	}
	sort.Strings(keep)
	return keep[len(keep)-1], nil
}

// cachedImage is the fallback when apt cannot resolve a series (no network
// to the mirror): the newest cached package that image matches, said out
// loud.
func cachedImage(cache string, image *regexp.Regexp) (string, error) {
	dirs, _ := filepath.Glob(filepath.Join(cache, "kernels", "linux-image-*"))
	sort.Slice(dirs, func(i, j int) bool { return versionLess(dirs[i], dirs[j]) })
	for i := len(dirs) - 1; i >= 0; i-- {
		if !image.MatchString(filepath.Base(dirs[i])) {
			continue
		}
		if vm, err := findVmlinuz(dirs[i]); err == nil {
			return vm, nil
		}
	}
	return "", errors.New("none cached")
}

// resolveKernels finds the current image of every named spec, from the
// lists of its suite, and fetches it into the cache. Boots of the same
// image (6.1 and 6.1-lockdown) resolve it once.
func resolveKernels(ctx context.Context, cache string, names []string) ([]kernel, error) {
	var ks []kernel
	prepared := map[string]error{}
	images := map[string]string{} // suite/meta -> vmlinuz
	pkgs := map[string]string{}
	for _, name := range names {
		sp, ok := lookupSpec(name)
		if !ok {
			return nil, fmt.Errorf("unknown kernel %q (have %s; use -kernel PATH for others)", name, strings.Join(specNames(), ", "))
		}
		l := aptLists{dir: filepath.Join(cache, "apt", sp.Suite), suite: sp.Suite}
		key := sp.Suite + "/" + sp.Meta
		if _, ok := images[key]; !ok {
			if _, done := prepared[sp.Suite]; !done {
				prepared[sp.Suite] = l.prepare(ctx)
			}
			pkg, err := "", prepared[sp.Suite]
			if err == nil {
				pkg, err = l.resolveImage(ctx, sp.Meta)
			}
			var vm string
			if err == nil {
				vm, err = l.fetchKernel(ctx, cache, pkg)
			}
			if err != nil {
				cvm, cerr := cachedImage(cache, sp.Image)
				if cerr != nil {
					return nil, fmt.Errorf("%s: %w", name, err)
				}
				logf("%s: %v; using cached %s", name, err, cvm)
				vm, pkg = cvm, filepath.Base(filepath.Dir(cvm))
			}
			images[key], pkgs[key] = vm, pkg
		}
		ks = append(ks, kernel{Label: name, Package: pkgs[key], Vmlinuz: images[key], Append: sp.Append, Expect: sp.Expect})
	}
	return ks, nil
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// versionLess orders names with numbers by value, so that ABI 100 sorts
// after ABI 99 as Debian's own ordering would.
func versionLess(a, b string) bool {
	for a != "" && b != "" {
		na, ra := splitNum(a)
		nb, rb := splitNum(b)
		if na != "" && nb != "" {
			ia, _ := strconv.Atoi(na)
			ib, _ := strconv.Atoi(nb)
			if ia != ib {
				return ia < ib
			}
			a, b = ra, rb
			continue
		}
		if a[0] != b[0] {
			return a[0] < b[0]
		}
		a, b = a[1:], b[1:]
	}
	return len(a) < len(b)
}

func splitNum(s string) (num, rest string) {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return s[:i], s[i:]
}
