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

// fetcher gets what the guests boot and run from Debian's packages, for
// any architecture and suite, with package lists of vmtest's own kept in
// the cache: the matrix needs suites (bullseye) and architectures (arm64)
// that the machine does not use, and must not depend on which ones it
// does; adding a foreign architecture to the machine's dpkg is not
// vmtest's business either.
type fetcher struct {
	cache    string
	prepared map[string]error // by the lists' directory
}

func newFetcher(cache string) *fetcher {
	return &fetcher{cache: cache, prepared: map[string]error{}}
}

// lists returns the package lists of suite for arch, updated once per run
// at most.
func (f *fetcher) lists(ctx context.Context, arch, suite string) (aptLists, error) {
	l := aptLists{dir: filepath.Join(f.cache, "apt", arch, suite), arch: arch, suite: suite}
	if err, done := f.prepared[l.dir]; done {
		return l, err
	}
	err := l.prepare(ctx)
	f.prepared[l.dir] = err
	return l, err
}

// kernel returns the vmlinuz of sp's current image and its package. When
// apt cannot say which that is, or fetch it (no network to the mirror),
// the newest cached package of the series stands in, said out loud.
func (f *fetcher) kernel(ctx context.Context, sp kernelSpec) (vmlinuz, pkg string, err error) {
	l, err := f.lists(ctx, sp.Arch, sp.Suite)
	if err == nil {
		pkg, err = l.resolveImage(ctx, sp.Meta, sp.Layout.Package)
	}
	if err == nil && !sp.Image.MatchString(pkg) {
		err = fmt.Errorf("%s of %s names %s, not a package of this boot's series (%s): its expectations were declared for that series; update kernels.go", sp.Meta, sp.Suite, pkg, sp.Image)
	}
	if err == nil {
		vmlinuz, err = l.fetchKernel(ctx, f.cache, pkg, sp.Layout.Path)
	}
	if err == nil {
		return vmlinuz, pkg, nil
	}
	cached, cerr := cachedImage(f.cache, sp.Image)
	if cerr != nil {
		return "", "", err
	}
	logf("%s: %v; using cached %s", sp.Name, err, cached)
	return cached, filepath.Base(filepath.Dir(cached)), nil
}

// busybox returns a static busybox of arch from suite's busybox-static,
// downloaded once per version; without apt, the newest one cached.
func (f *fetcher) busybox(ctx context.Context, arch, suite string) (string, error) {
	dir := filepath.Join(f.cache, "busybox", arch)
	l, err := f.lists(ctx, arch, suite)
	if err == nil {
		var p string
		if p, err = l.fetchBusybox(ctx, dir); err == nil {
			return p, nil
		}
	}
	cached, _ := filepath.Glob(filepath.Join(dir, "*", "busybox"))
	if len(cached) == 0 {
		return "", errors.Join(fmt.Errorf("no %s busybox: apt-get cannot fetch busybox-static of %s and none is cached", arch, suite), err)
	}
	sort.Slice(cached, func(i, j int) bool { return versionLess(cached[i], cached[j]) })
	logf("%s busybox: %v; using cached %s", arch, err, cached[len(cached)-1])
	return cached[len(cached)-1], nil
}

// aptLists is a set of package lists of one Debian suite (and its security
// suite, where it has one) for one architecture.
type aptLists struct {
	dir   string
	arch  string
	suite string
}

// opts point apt at the lists' own sources, lists and caches, and at their
// architecture. The package cache (pkgcache.bin) goes there too: built
// from these lists in /var/cache/apt, it would stand in for the machine's
// own.
func (l aptLists) opts() []string {
	return []string{
		"-o", "APT::Architecture=" + l.arch, "-o", "APT::Architectures=" + l.arch,
		"-o", "Dir::Etc::SourceList=" + filepath.Join(l.dir, "sources.list"),
		"-o", "Dir::Etc::SourceParts=" + filepath.Join(l.dir, "sources.list.d"),
		"-o", "Dir::State::Lists=" + filepath.Join(l.dir, "lists"),
		"-o", "Dir::Cache=" + filepath.Join(l.dir, "cache"),
		// The lists and downloads are root's files in root's cache: apt's
		// sandbox user may not read them.
		"-o", "APT::Sandbox::User=root",
	}
}

// listsMaxAge: older lists are updated first, since security updates
// replace the image packages (and the mirror drops the old ones).
const listsMaxAge = 24 * time.Hour

// prepare writes the sources and updates the lists when they are missing,
// stale or of other sources. A failed update with lists at hand is said and
// passed over: they still name an image, perhaps one already cached.
func (l aptLists) prepare(ctx context.Context) error {
	for _, d := range []string{"sources.list.d", "lists/partial", "cache"} {
		if err := os.MkdirAll(filepath.Join(l.dir, d), 0o755); err != nil {
			return err
		}
	}
	deb822, _ := os.ReadFile("/etc/apt/sources.list.d/debian.sources")
	src := l.sources(string(deb822))
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
	logf("apt-get update for %s (%s)", l.suite, l.arch)
	out, err := exec.CommandContext(ctx, "apt-get", append(l.opts(), "update")...).CombinedOutput()
	if err != nil {
		if len(lists) > 0 && string(old) == src {
			logf("apt-get update for %s (%s): %v; using its lists of %s", l.suite, l.arch, err, newest.Format(time.DateOnly))
			return nil
		}
		return fmt.Errorf("apt-get update for %s (%s): %v: %s", l.suite, l.arch, err, tail(string(out), 10))
	}
	return nil
}

// sources is the lists' sources.list: the suite, and its security suite
// where it has one, from the mirrors that the machine's deb822 sources
// name (deb.debian.org where they name none), which is what the machine
// may reach. Backports suites have no security suite: the security
// archive carries the releases only.
func (l aptLists) sources(deb822 string) string {
	main, security := debianMirrors(deb822)
	opts := "[arch=" + l.arch + " signed-by=/usr/share/keyrings/debian-archive-keyring.gpg]"
	src := fmt.Sprintf("deb %s %s %s main\n", opts, main, l.suite)
	if !strings.HasSuffix(l.suite, "-backports") {
		src += fmt.Sprintf("deb %s %s %s-security main\n", opts, security, l.suite)
	}
	return src
}

// debianMirrors reads the Debian archive and security URIs of deb822
// sources; deb.debian.org's where they name none.
func debianMirrors(deb822 string) (main, security string) {
	main, security = "http://deb.debian.org/debian", "http://deb.debian.org/debian-security"
	gotMain, gotSec := false, false
	for _, line := range strings.Split(deb822, "\n") {
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

// parseDepends returns the linux-* packages that `apt-cache depends` lists
// as hard dependencies, in order. Alternatives ("|Depends:") and virtual
// packages ("<...>") are left out: neither names one package.
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
		if strings.HasPrefix(name, "linux-") {
			pkgs = append(pkgs, name)
		}
	}
	return pkgs
}

// resolveImage follows meta's dependencies on linux-image-* packages down
// to the package whose name starts with binary, the one that holds the
// image. The image packages' names change with every ABI bump (security
// updates), the meta packages' do not; from Debian's 6.19 packaging on,
// linux-image-VERSION is itself a metapackage over linux-binary-VERSION.
func (l aptLists) resolveImage(ctx context.Context, meta, binary string) (string, error) {
	pkg := meta
	for range 3 {
		out, err := exec.CommandContext(ctx, "apt-cache", append(l.opts(), "depends", pkg)...).CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("apt-cache depends %s (%s, %s): %v: %s", pkg, l.suite, l.arch, err, strings.TrimSpace(string(out)))
		}
		next := ""
		for _, d := range parseDepends(string(out)) {
			if strings.HasPrefix(d, binary) {
				return d, nil
			}
			if next == "" && strings.HasPrefix(d, "linux-image-") {
				next = d
			}
		}
		if next == "" {
			return "", fmt.Errorf("apt-cache depends %s (%s, %s) names no %s* or linux-image-* package", pkg, l.suite, l.arch, binary)
		}
		pkg = next
	}
	return "", fmt.Errorf("%s: no %s* package within three dependencies", meta, binary)
}

// extract downloads pkg and unpacks it into a temporary directory, which
// the caller removes with done.
func (l aptLists) extract(ctx context.Context, tmp, pkg string) (root string, done func(), err error) {
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return "", nil, err
	}
	dl, err := os.MkdirTemp(tmp, "download-")
	if err != nil {
		return "", nil, err
	}
	done = func() { os.RemoveAll(dl) }
	defer func() {
		if err != nil {
			done()
		}
	}()
	logf("downloading %s (%s, %s)", pkg, l.suite, l.arch)
	cmd := exec.CommandContext(ctx, "apt-get", append(l.opts(), "download", pkg)...)
	cmd.Dir = dl
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", nil, fmt.Errorf("apt-get download %s (%s): %v: %s", pkg, l.arch, err, tail(string(out), 10))
	}
	debs, _ := filepath.Glob(filepath.Join(dl, "*.deb"))
	if len(debs) != 1 {
		return "", nil, fmt.Errorf("apt-get download %s (%s) left %d .deb files", pkg, l.arch, len(debs))
	}
	root = filepath.Join(dl, "x")
	if out, err := exec.CommandContext(ctx, "dpkg", "-x", debs[0], root).CombinedOutput(); err != nil {
		return "", nil, fmt.Errorf("dpkg -x %s: %v: %s", debs[0], err, tail(string(out), 10))
	}
	return root, done, nil
}

// fetchKernel makes sure the image of pkg, at path (a glob) inside it, is
// in the cache and returns where. The cache is keyed by package name,
// which changes with every new kernel build, so a cached entry is never
// stale.
func (l aptLists) fetchKernel(ctx context.Context, cache, pkg, path string) (string, error) {
	dir := filepath.Join(cache, "kernels", pkg)
	if vm, err := findVmlinuz(dir); err == nil {
		return vm, nil
	}
	root, done, err := l.extract(ctx, cache, pkg)
	if err != nil {
		return "", err
	}
	defer done()
	m, _ := filepath.Glob(filepath.Join(root, path))
	if len(m) != 1 {
		return "", fmt.Errorf("%s: %d files match %s, want one", pkg, len(m), path)
	}
	// Cached as vmlinuz-RELEASE whether the package has boot/vmlinuz-RELEASE
	// or usr/lib/modules/RELEASE/vmlinuz.
	name := filepath.Base(m[0])
	if name == "vmlinuz" {
		name += "-" + filepath.Base(filepath.Dir(m[0]))
	}
	return installFile(m[0], filepath.Join(dir, name), 0o644)
}

// fetchBusybox returns the busybox of the candidate busybox-static,
// fetched into dir/VERSION once.
func (l aptLists) fetchBusybox(ctx context.Context, dir string) (string, error) {
	out, err := exec.CommandContext(ctx, "apt-cache", append(l.opts(), "show", "--no-all-versions", "busybox-static")...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("apt-cache show busybox-static (%s): %v: %s", l.arch, err, tail(string(out), 5))
	}
	version := ""
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "Version: "); ok {
			version = strings.TrimSpace(v)
			break
		}
	}
	if version == "" {
		return "", fmt.Errorf("apt-cache show busybox-static (%s): no Version", l.arch)
	}
	dst := filepath.Join(dir, strings.ReplaceAll(version, ":", "_"), "busybox")
	if _, err := os.Stat(dst); err == nil {
		return dst, nil
	}
	root, done, err := l.extract(ctx, dir, "busybox-static")
	if err != nil {
		return "", err
	}
	defer done()
	// bin/busybox in bookworm, usr/bin/busybox from trixie on.
	for _, p := range []string{"bin/busybox", "usr/bin/busybox"} {
		if _, err := os.Stat(filepath.Join(root, p)); err == nil {
			return installFile(filepath.Join(root, p), dst, 0o755)
		}
	}
	return "", fmt.Errorf("busybox-static %s (%s) has no bin/busybox or usr/bin/busybox", version, l.arch)
}

// installFile copies src to dst under a temporary name and renames it, so
// that an interrupted run never leaves a half-written file that later runs
// would trust.
func installFile(src, dst string, perm os.FileMode) (string, error) {
	b, err := os.ReadFile(src)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(dst+".part", b, perm); err != nil {
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
// to the mirror): the newest cached package that image matches.
func cachedImage(cache string, image *regexp.Regexp) (string, error) {
	dirs, _ := filepath.Glob(filepath.Join(cache, "kernels", "linux-*"))
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
