// Command vmtest boots Debian's kernels under qemu and runs cowtrace and its
// kernel-facing test binaries inside them: kernels with kprobes (5.10, 6.1,
// 6.12, 7.3), one without transparent huge pages (6.1's PREEMPT_RT flavour),
// a boot whose lockdown policy refuses kprobes and tracefs to root, and an
// arm64 kernel, which has no fault tracepoints (see kernels.go). The
// development and CI machines run a kernel without kprobes, so this is the
// only place where cowtrace's kprobe paths meet a real kernel. Each boot is
// checked against the best method it offers.
//
// Usage, from the module root:
//
//	go run ./vmtest [-kernels 5.10,6.1,...] [-kernel PATH] [-run REGEXP] [-guest-budget 90s] [-json FILE] [-readme docs/kernels.md]
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
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
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
	flag.StringVar(&o.pkgs, "pkgs", "./perfevents,./internal/workload,./internal/experiment,./cmd/cowtrace,./internal/scenario,./internal/proof,./internal/follow,./report", "comma-separated packages whose tests run in the guests")
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
	if o.readme != "" {
		// Found wrong only after twenty minutes of guests is too late.
		b, err := os.ReadFile(o.readme)
		if err == nil {
			_, err = replaceSection(string(b), "")
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "vmtest: -readme %s: %v\n", o.readme, err)
			os.Exit(2)
		}
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
