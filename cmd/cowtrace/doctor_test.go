package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/cowtrace/cowtrace/internal/cow"
	"github.com/cowtrace/cowtrace/internal/testenv"
	"github.com/cowtrace/cowtrace/perfevents"
	"github.com/cowtrace/cowtrace/report"
)

func ptr[T any](v T) *T { return &v }

// ciDoctor is what doctor finds as root on the project's CI machine: a
// kernel without kprobes, with the fault and allocation tracepoints.
func ciDoctor() *doctorReport {
	d := &doctorReport{
		Kernel: "6.18.44-fc-v669", Arch: "amd64", Euid: ptr(0), CapEff: "000001fffeffffff",
		Caps:     []string{"CAP_SYS_ADMIN", "CAP_PERFMON", "CAP_SYSLOG", "CAP_IPC_LOCK", "CAP_SYS_PTRACE"},
		Paranoid: ptr(2), KptrRestr: ptr(0), Lockdown: "integrity", Tracefs: "tracefs at /sys/kernel/tracing",
		KprobeEvts: ptr(false),
		Tracepoints: []doctorTracepoint{
			{Name: "exceptions:page_fault_user", ID: ptr[uint64](190)},
			{Name: "exceptions:page_fault_kernel", ID: ptr[uint64](189)},
			{Name: "kmem:mm_page_alloc", ID: ptr[uint64](653)},
		},
		THP: "madvise", KallsymsOK: ptr(true), CountMethod: "exit-tracepoint", OnlineCPUs: "0-1", NumCPUs: 2,
		Problems: map[string]string{
			"kprobe_pmu_type": "PMU kprobe: kernel has no such PMU: not supported by this kernel",
			"kprobes":         "kernel built without CONFIG_KPROBES",
		},
		Run: &doctorRun{
			Methods: map[string]string{
				"page_faults": "counter:page-faults", "minor_faults": "counter:minor-faults", "major_faults": "counter:major-faults",
				"wp_faults": cow.FaultMethod(true), "in_region": cow.FaultMethod(true),
				"copies": cow.CallchainMethod, "inferred_copies": cow.CallchainMethod,
			},
			Unavailable: []report.Unavailable{{What: "kprobes", Why: "kernel built without CONFIG_KPROBES"}},
		},
	}
	d.Measures = d.measures()
	return d
}

// TestDoctorText pins the text form of a fixed report, the better methods
// included.
func TestDoctorText(t *testing.T) {
	var b bytes.Buffer
	if err := ciDoctor().writeText(&b); err != nil {
		t.Fatal(err)
	}
	want := `cowtrace doctor: kernel 6.18.44-fc-v669, amd64

system
  euid                          0
  capabilities                  CAP_SYS_ADMIN CAP_PERFMON CAP_SYSLOG CAP_IPC_LOCK CAP_SYS_PTRACE (CapEff 000001fffeffffff)
  perf_event_paranoid           2 (CAP_PERFMON/CAP_SYS_ADMIN bypass it)
  kptr_restrict                 0
  lockdown                      integrity
  online CPUs                   0-1 (2)
kernel
  tracefs                       tracefs at /sys/kernel/tracing
  kprobe PMU                    no: PMU kprobe: kernel has no such PMU: not supported by this kernel
  kprobe_events                 no
  exceptions:page_fault_user    id 190
  exceptions:page_fault_kernel  id 189
  kmem:mm_page_alloc            id 653
  transparent huge pages        madvise
  kallsyms addresses            visible
  per-task counts               exit-tracepoint: cowtrace run counts in the kernel, each task's counters sampled as it leaves a CPU and as it exits (sched:sched_process_exit)
a run here
  kprobe route                  none
  copy routine                  none
  unavailable                   kprobes: kernel built without CONFIG_KPROBES
measures: the method a run here uses; what a better one would take
  page faults                   counter:page-faults
  minor faults                  counter:minor-faults
  major faults                  counter:major-faults
  wp faults                     tracepoint:exceptions:page_fault_user+page_fault_kernel
  faults in region              tracepoint:exceptions:page_fault_user+page_fault_kernel
  copies                        CALLCHAIN
                                better with CONFIG_KPROBES and CONFIG_KPROBE_EVENTS (here: kernel built without CONFIG_KPROBES): a kprobe on the copy routine, its hits counted per process
  inferred copies               CALLCHAIN
  do_wp_page hits               not measured
                                better with CONFIG_KPROBES and CONFIG_KPROBE_EVENTS (here: kernel built without CONFIG_KPROBES): a kprobe on do_wp_page, every write-protect fault's handler
`
	want = strings.ReplaceAll(want, "CALLCHAIN", cow.CallchainMethod)
	if got := b.String(); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

// TestDoctorJSON: the JSON form carries the same facts, by stable names, and
// an unknown fact is null with its reason in problems.
func TestDoctorJSON(t *testing.T) {
	d := ciDoctor()
	d.KptrRestr = nil
	d.Problems["kptr_restrict"] = "open /proc/sys/kernel/kptr_restrict: permission denied"
	var b bytes.Buffer
	if err := d.writeJSON(&b); err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]any{
		"kernel": "6.18.44-fc-v669", "lockdown": "integrity", "perf_event_paranoid": 2.0, "kptr_restrict": nil,
		"kprobe_pmu_type": nil, "kprobe_events": false, "thp": "madvise", "online_cpus": "0-1", "num_cpus": 2.0,
	} {
		if got[key] != want {
			t.Errorf("%s = %v, want %v", key, got[key], want)
		}
	}
	if p := got["problems"].(map[string]any); !strings.Contains(p["kptr_restrict"].(string), "permission denied") {
		t.Errorf("problems %v", p)
	}
	measures := got["measures"].([]any)
	copies := measures[5].(map[string]any)
	if copies["key"] != "copies" || copies["method"] != cow.CallchainMethod || !strings.Contains(copies["better"].(string), "CONFIG_KPROBES") {
		t.Errorf("copies measure %v", copies)
	}
}

// TestDoctorBetter: what a better method takes, on the kernels and
// privileges of make vmtest and of an ordinary user.
func TestDoctorBetter(t *testing.T) {
	better := func(d *doctorReport, key string) string {
		for _, m := range d.measures() {
			if m.Key == key {
				return m.Better
			}
		}
		t.Fatalf("no measure %s", key)
		return ""
	}

	// A kernel with kprobes whose copy routine the calibration found:
	// nothing better to be had for copies.
	kp := ciDoctor()
	kp.KprobePMU, kp.KprobeEvts = ptr[uint32](6), ptr(true)
	delete(kp.Problems, "kprobes")
	kp.Run.KprobeMethod, kp.Run.CopyRoutine = "pmu", "copy_mc_to_kernel"
	kp.Run.Methods["copies"], kp.Run.Methods["probes.do_wp_page"] = "kprobe:copy_mc_to_kernel", "kprobe:do_wp_page"
	for _, key := range []string{"copies", "wp_faults", "in_region", "probes.do_wp_page", "page_faults"} {
		if b := better(kp, key); b != "" {
			t.Errorf("kprobe kernel: %s: better %q, want none", key, b)
		}
	}

	// 5.10: the calibration's last resort, wp_page_copy, also counts
	// zero-page replacements; the allocation stacks are exact.
	wpc := ciDoctor()
	wpc.Run.KprobeMethod, wpc.Run.CopyRoutine, wpc.Run.Methods["copies"] = "pmu", "wp_page_copy", "kprobe:wp_page_copy"
	if b := better(wpc, "copies"); !strings.Contains(b, "zero page") {
		t.Errorf("wp_page_copy: better %q", b)
	}

	// Lockdown's confidentiality mode: the software events only, and the
	// lockdown named as what stands in the way.
	ld := ciDoctor()
	ld.KprobePMU, ld.KprobeEvts, ld.Lockdown = ptr[uint32](6), ptr(false), "confidentiality"
	ld.Run.KprobeMethod = "pmu"
	ld.Run.Methods = map[string]string{"page_faults": "counter:page-faults", "in_region": cow.FaultAddrMethod}
	for key, want := range map[string]string{
		"copies":            "LOCKDOWN_TRACEFS",
		"wp_faults":         "LOCKDOWN_TRACEFS",
		"in_region":         "LOCKDOWN_TRACEFS",
		"probes.do_wp_page": "LOCKDOWN_KPROBES",
	} {
		if b := better(ld, key); !strings.Contains(b, want) {
			t.Errorf("lockdown: %s: better %q, want %s", key, b, want)
		}
	}
	if b := better(ld, "copies"); !strings.Contains(b, "LOCKDOWN_KPROBES") {
		t.Errorf("lockdown: copies: better %q, want LOCKDOWN_KPROBES too", b)
	}

	// An ordinary user at perf_event_paranoid 2 on a kernel with kprobes.
	u := ciDoctor()
	u.Euid, u.Caps, u.KprobePMU = ptr(1000), []string{}, ptr[uint32](6)
	delete(u.Problems, "kprobes")
	u.Run.Methods = map[string]string{"page_faults": "counter:page-faults:u", "in_region": cow.FaultAddrMethod}
	for key, want := range map[string]string{
		"page_faults":       "kernel.perf_event_paranoid <= 1",
		"copies":            "as root, with CAP_PERFMON or at kernel.perf_event_paranoid -1",
		"probes.do_wp_page": "as root or with CAP_PERFMON",
	} {
		if b := better(u, key); !strings.Contains(b, want) {
			t.Errorf("user: %s: better %q, want %q", key, b, want)
		}
	}

	// A run that could not start says why for every measure.
	no := ciDoctor()
	no.Run, no.RunError = nil, "mount tracefs: permission denied"
	var b bytes.Buffer
	if err := no.writeText(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "cannot start                  mount tracefs: permission denied") || !strings.Contains(better(no, "copies"), "a run that can start") {
		t.Errorf("no run:\n%s", b.String())
	}
}

// TestDoctorKernel runs doctor on this kernel: it names every tracepoint
// cowtrace uses that this kernel has, with tracefs's own id, reports, and
// says which method a run uses for each measure.
func TestDoctorKernel(t *testing.T) {
	testenv.Require(t, testenv.Root)
	tfs, err := perfevents.OpenTracefs()
	if err != nil {
		t.Skipf("needs tracefs: %v", err)
	}
	defer tfs.Close()
	code, stdout, stderr := runCLI("doctor", "--format", "json")
	if code != 0 {
		t.Fatalf("doctor exit %d: %s", code, stderr)
	}
	var d doctorReport
	if err := json.Unmarshal([]byte(stdout), &d); err != nil {
		t.Fatal(err)
	}
	if d.Kernel != perfevents.KernelRelease() {
		t.Errorf("kernel %q", d.Kernel)
	}
	if len(d.Tracepoints) != len(doctorTracepoints) {
		t.Fatalf("%d tracepoints, want %d", len(d.Tracepoints), len(doctorTracepoints))
	}
	for i, tp := range doctorTracepoints {
		got := d.Tracepoints[i]
		if got.Name != tp[0]+":"+tp[1] {
			t.Errorf("tracepoint %d is %s, want %s:%s", i, got.Name, tp[0], tp[1])
		}
		id, err := tfs.EventID(tp[0], tp[1])
		switch {
		case err != nil && got.ID != nil:
			t.Errorf("%s: id %d, but tracefs: %v", got.Name, *got.ID, err)
		case err == nil && (got.ID == nil || *got.ID != id):
			t.Errorf("%s: id %v (%s), tracefs says %d", got.Name, got.ID, got.Why, id)
		}
	}
	if d.Run == nil {
		t.Fatalf("no run: %s", d.RunError)
	}
	if d.Run.Methods["page_faults"] == "" || len(d.Measures) != len(doctorMeasureKeys) {
		t.Errorf("methods %v, %d measures", d.Run.Methods, len(d.Measures))
	}
	// The text form of the same report (a second doctor would calibrate
	// again, which takes seconds under make vmtest's TCG).
	var b bytes.Buffer
	if err := d.writeText(&b); err != nil || !strings.HasPrefix(b.String(), "cowtrace doctor: kernel "+d.Kernel) {
		t.Errorf("text form: %v:\n%s", err, b.String())
	}
}
