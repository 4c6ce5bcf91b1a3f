package main

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/cowtrace/cowtrace/internal/cow"
	"github.com/cowtrace/cowtrace/internal/engine"
	"github.com/cowtrace/cowtrace/perfevents"
	"github.com/cowtrace/cowtrace/report"
)

const doctorLong = `Says what this kernel and these privileges give cowtrace: the kernel,
capabilities, perf_event_paranoid, kptr_restrict, lockdown, tracefs, the
kprobe routes, the tracepoints, transparent huge pages, kallsyms and the
online CPUs; then, for each measure, the method a run would use here (the
engine's own choice, copy routine calibration included) and what it would
take to get a better one. Exits 0 whenever it could report.
`

func setupDoctor(fs *flagSet) runner {
	format := addFormatFlag(fs, "doctor", []string{"text", "json"}, "text", "output `FORMAT`: text or json")
	return func(ctx context.Context, args []string, stdout, _ io.Writer) error {
		if len(args) > 0 {
			return usagef("doctor: unexpected argument %q", args[0])
		}
		d := examine(ctx)
		if format.value == "json" {
			return d.writeJSON(stdout)
		}
		return d.writeText(stdout)
	}
}

// doctorReport is what doctor found. A fact it could not read is nil or
// "", with the reason in Problems under the fact's JSON name.
type doctorReport struct {
	Kernel     string   `json:"kernel"`
	Arch       string   `json:"arch"`
	Euid       *int     `json:"euid"`
	CapEff     string   `json:"cap_eff"` // as /proc/self/status shows it
	Caps       []string `json:"caps"`    // the capabilities cowtrace cares about that CapEff has
	Paranoid   *int     `json:"perf_event_paranoid"`
	KptrRestr  *int     `json:"kptr_restrict"`
	Lockdown   string   `json:"lockdown"` // none, integrity or confidentiality
	Tracefs    string   `json:"tracefs"`  // where, as perfevents.Tracefs names it
	KprobePMU  *uint32  `json:"kprobe_pmu_type"`
	KprobeEvts *bool    `json:"kprobe_events"`
	// Tracepoints are the ones cowtrace uses, in order, each with its id
	// or why it is missing.
	Tracepoints []doctorTracepoint `json:"tracepoints"`
	THP         string             `json:"thp"` // the enabled mode; "" without THP
	KallsymsOK  *bool              `json:"kallsyms_addresses"`
	// CountMethod is how run's count mode learns each task's counts here:
	// "exit-tracepoint", "exit-syscall", or "classify" (every fault a
	// record) where it cannot, with the reason in Problems["count_method"].
	CountMethod string            `json:"count_method"`
	OnlineCPUs  string            `json:"online_cpus"`
	NumCPUs     int               `json:"num_cpus"`
	Problems    map[string]string `json:"problems,omitempty"`

	// Run is what the engine chose, as a run here would; RunError why it
	// could not start, in which case Run is nil.
	Run      *doctorRun      `json:"run"`
	RunError string          `json:"run_error,omitempty"`
	Measures []doctorMeasure `json:"measures"`
}

type doctorTracepoint struct {
	Name string  `json:"name"`
	ID   *uint64 `json:"id"`
	Why  string  `json:"why,omitempty"`
}

// doctorRun is the run-wide part of a report.Run before any task.
type doctorRun struct {
	KprobeMethod     string               `json:"kprobe_method"`
	CopyRoutine      string               `json:"copy_routine"`
	CopyRoutineCheck string               `json:"copy_routine_check,omitempty"`
	Methods          map[string]string    `json:"methods"`
	Unavailable      []report.Unavailable `json:"unavailable"`
	Notes            []string             `json:"notes,omitempty"`
}

// doctorMeasure is one measure: the method a run here uses ("" for not
// measured) and what a better one would take ("" when it is the best).
type doctorMeasure struct {
	Measure string `json:"measure"`
	Key     string `json:"key"` // its name in a report's methods
	Method  string `json:"method"`
	Better  string `json:"better,omitempty"`
}

// doctorTracepoints are the tracepoints cowtrace uses.
var doctorTracepoints = [][2]string{
	{"exceptions", "page_fault_user"},
	{"exceptions", "page_fault_kernel"},
	{"kmem", "mm_page_alloc"},
}

// Capability bits of CapEff that matter to cowtrace.
var doctorCaps = []struct {
	bit  uint
	name string
}{
	{21, "CAP_SYS_ADMIN"},  // tracefs mounts, kprobes, perf events before 5.8
	{38, "CAP_PERFMON"},    // perf events, kprobes (5.8+)
	{34, "CAP_SYSLOG"},     // kallsyms addresses at kptr_restrict 1
	{14, "CAP_IPC_LOCK"},   // rings beyond perf_event_mlock_kb
	{19, "CAP_SYS_PTRACE"}, // perf events on processes of other users
}

// examine gathers every fact, then asks the engine.
func examine(ctx context.Context) *doctorReport {
	d := &doctorReport{Kernel: perfevents.KernelRelease(), Arch: runtime.GOARCH, Problems: map[string]string{}}
	d.readStatus("/proc/self/status")
	d.Paranoid = d.readInt("perf_event_paranoid", "/proc/sys/kernel/perf_event_paranoid")
	d.KptrRestr = d.readInt("kptr_restrict", "/proc/sys/kernel/kptr_restrict")
	d.readLockdown()
	d.readTracefs()
	if d.Lockdown == "confidentiality" {
		// tracefs creates no file under it: "not found" is the policy.
		for i := range d.Tracepoints {
			if d.Tracepoints[i].ID == nil {
				d.Tracepoints[i].Why += " (lockdown's confidentiality mode leaves tracefs empty: LOCKDOWN_TRACEFS)"
			}
		}
	}
	if typ, _, err := perfevents.KprobePMUType(); err != nil {
		d.Problems["kprobe_pmu_type"] = err.Error()
	} else {
		d.KprobePMU = &typ
	}
	if d.KprobePMU == nil && (d.KprobeEvts == nil || !*d.KprobeEvts) {
		d.Problems["kprobes"] = perfevents.KprobesUnavailableReason()
	}
	if b, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/enabled"); err == nil {
		d.THP = bracketed(string(b))
	} else {
		d.Problems["thp"] = "kernel without transparent huge pages (no /sys/kernel/mm/transparent_hugepage)"
	}
	if syms, err := perfevents.LoadKallsyms(cow.WPFunction); err != nil {
		d.Problems["kallsyms_addresses"] = err.Error()
	} else {
		ok := !syms.AddressesHidden()
		d.KallsymsOK = &ok
	}
	if b, err := os.ReadFile("/sys/devices/system/cpu/online"); err == nil {
		d.OnlineCPUs = strings.TrimSpace(string(b))
		cpus, _ := perfevents.ParseCPUList(d.OnlineCPUs)
		d.NumCPUs = len(cpus)
	} else {
		d.Problems["online_cpus"] = err.Error()
	}
	d.askEngine(ctx)
	d.Measures = d.measures()
	return d
}

func (d *doctorReport) readStatus(path string) {
	f, err := os.Open(path)
	if err != nil {
		d.Problems["euid"] = err.Error()
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key, val, _ := strings.Cut(sc.Text(), ":")
		fields := strings.Fields(val)
		switch {
		case key == "Uid" && len(fields) >= 2:
			if v, err := strconv.Atoi(fields[1]); err == nil {
				d.Euid = &v
			}
		case key == "CapEff" && len(fields) == 1:
			d.CapEff = fields[0]
		}
	}
	caps, err := strconv.ParseUint(d.CapEff, 16, 64)
	if err != nil {
		d.Problems["cap_eff"] = fmt.Sprintf("no CapEff in %s", path)
		return
	}
	d.Caps = []string{}
	for _, c := range doctorCaps {
		if caps&(1<<c.bit) != 0 {
			d.Caps = append(d.Caps, c.name)
		}
	}
}

func (d *doctorReport) readInt(key, path string) *int {
	b, err := os.ReadFile(path)
	if err != nil {
		d.Problems[key] = err.Error()
		return nil
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		d.Problems[key] = fmt.Sprintf("%s: %v", path, err)
		return nil
	}
	return &v
}

// bracketed returns the selected word of a sysfs choice list, "a [b] c".
func bracketed(s string) string {
	for _, f := range strings.Fields(s) {
		if strings.HasPrefix(f, "[") && strings.HasSuffix(f, "]") {
			return strings.Trim(f, "[]")
		}
	}
	return strings.TrimSpace(s)
}

// readLockdown reads the lockdown mode from securityfs. Where securityfs is
// mounted nowhere (a container, a minimal init), root reads it through a
// mount of its own that is attached nowhere, as cowtrace does tracefs.
func (d *doctorReport) readLockdown() {
	b, err := os.ReadFile("/sys/kernel/security/lockdown")
	if errors.Is(err, fs.ErrNotExist) {
		b, err = readPrivateSecurityfs("lockdown")
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		d.Problems["lockdown"] = "kernel without the lockdown LSM (no lockdown in securityfs)"
	case err != nil:
		d.Problems["lockdown"] = fmt.Sprintf("securityfs is not mounted at /sys/kernel/security, and mounting it failed (%v)", err)
	default:
		d.Lockdown = bracketed(string(b))
	}
}

func readPrivateSecurityfs(name string) ([]byte, error) {
	fsfd, err := unix.Fsopen("securityfs", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fsfd)
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return nil, err
	}
	mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, unix.MOUNT_ATTR_RDONLY|unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV|unix.MOUNT_ATTR_NOEXEC)
	if err != nil {
		return nil, err
	}
	defer unix.Close(mfd)
	fd, err := unix.Openat(mfd, name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: "securityfs/" + name, Err: err}
	}
	f := os.NewFile(uintptr(fd), "securityfs/"+name)
	defer f.Close()
	return io.ReadAll(f)
}

func (d *doctorReport) readTracefs() {
	tfs, err := perfevents.OpenTracefs()
	if err != nil {
		d.Problems["tracefs"] = err.Error()
		for _, tp := range doctorTracepoints {
			d.Tracepoints = append(d.Tracepoints, doctorTracepoint{Name: tp[0] + ":" + tp[1], Why: "no tracefs"})
		}
		return
	}
	defer tfs.Close()
	d.Tracefs = tfs.String()
	ke := tfs.HasKprobeEvents()
	d.KprobeEvts = &ke
	for _, tp := range doctorTracepoints {
		t := doctorTracepoint{Name: tp[0] + ":" + tp[1]}
		if id, err := tfs.EventID(tp[0], tp[1]); err != nil {
			t.Why = err.Error()
		} else {
			t.ID = &id
		}
		d.Tracepoints = append(d.Tracepoints, t)
	}
}

// askEngine starts a session as a run would (the copy routine's
// calibration included) and keeps what it would measure with.
func (d *doctorReport) askEngine(ctx context.Context) {
	s, err := engine.New(ctx, engine.Config{})
	if err != nil {
		d.RunError = err.Error()
		return
	}
	var run report.Run
	s.FillRun(&run, true)
	var why string
	if d.CountMethod, why = s.CountMethod(); why != "" {
		d.Problems["count_method"] = why
	}
	s.Close()
	d.Run = &doctorRun{KprobeMethod: run.KprobeMethod, CopyRoutine: run.CopyRoutine, CopyRoutineCheck: run.CopyRoutineCheck,
		Methods: run.Methods, Unavailable: run.Unavailable, Notes: run.Notes}
	if d.Run.Unavailable == nil {
		d.Run.Unavailable = []report.Unavailable{}
	}
	// Before any task is opened the session lists do_wp_page among the
	// probes even where the calibration could not probe it; a run then
	// finds it refused. Its check says so.
	if run.KprobeMethod != "" && strings.Contains(run.CopyRoutineCheck, "do_wp_page not probed") {
		for k, m := range d.Run.Methods {
			if m == "kprobe:"+cow.WPFunction {
				delete(d.Run.Methods, k)
			}
		}
	}
}

// The measures doctor reports, by their name in a report's methods.
var doctorMeasureKeys = []struct{ name, key string }{
	{"page faults", "page_faults"},
	{"minor faults", "minor_faults"},
	{"major faults", "major_faults"},
	{"wp faults", "wp_faults"},
	{"faults in region", "in_region"},
	{"copies", "copies"},
	{"inferred copies", "inferred_copies"},
	{"do_wp_page hits", "probes." + cow.WPFunction},
}

func (d *doctorReport) measures() []doctorMeasure {
	var out []doctorMeasure
	for _, m := range doctorMeasureKeys {
		dm := doctorMeasure{Measure: m.name, Key: m.key}
		if d.Run != nil {
			dm.Method = d.Run.Methods[m.key]
		}
		dm.Better = d.better(m.key, dm.Method)
		out = append(out, dm)
	}
	return out
}

func (d *doctorReport) privileged() bool {
	for _, c := range d.Caps {
		if c == "CAP_SYS_ADMIN" || c == "CAP_PERFMON" {
			return true
		}
	}
	return false
}

// kprobeCondition says under what condition a run here would have
// kprobes; "" when it has them.
func (d *doctorReport) kprobeCondition() string {
	switch {
	case d.Run != nil && strings.HasPrefix(d.Run.Methods["copies"], "kprobe:"):
		return ""
	case d.KprobePMU == nil && (d.KprobeEvts == nil || !*d.KprobeEvts):
		return "with CONFIG_KPROBES and CONFIG_KPROBE_EVENTS (here: " + cmp.Or(d.Problems["kprobes"], "neither the kprobe PMU nor kprobe_events") + ")"
	case d.Lockdown == "confidentiality":
		return "without lockdown's confidentiality mode, which refuses kprobes to root (LOCKDOWN_KPROBES): boot without lockdown=confidentiality, or with Secure Boot off where it imposes lockdown"
	case d.Caps != nil && !d.privileged():
		return "as root or with CAP_PERFMON (kprobes need it at any kernel.perf_event_paranoid)"
	case d.Run != nil && d.Run.KprobeMethod != "" && d.Run.CopyRoutine == "":
		return "with a copy routine that the calibration sees copy (here: " + d.Run.CopyRoutineCheck + ")"
	}
	return "with kprobes"
}

// tracefsCondition says under what condition a run here could use
// tracepoints at all; "" when nothing stands in the way.
func (d *doctorReport) tracefsCondition() string {
	switch {
	case d.Lockdown == "confidentiality":
		return "without lockdown's confidentiality mode, which hides tracefs from root (LOCKDOWN_TRACEFS): boot without lockdown=confidentiality"
	case d.Caps != nil && !d.privileged() && (d.Paranoid == nil || *d.Paranoid > -1):
		return "as root, with CAP_PERFMON or at kernel.perf_event_paranoid -1"
	case d.Tracefs == "":
		return "with tracefs (CONFIG_TRACING; mounting it needs CAP_SYS_ADMIN)"
	}
	return ""
}

// faultCondition says under what condition a run here would have the x86
// fault tracepoints; "" when it has them.
func (d *doctorReport) faultCondition() string {
	switch {
	case d.Run != nil && strings.HasPrefix(d.Run.Methods["wp_faults"], "tracepoint:"):
		return ""
	case d.Arch != "amd64" && d.Arch != "386":
		return "on x86, whose kernels alone have exceptions:page_fault_user"
	}
	return cmp.Or(d.tracefsCondition(), "with the tracepoint exceptions:page_fault_user")
}

// Better methods, as doctor names them.
const (
	betterKprobe    = "a kprobe on the copy routine, its hits counted per process"
	betterCallchain = "copies told by their allocation's kernel stack (kmem:mm_page_alloc with call chains)"
	betterKallsyms  = "with kallsyms addresses (CAP_SYSLOG at kernel.kptr_restrict 0 or 1)"
	betterClassify  = "every fault classified by its x86 error code (exceptions:page_fault_user)"
)

// better says what a better method than method for the measure key would
// take here, and what it would be ("" when method is the best there is).
func (d *doctorReport) better(key, method string) string {
	if d.Run == nil {
		return "a run that can start (" + d.RunError + ")"
	}
	kp, fault := d.kprobeCondition(), d.faultCondition()
	alloc := cmp.Or(d.tracefsCondition(), "with kmem:mm_page_alloc")
	switch key {
	case "page_faults", "minor_faults", "major_faults":
		switch {
		case method == "":
			return "with cowtrace run --minor-faults (the experiment counts them always)"
		case strings.HasSuffix(method, ":u"):
			return "as root, with CAP_PERFMON or at kernel.perf_event_paranoid <= 1: kernel-mode faults too"
		}
	case "wp_faults", "in_region":
		switch {
		case strings.HasPrefix(method, "tracepoint:") && !strings.Contains(method, "page_fault_kernel"):
			return "with exceptions:page_fault_kernel: the faults system calls take on the process's memory too"
		case strings.HasPrefix(method, "tracepoint:"), strings.HasPrefix(method, "counter:"):
		default:
			return fault + ": " + betterClassify
		}
	case "copies":
		switch {
		case method == "kprobe:wp_page_copy" && d.Run.Methods["inferred_copies"] == cow.CallchainMethod:
			// The calibration's last resort: it counts replacements of the
			// shared zero page too, which copy nothing.
			return "copies told by their allocation's kernel stack, exact where wp_page_copy is not: it also runs when a write replaces the shared zero page (the inferred_copies column)"
		case kp == "":
		case method == cow.CallchainMethod:
			return kp + ": " + betterKprobe
		case method == "":
			return alloc + ": " + betterCallchain + "; " + kp + ": " + betterKprobe
		default:
			return betterKallsyms + ": " + betterCallchain + "; " + kp + ": " + betterKprobe
		}
	case "inferred_copies":
		switch {
		case method == cow.CallchainMethod:
		case method == "":
			return alloc + ": " + betterCallchain
		default:
			return betterKallsyms + ": " + betterCallchain
		}
	case "probes." + cow.WPFunction:
		if method == "" {
			return kp + ": a kprobe on do_wp_page, every write-protect fault's handler"
		}
	}
	return ""
}

func (d *doctorReport) writeJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(d)
}

// doctorLabel is the width of the labels of the text form.
const doctorLabel = 30

func (d *doctorReport) writeText(w io.Writer) error {
	t := &doctorText{d: d}
	fmt.Fprintf(&t.b, "cowtrace doctor: kernel %s, %s\n\nsystem\n", d.Kernel, d.Arch)
	t.system()
	t.b.WriteString("kernel\n")
	t.kernel()
	t.b.WriteString("a run here\n")
	t.runHere()
	t.b.WriteString("measures: the method a run here uses; what a better one would take\n")
	for _, m := range d.Measures {
		t.line(m.Measure, "%s", cmp.Or(m.Method, "not measured"))
		if m.Better != "" {
			t.line("", "better %s", m.Better)
		}
	}
	_, err := io.WriteString(w, t.b.String())
	return err
}

// doctorText is doctor's text form being written: a section's lines, each
// a label and a fact, or what kept doctor from reading the fact.
type doctorText struct {
	d *doctorReport
	b strings.Builder
}

func (t *doctorText) line(label, format string, args ...any) {
	fmt.Fprintf(&t.b, "  %-*s%s\n", doctorLabel, label, fmt.Sprintf(format, args...))
}

// or is v, or why doctor could not read the fact of JSON name key.
func (t *doctorText) or(v, key string) string {
	if v != "" {
		return v
	}
	if why := t.d.Problems[key]; why != "" {
		return "unknown: " + why
	}
	return "unknown"
}

func (t *doctorText) intOr(v *int, key string) string {
	if v == nil {
		return t.or("", key)
	}
	return strconv.Itoa(*v)
}

// system is the privileges and the limits on them.
func (t *doctorText) system() {
	d := t.d
	t.line("euid", "%s", t.intOr(d.Euid, "euid"))
	caps := t.or("", "cap_eff")
	if d.Caps != nil {
		caps = strings.Join(d.Caps, " ")
		if caps == "" {
			caps = "none that cowtrace uses"
		}
		caps += " (CapEff " + d.CapEff + ")"
	}
	t.line("capabilities", "%s", caps)
	paranoid := t.intOr(d.Paranoid, "perf_event_paranoid")
	if d.Paranoid != nil && d.privileged() {
		paranoid += " (CAP_PERFMON/CAP_SYS_ADMIN bypass it)"
	}
	t.line("perf_event_paranoid", "%s", paranoid)
	t.line("kptr_restrict", "%s", t.intOr(d.KptrRestr, "kptr_restrict"))
	t.line("lockdown", "%s", t.or(d.Lockdown, "lockdown"))
	if d.OnlineCPUs != "" {
		t.line("online CPUs", "%s (%d)", d.OnlineCPUs, d.NumCPUs)
	} else {
		t.line("online CPUs", "%s", t.or("", "online_cpus"))
	}
}

// kernel is what the kernel offers: tracefs, kprobes, tracepoints, THP,
// kallsyms, per-task counts.
func (t *doctorText) kernel() {
	d := t.d
	t.line("tracefs", "%s", t.or(d.Tracefs, "tracefs"))
	if d.KprobePMU != nil {
		t.line("kprobe PMU", "type %d", *d.KprobePMU)
	} else {
		t.line("kprobe PMU", "no: %s", d.Problems["kprobe_pmu_type"])
	}
	switch {
	case d.KprobeEvts == nil:
		t.line("kprobe_events", "unknown: no tracefs")
	case *d.KprobeEvts:
		t.line("kprobe_events", "yes")
	default:
		t.line("kprobe_events", "no")
	}
	for _, tp := range d.Tracepoints {
		if tp.ID != nil {
			t.line(tp.Name, "id %d", *tp.ID)
		} else {
			t.line(tp.Name, "no: %s", tp.Why)
		}
	}
	t.line("transparent huge pages", "%s", t.or(d.THP, "thp"))
	switch {
	case d.KallsymsOK == nil:
		t.line("kallsyms addresses", "%s", t.or("", "kallsyms_addresses"))
	case *d.KallsymsOK:
		t.line("kallsyms addresses", "visible")
	default:
		t.line("kallsyms addresses", "hidden (kernel.kptr_restrict, or no CAP_SYSLOG)")
	}
	switch d.CountMethod {
	case "":
	case "exit-tracepoint":
		t.line("per-task counts", "exit-tracepoint: cowtrace run counts in the kernel, each task's counters sampled as it leaves a CPU and as it exits (sched:sched_process_exit)")
	case "exit-syscall":
		t.line("per-task counts", "exit-syscall: cowtrace run counts in the kernel, each task's counters sampled as it leaves a CPU, calls exit or exit_group, or takes a signal (sched:sched_process_exit fires too late here)")
	default:
		t.line("per-task counts", "classify (%s): cowtrace run records every fault", d.Problems["count_method"])
	}
}

// runHere is what the engine chose, or why it could not start.
func (t *doctorText) runHere() {
	r := t.d.Run
	if r == nil {
		t.line("cannot start", "%s", t.d.RunError)
		return
	}
	t.line("kprobe route", "%s", cmp.Or(r.KprobeMethod, "none"))
	t.line("copy routine", "%s", cmp.Or(r.CopyRoutine, "none"))
	if r.CopyRoutineCheck != "" {
		t.line("copy routine check", "%s", clip(r.CopyRoutineCheck))
	}
	for _, u := range r.Unavailable {
		t.line("unavailable", "%s: %s", u.What, clip(u.Why))
	}
	for _, n := range r.Notes {
		t.line("note", "%s", n)
	}
}

// clip shortens the engine's longest reasons (a calibration that every
// candidate refused lists each refusal) for the text form; --format json
// has them whole.
func clip(s string) string {
	const max = 300
	if len(s) <= max {
		return s
	}
	return s[:max] + "... (whole in --format json)"
}
