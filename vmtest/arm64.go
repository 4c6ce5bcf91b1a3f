package main

// arm64 guests: Debian's arm64 kernels under qemu-system-aarch64 (TCG on the
// x86 machine), running the same commands as the x86 guests with every
// binary built for arm64. arm64 has no exceptions:page_fault_* tracepoints,
// so its checks (arm64checks.go) differ where the x86 ones read fault
// classes from them.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"
)

// target is what differs between the architectures of the guests: the Go
// and C toolchains, the busybox, the qemu machine and its serial console,
// and how long commands take there.
type target struct {
	Arch    string // "" for the host's (x86 guests), "arm64"
	GOARCH  string // "" for the host's
	Qemu    string
	Machine string // qemu -M, "" for qemu's default
	CPU     string // qemu -cpu
	TTY     string // the kernel's serial console
	CC      string // a C compiler that links static binaries for the guest
	// Busybox is a static busybox for the guest; "" looks busybox up on
	// the PATH (the host's, for the x86 guests).
	Busybox string
	// Scale is a command's guest time against an x86 guest's (the weights
	// of shard.go are measured there); BootCost the guest's time outside
	// its commands.
	Scale    float64
	BootCost time.Duration
}

// weight is the predicted guest time of a command on t.
func (t *target) weight(name string) time.Duration {
	if t.Scale == 0 {
		return weightOf(name)
	}
	return time.Duration(float64(weightOf(name)) * t.Scale)
}

// suffix names t's files in the work dir apart from the host's.
func (t *target) suffix() string {
	if t.Arch == "" {
		return ""
	}
	return "-" + t.Arch
}

// arm64Target runs qemu's "virt" board, whose serial port is a PL011
// (ttyAMA0). Its Scale and BootCost were measured under TCG on the project's
// 2-core x86 machine with two guests at once (and the machine shared, load
// 5-8): the commands took 1 to 3 times their x86 weights, 1.5 overall, and
// each guest 5 to 13 s outside them.
func arm64Target(qemu, cpu, busybox string) *target {
	return &target{
		Arch: "arm64", GOARCH: "arm64", Qemu: qemu, Machine: "virt", CPU: cpu, TTY: "ttyAMA0",
		CC: "aarch64-linux-gnu-gcc", Busybox: busybox,
		Scale: 1.5, BootCost: 12 * time.Second,
	}
}

// arm64CPU is qemu's newest arm64 CPU with a cheap pointer-authentication
// hash: Debian's kernel signs every return address, and TCG's emulation of
// the architected QARMA cipher made the same guest five times slower
// (touched, blocks-5000 and run-seed: 64 s against 12 s, boot included).
const arm64CPU = "max,pauth-impdef=on"

// arm64Series maps an -arm64 name to the meta package of its image, as
// series does for x86.
var arm64Series = map[string]string{
	"6.1": "linux-image-arm64",
}

// arm64Images matches the cached image packages of an arm64 series, for
// when apt cannot answer (cachedImage).
var arm64Images = map[string]*regexp.Regexp{
	"6.1": regexp.MustCompile(`^linux-image-6\.1\.0-[0-9]+-arm64$`),
}

// arm64Apt runs apt with package lists of its own for arm64 (bookworm and
// its security suite from the machine's Debian mirror), kept in the cache:
// the machine's own lists are for amd64, and adding a foreign architecture
// to the machine's dpkg is not vmtest's business.
type arm64Apt struct {
	dir string
}

func (a arm64Apt) opts() []string {
	return []string{
		"-o", "APT::Architecture=arm64", "-o", "APT::Architectures=arm64",
		"-o", "Dir::Etc::SourceList=" + filepath.Join(a.dir, "sources.list"),
		"-o", "Dir::Etc::SourceParts=" + filepath.Join(a.dir, "sources.list.d"),
		"-o", "Dir::State::Lists=" + filepath.Join(a.dir, "lists"),
		"-o", "Dir::Cache=" + filepath.Join(a.dir, "cache"),
		// Root's files in root's cache: apt's sandbox user may not read them.
		"-o", "APT::Sandbox::User=root",
	}
}

// arm64ListsMaxAge: older lists are updated first, since security updates
// replace the image packages and the mirror drops the old ones.
const arm64ListsMaxAge = 24 * time.Hour

// prepare writes the sources and updates the lists when they are missing,
// stale or of other sources. A failed update with lists at hand is said and
// passed over.
func (a arm64Apt) prepare(ctx context.Context) error {
	for _, d := range []string{"sources.list.d", "lists/partial", "cache"} {
		if err := os.MkdirAll(filepath.Join(a.dir, d), 0o755); err != nil {
			return err
		}
	}
	src := arm64Sources(readFile("/etc/apt/sources.list.d/debian.sources"))
	old := readFile(filepath.Join(a.dir, "sources.list"))
	if old != src {
		if err := os.WriteFile(filepath.Join(a.dir, "sources.list"), []byte(src), 0o644); err != nil {
			return err
		}
	}
	lists, _ := filepath.Glob(filepath.Join(a.dir, "lists", "*_Packages*"))
	var newest time.Time
	for _, p := range lists {
		if st, err := os.Stat(p); err == nil && st.ModTime().After(newest) {
			newest = st.ModTime()
		}
	}
	if old == src && len(lists) > 0 && time.Since(newest) < arm64ListsMaxAge {
		return nil
	}
	logf("apt-get update (arm64 lists in %s)", a.dir)
	out, err := exec.CommandContext(ctx, "apt-get", append(a.opts(), "update")...).CombinedOutput()
	if err != nil {
		if old == src && len(lists) > 0 {
			logf("apt-get update (arm64): %v; using the lists of %s", err, newest.Format(time.DateOnly))
			return nil
		}
		return fmt.Errorf("apt-get update (arm64): %v: %s", err, tail(string(out), 10))
	}
	return nil
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

// arm64Sources is the sources.list of the arm64 lists: bookworm and
// bookworm-security, from the mirrors that the machine's deb822 sources
// name (deb.debian.org where they name none), which is what the machine
// may reach.
func arm64Sources(deb822 string) string {
	main, security := "http://deb.debian.org/debian", "http://deb.debian.org/debian-security"
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
	const opts = "[arch=arm64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg]"
	return fmt.Sprintf("deb %s %s bookworm main\ndeb %s %s bookworm-security main\n", opts, main, opts, security)
}

// resolveArm64 finds, downloads into cache/arm64 and returns the arm64
// kernels named (keys of arm64Series) and a static arm64 busybox. Without the
// mirror it falls back on what is cached, and says so.
func resolveArm64(ctx context.Context, cache string, names []string) ([]kernel, string, error) {
	cache = filepath.Join(cache, "arm64")
	apt := arm64Apt{dir: filepath.Join(cache, "apt")}
	aptErr := apt.prepare(ctx)
	if aptErr != nil {
		logf("%v", aptErr)
	}
	var ks []kernel
	for _, name := range names {
		meta, ok := arm64Series[name]
		if !ok {
			return nil, "", fmt.Errorf("unknown arm64 kernel series %q (have 6.1)", name)
		}
		label := name + "-arm64"
		var image, vm string
		err := aptErr
		if err == nil {
			image, err = apt.resolveImage(ctx, meta)
		}
		if err == nil {
			vm, err = fetchKernel(ctx, cache, image, "arm64", apt.opts()...)
		}
		if err != nil {
			cached, cerr := cachedImage(cache, arm64Images[name])
			if cerr != nil {
				return nil, "", err
			}
			logf("%v; using cached %s", err, cached)
			vm, image = cached, filepath.Base(filepath.Dir(cached))
		}
		ks = append(ks, kernel{Label: label, Package: image, Vmlinuz: vm, Arch: "arm64", Expect: arm64Expect, THPFromGuest: true})
	}
	bb, err := apt.busybox(ctx, cache, aptErr == nil)
	if err != nil {
		return nil, "", err
	}
	return ks, bb, nil
}

func (a arm64Apt) resolveImage(ctx context.Context, meta string) (string, error) {
	out, err := exec.CommandContext(ctx, "apt-cache", append(a.opts(), "depends", meta)...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("apt-cache depends %s (arm64): %v: %s", meta, err, strings.TrimSpace(string(out)))
	}
	pkgs := parseDepends(string(out))
	if len(pkgs) == 0 {
		return "", fmt.Errorf("apt-cache depends %s (arm64) names no linux-image package", meta)
	}
	return pkgs[0], nil
}

// busybox returns the static arm64 busybox of the candidate busybox-static
// package, downloading it once per version; without apt (online false, or
// apt failing) the newest one cached.
func (a arm64Apt) busybox(ctx context.Context, cache string, online bool) (string, error) {
	dir := filepath.Join(cache, "busybox")
	var err error
	if online {
		var p string
		if p, err = a.fetchBusybox(ctx, dir); err == nil {
			return p, nil
		}
	}
	cached, _ := filepath.Glob(filepath.Join(dir, "*", "busybox"))
	if len(cached) == 0 {
		return "", errors.Join(errors.New("no arm64 busybox: apt-get cannot fetch busybox-static for arm64 and none is cached"), err)
	}
	sort.Slice(cached, func(i, j int) bool { return versionLess(cached[i], cached[j]) })
	logf("arm64 busybox: %v; using cached %s", err, cached[len(cached)-1])
	return cached[len(cached)-1], nil
}

func (a arm64Apt) fetchBusybox(ctx context.Context, dir string) (string, error) {
	out, err := exec.CommandContext(ctx, "apt-cache", append(a.opts(), "show", "--no-all-versions", "busybox-static")...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("apt-cache show busybox-static (arm64): %v: %s", err, tail(string(out), 5))
	}
	version := ""
	for _, l := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(l, "Version: "); ok {
			version = strings.TrimSpace(v)
			break
		}
	}
	if version == "" {
		return "", errors.New("apt-cache show busybox-static (arm64): no Version")
	}
	dst := filepath.Join(dir, strings.ReplaceAll(version, ":", "_"), "busybox")
	if _, err := os.Stat(dst); err == nil {
		return dst, nil
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return "", err
	}
	dl, err := os.MkdirTemp(dir, "download-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dl)
	logf("downloading busybox-static %s (arm64)", version)
	cmd := exec.CommandContext(ctx, "apt-get", append(a.opts(), "download", "busybox-static")...)
	cmd.Dir = dl
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("apt-get download busybox-static (arm64): %v: %s", err, tail(string(out), 10))
	}
	debs, _ := filepath.Glob(filepath.Join(dl, "*.deb"))
	if len(debs) != 1 {
		return "", fmt.Errorf("apt-get download busybox-static (arm64) left %d .deb files", len(debs))
	}
	x := filepath.Join(dl, "x")
	if out, err := exec.CommandContext(ctx, "dpkg", "-x", debs[0], x).CombinedOutput(); err != nil {
		return "", fmt.Errorf("dpkg -x %s: %v: %s", debs[0], err, tail(string(out), 10))
	}
	// bin/busybox in bookworm, usr/bin/busybox from trixie on.
	for _, p := range []string{"bin/busybox", "usr/bin/busybox"} {
		b, err := os.ReadFile(filepath.Join(x, p))
		if err != nil {
			continue
		}
		if err := os.WriteFile(dst+".part", b, 0o755); err != nil {
			return "", err
		}
		return dst, os.Rename(dst+".part", dst)
	}
	return "", fmt.Errorf("%s has no bin/busybox or usr/bin/busybox", filepath.Base(debs[0]))
}

// predict is the guest time of shard s on t, boot to power-off.
func (t *target) predict(s *shard) time.Duration { return t.BootCost + s.Load }
