package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cowtrace/cowtrace/vmtest/internal/guest"
)

// runRings boots one Debian 6.1 guest per vCPU count in o.rings, one after
// another (a guest of many vCPUs under TCG takes every host core), and in
// each measures `cowtrace run` with vmtest/ringprobe: memory, descriptors
// and start-up, for this tree's cowtrace and for o.ringsCompare, a cowtrace
// binary built elsewhere (e.g. before a change). It prints a markdown table.
func runRings(ctx context.Context, o options) (bool, error) {
	var smps []int
	for _, s := range splitList(o.rings) {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return false, fmt.Errorf("-rings: %q is not a vCPU count", s)
		}
		smps = append(smps, n)
	}
	ks, err := resolveKernels(ctx, newFetcher(o.cache), []string{"6.1"})
	if err != nil {
		return false, err
	}
	k := ks[0]
	if err := k.Target.haveQemu(); err != nil {
		return false, err
	}
	work, cleanup, err := workDir(o)
	if err != nil {
		return false, err
	}
	defer cleanup()
	timeout := o.timeout
	if timeout <= 0 {
		timeout = 20 * time.Minute
	}
	initrd, err := ringInitramfs(ctx, o, k, work, timeout-time.Minute)
	if err != nil {
		return false, err
	}

	var rows []ringRow
	ok := true
	for _, n := range smps {
		logf("booting %s with %d vCPUs", k.Label, n)
		var console io.Writer = io.Discard
		if o.verbose {
			console = &prefixWriter{mu: &sync.Mutex{}, prefix: fmt.Sprintf("[%d vCPUs] ", n), w: os.Stderr}
		}
		res := boot(ctx, bootOptions{Qemu: k.Target.Qemu, Accel: o.accel, CPU: cmpOr(o.cpu, k.Target.CPU), MemMB: o.memMB, SMP: n,
			Vmlinuz: k.Vmlinuz, Initrd: initrd, Append: o.append, Timeout: timeout, Console: console})
		logf("%d vCPUs: guest done in %v", n, res.Elapsed.Round(time.Second))
		got, err := ringRows(res, n)
		if err != nil {
			ok = false
			logf("%d vCPUs: %v", n, err)
			continue
		}
		for _, r := range got {
			if why := r.overLimits(); why != "" && r.Result.Label == "after" {
				ok = false
				logf("%d vCPUs: this tree's cowtrace %s", n, why)
			}
		}
		rows = append(rows, got...)
	}
	fmt.Print(ringTable(rows, k.Label))
	return ok, nil
}

// ringInitramfs writes the initramfs of the -rings guests: guestinit,
// ringprobe, this tree's cowtrace and o.ringsCompare, busybox, and a
// manifest that runs ringprobe for timeout.
func ringInitramfs(ctx context.Context, o options, k kernel, work string, timeout time.Duration) (string, error) {
	root, err := moduleRoot(ctx)
	if err != nil {
		return "", err
	}
	bin := filepath.Join(work, "bin")
	files := []initramfsFile{}
	for _, b := range []struct{ pkg, dst string }{
		{"./vmtest/guestinit", "init"}, {"./vmtest/ringprobe", "bin/ringprobe"}, {"./cmd/cowtrace", "bin/cowtrace"},
	} {
		out := filepath.Join(bin, filepath.Base(b.dst))
		if _, err := goCmdFor(ctx, root, k.Target.GOARCH, "build", "-trimpath", "-o", out, b.pkg); err != nil {
			return "", err
		}
		files = append(files, initramfsFile{Src: out, Dst: b.dst, Perm: 0o755})
	}
	probes := []string{"after=/bin/cowtrace"}
	if o.ringsCompare != "" {
		if !isStatic(o.ringsCompare) {
			return "", fmt.Errorf("-rings-compare %s: not a static binary (build it with CGO_ENABLED=0)", o.ringsCompare)
		}
		files = append(files, initramfsFile{Src: o.ringsCompare, Dst: "bin/cowtrace-compare", Perm: 0o755})
		probes = append([]string{"before=/bin/cowtrace-compare"}, probes...)
	}
	bb, why := busybox("")
	if why != "" {
		return "", fmt.Errorf("%s", why)
	}
	files = append(files, bb...)
	man := guest.Manifest{Commands: []guest.Command{{
		Name: "ringprobe", Argv: append([]string{"/bin/ringprobe", "-console", "-startups", strconv.Itoa(o.ringsStartups)}, probes...),
		Env: []string{"PATH=/bin", "HOME=/tmp", "TMPDIR=/tmp"}, Dir: "/tmp", Timeout: timeout,
	}}}
	mb, err := json.Marshal(man)
	if err != nil {
		return "", err
	}
	initrd := filepath.Join(work, "initramfs.cpio.gz")
	return initrd, writeInitramfs(initrd, files, map[string][]byte{guest.ManifestPath: mb})
}

// ringRow is one binary measured in one guest.
type ringRow struct {
	SMP    int
	Kernel string
	Result guest.RingResult
}

func ringRows(res *bootResult, smp int) ([]ringRow, error) {
	if res.QemuErr != nil || res.TimedOut || len(res.Results) == 0 {
		return nil, fmt.Errorf("no result (qemu: %v, timed out: %v); console:\n%s", res.QemuErr, res.TimedOut, tail(res.Console, 20))
	}
	r := res.Results[0]
	if r.ExitCode != 0 || r.Err != "" {
		return nil, fmt.Errorf("ringprobe: exit %d %s: %s", r.ExitCode, r.Err, tail(r.Stderr, 10))
	}
	var rows []ringRow
	for _, line := range strings.Split(strings.TrimSpace(r.Stdout), "\n") {
		row := ringRow{SMP: smp}
		if res.Info != nil {
			row.Kernel = res.Info.Release
		}
		if err := json.Unmarshal([]byte(line), &row.Result); err != nil {
			return nil, fmt.Errorf("ringprobe output %q: %w", line, err)
		}
		if row.Result.Err != "" {
			return nil, fmt.Errorf("ringprobe %s: %s", row.Result.Label, row.Result.Err)
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// Limits of `cowtrace run` tracing a shell on any number of CPUs (issue 15:
// a 192-CPU runner must not pin a gigabyte to trace true).
const (
	ringMemLimitMiB = 64
	ringFDLimit     = 200
)

// overLimits says how the row exceeds the limits, "" when it does not.
func (r ringRow) overLimits() string {
	var out []string
	if mib := float64(r.Result.MemUsedKB) / 1024; mib > ringMemLimitMiB {
		out = append(out, fmt.Sprintf("took %.1f MiB, over %d", mib, ringMemLimitMiB))
	}
	if r.Result.FDs > ringFDLimit {
		out = append(out, fmt.Sprintf("held %d descriptors, over %d", r.Result.FDs, ringFDLimit))
	}
	return strings.Join(out, " and ")
}

func ringTable(rows []ringRow, label string) string {
	var b strings.Builder
	if len(rows) > 0 && rows[0].Kernel != "" {
		label = rows[0].Kernel
	}
	fmt.Fprintf(&b, "\n`cowtrace run` in Debian %s guests (qemu TCG): memory taken (MemAvailable before, less its lowest while `sh -c 'sleep 3'` runs traced), descriptors of cowtrace meanwhile, wall time of `cowtrace run -- true`.\n\n", label)
	fmt.Fprintf(&b, "Limits: %d MiB, %d descriptors.\n\n", ringMemLimitMiB, ringFDLimit)
	fmt.Fprintln(&b, "| vCPUs | cowtrace | memory MiB | fds (perf events) | start-up ms, median (min-max) | lost | rings | within limits |")
	fmt.Fprintln(&b, "|---:|---|---:|---:|---:|---:|---|---|")
	for _, r := range rows {
		x := r.Result
		st := "-"
		if len(x.StartupMs) > 0 {
			s := slices.Sorted(slices.Values(x.StartupMs))
			st = fmt.Sprintf("%.0f (%.0f-%.0f)", s[len(s)/2], s[0], s[len(s)-1])
		}
		rings := "-"
		for _, n := range x.Notes {
			if strings.HasPrefix(n, "ring buffers: ") {
				rings = strings.TrimPrefix(n, "ring buffers: ")
				if i := strings.Index(rings, " ("); i > 0 {
					rings = rings[:i]
				}
			}
		}
		within := "yes"
		if why := r.overLimits(); why != "" {
			within = "no: " + why
		}
		fmt.Fprintf(&b, "| %d | %s | %.1f | %d (%d) | %s | %d | %s | %s |\n", r.SMP, x.Label, float64(x.MemUsedKB)/1024,
			x.FDs, x.PerfFDs, st, x.Lost, rings, within)
	}
	return b.String()
}
