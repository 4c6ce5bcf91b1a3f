package testenv

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
)

// Requirement is one thing a kernel-facing test needs; it returns "" when
// this machine has it, else what is missing, for the skip line.
type Requirement func() string

// Require skips the test, in one line naming every requirement this machine
// lacks, unless all are met. With -short every kernel-facing test skips.
func Require(t testing.TB, reqs ...Requirement) {
	t.Helper()
	if testing.Short() {
		t.Skip("kernel-facing test, skipped with -short")
	}
	var missing []string
	for _, r := range reqs {
		if why := r(); why != "" {
			missing = append(missing, why)
		}
	}
	if len(missing) > 0 {
		t.Skip("needs " + strings.Join(missing, "; "))
	}
}

// Root: perf events on other processes, tracefs, kprobes, pagemap frames.
func Root() string {
	if os.Geteuid() != 0 {
		return "root (perf events on other processes, tracefs, kprobes)"
	}
	return ""
}

// Paranoid: perf_event_open allows this process what kernel.perf_event_paranoid
// n allows an unprivileged one: the sysctl is at most n, or the process has
// CAP_PERFMON or CAP_SYS_ADMIN, which bypass it. 2 is user-mode events on
// itself and its children, 1 kernel-mode ones too, -1 tracepoints.
func Paranoid(n int) Requirement {
	return func() string {
		if hasCap(capPerfmon) || hasCap(capSysAdmin) {
			return ""
		}
		b, err := os.ReadFile("/proc/sys/kernel/perf_event_paranoid")
		if err != nil {
			return "perf events (" + err.Error() + ")"
		}
		level, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || level > n {
			return fmt.Sprintf("kernel.perf_event_paranoid <= %d, CAP_PERFMON or root (it is %s)", n, strings.TrimSpace(string(b)))
		}
		return ""
	}
}

// CapSysAdmin: /proc/PID/pagemap shows physical frame numbers only to a
// reader with CAP_SYS_ADMIN; to others they read as 0.
func CapSysAdmin() string {
	if !hasCap(capSysAdmin) {
		return "CAP_SYS_ADMIN (pagemap frame numbers)"
	}
	return ""
}

// Bits of the effective capability set that the requirements look at.
const (
	capSysAdmin = 21
	capPerfmon  = 38
)

// hasCap reads the effective capability set from /proc/self/status: the
// euid says nothing about a process that was given capabilities, or root in
// a user namespace that has none.
func hasCap(bit uint) bool {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && caps&(1<<bit) != 0
		}
	}
	return false
}

// Path: the kernel provides path (/proc/kallsyms, a sysfs directory), for
// the tests that read the running kernel's own files.
func Path(path string) Requirement {
	return func() string {
		if _, err := os.Stat(path); err != nil {
			return path + " (" + err.Error() + ")"
		}
		return ""
	}
}

// Tracepoint: the kernel has tracepoint group:name (x86 has
// exceptions:page_fault_user, arm64 does not). Every tracepoint has a
// __traceiter_NAME function (Linux 5.10+; a __tracepoint_NAME symbol
// before), so kallsyms answers without tracefs.
func Tracepoint(group, name string) Requirement {
	return func() string {
		b, err := os.ReadFile("/proc/kallsyms")
		if err != nil {
			return "/proc/kallsyms (" + err.Error() + ")"
		}
		if !strings.Contains(string(b), " __traceiter_"+name+"\n") && !strings.Contains(string(b), " __tracepoint_"+name+"\n") {
			return "tracepoint " + group + ":" + name + " (not in this kernel)"
		}
		return ""
	}
}

// KprobePMU: the kernel has the kprobe PMU (CONFIG_KPROBES, Linux 4.17+);
// kernels without it are covered by make vmtest's guests.
func KprobePMU() string {
	if _, err := os.Stat("/sys/bus/event_source/devices/kprobe/type"); err != nil {
		return "the kprobe PMU (kernel without CONFIG_KPROBES; make vmtest covers it)"
	}
	return ""
}

// Program: an executable in $PATH.
func Program(name string) Requirement {
	return func() string {
		for _, dir := range strings.Split(os.Getenv("PATH"), ":") {
			if st, err := os.Stat(dir + "/" + name); err == nil && st.Mode()&0o111 != 0 {
				return ""
			}
		}
		return name + " in $PATH"
	}
}
