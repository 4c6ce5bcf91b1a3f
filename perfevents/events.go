package perfevents

import (
	"errors"
	"fmt"
	"runtime"
	"unsafe"

	perf "github.com/elastic/go-perf"
	"golang.org/x/sys/unix"
)

// AnyCPU opens an event that follows its task onto every CPU.
const AnyCPU = -1

// EventType is the kind of event an Attr selects.
type EventType uint32

const (
	// Software is a software counter, Config one of PageFaults...
	Software EventType = unix.PERF_TYPE_SOFTWARE
	// Tracepoint is a tracefs event, Config its id.
	Tracepoint EventType = unix.PERF_TYPE_TRACEPOINT
)

// Software counters, as perf names them.
const (
	PageFaults  uint64 = unix.PERF_COUNT_SW_PAGE_FAULTS
	MinorFaults uint64 = unix.PERF_COUNT_SW_PAGE_FAULTS_MIN
	MajorFaults uint64 = unix.PERF_COUNT_SW_PAGE_FAULTS_MAJ
	// Dummy counts nothing; with TaskRecords it carries FORK, EXIT and
	// COMM records.
	Dummy uint64 = unix.PERF_COUNT_SW_DUMMY
)

// Attr is one event to open, in the terms cowtrace uses; Open turns it into
// a perf_event_attr.
type Attr struct {
	Label  string // what the event measures, e.g. "page-faults" or "kprobe:do_wp_page"
	Type   EventType
	Config uint64
	// SampleType asks for a record of these PERF_SAMPLE_* bits on every
	// event; zero makes a counter, read with Count.
	SampleType uint64
	// Watermark is the number of ring bytes after which the reader is
	// woken. Waking per record costs a wake-up per page fault; waking on a
	// watermark batches them while the reader still keeps the ring from
	// filling.
	Watermark uint32
	// WakeupEvents, without a Watermark, wakes the reader every that many
	// records instead.
	WakeupEvents uint32
	// KernelCallchain, when not zero, adds the kernel's stack to every
	// sample, at most that many frames (PERF_SAMPLE_CALLCHAIN without the
	// user part: no unwinding of the traced program's stack).
	KernelCallchain uint16
	// ExcludeKernel counts only what happens in user mode, all that an
	// unprivileged process may count at perf_event_paranoid 2.
	ExcludeKernel bool
	// Inherit gives the event to every task the task creates from then on.
	Inherit bool
	// EnableOnExec keeps the event off until the task execs.
	EnableOnExec bool
	// Disabled opens the event off, until Enable: for a filter to be set
	// before anything is counted.
	Disabled bool
	// TaskRecords adds FORK, EXIT and COMM records to the ring.
	TaskRecords bool
	// Mmaps adds a PERF_RECORD_MMAP2 for every mapping, data and
	// anonymous ones included.
	Mmaps bool
	// Monotonic stamps records with CLOCK_MONOTONIC, which user space can
	// read too, so that record times compare with a trace's start and end.
	Monotonic bool
	// GroupRead reads the event's group (GroupReadFormat) wherever it is
	// read: by Count's group counterpart ReadGroup, and in its samples
	// with PERF_SAMPLE_READ in SampleType.
	GroupRead bool
}

// ReadFormat is the read_format of every event outside a group read: its id
// follows the value.
const ReadFormat = unix.PERF_FORMAT_ID

func (a *Attr) perf() *perf.Attr {
	p := &perf.Attr{Label: a.Label, Type: perf.EventType(a.Type), Config: a.Config}
	p.CountFormat.ID = true // ReadFormat
	if a.GroupRead {
		p.CountFormat.Group, p.CountFormat.Enabled, p.CountFormat.Running = true, true, true
	}
	if a.SampleType != 0 {
		p.SetSamplePeriod(1)
		p.SampleFormat = sampleFormat(a.SampleType)
	}
	if a.KernelCallchain != 0 {
		p.SampleFormat.Callchain = true
		p.Options.ExcludeUserCallchain = true
		p.SampleMaxStack = a.KernelCallchain
	}
	p.Wakeup = a.Watermark
	p.Options.Watermark = a.Watermark > 0
	if a.Watermark == 0 {
		p.Wakeup = a.WakeupEvents
	}
	p.Options.SampleIDAll = a.SampleType != 0 || a.TaskRecords
	p.Options.Inherit = a.Inherit
	p.Options.ExcludeKernel = a.ExcludeKernel
	p.Options.ExcludeHypervisor = a.ExcludeKernel
	p.Options.Disabled = a.EnableOnExec || a.Disabled
	p.Options.EnableOnExec = a.EnableOnExec
	p.Options.Task, p.Options.Comm, p.Options.CommExec = a.TaskRecords, a.TaskRecords, a.TaskRecords
	p.Options.Mmap, p.Options.MmapData, p.Options.Mmap2 = a.Mmaps, a.Mmaps, a.Mmaps
	if a.Monotonic {
		p.Options.UseClockID = true
		p.ClockID = unix.CLOCK_MONOTONIC
	}
	return p
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
		Callchain:  bits&unix.PERF_SAMPLE_CALLCHAIN != 0,
		Raw:        bits&unix.PERF_SAMPLE_RAW != 0,
		Identifier: bits&unix.PERF_SAMPLE_IDENTIFIER != 0,
		Count:      bits&unix.PERF_SAMPLE_READ != 0,
	}
}

// Event is one open perf event: on one task (cpu AnyCPU) or on one CPU for
// a task and, with Inherit, its descendants; counting, sampling into a ring
// of its own, or writing into another event's ring (SetOutput).
type Event struct {
	ev    *perf.Event
	fd    int
	id    uint64
	Label string
}

// FD is the event's file descriptor, for Reader.Add.
func (e *Event) FD() int { return e.fd }

// ID is the kernel's id of the event, which PERF_SAMPLE_IDENTIFIER carries;
// inherited copies of the event report this same id.
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
// of several events arrive in one stream, in the order they happened. The
// kernel allows it only between events of the same task, or of the same CPU.
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
		return fmt.Errorf("filter %q on %s: %w (%w)", filter, e.Label, ErrNotSupported, errno)
	}
	return nil
}

// Enable starts an event opened Disabled.
func (e *Event) Enable() error {
	if err := e.ev.Enable(); err != nil {
		return fmt.Errorf("enable %s: %w", e.Label, err)
	}
	return nil
}

// Disable stops the event counting; its count stays readable.
func (e *Event) Disable() error {
	if err := e.ev.Disable(); err != nil {
		return fmt.Errorf("disable %s: %w", e.Label, err)
	}
	return nil
}

// Close closes the event. A second Close does nothing: the descriptor's
// number may belong to another file by then.
func (e *Event) Close() error {
	if e == nil || e.ev == nil {
		return nil
	}
	ev := e.ev
	e.ev = nil
	return ev.Close()
}

// Open opens a on task tid (-1: every task) on CPU cpu (AnyCPU: wherever
// the task runs). Without EnableOnExec it counts from now.
func Open(a Attr, tid, cpu int) (*Event, error) {
	return open(a.perf(), tid, cpu, nil)
}

// OpenInGroup opens a as a member of leader's group, on leader's task and
// CPU: the group is scheduled as one, so a sample of any member with
// PERF_SAMPLE_READ reads every member at the same instant.
func OpenInGroup(a Attr, tid, cpu int, leader *Event) (*Event, error) {
	return open(a.perf(), tid, cpu, leader)
}

// ReadGroup reads a group leader opened with GroupRead: each member's count
// by id, its own and, for an inherited group, every copy's, the exited
// tasks' included.
func (e *Event) ReadGroup() (map[uint64]uint64, error) {
	gc, err := e.ev.ReadGroupCount()
	if err != nil {
		return nil, fmt.Errorf("read group of %s: %w", e.Label, err)
	}
	out := make(map[uint64]uint64, len(gc.Values))
	for _, v := range gc.Values {
		out[v.ID] = v.Value
	}
	return out, nil
}

func open(pa *perf.Attr, tid, cpu int, leader *Event) (*Event, error) {
	var group *perf.Event
	if leader != nil {
		group = leader.ev
	}
	ev, err := perf.Open(pa, tid, cpu, group)
	if err != nil {
		return nil, openError(pa.Label, tid, cpu, err)
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
	return &Event{ev: ev, fd: fd, id: id, Label: pa.Label}, nil
}

// openError maps perf_event_open's errno to the package's sentinels, which
// drive cowtrace's fallbacks and its one-line messages. It is the only such
// mapping in cowtrace.
func openError(label string, tid, cpu int, err error) error {
	on := fmt.Sprintf("task %d", tid)
	if cpu != AnyCPU {
		on += fmt.Sprintf(", CPU %d", cpu)
	}
	var errno unix.Errno
	if !errors.As(err, &errno) {
		return fmt.Errorf("open %s on %s: %w", label, on, err)
	}
	switch errno {
	case unix.EACCES, unix.EPERM:
		return fmt.Errorf("open %s on %s: %w: %s", label, on, ErrPermission, PermissionHint())
	case unix.ENOENT:
		return fmt.Errorf("open %s: %w (ENOENT)", label, ErrNotFound)
	case unix.EINVAL, unix.EILSEQ, unix.EADDRNOTAVAIL:
		return fmt.Errorf("open %s: %w (%w)", label, ErrNotProbeable, errno)
	case unix.ESRCH:
		return fmt.Errorf("open %s on %s: %w (ESRCH)", label, on, ErrNoProcess)
	case unix.EOPNOTSUPP, unix.ENODEV:
		return fmt.Errorf("open %s: %w (%w)", label, ErrNotSupported, errno)
	}
	return fmt.Errorf("open %s on %s: %w", label, on, errno)
}
