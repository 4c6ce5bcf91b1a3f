package experiment

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cowtrace/cowtrace/internal/cow"
	"github.com/cowtrace/cowtrace/internal/testenv"
	"github.com/cowtrace/cowtrace/internal/workload"
	"github.com/cowtrace/cowtrace/perfevents"
	"github.com/cowtrace/cowtrace/report"
)

func TestMain(m *testing.M) {
	workload.RunIfWorker()
	os.Exit(m.Run())
}

// requireTracing skips unless this process may open per-task tracepoints on
// other processes and mount tracefs.
func requireTracing(t *testing.T) {
	t.Helper()
	testenv.Require(t, testenv.Root)
}

func run(t *testing.T, cfg workload.Config, method perfevents.KprobeMethod) *report.Run {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r, err := Run(ctx, Options{Workload: cfg, KprobeMethod: method})
	if err != nil {
		t.Fatal(err)
	}
	if r.LostRecords != 0 {
		t.Errorf("lost %d records", r.LostRecords)
	}
	return r
}

func row(t *testing.T, r *report.Run, role string) *report.Process {
	t.Helper()
	p := r.Find(role)
	if p == nil {
		t.Fatalf("no %s row in %+v", role, r.Processes)
	}
	return p
}

// copies is what the run's copies column says, by whichever method it used.
func copies(t *testing.T, p *report.Process) uint64 {
	t.Helper()
	if p.Copies == nil {
		t.Fatalf("%s: no copies measured", p.Role)
	}
	return *p.Copies
}

// TestSeedExperiment is the seed's first run: after the memset, the writer
// child takes one write-protect fault per block in the region and the kernel
// copies one page for each; the reader takes none.
func TestSeedExperiment(t *testing.T) {
	requireTracing(t)
	r := run(t, workload.Seed(), perfevents.KprobeAuto)
	checkSeed(t, r, 1000)
}

// TestScaledExperiment checks that the counts scale exactly with the blocks.
func TestScaledExperiment(t *testing.T) {
	requireTracing(t)
	cfg := workload.Seed()
	cfg.Blocks = 5000
	checkSeed(t, run(t, cfg, perfevents.KprobeAuto), 5000)
}

func checkSeed(t *testing.T, r *report.Run, blocks uint64) {
	t.Helper()
	writer, reader, parent := row(t, r, "writer"), row(t, r, "reader"), row(t, r, "parent")
	if r.Methods["wp_faults"] == "" {
		t.Skipf("no exceptions:page_fault_user tracepoint: %v", r.Unavailable)
	}
	if writer.InRegion.WP != blocks {
		t.Errorf("writer: %d write-protect faults in the region, want %d", writer.InRegion.WP, blocks)
	}
	if got := writer.InRegion.WriteNotPresent + writer.InRegion.Read; got != 0 {
		t.Errorf("writer: %d other faults in the region, want 0", got)
	}
	if reader.InRegion.Total() != 0 || *reader.WPFaults != 0 {
		t.Errorf("reader: %d faults in the region and %d wp faults, want 0 and 0 (fork copied the page tables)",
			reader.InRegion.Total(), *reader.WPFaults)
	}
	if parent.InRegion.Total() != 0 {
		t.Errorf("parent: %d faults in the region, want 0 (it only reads after the fork)", parent.InRegion.Total())
	}
	if *writer.PageFaults < blocks {
		t.Errorf("writer: page-faults counter %d < %d wp faults", *writer.PageFaults, blocks)
	}
	// The children dirty their stack before their gate: after it they fault
	// only in the region, so the copies are exact.
	if got := copies(t, writer); got != blocks {
		t.Errorf("writer: %d copies (%s), want %d", got, r.Methods["copies"], blocks)
	}
	if got := copies(t, reader); got != 0 {
		t.Errorf("reader: %d copies (%s), want 0", got, r.Methods["copies"])
	}
	if writer.InRegion.InferredCopies != blocks {
		t.Errorf("writer: %d inferred copies in the region, want %d", writer.InRegion.InferredCopies, blocks)
	}
	if strings.HasPrefix(r.Methods["copies"], "kprobe:") {
		if got := writer.Probes[cow.WPFunction]; got != *writer.WPFaults {
			t.Errorf("writer: do_wp_page %d hits, tracepoint %d wp faults", got, *writer.WPFaults)
		}
		for _, p := range r.Processes {
			if p.InferredCopies != nil && *p.InferredCopies != *p.Copies {
				t.Errorf("%s: inferred copies %d != kprobe copies %d", p.Role, *p.InferredCopies, *p.Copies)
			}
		}
	}
}

// TestUntouchedExperiment is the seed's second run: without the memset the
// region has no pages at fork, so the writer's writes are first writes that
// get fresh zeroed pages, and nothing is copied in the region.
func TestUntouchedExperiment(t *testing.T) {
	requireTracing(t)
	cfg := workload.Seed()
	cfg.Touch = false
	r := run(t, cfg, perfevents.KprobeAuto)
	if r.Methods["wp_faults"] == "" {
		t.Skipf("no exceptions:page_fault_user tracepoint: %v", r.Unavailable)
	}
	writer, reader := row(t, r, "writer"), row(t, r, "reader")
	if writer.InRegion.WP != 0 || writer.InRegion.WriteNotPresent != 1000 {
		t.Errorf("writer in region: %+v, want 1000 first writes and 0 wp faults", *writer.InRegion)
	}
	if writer.InRegion.InferredCopies != 0 || copies(t, writer) != 0 {
		t.Errorf("writer: copies %d (in region %d), want 0", copies(t, writer), writer.InRegion.InferredCopies)
	}
	// Reads of never-written anonymous memory map the shared zero page.
	if reader.InRegion.Read != 1000 || copies(t, reader) != 0 {
		t.Errorf("reader: %d reads in region, %d copies; want 1000 and 0", reader.InRegion.Read, copies(t, reader))
	}
}

func TestReportNamesMethodsAndGaps(t *testing.T) {
	requireTracing(t)
	cfg := workload.Seed()
	cfg.Blocks = 10
	fdsBefore := testenv.OpenFDs(t)
	r := run(t, cfg, perfevents.KprobeAuto)
	if got := testenv.OpenFDs(t); got != fdsBefore {
		t.Errorf("%d descriptors open after the run, %d before", got, fdsBefore)
	}
	if r.Kernel != perfevents.KernelRelease() || r.Region == nil || r.Region.Length != 10*102400 {
		t.Errorf("run header: kernel %q region %+v", r.Kernel, r.Region)
	}
	if r.Methods["page_faults"] != "counter:page-faults" || r.Methods["copies"] == "" {
		t.Errorf("methods: %v", r.Methods)
	}
	if r.KprobeMethod == "" {
		found := false
		for _, u := range r.Unavailable {
			found = found || u.What == "kprobes"
		}
		if !found {
			t.Errorf("no kprobes, but the run does not say why: %+v", r.Unavailable)
		}
	} else if r.CopyRoutine == "" && len(r.Unavailable) == 0 {
		t.Errorf("kprobes available, no copy routine, and no reason given")
	}
	for _, p := range r.Processes {
		if p.Window == "" {
			t.Errorf("%s: no window stated", p.Role)
		}
	}
}

// TestCancelLeavesNothing interrupts a run once every event is open (as
// SIGINT does) and checks that no descriptor, process, probe or mount is left.
func TestCancelLeavesNothing(t *testing.T) {
	requireTracing(t)
	fdsBefore := testenv.OpenFDs(t)
	mountedBefore := tracefsMounted(t)
	ctx, cancel := context.WithCancel(context.Background())
	var workerPid int
	opt := Options{Workload: workload.Seed(), KprobeMethod: perfevents.KprobeAuto,
		AfterAttach: func(ctx context.Context) error {
			workerPid = findWorker(t)
			cancel()
			<-ctx.Done()
			return ctx.Err()
		}}
	_, err := Run(ctx, opt)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, want context.Canceled", err)
	}
	if got := testenv.OpenFDs(t); got != fdsBefore {
		t.Errorf("%d descriptors open after the run, %d before", got, fdsBefore)
	}
	if got := tracefsMounted(t); got != mountedBefore {
		t.Errorf("tracefs mounted: %v after, %v before", got, mountedBefore)
	}
	if workerPid == 0 {
		t.Error("the workload worker was not found while the run was attached")
	} else if left := liveGroupMembers(t, workerPid); len(left) > 0 {
		t.Errorf("processes of the workload group %d still alive: %v", workerPid, left)
	}
	if data, err := os.ReadFile("/sys/kernel/tracing/kprobe_events"); err == nil && strings.Contains(string(data), "cowtrace_") {
		t.Errorf("kprobe_events still lists cowtrace probes:\n%s", data)
	}
}

func TestBadKprobeMethod(t *testing.T) {
	if _, err := perfevents.ParseKprobeMethod("ebpf"); err == nil {
		t.Error("ParseKprobeMethod accepted ebpf")
	}
	if _, err := Run(context.Background(), Options{Workload: workload.Config{Blocks: 0}}); err == nil ||
		!strings.Contains(err.Error(), "blocks must be positive") {
		t.Errorf("Run with 0 blocks: %v", err)
	}
}

func TestForcedPMUWithoutKprobes(t *testing.T) {
	requireTracing(t)
	if _, _, err := perfevents.KprobePMUType(); err == nil {
		t.Skip("this kernel has a kprobe PMU; the refusal is what is tested here")
	}
	cfg := workload.Seed()
	cfg.Blocks = 1
	_, err := Run(context.Background(), Options{Workload: cfg, KprobeMethod: perfevents.KprobePMU})
	if err == nil || !strings.Contains(err.Error(), "pmu") {
		t.Errorf("forced pmu on a kernel without one: %v", err)
	}
}

// liveGroupMembers lists the processes of process group pgid that are neither
// zombies (killed, waiting for init to reap them) nor dead.
func liveGroupMembers(t *testing.T, pgid int) []string {
	t.Helper()
	var live []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		// After the comm: state ppid pgrp ...
		if len(f) > 2 && f[2] == strconv.Itoa(pgid) && f[0] != "Z" && f[0] != "X" {
			live = append(live, e.Name()+":"+f[0])
		}
	}
	return live
}

func tracefsMounted(t *testing.T) bool {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Contains(string(data), " - tracefs ")
}

// findWorker returns the pid of this test's workload worker (our child that
// runs the worker argument).
func findWorker(t *testing.T) int {
	t.Helper()
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || !strings.Contains(string(cmdline), "__cowtrace_workload") {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(os.Getpid()) {
			pid, _ := strconv.Atoi(e.Name())
			return pid
		}
	}
	return 0
}

// TestFaultsByAddress: the generic fault method (every page fault sampled
// with its address, copies by allocation stack: what arm64 gets) gives the
// children the counts the x86 tracepoints give them: the writer's faults in
// the region and copies equal the blocks, the reader's are none.
func TestFaultsByAddress(t *testing.T) {
	requireTracing(t)
	cfg := workload.Seed()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	byTP, err := Run(ctx, Options{Workload: cfg, KprobeMethod: perfevents.KprobeNone})
	if err != nil {
		t.Fatal(err)
	}
	byAddr, err := Run(ctx, Options{Workload: cfg, KprobeMethod: perfevents.KprobeNone, FaultsByAddress: true})
	if err != nil {
		t.Fatal(err)
	}
	if m := byAddr.Methods["in_region"]; m != cow.FaultAddrMethod {
		t.Fatalf("in_region by %q, want %q", m, cow.FaultAddrMethod)
	}
	if !strings.HasPrefix(byAddr.Methods["copies"], "callchain:") {
		t.Skipf("copies by %q: no allocation stacks here (%v)", byAddr.Methods["copies"], byAddr.Unavailable)
	}
	for _, role := range []string{"reader", "writer"} {
		a, b := row(t, byTP, role), row(t, byAddr, role)
		want := uint64(0)
		if role == "writer" {
			want = uint64(cfg.Blocks)
		}
		if a.InRegion.Total() != want || b.InRegion.Total() != want || copies(t, a) != want || copies(t, b) != want {
			t.Errorf("%s: tracepoints %d faults in region, %d copies; by address %d and %d; want %d",
				role, a.InRegion.Total(), *a.Copies, b.InRegion.Total(), *b.Copies, want)
		}
	}
}
