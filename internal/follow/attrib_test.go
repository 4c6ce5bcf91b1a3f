package follow

import (
	"context"
	"debug/elf"
	"io"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/cowtrace/cowtrace/internal/engine"
	"github.com/cowtrace/cowtrace/internal/testenv"
	"github.com/cowtrace/cowtrace/perfevents"
	"github.com/cowtrace/cowtrace/report"
)

// A PIE's layout as the kernel makes it: the executable, the brk heap a
// little above it, the mmap area and the stack near the top.
var pieMaps = `555555554000-555555555000 r--p 00000000 fe:00 10 /usr/bin/prog
555555555000-555555556000 r-xp 00001000 fe:00 10 /usr/bin/prog
555555557000-555555558000 rw-p 00003000 fe:00 10 /usr/bin/prog
555555600000-555555700000 rw-p 00000000 00:00 0 
7ffff7d00000-7ffff7d10000 rw-p 00000000 00:00 0 
7ffff7d10000-7ffff7d20000 r--p 00000000 fe:00 20 /usr/lib/libc.so.6
7ffff7d20000-7ffff7d30000 rw-p 00010000 fe:00 20 /usr/lib/libc.so.6
7ffffffde000-7ffffffff000 rw-p 00000000 00:00 0 
`

func TestAddrSpaceNames(t *testing.T) {
	a, err := parseMaps(strings.NewReader(pieMaps))
	if err != nil {
		t.Fatal(err)
	}
	if a.exe != "/usr/bin/prog" {
		t.Errorf("exe %q", a.exe)
	}
	for _, c := range []struct {
		addr uint64
		want string
	}{
		{0x555555557010, "/usr/bin/prog"},
		{0x555555600000, heapName},  // unnamed anonymous memory above the executable
		{0x555555800000, heapName},  // heap grown past the last record
		{0x7ffff7d00000, anonShare}, // an anonymous mmap below libc
		{0x7ffff7d20000, "/usr/lib/libc.so.6"},
		{0x7ffffffde100, anonShare}, // the stack, unnamed in this listing
		{0x7ffffffff800, stackName}, // above every mapping
		{0x1000, unknownName},       // below the executable
		// In the mmap area where nothing is mapped: a block mremap
		// moved there, which no record tells.
		{0x7ffff7d30000, unrecordedName},
	} {
		if got := a.name(c.addr); got != c.want {
			t.Errorf("name(%#x) = %q, want %q", c.addr, got, c.want)
		}
	}
}

func TestAddrSpaceInsertSplits(t *testing.T) {
	a := &addrSpace{}
	a.insert(mapping{start: 0x1000, end: 0x5000, pgoff: 0, name: "/lib/x.so"})
	a.insert(mapping{start: 0x2000, end: 0x3000, name: anonName})
	want := []mapping{
		{0x1000, 0x2000, 0, "/lib/x.so"},
		{0x2000, 0x3000, 0, anonName},
		{0x3000, 0x5000, 0x2000, "/lib/x.so"},
	}
	if !reflect.DeepEqual(a.maps, want) {
		t.Errorf("maps %+v, want %+v", a.maps, want)
	}
}

// TestCollectorForkAndExec: a child names its copies after the parent's
// mappings at the fork, and after its own once it execs.
func TestCollectorForkAndExec(t *testing.T) {
	col := &collector{by: report.ByMapping}
	mm := func(pid int, ns, addr, n uint64, name string) {
		col.mmap(perfevents.Mmap{Pid: uint32(pid), Tid: uint32(pid), Addr: addr, Len: n, Filename: name}, ns)
	}
	cp := func(pid int, ns, addr uint64) {
		col.event(engine.Event{Name: "copy", Pid: pid, Tid: pid, TimeNs: ns, Address: addr, Known: true})
	}
	mm(10, 1, 0x7ff00000, 0x10000, stackName)
	mm(10, 2, 0x400000, 0x1000, "/bin/parent")
	mm(10, 3, 0x7f000000, 0x10000, "/lib/libc.so")
	mm(10, 50, 0x7f800000, 0x10000, "/tmp/after-fork") // not the child's
	cp(11, 20, 0x7f000010)                             // the parent's libc, inherited
	cp(11, 21, 0x7f800010)                             // mapped by the parent after the fork: unrecorded in the child
	mm(11, 30, 0x7ffa0000, 0x10000, stackName)         // after the exec at 29
	mm(11, 31, 0x500000, 0x1000, "/bin/child")
	mm(11, 32, 0x7f100000, 0x10000, "/lib/libc2.so")
	cp(11, 40, 0x7ff00010) // the old stack is gone: in the mmap area, unrecorded
	cp(11, 41, 0x500010)
	cp(11, 42, 0x600000) // the new program's heap
	col.event(engine.Event{Name: "copy", Pid: 11, Tid: 11, TimeNs: 43})
	cp(11, 44, 0x1000) // below the executable: nothing the layout names
	tasks := []*engine.Task{
		{Pid: 10, Tid: 10, Root: true, StartNs: 1},
		{Pid: 11, Tid: 11, Ppid: 10, ParentTid: 10, StartNs: 10, Execs: []uint64{29}},
	}
	got := map[string]uint64{}
	for _, s := range col.attribute(tasks)[11] {
		got[s.Name] = s.Copies
	}
	want := map[string]uint64{"/lib/libc.so": 1, unrecordedName: 2, unknownName: 1, "/bin/child": 1, heapName: 1, faultNotSeen: 1}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("child's copies %v, want %v", got, want)
	}
}

// TestSymbolizer names a function of a C program from a file offset, as
// the tracer sees an instruction pointer in a mapping. (Test binaries of go
// test carry no symbol table.)
func TestSymbolizer(t *testing.T) {
	prog := testenv.BuildC(t, "cow_where")
	f, err := elf.Open(prog)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	syms, err := f.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	var main elf.Symbol
	for _, s := range syms {
		if s.Name == "main" {
			main = s
		}
	}
	var off uint64
	for _, p := range f.Progs {
		if a := main.Value + main.Size/2; p.Type == elf.PT_LOAD && a >= p.Vaddr && a < p.Vaddr+p.Filesz {
			off = a - p.Vaddr + p.Off
		}
	}
	if off == 0 {
		t.Fatalf("main %#x in no segment", main.Value)
	}
	sz := newSymbolizer()
	if got := sz.name(prog, off); got != "main (cow_where)" {
		t.Errorf("name = %q, want main (cow_where)", got)
	}
	if got := sz.name("/nonexistent", 0x1234); got != "?+0x1234 (nonexistent, file offset)" {
		t.Errorf("unreadable file: %q", got)
	}
}

// whereRun runs testdata/cow_where under --by and returns its child's
// shares by name. The child copies heap, anon, file and stack pages after a
// raw fork and calls no function, so each count is exact. glibc's rseq is
// off: the kernel writes the thread's rseq area (in an anonymous mapping)
// when the child first returns to user space after a migration, which
// copies that page in some runs and not others.
func whereRun(t *testing.T, by string, file string, n [4]int) (child *report.Process, shares map[string]report.Share) {
	t.Helper()
	requireTracing(t)
	prog := testenv.BuildC(t, "cow_where")
	t.Setenv("GLIBC_TUNABLES", "glibc.pthread.rseq=0")
	argv := []string{prog, file}
	for _, v := range n {
		argv = append(argv, strconv.Itoa(v))
	}
	run, err := Run(context.Background(), Options{KprobeMethod: perfevents.KprobeNone, By: by},
		RunSpec{Path: prog, Argv: argv, Stdio: Stdio{Stdout: io.Discard, Stderr: io.Discard}})
	if err != nil {
		t.Fatal(err)
	}
	if *run.Trace.ExitCode != 0 || len(run.Processes) != 2 {
		t.Fatalf("exit %d, %d processes", *run.Trace.ExitCode, len(run.Processes))
	}
	if run.CopiesBy != by {
		t.Errorf("copies_by %q", run.CopiesBy)
	}
	child = &run.Processes[1]
	shares = map[string]report.Share{}
	for _, s := range child.CopiesBy {
		shares[s.Name] = s
	}
	return child, shares
}

func TestByMappingExact(t *testing.T) {
	file := filepath.Join(t.TempDir(), "private-file")
	child, shares := whereRun(t, report.ByMapping, file, [4]int{7, 11, 5, 3})
	want := map[string]uint64{heapName: 7, anonShare: 11, file: 5, stackName: 3}
	got := map[string]uint64{}
	for name, s := range shares {
		got[name] = s.Copies
		if s.Pages != s.Copies {
			t.Errorf("%s: %d copies of %d pages, want each page once", name, s.Copies, s.Pages)
		}
	}
	t.Logf("child %d: %d copies: %v", child.Pid, *child.Copies, got)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("child's copies by mapping %v, want %v", got, want)
	}
}

func TestByFunctionExact(t *testing.T) {
	file := filepath.Join(t.TempDir(), "private-file")
	_, shares := whereRun(t, report.ByFunction, file, [4]int{7, 11, 5, 3})
	got := map[string]uint64{}
	for name, s := range shares {
		got[name] = s.Copies
	}
	if want := map[string]uint64{"main (cow_where)": 26}; !reflect.DeepEqual(got, want) {
		t.Errorf("child's copies by function %v, want %v", got, want)
	}
}
