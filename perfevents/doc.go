// Package perfevents is cowtrace's only door to the kernel's tracing
// interfaces: perf_event_open(2) events (software counters, tracepoints,
// kprobes), their mmap'd ring buffers, tracefs, sysfs PMU descriptions and
// /proc/kallsyms.
//
// It builds on github.com/elastic/go-perf for event attributes and the
// open/ioctl calls, and bypasses it where it falls short for cowtrace: ring
// buffers are read through one epoll for every ring (go-perf starts a
// goroutine and a ppoll per ring and drops what is left in a ring on POLLHUP),
// tracefs is discovered and mounted here (go-perf hard-codes
// /sys/kernel/debug/tracing), and kprobes are opened through the kprobe PMU
// or tracefs kprobe_events, which go-perf has no helper for.
package perfevents
