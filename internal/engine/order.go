package engine

import (
	"container/heap"
	"encoding/binary"

	"golang.org/x/sys/unix"

	"github.com/cowtrace/cowtrace/perfevents"
)

// orderSlack is how long after its timestamp a record may still be
// unpublished in its ring: the kernel stamps a record, then copies it in
// and publishes the ring's head, with preemption off. Microseconds on bare
// metal; a virtual CPU the hypervisor stops in between stretches it, so
// the margin is generous.
const orderSlack = 50_000_000 // 50 ms

// orderer puts the records of every ring in time order before they are
// applied, as perf's ordered events do. Each ring is in time order by
// itself (one CPU writes it), but a task's life crosses rings: its FORK in
// one, its samples in another, its EXIT in a third, and a pid used again (a
// wrapped pid, or the leader's pid that a thread takes when it execs) must
// not merge two tasks. A record is applied once no ring can still hold an
// earlier one: after a read pass that started orderSlack after its
// timestamp (perfevents.Record.Pass), or at the end.
type orderer struct {
	queues []recQueue // by ring cookie
	heads  ringHeap
	pass   uint64 // the pass of the records being queued
	// late counts records stamped before what was already applied.
	late    uint64
	applied uint64 // the time of the latest record applied
}

// recQueue is one ring's records not yet applied, in ring order, their
// bodies back to back in data.
type recQueue struct {
	data  []byte
	items []queued
	next  int // index of the first item not applied
}

type queued struct {
	ns       uint64
	typ      uint32
	misc     uint16
	off, end int
}

// ringHeap orders rings by the time of their first record not applied.
type ringHeap struct {
	q   []*recQueue
	idx []int
}

func (h ringHeap) Len() int { return len(h.idx) }
func (h ringHeap) Less(i, j int) bool {
	a, b := h.q[h.idx[i]], h.q[h.idx[j]]
	return a.items[a.next].ns < b.items[b.next].ns
}
func (h ringHeap) Swap(i, j int) { h.idx[i], h.idx[j] = h.idx[j], h.idx[i] }
func (h *ringHeap) Push(x any)   { h.idx = append(h.idx, x.(int)) }
func (h *ringHeap) Pop() any {
	x := h.idx[len(h.idx)-1]
	h.idx = h.idx[:len(h.idx)-1]
	return x
}

// recordTime is when a record was written: a sample's PERF_SAMPLE_TIME,
// which follows IDENTIFIER, IP where the event samples it (sampleType's),
// and TID in every sample of a session, or the sample_id_all trailer's
// (TID, TIME, IDENTIFIER) of every other record.
func recordTime(typ uint32, data []byte, sampleType func(id uint64) uint64) uint64 {
	if typ == unix.PERF_RECORD_SAMPLE {
		if len(data) < 8 {
			return 0
		}
		off := 16
		if sampleType(binary.NativeEndian.Uint64(data))&unix.PERF_SAMPLE_IP != 0 {
			off += 8
		}
		if len(data) < off+8 {
			return 0
		}
		return binary.NativeEndian.Uint64(data[off:])
	}
	t, _ := trailerTime(data)
	return t
}

// push queues rec, stamped ns; it returns true when rec starts a new pass,
// and the records up to the previous pass's start less orderSlack may be
// applied.
func (o *orderer) push(rec *perfevents.Record, ns uint64) (newPass uint64, ok bool) {
	for len(o.queues) <= rec.Cookie {
		o.queues = append(o.queues, recQueue{})
	}
	if rec.Pass != o.pass {
		newPass, ok = o.pass, o.pass != 0
		o.pass = rec.Pass
	}
	q := &o.queues[rec.Cookie]
	off := len(q.data)
	q.data = append(q.data, rec.Data...)
	q.items = append(q.items, queued{ns: ns, typ: rec.Type, misc: rec.Misc, off: off, end: len(q.data)})
	return newPass, ok
}

// flush applies, in time order, every queued record stamped before upTo
// (every record with ^uint64(0)).
func (o *orderer) flush(upTo uint64, apply func(rec *perfevents.Record)) {
	o.heads.q = o.heads.q[:0]
	for i := range o.queues {
		o.heads.q = append(o.heads.q, &o.queues[i])
	}
	o.heads.idx = o.heads.idx[:0]
	for i, q := range o.heads.q {
		if q.next < len(q.items) {
			o.heads.idx = append(o.heads.idx, i)
		}
	}
	heap.Init(&o.heads)
	var rec perfevents.Record
	for o.heads.Len() > 0 {
		i := o.heads.idx[0]
		q := o.heads.q[i]
		it := q.items[q.next]
		if it.ns >= upTo {
			break
		}
		if it.ns < o.applied {
			o.late++
		}
		o.applied = max(o.applied, it.ns)
		rec.Cookie, rec.Type, rec.Misc, rec.Data = i, it.typ, it.misc, q.data[it.off:it.end]
		apply(&rec)
		q.next++
		if q.next < len(q.items) {
			heap.Fix(&o.heads, 0)
		} else {
			heap.Pop(&o.heads)
		}
	}
	for i := range o.queues {
		q := &o.queues[i]
		if q.next == len(q.items) {
			// Applied in full: reuse the memory.
			q.data, q.items, q.next = q.data[:0], q.items[:0], 0
		} else if q.next > len(q.items)/2 {
			// Drop the applied half, so that a ring that always holds a
			// record beyond upTo does not grow without bound.
			base := q.items[q.next].off
			q.data = append(q.data[:0], q.data[base:]...)
			n := copy(q.items, q.items[q.next:])
			q.items = q.items[:n]
			for j := range q.items {
				q.items[j].off -= base
				q.items[j].end -= base
			}
			q.next = 0
		}
	}
}
