package testenv

import (
	"os"
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
