package main

import (
	"context"
	"fmt"
	"regexp"
	"strings"
)

// kernelSpec is one boot of the matrix: a Debian kernel, where its package
// is found, the architecture and command line it boots with, and what
// vmtest expects this boot to offer cowtrace.
type kernelSpec struct {
	Name  string // the -kernels name
	Arch  string // Debian's architecture name: the package's, and the target's (target.go)
	Suite string // Debian suite; its -security suite is read too, where it has one
	// Meta is the package whose dependencies lead to the current image.
	// The image packages' names change with every ABI bump (security
	// updates), the meta packages' do not.
	Meta   string
	Layout imageLayout
	// Image matches the packages of this series that hold the image: the
	// one Meta leads to must be one, and a cached one stands in when apt
	// cannot answer.
	Image  *regexp.Regexp
	Append string // kernel command line of this boot, after vmtest's own
	Expect expectation
	About  string // what the boot is in the matrix for
}

// imageLayout is where a Debian kernel package puts the image: the package
// that holds it (by how its name starts) and the path inside it (a glob).
type imageLayout struct {
	Package string
	Path    string
}

var (
	imageInBoot = imageLayout{Package: "linux-image-", Path: "boot/vmlinuz-*"}
	// From Debian's 6.19 packaging on, linux-image-VERSION is a
	// metapackage: the image is in linux-binary-VERSION, beside where the
	// modules go.
	imageInModules = imageLayout{Package: "linux-binary-", Path: "usr/lib/modules/*/vmlinuz"}
)

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
	// faultsAddress (page faults sampled with their address, no class:
	// where there is no fault tracepoint, as on arm64, or no tracefs).
	Faults string
	THP    bool
	// Lockdown is the mode /sys/kernel/security/lockdown selects.
	Lockdown string
	// NoTests, when set, says why the Go test binaries do not run on this
	// boot; LeaveOut names some that do not, and why.
	NoTests  string
	LeaveOut map[string]string
	// CountMethod is the per-task count method `cowtrace doctor` must
	// report on this boot: countExitTracepoint, countExitSyscall or
	// countClassify, in cowtrace's words (docs/kernels.md has the kernel
	// facts that decide it). "" for a kernel of one's own (-kernel),
	// whose method is not declared.
	CountMethod string
	// WithoutKprobesToo: the boot also runs cowtrace with --kprobe-method
	// none, standing in for the same kernel without kprobes, whose
	// copies (told by their allocation's kernel stack) must be the
	// kprobe's. For an architecture where no boot lacks kprobes: a boot
	// option cannot take CONFIG_KPROBES out of Debian's kernels.
	WithoutKprobesToo bool
}

// The methods for copies, best first, and for faults.
const (
	methodKprobe    = "kprobe"
	methodCallchain = "callchain"
	methodNone      = "counters only"

	faultsTracepoint = "tracepoint"
	faultsAddress    = "address"
)

// The per-task count methods of expectation.CountMethod.
const (
	countExitTracepoint = "exit-tracepoint"
	countExitSyscall    = "exit-syscall"
	countClassify       = "classify"
)

// kprobes is a kernel with kprobes, tracefs and the fault tracepoints.
var kprobes = expectation{Kprobes: true, Copies: methodKprobe, Faults: faultsTracepoint, THP: true, Lockdown: "none"}

// kprobesCounting is kprobes with the per-task count method method.
func kprobesCounting(method string) expectation {
	e := kprobes
	e.CountMethod = method
	return e
}

// cliTestsElsewhere leaves cmd/cowtrace's own tests (descriptor limits,
// broken pipes, concurrent runs, exit codes: the command line, not the
// kernel) to the 6.1, 6.12 and 7.3 boots, one of each count method; they
// are the longest test binary under TCG.
var cliTestsElsewhere = map[string]string{"cmd_cowtrace.test": "the command line's own tests run on 6.1, 6.12 and 7.3"}

var specs = []kernelSpec{
	{
		// 5.10 copies with copy_user_highpage (inline) and copy_page,
		// which cannot be probed: the only candidate that the calibration
		// sees hit is wp_page_copy, which also runs when a write replaces
		// the shared zero page and copies nothing. Allocation stacks tell
		// exactly.
		Name: "5.10", Arch: "amd64", Suite: "bullseye", Meta: "linux-image-amd64",
		Image: regexp.MustCompile(`^linux-image-5\.10\.0-[0-9]+-amd64$`), Layout: imageInBoot,
		Expect: expectation{Kprobes: true, Copies: methodCallchain, Faults: faultsTracepoint, THP: true, Lockdown: "none",
			CountMethod: countClassify, LeaveOut: cliTestsElsewhere},
		About: "an older kernel: Debian 11's",
	},
	{
		Name: "6.1", Arch: "amd64", Suite: "bookworm", Meta: "linux-image-amd64",
		Image: regexp.MustCompile(`^linux-image-6\.1\.0-[0-9]+-amd64$`), Layout: imageInBoot, Expect: kprobesCounting(countClassify),
		About: "Debian 12's",
	},
	{
		Name: "6.1-rt", Arch: "amd64", Suite: "bookworm", Meta: "linux-image-rt-amd64",
		Image: regexp.MustCompile(`^linux-image-6\.1\.0-[0-9]+-rt-amd64$`), Layout: imageInBoot,
		Expect: expectation{Kprobes: true, Copies: methodKprobe, Faults: faultsTracepoint, THP: false, Lockdown: "none",
			CountMethod: countClassify, LeaveOut: cliTestsElsewhere},
		About: "PREEMPT_RT, which has no transparent huge pages on 6.1",
	},
	{
		// Lockdown's confidentiality mode refuses kprobes
		// (LOCKDOWN_KPROBES) to root, and tracefs creates no file at all
		// (LOCKDOWN_TRACEFS): only the software events are left, the
		// page-fault event sampled with its address among them. The test
		// binaries are left out, as the same kernel runs them unlocked.
		Name: "6.1-lockdown", Arch: "amd64", Suite: "bookworm", Meta: "linux-image-amd64",
		Image: regexp.MustCompile(`^linux-image-6\.1\.0-[0-9]+-amd64$`), Layout: imageInBoot, Append: "lockdown=confidentiality",
		Expect: expectation{Copies: methodNone, Faults: faultsAddress, THP: true, Lockdown: "confidentiality",
			CountMethod: countClassify, NoTests: "the same kernel runs them without lockdown"},
		About: "booted with lockdown=confidentiality: a policy that refuses kprobes and tracefs to root",
	},
	{
		Name: "6.12", Arch: "amd64", Suite: "trixie", Meta: "linux-image-amd64",
		Image: regexp.MustCompile(`^linux-image-6\.12\.[0-9]+\+deb13-amd64$`), Layout: imageInBoot, Expect: kprobesCounting(countExitSyscall),
		About: "Debian 13's",
	},
	{
		Name: "7.3", Arch: "amd64", Suite: "trixie-backports", Meta: "linux-image-amd64",
		Image: regexp.MustCompile(`^linux-binary-7\.3\.[0-9]+\+deb13-amd64$`), Layout: imageInModules, Expect: kprobesCounting(countExitTracepoint),
		About: "the newest series for Debian 13 (trixie-backports), whose image is in linux-binary-*",
	},
	{
		// arm64 has no exceptions:page_fault_* tracepoints: faults are
		// the page-fault event sampled with its address, write-protect
		// faults do_wp_page's kprobe hits.
		Name: "6.1-arm64", Arch: "arm64", Suite: "bookworm", Meta: "linux-image-arm64",
		Image: regexp.MustCompile(`^linux-image-6\.1\.0-[0-9]+-arm64$`), Layout: imageInBoot,
		Expect: expectation{Kprobes: true, Copies: methodKprobe, Faults: faultsAddress, THP: true, Lockdown: "none",
			CountMethod: countClassify, WithoutKprobesToo: true},
		About: "Debian 12's arm64 kernel, under qemu-system-aarch64",
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

// kernel is a vmlinuz to boot, on which target, how, and the name to show
// for it until the guest reports its real release.
type kernel struct {
	Label   string // a spec's name, or the path given with -kernel
	Package string // Debian package it came from, "" for -kernel
	Vmlinuz string
	Target  *target
	Append  string
	Expect  expectation
	// THPFromGuest: whether the kernel has transparent huge pages is what
	// its guest shows (a -kernel of one's own), not Expect.THP.
	THPFromGuest bool
}

// resolveKernels finds the current image of every named spec and fetches
// it into the cache. Boots of the same image (6.1 and 6.1-lockdown)
// resolve it once.
func resolveKernels(ctx context.Context, f *fetcher, names []string) ([]kernel, error) {
	type image struct{ vmlinuz, pkg string }
	images := map[string]image{} // by arch/suite/meta
	var ks []kernel
	for _, name := range names {
		sp, ok := lookupSpec(name)
		if !ok {
			return nil, fmt.Errorf("unknown kernel %q (have %s; use -kernel PATH for others)", name, strings.Join(specNames(), ", "))
		}
		t, err := lookupTarget(sp.Arch)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		key := sp.Arch + "/" + sp.Suite + "/" + sp.Meta
		im, ok := images[key]
		if !ok {
			vm, pkg, err := f.kernel(ctx, sp)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			im = image{vm, pkg}
			images[key] = im
		}
		ks = append(ks, kernel{Label: name, Package: im.pkg, Vmlinuz: im.vmlinuz, Target: t, Append: sp.Append, Expect: sp.Expect})
	}
	return ks, nil
}
