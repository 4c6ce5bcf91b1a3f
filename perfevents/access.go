package perfevents

import "path/filepath"

// Access is what this process may ask of perf_event_open: root's
// capabilities bypass kernel.perf_event_paranoid; without them, the level
// decides.
type Access struct {
	// Privileged: CAP_PERFMON or CAP_SYS_ADMIN in the effective set.
	Privileged bool
	Euid       int
	Paranoid   int
	// ParanoidErr: the level could not be read; it is taken as 2.
	ParanoidErr error
}

// CurrentAccess reads this process's privileges and the paranoid level.
func CurrentAccess() Access {
	st := readStatus(filepath.Join(SysfsRoot, "proc/self/status"))
	a := Access{Euid: st.euid}
	a.Privileged = st.haveCaps && st.capEff&(1<<capPerfmon|1<<capSysAdmin) != 0
	a.Paranoid, a.ParanoidErr = ParanoidLevel()
	if a.ParanoidErr != nil {
		a.Paranoid = 2
	}
	return a
}

// KernelEvents: events may count in kernel mode too (paranoid <= 1), which
// page faults a system call takes on the process's memory and kernel
// callchains need.
func (a Access) KernelEvents() bool { return a.Privileged || a.Paranoid <= 1 }

// RawTracepoints: tracepoints may be sampled with their raw fields
// (paranoid -1).
func (a Access) RawTracepoints() bool { return a.Privileged || a.Paranoid <= -1 }
