// Package perfevents is cowtrace's only door to the kernel's tracing
// interfaces: perf_event_open(2) events of every shape cowtrace opens (on a
// task or per CPU with inherit; counting, sampling into a ring, or writing
// into another event's ring), the route to kernel functions (the kprobe PMU,
// else tracefs kprobe_events), their mmap'd ring buffers, tracefs, sysfs PMU
// descriptions and /proc/kallsyms. Every open failure goes through one errno
// mapping into the sentinels of errors.go, which drive the fallbacks above.
//
// It builds on github.com/elastic/go-perf for event attributes and the
// open/ioctl calls, and no other package of cowtrace imports go-perf. It
// bypasses go-perf where it falls short for cowtrace: ring buffers are read
// through one epoll for every ring (go-perf starts a goroutine and a ppoll per
// ring and drops what is left in a ring on POLLHUP), tracefs is discovered
// here (go-perf hard-codes /sys/kernel/debug/tracing), and kprobes are opened
// through the kprobe PMU or tracefs kprobe_events, which go-perf has no
// helper for.
package perfevents
