package perfevents

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/cowtrace/cowtrace/internal/testenv"
)

// fakePerfRing plays the kernel's side of a perf ring in anonymous memory:
// a metadata page, then a power-of-two data area, with records written and
// data_head published the way perf_output_end does it.
type fakePerfRing struct {
	mem  []byte
	meta *unix.PerfEventMmapPage
	data []byte
	head uint64
	// owned says a Reader took the mapping and unmaps it on Close.
	owned bool
}

func newFakePerfRing(t testing.TB, dataPages int) *fakePerfRing {
	t.Helper()
	ps := os.Getpagesize()
	return newFakePerfRingAt(t, 1+dataPages, ps, dataPages*ps)
}

// newFakePerfRingAt maps pages pages and puts the data area at off, like a
// kernel that does not start it right after the metadata page.
func newFakePerfRingAt(t testing.TB, pages, off, size int) *fakePerfRing {
	t.Helper()
	mem, err := unix.Mmap(-1, 0, pages*os.Getpagesize(), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakePerfRing{
		mem:  mem,
		meta: (*unix.PerfEventMmapPage)(unsafe.Pointer(&mem[0])),
		data: mem[off : off+size],
	}
	f.meta.Data_offset = uint64(off)
	f.meta.Data_size = uint64(size)
	t.Cleanup(func() {
		if !f.owned {
			unix.Munmap(f.mem)
		}
	})
	return f
}

func (f *fakePerfRing) put(pos uint64, p []byte) {
	start := pos & uint64(len(f.data)-1)
	n := copy(f.data[start:], p)
	copy(f.data, p[n:])
}

// write appends a record without publishing it; false means it does not fit
// before the consumer's data_tail, where the kernel would count it lost.
func (f *fakePerfRing) write(typ uint32, misc uint16, body []byte) bool {
	size := uint64(perfHeaderSize + len(body))
	if uint64(len(f.data))-(f.head-atomic.LoadUint64(&f.meta.Data_tail)) < size {
		return false
	}
	var hdr [perfHeaderSize]byte
	binary.NativeEndian.PutUint32(hdr[0:], typ)
	binary.NativeEndian.PutUint16(hdr[4:], misc)
	binary.NativeEndian.PutUint16(hdr[6:], uint16(size))
	f.put(f.head, hdr[:])
	f.put(f.head+perfHeaderSize, body)
	f.head += size
	return true
}

func (f *fakePerfRing) publish() {
	atomic.StoreUint64(&f.meta.Data_head, f.head)
}

func (f *fakePerfRing) tail() uint64 {
	return atomic.LoadUint64(&f.meta.Data_tail)
}

// attach hands the fake ring to r, polled through fd.
func (f *fakePerfRing) attach(t testing.TB, r *Reader, fd, cookie int) {
	t.Helper()
	ring, err := newMmapRing(f.mem, fd, cookie)
	if err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.addRingLocked(ring); err != nil {
		t.Fatal(err)
	}
	f.owned = true
}

// readyFD is an eventfd that is always readable: a stand-in perf fd whose
// ring always has something to say.
func readyFD(t testing.TB) int {
	t.Helper()
	fd, err := unix.Eventfd(1, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// idleFD is an eventfd that never becomes readable.
func idleFD(t testing.TB) int {
	t.Helper()
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

func newTestReader(t testing.TB) *Reader {
	t.Helper()
	r, err := NewReader()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// body returns a record body of n bytes (a multiple of 8) that starts with
// seq, so that order and content can both be checked.
func seqBody(seq uint64, n int) []byte {
	b := make([]byte, n)
	binary.NativeEndian.PutUint64(b, seq)
	for i := 8; i < n; i++ {
		b[i] = byte(seq) + byte(i)
	}
	return b
}

// drain reads until the deadline error, calling fn for every record.
func drain(t *testing.T, r *Reader, fn func(*Record)) {
	t.Helper()
	var rec Record
	for {
		err := r.ReadInto(&rec)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return
		}
		if err != nil {
			t.Fatalf("ReadInto: %v", err)
		}
		fn(&rec)
	}
}

func TestRingWrapAround(t *testing.T) {
	f := newFakePerfRing(t, 1)
	ring, err := newMmapRing(f.mem, -1, 3)
	if err != nil {
		t.Fatal(err)
	}
	// 1008-byte records in a 4096-byte area: the fourth starts at 3024 and
	// the fifth header at 4032, so its body crosses the end of the area.
	const body = 1000
	var rec Record
	seq, want := uint64(0), uint64(0)
	for round := range 20 {
		for f.write(unix.PERF_RECORD_SAMPLE, uint16(round), seqBody(seq, body)) {
			seq++
		}
		f.publish()
		ring.loadHead()
		for {
			ok, err := ring.next(&rec)
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				break
			}
			if !bytes.Equal(rec.Data, seqBody(want, body)) {
				t.Fatalf("record %d: wrong body (ring position %d)", want, (ring.tail-1008)%4096)
			}
			if rec.Cookie != 3 || rec.Type != unix.PERF_RECORD_SAMPLE || rec.Misc != uint16(round) {
				t.Fatalf("record %d: cookie %d type %d misc %d", want, rec.Cookie, rec.Type, rec.Misc)
			}
			if f.tail() != ring.tail {
				t.Fatalf("data_tail %d not published after record (want %d)", f.tail(), ring.tail)
			}
			want++
		}
	}
	if want != seq || seq < 60 {
		t.Errorf("read %d records of %d written", want, seq)
	}
	if f.head < 10*4096 {
		t.Errorf("head %d: the ring did not wrap repeatedly", f.head)
	}
}

func TestRingDataOffset(t *testing.T) {
	ps := os.Getpagesize()
	// Metadata page, one page the ring must not read, then the data area.
	f := newFakePerfRingAt(t, 4, 2*ps, 2*ps)
	for i := ps; i < 2*ps; i++ {
		f.mem[i] = 0xff
	}
	ring, err := newMmapRing(f.mem, -1, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.write(unix.PERF_RECORD_SAMPLE, 0, seqBody(1, 16))
	f.publish()
	ring.loadHead()
	var rec Record
	if ok, err := ring.next(&rec); !ok || err != nil || !bytes.Equal(rec.Data, seqBody(1, 16)) {
		t.Fatalf("next = %v, %v, data %x", ok, err, rec.Data)
	}

	for _, bad := range []struct{ off, size uint64 }{
		{uint64(2 * ps), uint64(3 * ps)}, // past the mapping
		{uint64(ps), uint64(3 * ps)},     // not a power of two
		{8, uint64(ps)},                  // inside the metadata struct
	} {
		f.meta.Data_offset, f.meta.Data_size = bad.off, bad.size
		if _, err := newMmapRing(f.mem, -1, 0); err == nil {
			t.Errorf("data_offset %d data_size %d accepted", bad.off, bad.size)
		}
	}
}

func TestRingCorruptRecord(t *testing.T) {
	f := newFakePerfRing(t, 1)
	ring, err := newMmapRing(f.mem, -1, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.write(unix.PERF_RECORD_SAMPLE, 0, seqBody(1, 24))
	// Claim the record is larger than what is published.
	binary.NativeEndian.PutUint16(f.data[6:], 64)
	f.publish()
	ring.loadHead()
	var rec Record
	if _, err := ring.next(&rec); !errors.Is(err, ErrCorruptRing) {
		t.Fatalf("err = %v, want ErrCorruptRing", err)
	}
	if ok, err := ring.next(&rec); ok || err != nil {
		t.Errorf("after corruption: next = %v, %v; want the ring dropped", ok, err)
	}
	if f.tail() != f.head {
		t.Errorf("data_tail %d, want %d: dropped data must be released to the kernel", f.tail(), f.head)
	}
}

func TestReaderFakeRingsOrderCookiesLost(t *testing.T) {
	r := newTestReader(t)
	a, b := newFakePerfRing(t, 2), newFakePerfRing(t, 2)
	a.attach(t, r, readyFD(t), 10)
	b.attach(t, r, readyFD(t), 20)

	for i := range uint64(100) {
		a.write(unix.PERF_RECORD_SAMPLE, 0, seqBody(i, 32))
		b.write(unix.PERF_RECORD_SAMPLE, 0, seqBody(1000+i, 16))
	}
	lost := binary.NativeEndian.AppendUint64(binary.NativeEndian.AppendUint64(nil, 5), 17)
	b.write(unix.PERF_RECORD_LOST, 0, lost)
	a.publish()
	b.publish()

	next := map[int]uint64{10: 0, 20: 1000}
	lostRecords := 0
	r.SetDeadline(time.Now())
	drain(t, r, func(rec *Record) {
		if rec.Type == unix.PERF_RECORD_LOST {
			lostRecords++
			return
		}
		seq := binary.NativeEndian.Uint64(rec.Data)
		if seq != next[rec.Cookie] {
			t.Fatalf("cookie %d: record %d, want %d", rec.Cookie, seq, next[rec.Cookie])
		}
		next[rec.Cookie]++
	})
	if next[10] != 100 || next[20] != 1100 || lostRecords != 1 {
		t.Errorf("read up to %v and %d lost records", next, lostRecords)
	}
	if r.Lost() != 17 {
		t.Errorf("Lost() = %d, want 17", r.Lost())
	}
}

// The kernel wakes the reader for one ring; data published meanwhile in a
// ring that did not wake it (below its watermark) must still be read.
func TestReaderLoadsEveryRingOnWakeup(t *testing.T) {
	r := newTestReader(t)
	quiet, loud := newFakePerfRing(t, 1), newFakePerfRing(t, 1)
	quiet.attach(t, r, idleFD(t), 1)
	loud.attach(t, r, readyFD(t), 2)
	quiet.write(unix.PERF_RECORD_SAMPLE, 0, seqBody(1, 8))
	quiet.publish()

	r.SetDeadline(time.Now().Add(10 * time.Second))
	var rec Record
	if err := r.ReadInto(&rec); err != nil || rec.Cookie != 1 {
		t.Fatalf("ReadInto = %v, cookie %d; want the quiet ring's record", err, rec.Cookie)
	}
}

func TestReaderHangupDrainsThenStopsPolling(t *testing.T) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(p[0]) })
	r := newTestReader(t)
	f := newFakePerfRing(t, 1)
	f.attach(t, r, p[0], 1)
	for i := range uint64(5) {
		f.write(unix.PERF_RECORD_SAMPLE, 0, seqBody(i, 8))
	}
	f.publish()
	// Closing the write end makes the read end report EPOLLHUP on every
	// wait, as a perf fd does once its task has exited.
	unix.Close(p[1])

	n := 0
	r.SetDeadline(time.Now().Add(300 * time.Millisecond))
	var ru0, ru1 unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru0)
	start := time.Now()
	drain(t, r, func(*Record) { n++ })
	wall := time.Since(start)
	unix.Getrusage(unix.RUSAGE_SELF, &ru1)
	cpu := time.Duration(ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano())

	if n != 5 {
		t.Errorf("read %d records before the hang-up was handled, want 5", n)
	}
	if r.rings[0].polled {
		t.Errorf("hung-up fd still in the epoll set")
	}
	if wall < 250*time.Millisecond || cpu > wall/2 {
		t.Errorf("waited %v using %v of CPU: a hung-up fd must not make the wait spin", wall, cpu)
	}

	// Late data in the hung-up ring is found by the next wake-up.
	f.write(unix.PERF_RECORD_SAMPLE, 0, seqBody(99, 8))
	f.publish()
	r.SetDeadline(time.Now())
	var got []uint64
	drain(t, r, func(rec *Record) { got = append(got, binary.NativeEndian.Uint64(rec.Data)) })
	if len(got) != 1 || got[0] != 99 {
		t.Errorf("late records = %v, want [99]", got)
	}
}

func TestReaderCloseWakesBlockedRead(t *testing.T) {
	r := newTestReader(t)
	f := newFakePerfRing(t, 1)
	f.attach(t, r, idleFD(t), 1)
	done := make(chan error, 1)
	go func() {
		var rec Record
		done <- r.ReadInto(&rec)
	}()
	time.Sleep(50 * time.Millisecond)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, ErrClosed) {
			t.Errorf("blocked ReadInto = %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not wake a blocked ReadInto")
	}
	if err := r.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
	var rec Record
	if err := r.ReadInto(&rec); !errors.Is(err, ErrClosed) {
		t.Errorf("ReadInto after Close = %v, want ErrClosed", err)
	}
	if err := r.Add(idleFD(t), 1, 0); !errors.Is(err, ErrClosed) {
		t.Errorf("Add after Close = %v, want ErrClosed", err)
	}
	r.SetDeadline(time.Now()) // must not write to a closed (or reused) fd number
}

func TestReaderSetDeadlineWakesBlockedRead(t *testing.T) {
	r := newTestReader(t)
	f := newFakePerfRing(t, 1)
	f.attach(t, r, idleFD(t), 1)
	done := make(chan error, 1)
	go func() {
		var rec Record
		done <- r.ReadInto(&rec)
	}()
	time.Sleep(50 * time.Millisecond)
	// Data the blocked reader was never woken for must come out first.
	f.write(unix.PERF_RECORD_SAMPLE, 0, seqBody(1, 8))
	f.publish()
	r.SetDeadline(time.Now())
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("first ReadInto after SetDeadline = %v, want the pending record", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("SetDeadline did not wake a blocked ReadInto")
	}
	var rec Record
	if err := r.ReadInto(&rec); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("ReadInto on drained rings = %v, want ErrDeadlineExceeded", err)
	}
}

// Flush wakes a blocked ReadInto, which returns what was published without
// a wake-up, then ErrFlushed, with a pass no older than the Flush; reading
// goes on after it.
func TestReaderFlushWakesBlockedRead(t *testing.T) {
	r := newTestReader(t)
	f := newFakePerfRing(t, 1)
	f.attach(t, r, idleFD(t), 1)
	done := make(chan error, 2)
	var got []uint32
	go func() {
		var rec Record
		for {
			err := r.ReadInto(&rec)
			if err != nil {
				done <- err
				return
			}
			got = append(got, rec.Type)
		}
	}()
	time.Sleep(50 * time.Millisecond)
	f.write(unix.PERF_RECORD_SAMPLE, 0, seqBody(1, 8))
	f.publish()
	before := monotonicNs()
	r.Flush()
	select {
	case err := <-done:
		if !errors.Is(err, ErrFlushed) || len(got) != 1 {
			t.Fatalf("ReadInto = %v after %d records, want ErrFlushed after the pending one", err, len(got))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Flush did not wake a blocked ReadInto")
	}
	if p := r.PassNs(); p < before {
		t.Errorf("pass at %d, before the Flush at %d", p, before)
	}
	r.SetDeadline(time.Now())
	var rec Record
	if err := r.ReadInto(&rec); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("ReadInto after the flush = %v, want the deadline", err)
	}
}

// A tracer adds rings as processes and CPUs appear, while the reader blocks.
func TestReaderAddWhileBlocked(t *testing.T) {
	r := newTestReader(t)
	done := make(chan error, 1)
	var rec Record
	go func() { done <- r.ReadInto(&rec) }()
	time.Sleep(50 * time.Millisecond)
	f := newFakePerfRing(t, 1)
	f.write(unix.PERF_RECORD_SAMPLE, 0, seqBody(7, 8))
	f.publish()
	f.attach(t, r, readyFD(t), 5)
	select {
	case err := <-done:
		if err != nil || rec.Cookie != 5 {
			t.Errorf("ReadInto = %v, cookie %d; want the new ring's record", err, rec.Cookie)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a ring added during a blocked ReadInto was not read")
	}
}

func TestReaderFutureDeadline(t *testing.T) {
	r := newTestReader(t)
	const d = 100 * time.Millisecond
	start := time.Now()
	r.SetDeadline(start.Add(d))
	var rec Record
	if err := r.ReadInto(&rec); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("ReadInto = %v, want ErrDeadlineExceeded", err)
	}
	if el := time.Since(start); el < d {
		t.Errorf("returned after %v, before the %v deadline", el, d)
	}
}

func TestReaderAddRejectsBadSizes(t *testing.T) {
	r := newTestReader(t)
	for _, pages := range []int{0, -1, 3, 6} {
		if err := r.Add(idleFD(t), pages, 0); err == nil {
			t.Errorf("Add with %d data pages accepted", pages)
		}
	}
}

func TestReaderReadIntoNoAllocs(t *testing.T) {
	r := newTestReader(t)
	f := newFakePerfRing(t, 4)
	f.attach(t, r, readyFD(t), 1)
	body := seqBody(1, 24)
	var rec Record
	read := func() {
		if f.tail() == f.head {
			for f.write(unix.PERF_RECORD_SAMPLE, 0, body) {
			}
			f.publish()
		}
		if err := r.ReadInto(&rec); err != nil {
			t.Fatal(err)
		}
	}
	read() // sizes rec.Data
	if n := testing.AllocsPerRun(10000, read); n != 0 {
		t.Errorf("ReadInto allocates %v times per record in steady state", n)
	}
}

func BenchmarkReadInto(b *testing.B) {
	r := newTestReader(b)
	f := newFakePerfRing(b, 64)
	f.attach(b, r, readyFD(b), 1)
	// The size of a page-fault sample with IDENTIFIER|TID|ADDR.
	body := seqBody(1, 24)
	var rec Record
	b.ReportAllocs()
	b.SetBytes(int64(perfHeaderSize + len(body)))
	for b.Loop() {
		if f.tail() == f.head {
			b.StopTimer()
			for f.write(unix.PERF_RECORD_SAMPLE, 0, body) {
			}
			f.publish()
			b.StartTimer()
		}
		if err := r.ReadInto(&rec); err != nil {
			b.Fatal(err)
		}
	}
}

// Real-kernel tests.

const pageFaultSampleType = unix.PERF_SAMPLE_IDENTIFIER | unix.PERF_SAMPLE_TID | unix.PERF_SAMPLE_ADDR

// openPageFaults opens a disabled, user-only PERF_COUNT_SW_PAGE_FAULTS event
// sampling every fault of task pid (0: the calling thread).
func openPageFaults(t *testing.T, pid int, wakeup uint32) int {
	t.Helper()
	testenv.Require(t, testenv.Paranoid(2))
	attr := unix.PerfEventAttr{
		Type:        unix.PERF_TYPE_SOFTWARE,
		Config:      unix.PERF_COUNT_SW_PAGE_FAULTS,
		Sample:      1,
		Sample_type: pageFaultSampleType,
		Bits:        unix.PerfBitDisabled | unix.PerfBitExcludeKernel | unix.PerfBitExcludeHv,
		Wakeup:      wakeup,
	}
	attr.Size = uint32(unsafe.Sizeof(attr))
	fd, err := unix.PerfEventOpen(&attr, pid, -1, -1, unix.PERF_FLAG_FD_CLOEXEC)
	switch {
	case errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM):
		t.Skipf("needs root, CAP_PERFMON or kernel.perf_event_paranoid <= 2 to sample page faults: %v", err)
	case errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EOPNOTSUPP):
		t.Skipf("needs perf_event_open with software events: %v", err)
	case err != nil:
		t.Fatalf("perf_event_open: %v", err)
	}
	return fd
}

func ioctlPerf(t *testing.T, fd int, req uint) {
	t.Helper()
	if err := unix.IoctlSetInt(fd, req, 0); err != nil {
		t.Fatalf("perf ioctl %#x: %v", req, err)
	}
}

// freshPages maps n anonymous pages that have never been touched, without
// transparent huge pages, so that writing one byte per page faults exactly
// once per page.
func freshPages(t *testing.T, n int) []byte {
	t.Helper()
	mem, err := unix.Mmap(-1, 0, n*os.Getpagesize(), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(mem) })
	if err := unix.Madvise(mem, unix.MADV_NOHUGEPAGE); err != nil && !errors.Is(err, unix.EINVAL) {
		t.Fatal(err)
	}
	return mem
}

func touchPages(mem []byte) {
	ps := os.Getpagesize()
	for i := 0; i < len(mem); i += ps {
		mem[i] = 1
	}
}

func inMapping(mem []byte, addr uint64) bool {
	base := uint64(uintptr(unsafe.Pointer(&mem[0])))
	return addr >= base && addr < base+uint64(len(mem))
}

func TestReaderKernelPageFaults(t *testing.T) {
	// The event follows this thread only, so the goroutine must stay on it.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	const n = 200
	mem := freshPages(t, n)
	fd := openPageFaults(t, 0, 1)
	defer unix.Close(fd)
	r := newTestReader(t)
	if err := r.Add(fd, 64, 42); err != nil {
		t.Fatal(err)
	}

	ioctlPerf(t, fd, unix.PERF_EVENT_IOC_ENABLE)
	touchPages(mem)
	ioctlPerf(t, fd, unix.PERF_EVENT_IOC_DISABLE)

	tid := uint32(unix.Gettid())
	seen := make(map[uint64]bool)
	other := 0
	var s Sample
	r.SetDeadline(time.Now())
	drain(t, r, func(rec *Record) {
		if rec.Cookie != 42 {
			t.Fatalf("cookie %d, want 42", rec.Cookie)
		}
		if rec.Type != unix.PERF_RECORD_SAMPLE {
			t.Fatalf("record type %d, want only samples", rec.Type)
		}
		if err := DecodeSample(rec.Data, pageFaultSampleType, &s); err != nil {
			t.Fatal(err)
		}
		if !inMapping(mem, s.Addr) {
			other++ // the runtime faulting on this thread
			return
		}
		if s.Tid != tid || s.Pid != uint32(os.Getpid()) {
			t.Errorf("sample from pid %d tid %d, want %d/%d", s.Pid, s.Tid, os.Getpid(), tid)
		}
		page := s.Addr &^ uint64(os.Getpagesize()-1)
		if seen[page] {
			t.Errorf("page %#x faulted twice", page)
		}
		seen[page] = true
	})
	t.Logf("%d samples in the mapping, %d elsewhere", len(seen), other)
	if len(seen) != n {
		t.Errorf("%d samples in the mapping, want %d", len(seen), n)
	}
	if r.Lost() != 0 {
		t.Errorf("Lost() = %d with a ring large enough for every sample", r.Lost())
	}
}

func TestReaderKernelLost(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	// One data page holds 4096/32 = 128 page-fault samples.
	const n1, n2 = 1000, 20
	mem := freshPages(t, n1+n2)
	fd := openPageFaults(t, 0, 0)
	defer unix.Close(fd)
	r := newTestReader(t)
	if err := r.Add(fd, 1, 1); err != nil {
		t.Fatal(err)
	}

	ps := os.Getpagesize()
	ioctlPerf(t, fd, unix.PERF_EVENT_IOC_ENABLE)
	touchPages(mem[:n1*ps])
	inMap, lostRecords, lostSum := 0, 0, uint64(0)
	count := func(rec *Record) {
		switch rec.Type {
		case unix.PERF_RECORD_LOST:
			_, lost, err := DecodeLost(rec.Data)
			if err != nil {
				t.Fatal(err)
			}
			lostRecords++
			lostSum += lost
		case unix.PERF_RECORD_SAMPLE:
			var s Sample
			if err := DecodeSample(rec.Data, pageFaultSampleType, &s); err != nil {
				t.Fatal(err)
			}
			if inMapping(mem, s.Addr) {
				inMap++
			}
		}
	}
	r.SetDeadline(time.Now())
	drain(t, r, count)
	// The kernel writes PERF_RECORD_LOST at its next write after the ring
	// has room again.
	touchPages(mem[n1*ps:])
	ioctlPerf(t, fd, unix.PERF_EVENT_IOC_DISABLE)
	r.SetDeadline(time.Now())
	drain(t, r, count)

	t.Logf("%d samples in the mapping, %d PERF_RECORD_LOST for %d samples", inMap, lostRecords, lostSum)
	if lostRecords == 0 || r.Lost() == 0 {
		t.Fatalf("no PERF_RECORD_LOST after %d faults into a 1-page ring", n1)
	}
	if r.Lost() != lostSum {
		t.Errorf("Lost() = %d, the records returned say %d", r.Lost(), lostSum)
	}
	if uint64(inMap)+r.Lost() < n1+n2 {
		t.Errorf("%d samples + %d lost < %d faults", inMap, r.Lost(), n1+n2)
	}
}

// A traced process exits: its fd reports EPOLLHUP for good. The Reader must
// return what the process left in the ring and then stop polling the fd.
func TestReaderKernelTaskExitHangup(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skipf("needs sh to start a traced child: %v", err)
	}
	// The child waits for a line, so that the event is open before it
	// runs, then execs: the dynamic loader faults many pages in user mode.
	cmd := exec.Command(sh, "-c", "read _ && exec "+sh+" -c :")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	pid := cmd.Process.Pid

	fd := openPageFaults(t, pid, 1)
	defer unix.Close(fd)
	r := newTestReader(t)
	if err := r.Add(fd, 16, 1); err != nil {
		t.Fatal(err)
	}
	ioctlPerf(t, fd, unix.PERF_EVENT_IOC_ENABLE)
	fmt.Fprintln(stdin)
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v", err)
	}

	samples := 0
	r.SetDeadline(time.Now().Add(500 * time.Millisecond))
	drain(t, r, func(rec *Record) {
		var s Sample
		if rec.Type == unix.PERF_RECORD_SAMPLE && DecodeSample(rec.Data, pageFaultSampleType, &s) == nil && s.Pid == uint32(pid) {
			samples++
		}
	})
	t.Logf("%d samples from the exited child", samples)
	if samples == 0 {
		t.Errorf("no samples read from the exited child's ring")
	}
	if r.rings[0].polled {
		t.Errorf("fd of the exited task still polled after its ring was drained")
	}
}

func perfMappings(t *testing.T) int {
	t.Helper()
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(maps), "[perf_event]")
}

func TestReaderCloseLeaksNoFD(t *testing.T) {
	before := testenv.OpenFDs(t)
	r, err := NewReader()
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if after := testenv.OpenFDs(t); after != before {
		t.Fatalf("%d fds before NewReader, %d after Close", before, after)
	}

	mapsBefore := perfMappings(t)
	fd := openPageFaults(t, 0, 1)
	r, err = NewReader()
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Add(fd, 2, 0); err != nil {
		t.Fatal(err)
	}
	// A second Add of the same fd maps it again, then fails in epoll
	// (EEXIST): the failed Add must not keep its mapping.
	if err := r.Add(fd, 2, 1); err == nil {
		t.Fatal("second Add of the same fd accepted")
	}
	if m := perfMappings(t); m != mapsBefore+1 {
		t.Fatalf("%d [perf_event] mappings after one good and one failed Add, want %d", m, mapsBefore+1)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	unix.Close(fd)
	if after := testenv.OpenFDs(t); after != before {
		t.Errorf("%d fds before, %d after Close", before, after)
	}
	if m := perfMappings(t); m != mapsBefore {
		t.Errorf("%d [perf_event] mappings left after Close, want %d", m, mapsBefore)
	}
}
