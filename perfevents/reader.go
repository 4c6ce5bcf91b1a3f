package perfevents

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// wakeToken is the epoll data of the Reader's eventfd; rings use their
// index + 1, so the token can never collide with a ring.
const wakeToken = 0

// maxEpollEvents bounds one epoll_wait. Events are only hints here (every
// ring's head is loaded after any wake-up), and a level-triggered EPOLLHUP
// not returned this time is returned by the next wait.
const maxEpollEvents = 32

// Reader multiplexes the mmap'd rings of many perf events with one epoll and
// one blocked thread.
//
// ReadInto is meant for one consuming goroutine; Add, SetDeadline, Lost and
// Close may be called from any goroutine, also while ReadInto is blocked.
type Reader struct {
	// readMu serialises ReadInto and everything only it touches: events,
	// pending and the rings' positions. Close takes it to know that no
	// epoll_wait is running before it closes the fds. Lock order: readMu,
	// then mu.
	readMu  sync.Mutex
	events  []unix.EpollEvent
	pending []*mmapRing
	// pendingErr is the deadline error, held back until every ring loaded
	// after the wake-up has been drained.
	pendingErr error
	// passNs is when the heads of the pending rings were loaded.
	passNs uint64
	// flushing: the pass under way was asked for by Flush; once it is
	// drained ReadInto returns ErrFlushed.
	flushing bool

	// mu guards the set of rings, the deadline and the fds' lifetime against
	// Add, SetDeadline and Close.
	mu       sync.Mutex
	epfd     int
	wakeFd   int
	rings    []*mmapRing
	deadline time.Time
	closed   atomic.Bool

	lost atomic.Uint64
	// flushReq asks the blocked ReadInto for a pass (Flush).
	flushReq atomic.Bool
}

// ErrFlushed is what ReadInto returns once the pass Flush asked for is
// drained: every record published before PassNs has been returned.
var ErrFlushed = errors.New("perf reader: rings drained")

// Flush makes a blocked (or the next) ReadInto read every ring to its head
// now and return ErrFlushed once it has, even if nothing woke it: a
// consumer that orders records by time (see Record.Pass) learns that no
// ring holds an earlier one.
func (r *Reader) Flush() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.flushReq.Store(true)
	if !r.closed.Load() {
		r.wake()
	}
}

// PassNs is when the heads of the latest pass were loaded (Record.Pass).
func (r *Reader) PassNs() uint64 {
	r.readMu.Lock()
	defer r.readMu.Unlock()
	return r.passNs
}

// NewReader creates a Reader with no rings.
func NewReader() (_ *Reader, err error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	defer func() {
		if err != nil {
			unix.Close(epfd)
		}
	}()

	// The eventfd wakes a blocked epoll_wait for Close and SetDeadline. It is
	// a raw fd, not an os.File, so that the Reader never touches the Go
	// netpoller and owns exactly two fds.
	wakeFd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	defer func() {
		if err != nil {
			unix.Close(wakeFd)
		}
	}()

	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wakeFd), Pad: wakeToken}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wakeFd, &ev); err != nil {
		return nil, fmt.Errorf("epoll add eventfd: %w", err)
	}

	return &Reader{
		events: make([]unix.EpollEvent, maxEpollEvents),
		epfd:   epfd,
		wakeFd: wakeFd,
	}, nil
}

// Add mmaps the ring of perf event fd (one metadata page and dataPages data
// pages; dataPages must be a power of two), registers fd with the Reader's
// epoll and tags the ring's records with cookie.
//
// The Reader owns the mapping and unmaps it on Close; it does not own fd,
// which must stay open until Close. The mapping keeps the event alive even if
// fd is closed, but epoll can then no longer be told to drop it.
func (r *Reader) Add(fd int, dataPages int, cookie int) (err error) {
	if dataPages <= 0 || dataPages&(dataPages-1) != 0 {
		return fmt.Errorf("add perf fd %d: %d data pages is not a power of two", fd, dataPages)
	}
	pageSize := os.Getpagesize()
	if dataPages > (math.MaxInt32/pageSize)-1 {
		return fmt.Errorf("add perf fd %d: %d data pages is too large", fd, dataPages)
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed.Load() {
		return fmt.Errorf("add perf fd %d: %w", fd, ErrClosed)
	}

	// PROT_WRITE makes this a non-overwrite ring: the kernel stops writing
	// (and counts PERF_RECORD_LOST) instead of overwriting what we have not
	// consumed, which it learns from the data_tail we write.
	mem, err := unix.Mmap(fd, 0, (1+dataPages)*pageSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
			// Unprivileged users get EPERM once their rings exceed
			// kernel.perf_event_mlock_kb.
			return fmt.Errorf("mmap perf fd %d (%d data pages): %w: %w", fd, dataPages, ErrPermission, err)
		}
		return fmt.Errorf("mmap perf fd %d (%d data pages): %w", fd, dataPages, err)
	}
	defer func() {
		if err != nil {
			unix.Munmap(mem)
		}
	}()

	ring, err := newMmapRing(mem, fd, cookie)
	if err != nil {
		return fmt.Errorf("add perf fd %d: %w", fd, err)
	}
	return r.addRingLocked(ring)
}

// addRingLocked registers ring with epoll and takes ownership of its mapping.
// Tests use it directly with fake rings in anonymous memory.
func (r *Reader) addRingLocked(ring *mmapRing) error {
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(ring.fd), Pad: int32(len(r.rings) + 1)}
	if err := unix.EpollCtl(r.epfd, unix.EPOLL_CTL_ADD, ring.fd, &ev); err != nil {
		return fmt.Errorf("epoll add perf fd %d: %w", ring.fd, err)
	}
	ring.polled = true
	r.rings = append(r.rings, ring)
	return nil
}

// SetDeadline makes ReadInto return an error wrapping
// os.ErrDeadlineExceeded once t has passed and every ring is drained. The
// zero time means no deadline; a time in the past drains the rings without
// blocking. It takes effect at once, also for a ReadInto that is blocked.
func (r *Reader) SetDeadline(t time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.deadline = t
	if !r.closed.Load() {
		r.wake()
	}
}

// Lost is the total of the lost counts of every PERF_RECORD_LOST read so far.
func (r *Reader) Lost() uint64 {
	return r.lost.Load()
}

// Close unmaps every ring and releases the Reader's epoll and eventfd. A
// blocked ReadInto returns ErrClosed, and so does every later one. Close is
// idempotent. It does not close the perf event fds.
func (r *Reader) Close() error {
	r.mu.Lock()
	if r.closed.Swap(true) {
		r.mu.Unlock()
		return nil
	}
	// A wait in flight wakes up and, having reset the eventfd, still sees
	// closed; later ReadInto calls see it before they wait.
	r.wake()
	r.mu.Unlock()

	r.readMu.Lock()
	defer r.readMu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()

	var errs []error
	for _, ring := range r.rings {
		if err := unix.Munmap(ring.mem); err != nil {
			errs = append(errs, fmt.Errorf("munmap ring with cookie %d: %w", ring.cookie, err))
		}
		ring.mem, ring.data, ring.meta = nil, nil, nil
	}
	r.rings = nil
	r.pending = nil
	if err := unix.Close(r.epfd); err != nil {
		errs = append(errs, fmt.Errorf("close epoll: %w", err))
	}
	if err := unix.Close(r.wakeFd); err != nil {
		errs = append(errs, fmt.Errorf("close eventfd: %w", err))
	}
	r.epfd, r.wakeFd = -1, -1
	return errors.Join(errs...)
}

// wake makes the eventfd readable. Called with mu held, which keeps wakeFd
// open (and its number from being reused) for the duration.
func (r *Reader) wake() {
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	// EAGAIN means the counter is already huge, so the fd is readable anyway.
	_, _ = unix.Write(r.wakeFd, one[:])
}

// ReadInto copies the next record into rec, reusing rec.Data. It blocks until
// a record is available in any ring, the deadline passes (an error wrapping
// os.ErrDeadlineExceeded, returned only once every ring is drained) or Close
// is called (ErrClosed). Records of one ring come in ring order; rings are
// not interleaved fairly.
//
// PERF_RECORD_LOST records are counted into Lost and still returned.
func (r *Reader) ReadInto(rec *Record) error {
	r.readMu.Lock()
	defer r.readMu.Unlock()

	for {
		if r.closed.Load() {
			return fmt.Errorf("perf reader: %w", ErrClosed)
		}
		if len(r.pending) == 0 {
			if err := r.pendingErr; err != nil {
				r.pendingErr = nil
				return err
			}
			if r.flushing {
				r.flushing = false
				return ErrFlushed
			}
			if err := r.wait(); err != nil {
				return err
			}
			continue
		}

		ring := r.pending[len(r.pending)-1]
		ok, err := ring.next(rec)
		if err != nil {
			return err
		}
		if !ok {
			r.pending = r.pending[:len(r.pending)-1]
			if ring.hup && ring.polled {
				r.unpoll(ring)
			}
			continue
		}
		rec.Pass = r.passNs
		if rec.Type == unix.PERF_RECORD_LOST {
			if _, n, err := DecodeLost(rec.Data); err == nil {
				r.lost.Add(n)
			}
		}
		return nil
	}
}

// unpoll takes a hung-up ring out of the epoll set once it is drained: the
// kernel reports EPOLLHUP on every wait for an event whose task has exited,
// so leaving it in would make every wait return at once. Its mapping stays,
// and every later wake-up still loads its head, so data the kernel writes
// after the hang-up is not lost.
func (r *Reader) unpoll(ring *mmapRing) {
	ring.polled = false
	r.mu.Lock()
	defer r.mu.Unlock()
	// ENOENT or EBADF means the fd already left the set (closed by the
	// caller); there is nothing left to undo.
	_ = unix.EpollCtl(r.epfd, unix.EPOLL_CTL_DEL, ring.fd, nil)
}

// wait blocks in epoll_wait until something is ready, then queues every ring
// for draining with a fresh head. On timeout it queues them too and records
// the deadline error for when they are drained.
func (r *Reader) wait() error {
	for {
		r.mu.Lock()
		deadline := r.deadline
		r.mu.Unlock()

		n, err := unix.EpollWait(r.epfd, r.events, epollTimeout(deadline))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("epoll wait: %w", err)
		}

		woken := r.takeEvents(n)
		if r.closed.Load() {
			return fmt.Errorf("perf reader: %w", ErrClosed)
		}
		flush := r.flushReq.Swap(false)
		if woken && n == 1 && !flush {
			// Only the deadline changed: wait again with the new one.
			continue
		}
		r.flushing = r.flushing || flush
		if n == 0 || (!deadline.IsZero() && !time.Now().Before(deadline)) {
			// Checked also when rings are ready, so that a producer that
			// keeps writing cannot stretch the drain past the deadline
			// forever: what is published now is returned, then the error.
			r.pendingErr = fmt.Errorf("perf reader: %w", os.ErrDeadlineExceeded)
		}
		r.queueEveryRing()
		return nil
	}
}

// epollTimeout is epoll_wait's timeout, in milliseconds, until deadline;
// -1 (none) for the zero time.
func epollTimeout(deadline time.Time) int {
	if deadline.IsZero() {
		return -1
	}
	d := time.Until(deadline)
	switch {
	case d <= 0:
		return 0
	case d >= math.MaxInt32*time.Millisecond:
		return math.MaxInt32
	}
	// Round up: returning before the deadline would report it exceeded
	// early.
	return int((d + time.Millisecond - 1) / time.Millisecond)
}

// takeEvents marks the rings that the first n events of the last
// epoll_wait report hung up, and says whether the Reader's eventfd was
// among them, reading it empty if so.
func (r *Reader) takeEvents(n int) (woken bool) {
	r.mu.Lock()
	for _, ev := range r.events[:n] {
		if ev.Pad == wakeToken {
			woken = true
			continue
		}
		if ev.Events&(unix.EPOLLHUP|unix.EPOLLERR) != 0 {
			if i := int(ev.Pad) - 1; i >= 0 && i < len(r.rings) {
				r.rings[i].hup = true
			}
		}
	}
	if woken {
		// Reset the counter before looking at closed: a Close after the
		// reset makes the fd readable again.
		var buf [8]byte
		_, _ = unix.Read(r.wakeFd, buf[:])
	}
	r.mu.Unlock()
	return woken
}

// queueEveryRing loads the head of every ring and queues it for draining.
// A wake-up is expensive; make the most of it by looking at every ring,
// including hung-up ones that are no longer polled.
func (r *Reader) queueEveryRing() {
	r.passNs = monotonicNs()
	r.mu.Lock()
	for _, ring := range r.rings {
		ring.loadHead()
		r.pending = append(r.pending, ring)
	}
	r.mu.Unlock()
}

func monotonicNs() uint64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return uint64(ts.Nano())
}
