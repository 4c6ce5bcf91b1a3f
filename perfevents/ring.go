package perfevents

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrCorruptRing: a ring's header says a record is larger than the data the
// kernel has published. The kernel never publishes half a record, so the
// ring is out of step (or not a perf ring) and its unread data is dropped.
var ErrCorruptRing = errors.New("perfevents: corrupt perf ring")

// perfHeaderSize is sizeof(struct perf_event_header): u32 type, u16 misc,
// u16 size, where size counts the header itself.
const perfHeaderSize = 8

// mmapRing is the consumer side of one perf ring buffer: the metadata page
// followed by a power-of-two data area, as mmap'd from the event fd.
type mmapRing struct {
	cookie int
	fd     int
	mem    []byte // the whole mapping, unmapped by the Reader's Close
	meta   *unix.PerfEventMmapPage
	data   []byte
	mask   uint64

	// head is the kernel's data_head as of the last loadHead; tail is our
	// read position, published to data_tail after every record.
	head, tail uint64

	// polled says the fd is still in the epoll set; hup says the kernel
	// reported EPOLLHUP and the fd leaves the set once the ring is drained.
	polled, hup bool
}

// newMmapRing interprets mem, a mapping of a perf event fd (or a fake of one
// in tests), as a ring buffer.
func newMmapRing(mem []byte, fd, cookie int) (*mmapRing, error) {
	pageSize := os.Getpagesize()
	if len(mem) < 2*pageSize {
		return nil, fmt.Errorf("perf ring of %d bytes: need a metadata page and a data page", len(mem))
	}
	// The metadata page is the kernel's struct perf_event_mmap_page; the
	// mapping is page-aligned and the struct smaller than a page.
	meta := (*unix.PerfEventMmapPage)(unsafe.Pointer(&mem[0]))

	off, size := atomic.LoadUint64(&meta.Data_offset), atomic.LoadUint64(&meta.Data_size)
	if size == 0 {
		// Kernels before 4.1 leave data_offset/data_size zero and put the
		// data area right after the metadata page.
		off, size = uint64(pageSize), uint64(len(mem)-pageSize)
	}
	if off < uint64(unsafe.Sizeof(*meta)) || off > uint64(len(mem)) || size > uint64(len(mem))-off {
		return nil, fmt.Errorf("perf ring: data_offset %d, data_size %d outside a %d-byte mapping", off, size, len(mem))
	}
	if size&(size-1) != 0 {
		// head and tail are free-running counters taken modulo the size
		// with a mask; the kernel only ever makes power-of-two areas.
		return nil, fmt.Errorf("perf ring: data_size %d is not a power of two", size)
	}

	return &mmapRing{
		cookie: cookie,
		fd:     fd,
		mem:    mem,
		meta:   meta,
		data:   mem[off : off+size : off+size],
		mask:   size - 1,
		head:   atomic.LoadUint64(&meta.Data_head),
		tail:   atomic.LoadUint64(&meta.Data_tail),
	}, nil
}

// loadHead snapshots data_head. The atomic load is the smp_rmb() that
// perf_event.h asks for: the record bytes below head are read after it.
func (rg *mmapRing) loadHead() {
	rg.head = atomic.LoadUint64(&rg.meta.Data_head)
}

// copyOut copies n bytes starting at ring position pos into dst, splitting
// the copy where the record wraps past the end of the data area.
func (rg *mmapRing) copyOut(dst []byte, pos uint64) {
	start := pos & rg.mask
	n := copy(dst, rg.data[start:])
	copy(dst[n:], rg.data)
}

// next copies the next record before head into rec and publishes the new
// tail. It returns false when the ring holds no record up to head.
func (rg *mmapRing) next(rec *Record) (bool, error) {
	avail := rg.head - rg.tail
	if avail == 0 {
		return false, nil
	}

	var hdr [perfHeaderSize]byte
	if avail < perfHeaderSize || avail > uint64(len(rg.data)) {
		return false, rg.corrupt(fmt.Errorf("%d bytes between tail and head", avail))
	}
	rg.copyOut(hdr[:], rg.tail)
	size := uint64(binary.NativeEndian.Uint16(hdr[6:]))
	if size < perfHeaderSize || size > avail {
		return false, rg.corrupt(fmt.Errorf("record size %d with %d bytes published", size, avail))
	}

	n := int(size - perfHeaderSize)
	if cap(rec.Data) < n {
		rec.Data = slices.Grow(rec.Data[:0], n)
	}
	rec.Data = rec.Data[:n]
	rg.copyOut(rec.Data, rg.tail+perfHeaderSize)
	rec.Cookie = rg.cookie
	rec.Type = binary.NativeEndian.Uint32(hdr[0:])
	rec.Misc = binary.NativeEndian.Uint16(hdr[4:])

	// The atomic store is the smp_mb() before writing data_tail: the copy
	// above must be done before the kernel may overwrite the space.
	rg.tail += size
	atomic.StoreUint64(&rg.meta.Data_tail, rg.tail)
	return true, nil
}

// corrupt drops everything up to head so that a broken ring does not return
// the same error forever, and reports why.
func (rg *mmapRing) corrupt(why error) error {
	rg.tail = rg.head
	atomic.StoreUint64(&rg.meta.Data_tail, rg.tail)
	return fmt.Errorf("ring with cookie %d: %w: %w", rg.cookie, why, ErrCorruptRing)
}
