package perfevents

import "errors"

// Sentinel errors drive cowtrace's fallbacks; callers test them with
// errors.Is. Every error returned by this package wraps one of them where the
// cause is known, together with the context (function, event, path).
var (
	// ErrNotSupported: the kernel lacks the facility (no kprobe PMU, no
	// kprobe_events, no such tracepoint).
	ErrNotSupported = errors.New("not supported by this kernel")
	// ErrNotFound: the kernel symbol or event does not exist (ENOENT).
	ErrNotFound = errors.New("not found")
	// ErrNotProbeable: the symbol exists but the kernel refuses to probe it
	// (EINVAL: blacklisted, notrace, or not at an instruction boundary).
	ErrNotProbeable = errors.New("not probe-able")
	// ErrPermission: the caller lacks root, CAP_PERFMON/CAP_SYS_ADMIN, or
	// kernel.perf_event_paranoid forbids the request.
	ErrPermission = errors.New("permission denied")
	// ErrNoProcess: the task to open an event on does not exist, or no
	// longer does (ESRCH).
	ErrNoProcess = errors.New("no such process")
	// ErrClosed: the reader or event was closed.
	ErrClosed = errors.New("perfevents: closed")
)
