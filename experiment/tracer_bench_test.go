package experiment

import (
	"encoding/binary"
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cowtrace/cowtrace/perfevents"
	"github.com/cowtrace/cowtrace/report"
)

// sampleRecord builds a PERF_RECORD_SAMPLE body of sampleType for
// tracepoint tp, with a raw payload of rawSize bytes whose fields are set.
func sampleRecord(tp uint64, rawSize int, set func(raw []byte)) perfevents.Record {
	raw := make([]byte, rawSize)
	binary.NativeEndian.PutUint16(raw, uint16(tp)) // common_type
	set(raw)
	// u32 size + raw, padded so that they end on 8 bytes, as the kernel does.
	padded := (4 + rawSize + 7) &^ 7
	data := make([]byte, padded)
	binary.NativeEndian.PutUint32(data, uint32(padded-4))
	copy(data[4:], raw)
	return perfevents.Record{Type: unix.PERF_RECORD_SAMPLE, Data: data}
}

func putField(raw []byte, f perfevents.Field, v uint64) {
	switch f.Size {
	case 8:
		binary.NativeEndian.PutUint64(raw[f.Offset:], v)
	case 4:
		binary.NativeEndian.PutUint32(raw[f.Offset:], uint32(v))
	}
}

// BenchmarkTracerHandle is the tracer's user-space cost per record of a
// copy-on-write fault: a write-protect fault sample followed by the
// allocation of the copy, as they arrive in a writer's ring. It uses this
// kernel's tracepoint formats, hence root.
func BenchmarkTracerHandle(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root (tracefs formats)")
	}
	caps, err := detect()
	if err != nil {
		b.Fatal(err)
	}
	defer caps.close()
	if caps.fault == nil || caps.alloc == nil {
		b.Skipf("needs exceptions:page_fault_user and kmem:mm_page_alloc: %v", caps.unavailable)
	}
	t := &tracer{caps: caps, mode: ModeClassify}
	var counts processCounts
	t.streams = []*taskStream{{counts: &counts}}
	t.region = report.Region{Start: 0x7f0000000000, Length: 1 << 30}

	const rawSize = 64 // larger than either tracepoint's payload
	fault := sampleRecord(caps.fault.id, rawSize, func(raw []byte) {
		putField(raw, caps.fault.address, 0x7f0000001000)
		putField(raw, caps.fault.errorCode, 7)
	})
	alloc := sampleRecord(caps.alloc.id, rawSize, func(raw []byte) {
		putField(raw, caps.alloc.order, 0)
		putField(raw, caps.alloc.gfp, caps.alloc.rule.highuserMovable)
	})
	var s perfevents.Sample
	b.ReportAllocs()
	for b.Loop() {
		if err := t.handle(&fault, &s); err != nil {
			b.Fatal(err)
		}
		if err := t.handle(&alloc, &s); err != nil {
			b.Fatal(err)
		}
	}
	if counts.inRegion.WP == 0 || counts.inRegion.InferredCopies != counts.inRegion.WP {
		b.Fatalf("classified %+v: every fault should be a wp fault with a copy", counts.inRegion)
	}
}
