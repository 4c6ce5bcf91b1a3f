package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// series maps a -kernels name to the Debian meta package whose dependency
// names the current image package of that series. The image package names
// change with every ABI bump (security updates), the meta packages do not.
var series = map[string]string{
	"6.1":  "linux-image-amd64",
	"6.12": "linux-image-6.12-amd64",
}

// kernel is a vmlinuz to boot and the name to show for it until the guest
// reports its real release.
type kernel struct {
	Label   string // "6.1", "6.12" or the path given with -kernel
	Package string // Debian package it came from, "" for -kernel
	Vmlinuz string
	Arch    string // "" for x86, the host's; "arm64" (arm64.go)
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

func resolveImage(ctx context.Context, meta string) (string, error) {
	run := func() ([]string, error) {
		out, err := exec.CommandContext(ctx, "apt-cache", "depends", meta).CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("apt-cache depends %s: %v: %s", meta, err, strings.TrimSpace(string(out)))
		}
		return parseDepends(string(out)), nil
	}
	pkgs, err := run()
	if err != nil || len(pkgs) == 0 {
		// A fresh machine has no package lists yet: apt-cache then knows
		// nothing about the meta package, which is not an answer.
		logf("apt-cache knows no image for %s; running apt-get update", meta)
		if out, uerr := exec.CommandContext(ctx, "apt-get", "update").CombinedOutput(); uerr != nil {
			return "", fmt.Errorf("apt-get update: %v: %s", uerr, tail(string(out), 10))
		}
		pkgs, err = run()
	}
	if err != nil {
		return "", err
	}
	if len(pkgs) == 0 {
		return "", fmt.Errorf("apt-cache depends %s names no linux-image package", meta)
	}
	return pkgs[0], nil
}

// fetchKernel makes sure the vmlinuz of pkg is in the cache and returns its
// path. The cache is keyed by package name, which changes with every new
// kernel build, so a cached entry is never stale. aptOpts go before apt-get's
// command (the arm64 lists, see arm64.go).
func fetchKernel(ctx context.Context, cache, pkg string, aptOpts ...string) (string, error) {
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
	logf("downloading %s", pkg)
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
// to the mirror): the newest cached package of that series, said out loud.
func cachedImage(cache, name string) (string, error) {
	dirs, _ := filepath.Glob(filepath.Join(cache, "kernels", "linux-image-"+name+"*"))
	sort.Slice(dirs, func(i, j int) bool { return versionLess(dirs[i], dirs[j]) })
	for i := len(dirs) - 1; i >= 0; i-- {
		pkg := filepath.Base(dirs[i])
		rest := strings.TrimPrefix(pkg, "linux-image-"+name)
		// "6.1" must not match the 6.12 packages.
		if rest == "" || (rest[0] != '.' && rest[0] != '-') {
			continue
		}
		if name == "6.1" && strings.HasPrefix(rest, ".") && !strings.HasPrefix(rest, ".0-") {
			continue
		}
		if vm, err := findVmlinuz(dirs[i]); err == nil {
			return vm, nil
		}
	}
	return "", errors.New("none cached")
}

func resolveKernels(ctx context.Context, cache string, names []string) ([]kernel, error) {
	var ks []kernel
	for _, name := range names {
		meta, ok := series[name]
		if !ok {
			return nil, fmt.Errorf("unknown kernel series %q (have 6.1, 6.12; use -kernel PATH for others)", name)
		}
		pkg, err := resolveImage(ctx, meta)
		if err != nil {
			vm, cerr := cachedImage(cache, name)
			if cerr != nil {
				return nil, err
			}
			logf("%v; using cached %s", err, vm)
			ks = append(ks, kernel{Label: name, Package: filepath.Base(filepath.Dir(vm)), Vmlinuz: vm})
			continue
		}
		vm, err := fetchKernel(ctx, cache, pkg)
		if err != nil {
			return nil, err
		}
		ks = append(ks, kernel{Label: name, Package: pkg, Vmlinuz: vm})
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
