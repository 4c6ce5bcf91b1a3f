package perfevents

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

var (
	// ErrTruncated: a record body is shorter than its type and the
	// attribute's sample_type or read_format say it must be.
	ErrTruncated = errors.New("perfevents: truncated record")
	// ErrUnsupportedFormat: sample_type or read_format has a bit whose field
	// this package cannot skip, so the fields after it cannot be located.
	ErrUnsupportedFormat = errors.New("perfevents: unsupported sample_type or read_format")
)

// Record is one record of a perf ring buffer.
type Record struct {
	// Cookie is the value given to [Reader.Add] for the ring it came from.
	Cookie int
	// Type is one of unix.PERF_RECORD_*.
	Type uint32
	Misc uint16
	// Data is the record body after the 8-byte perf_event_header, copied out
	// of the ring so that the kernel may reuse the space at once. It is
	// overwritten by the next ReadInto with the same Record.
	Data []byte
	// Pass is when (CLOCK_MONOTONIC, ns) the Reader loaded the heads of
	// every ring for the pass this record was read in. Once a record of a
	// later pass is returned, every ring has been drained up to what the
	// kernel had published at Pass, so every record stamped well before
	// Pass has been read: what a consumer needs to put the records of
	// several rings in time order (as perf's ordered events do by rounds).
	Pass uint64
}

// Sample is a decoded PERF_RECORD_SAMPLE. Fields whose sample_type bit is
// not set are zero.
type Sample struct {
	Identifier, IP uint64
	Pid, Tid       uint32
	Time, Addr     uint64
	ID, StreamID   uint64
	CPU            uint32
	Period         uint64
	// Callchain aliases the record's Data: the PERF_SAMPLE_CALLCHAIN
	// frames, 8 bytes each (see Frame), context markers such as
	// PERF_CONTEXT_KERNEL included.
	Callchain []byte
	// Raw aliases the record's Data. The kernel pads it so that the u32
	// size and the data together end on an 8-byte boundary, so it may end
	// with up to 7 padding bytes the producer never wrote.
	Raw []byte
	// Read is the PERF_SAMPLE_READ group of the event that sampled.
	Read GroupRead
}

// GroupRead is the PERF_SAMPLE_READ part of a sample of a group
// (PERF_FORMAT_GROUP|PERF_FORMAT_ID, optionally with the times). For an
// event that is inherited, the values are the sampling task's own (Linux
// 6.12): each task's copy of the group counts what that task did on that
// CPU, never its children.
type GroupRead struct {
	Enabled, Running uint64
	// values aliases the record's Data: value and id, 8 bytes each, per
	// member, the leader first.
	values []byte
}

// Len is the number of members read.
func (g GroupRead) Len() int { return len(g.values) / 16 }

// Value is member i's count and the id of the event it was opened as
// (inherited copies carry their parent's id).
func (g GroupRead) Value(i int) (value, id uint64) {
	return binary.NativeEndian.Uint64(g.values[16*i:]), binary.NativeEndian.Uint64(g.values[16*i+8:])
}

// GroupReadFormat is the read_format of every group cowtrace samples with
// PERF_SAMPLE_READ: the value and id of each member, and the times, which
// say whether a task ran on CPUs where the group was not (see
// engine's counting of tasks).
const GroupReadFormat = unix.PERF_FORMAT_GROUP | unix.PERF_FORMAT_ID |
	unix.PERF_FORMAT_TOTAL_TIME_ENABLED | unix.PERF_FORMAT_TOTAL_TIME_RUNNING

// decodeSampleBits are the sample_type bits DecodeSample understands. Every
// other bit adds a field somewhere in the middle of the record (READ,
// CALLCHAIN, BRANCH_STACK...) or after RAW, and the kernel gives no way to
// skip a field without knowing its layout, so they are refused rather than
// guessed.
const decodeSampleBits = unix.PERF_SAMPLE_IDENTIFIER | unix.PERF_SAMPLE_IP |
	unix.PERF_SAMPLE_TID | unix.PERF_SAMPLE_TIME | unix.PERF_SAMPLE_ADDR |
	unix.PERF_SAMPLE_ID | unix.PERF_SAMPLE_STREAM_ID | unix.PERF_SAMPLE_CPU |
	unix.PERF_SAMPLE_PERIOD | unix.PERF_SAMPLE_CALLCHAIN | unix.PERF_SAMPLE_RAW |
	unix.PERF_SAMPLE_READ

// bodyDecoder walks a record body. It latches the first short read so that the
// decoders can read every field unconditionally and check once at the end,
// and it never panics on short input.
type bodyDecoder struct {
	buf       []byte
	truncated bool
}

func (d *bodyDecoder) u64() uint64 {
	if b := d.bytes(8); b != nil {
		return binary.NativeEndian.Uint64(b)
	}
	return 0
}

func (d *bodyDecoder) u32() uint32 {
	if b := d.bytes(4); b != nil {
		return binary.NativeEndian.Uint32(b)
	}
	return 0
}

func (d *bodyDecoder) bytes(n uint32) []byte {
	if uint64(len(d.buf)) < uint64(n) {
		d.truncated = true
		d.buf = nil
		return nil
	}
	v := d.buf[:n:n]
	d.buf = d.buf[n:]
	return v
}

// entries reads nr entries of size bytes each. A count larger than the
// whole body (of bodyLen bytes) could hold is latched as truncated, before
// nr*size could overflow; after a short read it reads nothing more.
func (d *bodyDecoder) entries(nr, size uint64, bodyLen int) []byte {
	if nr > uint64(bodyLen)/size {
		d.truncated = true
		return nil
	}
	if d.truncated {
		return nil
	}
	return d.bytes(uint32(nr * size))
}

func (d *bodyDecoder) err(what string, n int) error {
	if d.truncated {
		return fmt.Errorf("decode %s from %d bytes: %w", what, n, ErrTruncated)
	}
	return nil
}

// DecodeSample parses the body of a PERF_RECORD_SAMPLE written for an event
// whose attr.sample_type is sampleType. It does not allocate; s.Raw aliases
// data. A sample_type with PERF_SAMPLE_READ is read as GroupReadFormat.
func DecodeSample(data []byte, sampleType uint64, s *Sample) error {
	*s = Sample{}
	if extra := sampleType &^ decodeSampleBits; extra != 0 {
		return fmt.Errorf("decode sample: sample_type bits %#x: %w", extra, ErrUnsupportedFormat)
	}
	d := bodyDecoder{buf: data}
	if sampleType&unix.PERF_SAMPLE_IDENTIFIER != 0 {
		s.Identifier = d.u64()
	}
	if sampleType&unix.PERF_SAMPLE_IP != 0 {
		s.IP = d.u64()
	}
	if sampleType&unix.PERF_SAMPLE_TID != 0 {
		s.Pid = d.u32()
		s.Tid = d.u32()
	}
	if sampleType&unix.PERF_SAMPLE_TIME != 0 {
		s.Time = d.u64()
	}
	if sampleType&unix.PERF_SAMPLE_ADDR != 0 {
		s.Addr = d.u64()
	}
	if sampleType&unix.PERF_SAMPLE_ID != 0 {
		s.ID = d.u64()
	}
	if sampleType&unix.PERF_SAMPLE_STREAM_ID != 0 {
		s.StreamID = d.u64()
	}
	if sampleType&unix.PERF_SAMPLE_CPU != 0 {
		s.CPU = d.u32()
		d.u32() // res
	}
	if sampleType&unix.PERF_SAMPLE_PERIOD != 0 {
		s.Period = d.u64()
	}
	if sampleType&unix.PERF_SAMPLE_READ != 0 {
		nr := d.u64()
		s.Read.Enabled = d.u64()
		s.Read.Running = d.u64()
		s.Read.values = d.entries(nr, 16, len(data))
	}
	if sampleType&unix.PERF_SAMPLE_CALLCHAIN != 0 {
		s.Callchain = d.entries(d.u64(), 8, len(data))
	}
	if sampleType&unix.PERF_SAMPLE_RAW != 0 {
		n := d.u32()
		if !d.truncated {
			s.Raw = d.bytes(n)
		}
	}
	return d.err("sample", len(data))
}

// Frames is the number of frames in the sample's callchain.
func (s *Sample) Frames() int { return len(s.Callchain) / 8 }

// Frame is frame i of the sample's callchain.
func (s *Sample) Frame(i int) uint64 { return binary.NativeEndian.Uint64(s.Callchain[8*i:]) }

// DecodeLost parses the body of a PERF_RECORD_LOST: the id of the event
// whose samples were dropped and how many were.
func DecodeLost(data []byte) (id, lost uint64, err error) {
	d := bodyDecoder{buf: data}
	id = d.u64()
	lost = d.u64()
	if err := d.err("lost record", len(data)); err != nil {
		return 0, 0, err
	}
	return id, lost, nil
}

// DecodeThrottle parses the body of a PERF_RECORD_THROTTLE or
// PERF_RECORD_UNTHROTTLE.
func DecodeThrottle(data []byte) (time, id, streamID uint64, err error) {
	d := bodyDecoder{buf: data}
	time = d.u64()
	id = d.u64()
	streamID = d.u64()
	if err := d.err("throttle record", len(data)); err != nil {
		return 0, 0, 0, err
	}
	return time, id, streamID, nil
}

// DecodeFork parses the body of a PERF_RECORD_FORK or PERF_RECORD_EXIT,
// which share one layout.
func DecodeFork(data []byte) (pid, ppid, tid, ptid uint32, time uint64, err error) {
	d := bodyDecoder{buf: data}
	pid = d.u32()
	ppid = d.u32()
	tid = d.u32()
	ptid = d.u32()
	time = d.u64()
	if err := d.err("fork/exit record", len(data)); err != nil {
		return 0, 0, 0, 0, 0, err
	}
	return pid, ppid, tid, ptid, time, nil
}

// DecodeComm parses the body of a PERF_RECORD_COMM. comm aliases data and
// stops before the first NUL: the kernel pads the name with NULs to an 8-byte
// boundary and, with sample_id_all, puts the sample_id fields after the
// padding.
func DecodeComm(data []byte) (pid, tid uint32, comm []byte, err error) {
	d := bodyDecoder{buf: data}
	pid = d.u32()
	tid = d.u32()
	if err := d.err("comm record", len(data)); err != nil {
		return 0, 0, nil, err
	}
	rest := d.buf
	end := bytes.IndexByte(rest, 0)
	if end < 0 {
		// The kernel always writes the terminating NUL; without it the
		// name's end, and so the record, is cut short.
		return 0, 0, nil, fmt.Errorf("decode comm record: no NUL after %d name bytes: %w", len(rest), ErrTruncated)
	}
	return pid, tid, rest[:end:end], nil
}

// Mmap is a PERF_RECORD_MMAP2: a mapping a task made (with Attr.Mmaps:
// executable ones and data ones, anonymous mappings included as "//anon").
type Mmap struct {
	Pid, Tid    uint32
	Addr, Len   uint64
	Pgoff       uint64
	Prot, Flags uint32
	Filename    string
}

// DecodeMmap2 parses the body of a PERF_RECORD_MMAP2.
func DecodeMmap2(data []byte) (Mmap, error) {
	d := bodyDecoder{buf: data}
	var m Mmap
	m.Pid, m.Tid = d.u32(), d.u32()
	m.Addr, m.Len, m.Pgoff = d.u64(), d.u64(), d.u64()
	d.u64() // maj, min (or build id size)
	d.u64() // ino
	d.u64() // ino_generation
	m.Prot, m.Flags = d.u32(), d.u32()
	if err := d.err("mmap2 record", len(data)); err != nil {
		return Mmap{}, err
	}
	end := bytes.IndexByte(d.buf, 0)
	if end < 0 {
		return Mmap{}, fmt.Errorf("decode mmap2 record: no NUL after the file name: %w", ErrTruncated)
	}
	m.Filename = string(d.buf[:end])
	return m, nil
}

// decodeReadBits are the read_format bits DecodeRead understands.
// PERF_FORMAT_GROUP changes the layout to a list, and PERF_FORMAT_LOST adds
// a count this signature has no place for.
const decodeReadBits = unix.PERF_FORMAT_TOTAL_TIME_ENABLED |
	unix.PERF_FORMAT_TOTAL_TIME_RUNNING | unix.PERF_FORMAT_ID

// DecodeRead parses the body of a PERF_RECORD_READ (sent for inherit_stat
// events when a child task exits) for a non-group attr.read_format.
func DecodeRead(data []byte, readFormat uint64) (pid, tid uint32, value, timeEnabled, timeRunning, id uint64, err error) {
	if extra := readFormat &^ decodeReadBits; extra != 0 {
		return 0, 0, 0, 0, 0, 0, fmt.Errorf("decode read record: read_format bits %#x: %w", extra, ErrUnsupportedFormat)
	}
	d := bodyDecoder{buf: data}
	pid = d.u32()
	tid = d.u32()
	value = d.u64()
	if readFormat&unix.PERF_FORMAT_TOTAL_TIME_ENABLED != 0 {
		timeEnabled = d.u64()
	}
	if readFormat&unix.PERF_FORMAT_TOTAL_TIME_RUNNING != 0 {
		timeRunning = d.u64()
	}
	if readFormat&unix.PERF_FORMAT_ID != 0 {
		id = d.u64()
	}
	if err := d.err("read record", len(data)); err != nil {
		return 0, 0, 0, 0, 0, 0, err
	}
	return pid, tid, value, timeEnabled, timeRunning, id, nil
}
