package engine

import (
	"encoding/binary"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cowtrace/cowtrace/internal/cow"
	"github.com/cowtrace/cowtrace/perfevents"
	"github.com/cowtrace/cowtrace/report"
)

// Event ids of the synthetic sessions.
const (
	idPageFaults = 1 + iota
	idMinor
	idMajor
	idFault
	idKernelFault
	idAlloc
	idWP   // kprobe do_wp_page
	idCopy // kprobe copy_mc_to_kernel
	idDummy
	idAllocStack // kmem:mm_page_alloc with its kernel stack
	idWPCount    // count mode's user-mode write-protect faults
	idKWPCount   // ... and kernel-mode ones
)

func format(t testing.TB, name string) *perfevents.Format {
	t.Helper()
	f, err := os.Open("testdata/" + name + ".format")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fm, err := perfevents.ParseFormat(f)
	if err != nil {
		t.Fatal(err)
	}
	return fm
}

// synthetic is a Session with the x86 tracepoints of the fixtures and no
// kernel behind it: records are fed to it by hand. inherited makes it a
// session of two CPU rings, else of one ring per task.
func synthetic(t testing.TB, inherited bool, copyRoutine string) *Session {
	t.Helper()
	tp := &cow.Tracepoints{}
	var err error
	if tp.Fault, err = cow.NewTracepoint("exceptions:page_fault_user", format(t, "page_fault_user"), "address", "error_code"); err != nil {
		t.Fatal(err)
	}
	if tp.KernelFault, err = cow.NewTracepoint("exceptions:page_fault_kernel", format(t, "page_fault_kernel"), "address", "error_code"); err != nil {
		t.Fatal(err)
	}
	al := format(t, "mm_page_alloc")
	if tp.Alloc, err = cow.NewTracepoint("kmem:mm_page_alloc", al, "order", "gfp_flags"); err != nil {
		t.Fatal(err)
	}
	tp.Rule = cow.AllocRuleOf(al)
	s := &Session{cfg: Config{StartAtExec: true, Counters: true}, tp: tp, mode: ModeClassify, ids: map[uint64]eventInfo{
		idPageFaults:  {kind: kindCounter, counter: 0},
		idMinor:       {kind: kindCounter, counter: 1},
		idMajor:       {kind: kindCounter, counter: 2},
		idFault:       {kind: kindFault},
		idKernelFault: {kind: kindKernelFault},
		idAlloc:       {kind: kindAlloc},
		idWP:          {kind: kindProbe, probe: cow.WPFunction},
		idCopy:        {kind: kindProbe, probe: "copy_mc_to_kernel"},
		idDummy:       {kind: kindDummy},
		idAllocStack:  {kind: kindAlloc, callchain: true},
	}, tasks: map[int]*Task{}, probeErrs: map[string]error{}, copyRoutine: copyRoutine,
		probeFns: []string{"copy_mc_to_kernel", cow.WPFunction}}
	if copyRoutine == "" {
		s.probeFns = nil
	}
	if inherited {
		s.cpus = []int{0, 1}
		s.rings = []ring{{tid: -1}, {tid: -1}}
	}
	return s
}

// trailer is the sample_id_all trailer: TID, TIME, IDENTIFIER.
func trailer(pid, tid uint32, tm, id uint64) []byte {
	b := binary.NativeEndian.AppendUint32(nil, pid)
	b = binary.NativeEndian.AppendUint32(b, tid)
	b = binary.NativeEndian.AppendUint64(b, tm)
	return binary.NativeEndian.AppendUint64(b, id)
}

type feeder struct {
	t testing.TB
	s *Session
}

func (f feeder) feed(cookie int, typ uint32, misc uint16, data []byte) {
	f.t.Helper()
	rec := perfevents.Record{Cookie: cookie, Type: typ, Misc: misc, Data: data}
	var smp perfevents.Sample
	if _, _, err := f.s.record(&rec, &smp); err != nil {
		f.t.Fatalf("record type %d: %v", typ, err)
	}
}

// sampleData is a PERF_RECORD_SAMPLE body of event id: IDENTIFIER, IP
// (kprobes), TID, TIME, ID, STREAM_ID and CPU (the software counters that
// have them), RAW (tracepoints, whose raw payload is a pair of fields at
// the fixtures' offsets).
func sampleData(s *Session, id uint64, pid, tid uint32, tm uint64, a, b uint64, stack ...uint64) []byte {
	d := binary.NativeEndian.AppendUint64(nil, id)
	info := s.ids[id]
	if info.kind == kindProbe {
		d = binary.NativeEndian.AppendUint64(d, a) // IP
	}
	d = binary.NativeEndian.AppendUint32(d, pid)
	d = binary.NativeEndian.AppendUint32(d, tid)
	d = binary.NativeEndian.AppendUint64(d, tm)
	for _, bit := range []uint64{unix.PERF_SAMPLE_ID, unix.PERF_SAMPLE_STREAM_ID, unix.PERF_SAMPLE_CPU} {
		if info.sampleType()&bit != 0 {
			d = binary.NativeEndian.AppendUint64(d, id) // CPU 0 in the low half
		}
	}
	if info.callchain {
		d = binary.NativeEndian.AppendUint64(d, uint64(len(stack)))
		for _, ip := range stack {
			d = binary.NativeEndian.AppendUint64(d, ip)
		}
	}
	if info.sampleType()&unix.PERF_SAMPLE_RAW != 0 {
		raw := make([]byte, 36)
		switch info.kind {
		case kindAlloc: // order at 16 (u32), gfp_flags at 24
			binary.NativeEndian.PutUint32(raw[16:], uint32(a))
			binary.NativeEndian.PutUint64(raw[24:], b)
		default: // address at 8, error_code at 24
			binary.NativeEndian.PutUint64(raw[8:], a)
			binary.NativeEndian.PutUint64(raw[24:], b)
		}
		d = binary.NativeEndian.AppendUint32(d, uint32(len(raw)))
		d = append(d, raw...)
	}
	return d
}

func (f feeder) sample(cookie int, id uint64, pid, tid uint32, tm uint64, a, b uint64, stack ...uint64) {
	f.t.Helper()
	f.feed(cookie, unix.PERF_RECORD_SAMPLE, 0, sampleData(f.s, id, pid, tid, tm, a, b, stack...))
}

func (f feeder) fork(cookie int, typ uint32, pid, ppid, tid, ptid uint32, tm uint64) {
	f.t.Helper()
	d := binary.NativeEndian.AppendUint32(nil, pid)
	d = binary.NativeEndian.AppendUint32(d, ppid)
	d = binary.NativeEndian.AppendUint32(d, tid)
	d = binary.NativeEndian.AppendUint32(d, ptid)
	d = binary.NativeEndian.AppendUint64(d, tm)
	f.feed(cookie, typ, 0, append(d, trailer(pid, tid, tm, idDummy)...))
}

func (f feeder) comm(cookie int, pid, tid uint32, name string, tm uint64, exec bool) {
	f.t.Helper()
	d := binary.NativeEndian.AppendUint32(nil, pid)
	d = binary.NativeEndian.AppendUint32(d, tid)
	c := make([]byte, (len(name)+8)&^7)
	copy(c, name)
	d = append(d, c...)
	var misc uint16
	if exec {
		misc = unix.PERF_RECORD_MISC_COMM_EXEC
	}
	f.feed(cookie, unix.PERF_RECORD_COMM, misc, append(d, trailer(pid, tid, tm, idDummy)...))
}

func (f feeder) lost(cookie int, n uint64) {
	f.t.Helper()
	d := binary.NativeEndian.AppendUint64(nil, idFault)
	d = binary.NativeEndian.AppendUint64(d, n)
	f.feed(cookie, unix.PERF_RECORD_LOST, 0, append(d, trailer(0, 0, 0, idFault)...))
}

const (
	movable = 0x100cca // GFP_HIGHUSER_MOVABLE
	zeroed  = 0x100    // __GFP_ZERO
	userPg  = 0x7f0000001000
	kernPg  = 0xffff888000001000
)

// TestForeignCounterSample: a sampled software counter's sample that
// carries another perf user's id in IDENTIFIER (the kernel stamps every
// software event firing at one fault with the first one's, from 6.3) is
// the counter its size names: minor and major faults here.
func TestForeignCounterSample(t *testing.T) {
	s := synthetic(t, true, "")
	s.AddRoot(100, 100, 1, "sh")
	f := feeder{t, s}
	for i, id := range []uint64{idMinor, idMinor, idMajor} {
		d := sampleData(s, id, 100, 100, uint64(1000+i), 0, 0)
		binary.NativeEndian.PutUint64(d, 999999) // a foreign IDENTIFIER
		f.feed(0, unix.PERF_RECORD_SAMPLE, 0, d)
	}
	if got := s.tasks[100].counters; got[1] != 2 || got[2] != 1 || s.foreignIDs != 3 {
		t.Errorf("minor, major faults %d, %d, told by size %d: want 2, 1 and 3", got[1], got[2], s.foreignIDs)
	}
}

// TestInheritedTree feeds the records of a command (pid 100) that forks a
// child (101), which execs and copies two pages, one of them in a system
// call: rows, names and the tree must follow, and kernel-mode faults on user
// addresses must show in kernel_mode and in wp_faults alike.
func TestInheritedTree(t *testing.T) {
	s := synthetic(t, true, "copy_mc_to_kernel")
	s.startNs = 1000
	s.AddRoot(100, 100, 1, "sh")
	f := feeder{t, s}
	f.comm(0, 100, 100, "prog", 1100, true)
	f.sample(0, idPageFaults, 100, 100, 1200, 0, 0)
	f.fork(0, unix.PERF_RECORD_FORK, 101, 100, 101, 100, 2000)
	// The child's records land on CPU 1.
	f.sample(1, idFault, 101, 101, 2100, userPg, 0x7)
	f.sample(1, idWP, 101, 101, 2101, 0xffffffff81000000, 0)
	f.sample(1, idAlloc, 101, 101, 2102, 0, movable)
	f.sample(1, idCopy, 101, 101, 2103, 0xffffffff81000100, 0)
	f.sample(1, idPageFaults, 101, 101, 2104, 0, 0)
	f.sample(1, idMinor, 101, 101, 2104, 0, 0)
	// read(2) into a shared buffer: a kernel-mode wp fault on a user page.
	f.sample(1, idKernelFault, 101, 101, 2200, userPg+0x1000, 0x3)
	f.sample(1, idAlloc, 101, 101, 2201, 0, movable)
	f.sample(1, idCopy, 101, 101, 2202, 0xffffffff81000100, 0)
	f.sample(1, idPageFaults, 101, 101, 2203, 0, 0)
	f.sample(1, idMinor, 101, 101, 2203, 0, 0)
	// The kernel's own fault on a vmalloc address is not the process's.
	f.sample(1, idKernelFault, 101, 101, 2300, kernPg, 0x3)
	// A first write: zeroed page, no copy.
	f.sample(1, idFault, 101, 101, 2400, userPg+0x2000, 0x6)
	f.sample(1, idAlloc, 101, 101, 2401, 0, movable|zeroed)
	f.comm(1, 101, 101, "worker", 2500, true)
	f.fork(1, unix.PERF_RECORD_EXIT, 101, 100, 101, 100, 3000)
	f.lost(0, 3)
	f.fork(0, unix.PERF_RECORD_EXIT, 100, 1, 100, 1, 4000)
	s.endNs = 5000

	tasks := s.Tasks()
	if len(tasks) != 2 {
		t.Fatalf("%d tasks, want 2", len(tasks))
	}
	child := tasks[1]
	if child.Ppid != 100 || child.ParentTid != 100 || !child.Exited || child.StartNs != 2000 || child.EndNs != 3000 {
		t.Errorf("child lineage %+v", *child)
	}
	if len(child.Execs) != 1 || child.Execs[0] != 2500 {
		t.Errorf("child execs %v, want [2500]", child.Execs)
	}
	if got := child.Comms; len(got) != 2 || got[0] != "prog" || got[1] != "worker" {
		t.Errorf("child names %q, want [prog worker]", got)
	}
	if root := tasks[0]; root.StartNs != 1100 || root.Comm() != "prog" {
		t.Errorf("root starts at %d named %q, want its exec at 1100 as prog", root.StartNs, root.Comm())
	}

	var r report.Process
	s.Row(&r, []int{101}, false)
	want := report.FaultClasses{WP: 2, WriteNotPresent: 1, InferredCopies: 2, KernelMode: 1}
	if r.Outside == nil || *r.Outside != want {
		t.Errorf("child's classes %+v, want %+v", r.Outside, want)
	}
	if r.InRegion != nil {
		t.Errorf("in_region %+v without a region", *r.InRegion)
	}
	if *r.WPFaults != 2 || *r.InferredCopies != 2 || *r.Copies != 2 || *r.PageFaults != 2 || *r.MinorFaults != 2 || *r.MajorFaults != 0 {
		t.Errorf("child: wp %d inferred %d copies %d faults %d/%d/%d", *r.WPFaults, *r.InferredCopies, *r.Copies,
			*r.PageFaults, *r.MinorFaults, *r.MajorFaults)
	}
	if r.Probes[cow.WPFunction] != 1 || r.Probes["copy_mc_to_kernel"] != 2 {
		t.Errorf("probes %v", r.Probes)
	}

	var run report.Run
	s.FillRun(&run, false)
	if run.LostRecords != 3 {
		t.Errorf("run lost %d, want 3", run.LostRecords)
	}
	for key, want := range map[string]string{
		"page_faults": "sampled:page-faults",
		"wp_faults":   "tracepoint:exceptions:page_fault_user+page_fault_kernel",
		"copies":      "kprobe:copy_mc_to_kernel",
	} {
		if run.Methods[key] != want {
			t.Errorf("methods[%s] = %q, want %q", key, run.Methods[key], want)
		}
	}
	if _, ok := run.Methods["in_region"]; ok {
		t.Error("in_region has a method without a region")
	}
}

// TestGatedRegion feeds a task's own ring: faults split by the region, the
// ring's lost records charged to that task's row, copies inferred without
// kprobes.
func TestGatedRegion(t *testing.T) {
	s := synthetic(t, false, "")
	s.region = report.Region{Start: userPg, Length: 0x2000}
	s.tasks[200] = &Task{Pid: 200, Tid: 200, Root: true, streams: map[int]*cow.Stream{}, probes: map[string]uint64{}}
	s.tasks[201] = &Task{Pid: 201, Tid: 201, Root: true, streams: map[int]*cow.Stream{}, probes: map[string]uint64{}}
	s.rings = []ring{{tid: 200}, {tid: 201}}
	f := feeder{t, s}
	for i := uint64(0); i < 2; i++ { // in the region, copied
		f.sample(1, idFault, 201, 201, 10+i, userPg+i*0x1000, 0x7)
		f.sample(1, idAlloc, 201, 201, 10+i, 0, movable)
	}
	f.sample(1, idFault, 201, 201, 20, userPg+0x5000, 0x7) // outside, reused
	f.sample(0, idFault, 200, 200, 30, userPg, 0x4)        // the other task reads
	f.lost(1, 5)
	s.counting = nil

	var w, r report.Process
	s.Row(&w, []int{201}, true)
	s.Row(&r, []int{200}, true)
	if w.InRegion.WP != 2 || w.InRegion.InferredCopies != 2 || w.Outside.WP != 1 || w.Outside.InferredCopies != 0 {
		t.Errorf("writer in %+v out %+v", *w.InRegion, *w.Outside)
	}
	if *w.WPFaults != 3 || *w.Copies != 2 || w.LostRecords != 5 {
		t.Errorf("writer wp %d copies %d lost %d, want 3, 2, 5", *w.WPFaults, *w.Copies, w.LostRecords)
	}
	if r.InRegion.Read != 1 || *r.WPFaults != 0 || r.LostRecords != 0 {
		t.Errorf("reader in %+v wp %d lost %d", *r.InRegion, *r.WPFaults, r.LostRecords)
	}
	var run report.Run
	s.FillRun(&run, true)
	if run.Methods["page_faults"] != "counter:page-faults" || run.Methods["copies"] != cow.InferredMethod || run.Methods["in_region"] == "" {
		t.Errorf("methods %v", run.Methods)
	}
}

// Kernel text of the stacks below: do_wp_page's extent and a buffered
// write's page-cache allocation.
const fakeKallsyms = `ffffffff81100000 t do_wp_page
ffffffff81100800 t wp_page_copy
ffffffff81101000 T handle_mm_fault
ffffffff81200000 t ext4_da_write_begin
ffffffff81200400 T __alloc_pages
ffffffff81200800 T other
`

// TestCopiesByStack: with allocation stacks, an allocation is a copy when
// its stack runs through the write-protect path, whatever preceded it: a
// page-cache allocation after a reusing wp fault is not one, a copy whose
// fault record came on another path (no fault tracepoint) is.
// Kernel stacks of allocations in fakeKallsyms's terms: a copy's (through
// do_wp_page) and a buffered write(2)'s.
var (
	copyStack  = []uint64{kctx, 0xffffffff81200410, 0xffffffff81100850, 0xffffffff81100100, 0xffffffff81101010}
	writeStack = []uint64{kctx, 0xffffffff81200410, 0xffffffff81200050, 0xffffffff81200810}
)

const kctx = 0xffffffffffffff80 // PERF_CONTEXT_KERNEL

func testCopyPath(t testing.TB) *cow.CopyPath {
	t.Helper()
	syms, err := perfevents.ParseKallsyms(strings.NewReader(fakeKallsyms), cow.CopyPathFunctions...)
	if err != nil {
		t.Fatal(err)
	}
	p, err := cow.NewCopyPath(syms)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCopiesByStack(t *testing.T) {
	s := synthetic(t, true, "")
	s.copyPath = testCopyPath(t)
	f := feeder{t, s}
	for i := uint64(0); i < 3; i++ { // reuse faults, each followed by write(2)
		f.sample(0, idFault, 400, 400, 10+i, userPg+i*0x1000, 0x7)
		f.sample(0, idAllocStack, 400, 400, 10+i, 0, movable, writeStack...)
	}
	f.sample(0, idFault, 400, 400, 20, userPg+0x8000, 0x7) // a real copy
	f.sample(0, idAllocStack, 400, 400, 20, 0, movable, copyStack...)
	f.sample(0, idAllocStack, 400, 400, 21, 0, movable, copyStack...)        // its fault was not sampled
	f.sample(0, idAllocStack, 400, 400, 22, 0, movable|zeroed, copyStack...) // the zero page's: zeroed
	var r report.Process
	s.Row(&r, []int{400}, false)
	if *r.WPFaults != 4 || *r.InferredCopies != 2 {
		t.Errorf("wp %d copies %d; want 4 and 2", *r.WPFaults, *r.InferredCopies)
	}
	var run report.Run
	s.FillRun(&run, false)
	if run.Methods["copies"] != cow.CallchainMethod {
		t.Errorf("copies by %q", run.Methods["copies"])
	}
}

func TestParseMode(t *testing.T) {
	for in, want := range map[string]Mode{"": ModeClassify, "classify": ModeClassify, "count": ModeCount, "auto": ModeAuto} {
		if got, err := ParseMode(in, ModeClassify); err != nil || got != want {
			t.Errorf("ParseMode(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := ParseMode("sample", ModeClassify); err == nil {
		t.Error("ParseMode(\"sample\") accepted")
	}
}

// FuzzRecord feeds arbitrary bodies of every record type: a record the
// kernel never wrote is an error or ignored, never a panic.
func FuzzRecord(f *testing.F) {
	f.Add(uint32(unix.PERF_RECORD_SAMPLE), []byte{idFault, 0, 0, 0, 0, 0, 0, 0})
	f.Add(uint32(unix.PERF_RECORD_FORK), make([]byte, 40))
	f.Add(uint32(unix.PERF_RECORD_COMM), make([]byte, 24))
	f.Add(uint32(unix.PERF_RECORD_LOST), make([]byte, 16))
	f.Fuzz(func(t *testing.T, typ uint32, data []byte) {
		s := synthetic(t, true, "copy_mc_to_kernel")
		rec := perfevents.Record{Cookie: 1, Type: typ % 20, Data: data}
		var smp perfevents.Sample
		_, _, _ = s.record(&rec, &smp)
	})
}

// BenchmarkDispatch is the engine's user-space cost per record of a
// copy-on-write fault: a write-protect fault sample followed by the
// allocation of the copy, as they arrive in a writer's ring.
func BenchmarkDispatch(b *testing.B) {
	s := synthetic(b, false, "")
	s.region = report.Region{Start: 0x7f0000000000, Length: 1 << 30}
	s.tasks[300] = &Task{Pid: 300, Tid: 300, Root: true, streams: map[int]*cow.Stream{}, probes: map[string]uint64{}}
	s.rings = []ring{{tid: 300}}
	fault := perfevents.Record{Type: unix.PERF_RECORD_SAMPLE, Data: sampleData(s, idFault, 300, 300, 1, userPg, 0x7)}
	alloc := perfevents.Record{Type: unix.PERF_RECORD_SAMPLE, Data: sampleData(s, idAlloc, 300, 300, 2, 0, movable)}
	var smp perfevents.Sample
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := s.record(&fault, &smp); err != nil {
			b.Fatal(err)
		}
		if _, _, err := s.record(&alloc, &smp); err != nil {
			b.Fatal(err)
		}
	}
	if in := s.tasks[300].streams[0].InRegion; in.WP == 0 || in.InferredCopies != in.WP {
		b.Fatalf("classified %+v: every fault should be a wp fault with a copy", in)
	}
}

// TestCopyEvents: a counted copy is an event at its fault's address and
// instruction, and a mapping record reaches OnMmap.
func TestCopyEvents(t *testing.T) {
	s := synthetic(t, true, "")
	syms, err := perfevents.ParseKallsyms(strings.NewReader(fakeKallsyms), cow.CopyPathFunctions...)
	if err != nil {
		t.Fatal(err)
	}
	if s.copyPath, err = cow.NewCopyPath(syms); err != nil {
		t.Fatal(err)
	}
	s.cfg.OnMmap = func(perfevents.Mmap, uint64) {} // records wait in s.mmaps for the reader
	fault := sampleData(s, idFault, 500, 500, 1, userPg+0x10, 0x7)
	binary.NativeEndian.PutUint64(fault[len(fault)-36+16:], 0x401234) // the fault's ip field
	var smp perfevents.Sample
	rec := perfevents.Record{Type: unix.PERF_RECORD_SAMPLE, Data: fault}
	if ev, ok, err := s.record(&rec, &smp); err != nil || !ok || ev.Name != "wp_fault" {
		t.Fatalf("fault: %+v %v %v", ev, ok, err)
	}
	rec.Data = sampleData(s, idAllocStack, 500, 500, 2, 0, movable, 0xffffffffffffff80, 0xffffffff81100100)
	ev, ok, err := s.record(&rec, &smp)
	if err != nil || !ok || ev.Name != "copy" || ev.Address != userPg+0x10 || ev.IP != 0x401234 || !ev.Known || ev.Pid != 500 {
		t.Errorf("copy event %+v %v %v", ev, ok, err)
	}

	m := binary.NativeEndian.AppendUint32(nil, 500)
	m = binary.NativeEndian.AppendUint32(m, 500)
	for _, v := range []uint64{0x400000, 0x2000, 0, 0, 0, 0} { // addr, len, pgoff, maj/min, ino, generation
		m = binary.NativeEndian.AppendUint64(m, v)
	}
	m = binary.NativeEndian.AppendUint32(m, 5) // PROT_READ|PROT_EXEC
	m = binary.NativeEndian.AppendUint32(m, 2) // MAP_PRIVATE
	m = append(m, "/usr/bin/prog\x00\x00\x00"...)
	feeder{t, s}.feed(0, unix.PERF_RECORD_MMAP2, 0, append(m, trailer(500, 500, 3, idDummy)...))
	if len(s.mmaps) != 1 || s.mmaps[0].m.Filename != "/usr/bin/prog" || s.mmaps[0].m.Addr != 0x400000 || s.mmaps[0].m.Len != 0x2000 {
		t.Errorf("mmap records %+v", s.mmaps)
	}
}

// TestPageFaultsByTracepoint: without Counters, a followed process's page
// faults are its classified faults (no software counter record per fault),
// and minor faults are not measured rather than 0.
func TestPageFaultsByTracepoint(t *testing.T) {
	s := synthetic(t, true, "")
	s.cfg.Counters = false
	f := feeder{t, s}
	f.sample(0, idFault, 600, 600, 1, userPg, 0x6)
	f.sample(0, idFault, 600, 600, 2, userPg, 0x7)
	f.sample(0, idKernelFault, 600, 600, 3, userPg+0x1000, 0x3)
	f.sample(0, idMajor, 600, 600, 4, 0, 0)
	var r report.Process
	s.Row(&r, []int{600}, false)
	if r.PageFaults == nil || *r.PageFaults != 3 || r.MinorFaults != nil || *r.MajorFaults != 1 || *r.WPFaults != 2 {
		t.Errorf("page faults %v minor %v major %v wp %v; want 3, none, 1, 2", r.PageFaults, r.MinorFaults, *r.MajorFaults, *r.WPFaults)
	}
	var run report.Run
	s.FillRun(&run, false)
	if m := run.Methods["page_faults"]; m != cow.FaultMethod(true) {
		t.Errorf("page faults by %q", m)
	}
	if m, ok := run.Methods["minor_faults"]; ok {
		t.Errorf("minor faults by %q, not measured", m)
	}
}

// TestZeroPageCopierNotCopies: where the calibration could only pick
// wp_page_copy (5.10), which also runs for zero-page replacements, the
// copies are the allocation stacks' and its hits a probe column.
func TestZeroPageCopierNotCopies(t *testing.T) {
	s := synthetic(t, true, cow.ZeroPageCopier)
	s.probeFns = []string{cow.ZeroPageCopier, cow.WPFunction}
	syms, err := perfevents.ParseKallsyms(strings.NewReader(fakeKallsyms), cow.CopyPathFunctions...)
	if err != nil {
		t.Fatal(err)
	}
	if s.copyPath, err = cow.NewCopyPath(syms); err != nil {
		t.Fatal(err)
	}
	s.ids[idCopy] = eventInfo{kind: kindProbe, probe: cow.ZeroPageCopier}
	f := feeder{t, s}
	// A write to the shared zero page: wp_page_copy runs, nothing is copied.
	f.sample(0, idFault, 700, 700, 1, userPg, 0x7)
	f.sample(0, idCopy, 700, 700, 2, 0xffffffff81100800, 0)
	f.sample(0, idAllocStack, 700, 700, 3, 0, movable|zeroed, 0xffffffffffffff80, 0xffffffff81100810)
	var r report.Process
	s.Row(&r, []int{700}, false)
	if *r.Copies != 0 || r.Probes[cow.ZeroPageCopier] != 1 {
		t.Errorf("copies %d, wp_page_copy hits %d; want 0 and 1", *r.Copies, r.Probes[cow.ZeroPageCopier])
	}
	var run report.Run
	s.FillRun(&run, false)
	if run.Methods["copies"] != cow.CallchainMethod {
		t.Errorf("copies by %q", run.Methods["copies"])
	}
}
