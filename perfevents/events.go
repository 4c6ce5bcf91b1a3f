package perfevents

import (
	"errors"
	"fmt"
	"runtime"
	"unsafe"

	perf "github.com/elastic/go-perf"
	"golang.org/x/sys/unix"
)

// Event is one open perf event on one task (cpu = -1).
type Event struct {
	ev    *perf.Event
	fd    int
	id    uint64
	Label string // what the event measures, e.g. "page-faults" or "kprobe:do_wp_page"
}

// FD is the event's file descriptor, for Reader.Add.
func (e *Event) FD() int { return e.fd }

// ID is the kernel's id of the event, which PERF_SAMPLE_IDENTIFIER carries.
func (e *Event) ID() uint64 { return e.id }

// Count reads the event's counter. It works after the task has exited: the
// kernel keeps the final count in the event.
func (e *Event) Count() (uint64, error) {
	c, err := e.ev.ReadCount()
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", e.Label, err)
	}
	return c.Value, nil
}

// SetOutput sends the event's records into target's ring, so that records
// of several events of one task arrive in one stream, in the order they
// happened. The kernel allows it only between events of the same task.
func (e *Event) SetOutput(target *Event) error {
	if err := e.ev.SetOutput(target.ev); err != nil {
		return fmt.Errorf("redirect %s into %s: %w", e.Label, target.Label, err)
	}
	return nil
}

// SetFilter installs an in-kernel tracepoint filter (what perf --filter
// uses); a refused filter wraps ErrNotSupported so that callers fall back to
// filtering samples themselves.
func (e *Event) SetFilter(filter string) error {
	p, err := unix.BytePtrFromString(filter)
	if err != nil {
		return err
	}
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(e.fd), unix.PERF_EVENT_IOC_SET_FILTER, uintptr(unsafe.Pointer(p)))
	runtime.KeepAlive(p)
	if errno != 0 {
		return fmt.Errorf("filter %q on %s: %w (%v)", filter, e.Label, ErrNotSupported, errno)
	}
	return nil
}

// Disable stops the event counting; its count stays readable.
func (e *Event) Disable() error { return e.ev.Disable() }

// Close closes the event.
func (e *Event) Close() error {
	if e == nil || e.ev == nil {
		return nil
	}
	return e.ev.Close()
}

// Sampling asks for a record in the ring buffer on every event.
type Sampling struct {
	SampleType uint64 // PERF_SAMPLE_* bits
	// Watermark is the number of ring bytes after which the reader is
	// woken. Waking per record costs a wake-up per page fault; waking on a
	// watermark batches them while the reader still keeps the ring from
	// filling.
	Watermark uint32
}

// Open opens attr on task tid on any CPU, enabled, counting from now.
func Open(attr *perf.Attr, tid int) (*Event, error) {
	ev, err := perf.Open(attr, tid, perf.AnyCPU, nil)
	if err != nil {
		return nil, openError(attr.Label, tid, err)
	}
	fd, err := ev.FD()
	if err != nil {
		ev.Close()
		return nil, err
	}
	id, err := ev.ID()
	if err != nil {
		ev.Close()
		return nil, err
	}
	return &Event{ev: ev, fd: fd, id: id, Label: attr.Label}, nil
}

// SoftwareAttr is a counting software event (page-faults, minor-faults, ...).
func SoftwareAttr(c perf.SoftwareCounter, label string) *perf.Attr {
	return &perf.Attr{Label: label, Type: perf.SoftwareEvent, Config: uint64(c)}
}

// TracepointAttr is a tracepoint by its tracefs id, counting, or sampling
// every hit when s is non-nil.
func TracepointAttr(id uint64, label string, s *Sampling) *perf.Attr {
	a := &perf.Attr{Label: label, Type: perf.TracepointEvent, Config: id}
	setSampling(a, s)
	return a
}

func setSampling(a *perf.Attr, s *Sampling) {
	if s == nil {
		return
	}
	a.SetSamplePeriod(1)
	a.Wakeup = s.Watermark
	a.Options.Watermark = s.Watermark > 0
	a.Options.SampleIDAll = true
	a.SampleFormat = sampleFormat(s.SampleType)
}

// sampleFormat converts PERF_SAMPLE_* bits into go-perf's struct; only the
// bits that DecodeSample understands are allowed.
func sampleFormat(bits uint64) perf.SampleFormat {
	return perf.SampleFormat{
		IP:         bits&unix.PERF_SAMPLE_IP != 0,
		Tid:        bits&unix.PERF_SAMPLE_TID != 0,
		Time:       bits&unix.PERF_SAMPLE_TIME != 0,
		Addr:       bits&unix.PERF_SAMPLE_ADDR != 0,
		ID:         bits&unix.PERF_SAMPLE_ID != 0,
		CPU:        bits&unix.PERF_SAMPLE_CPU != 0,
		Period:     bits&unix.PERF_SAMPLE_PERIOD != 0,
		StreamID:   bits&unix.PERF_SAMPLE_STREAM_ID != 0,
		Raw:        bits&unix.PERF_SAMPLE_RAW != 0,
		Identifier: bits&unix.PERF_SAMPLE_IDENTIFIER != 0,
	}
}

// OpenKprobe attaches a kprobe on fn+offset through the kprobe PMU
// (Linux 4.17+) to task tid, counting its hits, or sampling them when s is
// non-nil. No tracefs entry is created, so nothing is left behind if cowtrace
// dies: the probe goes away with the file descriptor.
func OpenKprobe(pmuType uint32, fn string, offset uint64, tid int, s *Sampling) (*Event, error) {
	name, err := unix.BytePtrFromString(fn)
	if err != nil {
		return nil, fmt.Errorf("kprobe %q: %w", fn, err)
	}
	a := &perf.Attr{
		Label: "kprobe:" + fn,
		Type:  perf.EventType(pmuType),
		// The kernel copies the NUL-terminated name from this address
		// during perf_event_open; KeepAlive below keeps it valid until then.
		Config1: uint64(uintptr(unsafe.Pointer(name))),
		Config2: offset,
	}
	setSampling(a, s)
	ev, err := Open(a, tid)
	runtime.KeepAlive(name)
	if err != nil {
		return nil, err
	}
	return ev, nil
}

// openError maps perf_event_open's errno to the package's sentinels, which
// drive cowtrace's fallbacks and its one-line messages.
func openError(label string, tid int, err error) error {
	var errno unix.Errno
	if !errors.As(err, &errno) {
		return fmt.Errorf("open %s on task %d: %w", label, tid, err)
	}
	switch errno {
	case unix.EACCES, unix.EPERM:
		return fmt.Errorf("open %s on task %d: %w: %s", label, tid, ErrPermission, PermissionHint())
	case unix.ENOENT:
		return fmt.Errorf("open %s: %w (ENOENT)", label, ErrNotFound)
	case unix.EINVAL, unix.EILSEQ, unix.EADDRNOTAVAIL:
		return fmt.Errorf("open %s: %w (%v)", label, ErrNotProbeable, errno)
	case unix.ESRCH:
		return fmt.Errorf("open %s on task %d: the task has exited (ESRCH)", label, tid)
	case unix.EOPNOTSUPP, unix.ENODEV:
		return fmt.Errorf("open %s: %w (%v)", label, ErrNotSupported, errno)
	}
	return fmt.Errorf("open %s on task %d: %w", label, tid, errno)
}
