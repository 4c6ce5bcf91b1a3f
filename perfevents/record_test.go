package perfevents

import (
	"bytes"
	"encoding/binary"
	"errors"
	"reflect"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// recBuf builds record bodies field by field, little-endian as on the x86_64
// and arm64 kernels cowtrace runs on.
type recBuf []byte

func (b recBuf) u32(v uint32) recBuf { return binary.LittleEndian.AppendUint32(b, v) }
func (b recBuf) u64(v uint64) recBuf { return binary.LittleEndian.AppendUint64(b, v) }
func (b recBuf) raw(p ...byte) recBuf {
	return append(b, p...)
}

// requireLittleEndian skips byte-literal tests on big-endian hosts, where the
// kernel writes records in the other byte order.
func requireLittleEndian(t testing.TB) {
	t.Helper()
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		t.Skipf("records are hand-built little-endian; this host is big-endian")
	}
}

// checkTruncations asserts that every strict prefix of body fails with
// ErrTruncated (and does not panic).
func checkTruncations(t *testing.T, body []byte, decode func([]byte) error) {
	t.Helper()
	for n := range len(body) {
		if err := decode(body[:n]); !errors.Is(err, ErrTruncated) {
			t.Errorf("%d of %d bytes: err = %v, want ErrTruncated", n, len(body), err)
		}
	}
}

func TestDecodeSampleAllFields(t *testing.T) {
	requireLittleEndian(t)
	const st = unix.PERF_SAMPLE_IDENTIFIER | unix.PERF_SAMPLE_IP | unix.PERF_SAMPLE_TID |
		unix.PERF_SAMPLE_TIME | unix.PERF_SAMPLE_ADDR | unix.PERF_SAMPLE_ID |
		unix.PERF_SAMPLE_STREAM_ID | unix.PERF_SAMPLE_CPU | unix.PERF_SAMPLE_PERIOD |
		unix.PERF_SAMPLE_RAW
	body := recBuf(nil).
		u64(0x11).               // identifier
		u64(0xffffffff81000000). // ip
		u32(100).u32(101).       // pid, tid
		u64(123456789).          // time
		u64(0x7f0000001000).     // addr
		u64(0x22).               // id
		u64(0x33).               // stream_id
		u32(1).u32(0xdead).      // cpu, res
		u64(1).                  // period
		u32(12).                 // raw size: 4 + 12 bytes end 8-aligned
		raw('a', 'b', 'c', 'd', 5, 6, 7, 8, 9, 10, 0, 0)

	var s Sample
	if err := DecodeSample(body, st, &s); err != nil {
		t.Fatal(err)
	}
	want := Sample{
		Identifier: 0x11, IP: 0xffffffff81000000, Pid: 100, Tid: 101, Time: 123456789,
		Addr: 0x7f0000001000, ID: 0x22, StreamID: 0x33, CPU: 1, Period: 1,
	}
	raw := s.Raw
	s.Raw = nil
	if !reflect.DeepEqual(s, want) {
		t.Errorf("got %+v\nwant %+v", s, want)
	}
	if !bytes.Equal(raw, []byte{'a', 'b', 'c', 'd', 5, 6, 7, 8, 9, 10, 0, 0}) {
		t.Errorf("raw = %q", raw)
	}
	if &raw[0] != &body[len(body)-12] {
		t.Errorf("Raw is a copy, want it to alias the record")
	}
	checkTruncations(t, body, func(b []byte) error { return DecodeSample(b, st, &s) })
}

func TestDecodeSamplePageFaultLayout(t *testing.T) {
	requireLittleEndian(t)
	// A PERF_COUNT_SW_PAGE_FAULTS sample with IDENTIFIER|TID|ADDR, bytes as
	// the kernel lays them out.
	body := []byte{
		0x2a, 0, 0, 0, 0, 0, 0, 0, // identifier 42
		0x39, 0x30, 0, 0, 0x3a, 0x30, 0, 0, // pid 12345, tid 12346
		0x00, 0x30, 0xa5, 0xf7, 0xff, 0x7f, 0, 0, // addr 0x7ffff7a53000
	}
	var s Sample
	err := DecodeSample(body, unix.PERF_SAMPLE_IDENTIFIER|unix.PERF_SAMPLE_TID|unix.PERF_SAMPLE_ADDR, &s)
	if err != nil {
		t.Fatal(err)
	}
	if s.Identifier != 42 || s.Pid != 12345 || s.Tid != 12346 || s.Addr != 0x7ffff7a53000 || s.IP != 0 || s.Raw != nil {
		t.Errorf("got %+v", s)
	}
}

func TestDecodeSampleClearsStaleFields(t *testing.T) {
	requireLittleEndian(t)
	s := Sample{IP: 1, Time: 2, Raw: []byte{1}}
	if err := DecodeSample(recBuf(nil).u64(7), unix.PERF_SAMPLE_ADDR, &s); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(s, Sample{Addr: 7}) {
		t.Errorf("got %+v, want only Addr set", s)
	}
}

func TestDecodeSampleRawSizeBeyondRecord(t *testing.T) {
	requireLittleEndian(t)
	body := recBuf(nil).u32(0xffffffff).raw(1, 2, 3, 4)
	var s Sample
	if err := DecodeSample(body, unix.PERF_SAMPLE_RAW, &s); !errors.Is(err, ErrTruncated) {
		t.Errorf("err = %v, want ErrTruncated", err)
	}
}

// TestDecodeSampleCallchain: the kernel's frames come between PERIOD and
// RAW, counted by a u64, and a count beyond the record is truncation.
func TestDecodeSampleCallchain(t *testing.T) {
	requireLittleEndian(t)
	body := recBuf(nil).u64(7).u64(3).u64(0xffffffffffffff80).u64(0xffffffff81000010).u64(0xffffffff81000020).u32(4).raw(1, 2, 3, 4)
	var s Sample
	if err := DecodeSample(body, unix.PERF_SAMPLE_IDENTIFIER|unix.PERF_SAMPLE_CALLCHAIN|unix.PERF_SAMPLE_RAW, &s); err != nil {
		t.Fatal(err)
	}
	if s.Identifier != 7 || s.Frames() != 3 || s.Frame(0) != 0xffffffffffffff80 || s.Frame(2) != 0xffffffff81000020 || len(s.Raw) != 4 {
		t.Errorf("decoded %+v, %d frames", s, s.Frames())
	}
	long := recBuf(nil).u64(1 << 40).u64(1)
	if err := DecodeSample(long, unix.PERF_SAMPLE_CALLCHAIN, &s); !errors.Is(err, ErrTruncated) {
		t.Errorf("a callchain longer than the record: err = %v, want ErrTruncated", err)
	}
}

// TestDecodeSampleRead: PERF_SAMPLE_READ is a group read (GroupReadFormat):
// nr, time enabled and running, then value and id per member, between
// PERIOD and CALLCHAIN; a member count beyond the record is truncation.
func TestDecodeSampleRead(t *testing.T) {
	requireLittleEndian(t)
	body := recBuf(nil).u64(7).u32(100).u32(101).u64(5000).u64(2).u64(40).u64(30).u64(1).u64(11).u64(25).u64(12)
	var s Sample
	if err := DecodeSample(body, unix.PERF_SAMPLE_IDENTIFIER|unix.PERF_SAMPLE_TID|unix.PERF_SAMPLE_TIME|unix.PERF_SAMPLE_READ, &s); err != nil {
		t.Fatal(err)
	}
	if s.Tid != 101 || s.Time != 5000 || s.Read.Len() != 2 || s.Read.Enabled != 40 || s.Read.Running != 30 {
		t.Fatalf("decoded %+v", s)
	}
	if v, id := s.Read.Value(1); v != 25 || id != 12 {
		t.Errorf("member 1: %d (id %d), want 25 (id 12)", v, id)
	}
	long := recBuf(nil).u64(1 << 40).u64(0).u64(0)
	if err := DecodeSample(long, unix.PERF_SAMPLE_READ, &s); !errors.Is(err, ErrTruncated) {
		t.Errorf("a group larger than the record: err = %v, want ErrTruncated", err)
	}
}

func TestDecodeSampleUnsupportedBits(t *testing.T) {
	var s Sample
	for _, bit := range []uint64{unix.PERF_SAMPLE_BRANCH_STACK, unix.PERF_SAMPLE_REGS_USER, 1 << 40} {
		err := DecodeSample(make([]byte, 64), unix.PERF_SAMPLE_IP|bit, &s)
		if !errors.Is(err, ErrUnsupportedFormat) {
			t.Errorf("bit %#x: err = %v, want ErrUnsupportedFormat", bit, err)
		}
	}
}

func TestDecodeLost(t *testing.T) {
	requireLittleEndian(t)
	// sample_id_all trailers after the fixed fields are ignored.
	body := recBuf(nil).u64(9).u64(1234).u64(0xabc)
	id, lost, err := DecodeLost(body)
	if err != nil || id != 9 || lost != 1234 {
		t.Errorf("DecodeLost = %d, %d, %v; want 9, 1234, nil", id, lost, err)
	}
	checkTruncations(t, body[:16], func(b []byte) error { _, _, err := DecodeLost(b); return err })
}

func TestDecodeThrottle(t *testing.T) {
	requireLittleEndian(t)
	body := recBuf(nil).u64(5000).u64(3).u64(4)
	tm, id, sid, err := DecodeThrottle(body)
	if err != nil || tm != 5000 || id != 3 || sid != 4 {
		t.Errorf("DecodeThrottle = %d, %d, %d, %v; want 5000, 3, 4, nil", tm, id, sid, err)
	}
	checkTruncations(t, body, func(b []byte) error { _, _, _, err := DecodeThrottle(b); return err })
}

func TestDecodeFork(t *testing.T) {
	requireLittleEndian(t)
	body := recBuf(nil).u32(200).u32(100).u32(201).u32(101).u64(777)
	pid, ppid, tid, ptid, tm, err := DecodeFork(body)
	if err != nil || pid != 200 || ppid != 100 || tid != 201 || ptid != 101 || tm != 777 {
		t.Errorf("DecodeFork = %d %d %d %d %d %v", pid, ppid, tid, ptid, tm, err)
	}
	checkTruncations(t, body, func(b []byte) error { _, _, _, _, _, err := DecodeFork(b); return err })
}

func TestDecodeComm(t *testing.T) {
	requireLittleEndian(t)
	// "sleep" padded with NULs to 8 bytes, then a sample_id_all trailer
	// whose bytes must not leak into the name.
	body := recBuf(nil).u32(42).u32(43).raw('s', 'l', 'e', 'e', 'p', 0, 0, 0).u64(0x4141414141414141)
	pid, tid, comm, err := DecodeComm(body)
	if err != nil || pid != 42 || tid != 43 || string(comm) != "sleep" {
		t.Fatalf("DecodeComm = %d, %d, %q, %v; want 42, 43, \"sleep\", nil", pid, tid, comm, err)
	}
	if &comm[0] != &body[8] {
		t.Errorf("comm is a copy, want it to alias the record")
	}
	// A 15-byte name (TASK_COMM_LEN-1) fills its 16 bytes but one NUL.
	long := recBuf(nil).u32(1).u32(1).raw([]byte("abcdefghijklmno\x00")...)
	if _, _, comm, err := DecodeComm(long); err != nil || string(comm) != "abcdefghijklmno" {
		t.Errorf("DecodeComm(15-byte name) = %q, %v", comm, err)
	}
	// Cutting before the name's NUL must fail, after it must not.
	checkTruncations(t, body[:14], func(b []byte) error { _, _, _, err := DecodeComm(b); return err })
	if _, _, comm, err := DecodeComm(body[:14]); err != nil || string(comm) != "sleep" {
		t.Errorf("DecodeComm(through the NUL) = %q, %v", comm, err)
	}
}

func TestDecodeRead(t *testing.T) {
	requireLittleEndian(t)
	all := uint64(unix.PERF_FORMAT_TOTAL_TIME_ENABLED | unix.PERF_FORMAT_TOTAL_TIME_RUNNING | unix.PERF_FORMAT_ID)
	body := recBuf(nil).u32(300).u32(301).u64(99).u64(1000).u64(900).u64(7)
	pid, tid, v, en, run, id, err := DecodeRead(body, all)
	if err != nil || pid != 300 || tid != 301 || v != 99 || en != 1000 || run != 900 || id != 7 {
		t.Errorf("DecodeRead(all) = %d %d %d %d %d %d %v", pid, tid, v, en, run, id, err)
	}
	checkTruncations(t, body, func(b []byte) error { _, _, _, _, _, _, err := DecodeRead(b, all); return err })

	// Without TOTAL_TIME_* the id directly follows the value.
	body = recBuf(nil).u32(300).u32(301).u64(99).u64(7)
	_, _, v, en, run, id, err = DecodeRead(body, unix.PERF_FORMAT_ID)
	if err != nil || v != 99 || en != 0 || run != 0 || id != 7 {
		t.Errorf("DecodeRead(ID) = %d %d %d %d %v", v, en, run, id, err)
	}

	for _, bit := range []uint64{unix.PERF_FORMAT_GROUP, unix.PERF_FORMAT_LOST} {
		if _, _, _, _, _, _, err := DecodeRead(make([]byte, 64), bit); !errors.Is(err, ErrUnsupportedFormat) {
			t.Errorf("read_format %#x: err = %v, want ErrUnsupportedFormat", bit, err)
		}
	}
}

func FuzzDecodeSample(f *testing.F) {
	f.Add([]byte{}, uint64(0))
	f.Add(make([]byte, 24), uint64(unix.PERF_SAMPLE_IDENTIFIER|unix.PERF_SAMPLE_TID|unix.PERF_SAMPLE_ADDR))
	f.Add([]byte{8, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8}, uint64(unix.PERF_SAMPLE_RAW))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 1}, uint64(unix.PERF_SAMPLE_RAW|unix.PERF_SAMPLE_CPU))
	f.Fuzz(func(t *testing.T, data []byte, sampleType uint64) {
		var s Sample
		if err := DecodeSample(data, sampleType, &s); err != nil {
			return
		}
		if sampleType&^decodeSampleBits != 0 {
			t.Fatalf("sample_type %#x accepted", sampleType)
		}
		if len(s.Raw) > 0 {
			base := uintptr(unsafe.Pointer(unsafe.SliceData(data)))
			raw := uintptr(unsafe.Pointer(unsafe.SliceData(s.Raw)))
			if raw < base || raw+uintptr(len(s.Raw)) > base+uintptr(len(data)) {
				t.Fatalf("Raw (%d bytes) does not alias data (%d bytes)", len(s.Raw), len(data))
			}
		}
	})
}

func BenchmarkDecodeSample(b *testing.B) {
	const st = unix.PERF_SAMPLE_IDENTIFIER | unix.PERF_SAMPLE_IP | unix.PERF_SAMPLE_TID |
		unix.PERF_SAMPLE_TIME | unix.PERF_SAMPLE_ADDR | unix.PERF_SAMPLE_CPU |
		unix.PERF_SAMPLE_PERIOD | unix.PERF_SAMPLE_RAW
	body := recBuf(nil).u64(1).u64(2).u32(3).u32(4).u64(5).u64(6).u32(0).u32(0).u64(1).
		u32(60).raw(make([]byte, 60)...)
	var s Sample
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if err := DecodeSample(body, st, &s); err != nil {
			b.Fatal(err)
		}
	}
}
