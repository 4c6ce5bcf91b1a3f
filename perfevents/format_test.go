package perfevents

import (
	"encoding/binary"
	"os"
	"strings"
	"testing"
)

func fixtureFormat(t *testing.T, group, name string) *Format {
	t.Helper()
	f, err := os.Open(fixtureTracefs + "/events/" + group + "/" + name + "/format")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	format, err := ParseFormat(f)
	if err != nil {
		t.Fatal(err)
	}
	return format
}

func TestParseFormatPageFaultUser(t *testing.T) {
	f := fixtureFormat(t, "exceptions", "page_fault_user")
	if f.Name != "page_fault_user" || f.ID != 190 {
		t.Errorf("Name, ID = %q, %d; want page_fault_user, 190", f.Name, f.ID)
	}
	want := []Field{
		{Name: "common_type", Type: "unsigned short", Offset: 0, Size: 2},
		{Name: "common_flags", Type: "unsigned char", Offset: 2, Size: 1},
		{Name: "common_preempt_count", Type: "unsigned char", Offset: 3, Size: 1},
		{Name: "common_pid", Type: "int", Offset: 4, Size: 4, Signed: true},
		{Name: "address", Type: "unsigned long", Offset: 8, Size: 8},
		{Name: "ip", Type: "unsigned long", Offset: 16, Size: 8},
		{Name: "error_code", Type: "unsigned long", Offset: 24, Size: 8},
	}
	if len(f.Fields) != len(want) {
		t.Fatalf("got %d fields %+v, want %d", len(f.Fields), f.Fields, len(want))
	}
	for i := range want {
		if f.Fields[i] != want[i] {
			t.Errorf("field %d = %+v, want %+v", i, f.Fields[i], want[i])
		}
	}
	if !strings.HasPrefix(f.PrintFmt, `"address=%ps`) {
		t.Errorf("PrintFmt = %q", f.PrintFmt)
	}
	if fd, ok := f.Field("error_code"); !ok || fd.Offset != 24 || fd.Size != 8 {
		t.Errorf("Field(error_code) = %+v, %v", fd, ok)
	}
	if _, ok := f.Field("nope"); ok {
		t.Error("Field(nope) found")
	}
}

func TestParseFormatSchedProcessFork(t *testing.T) {
	f := fixtureFormat(t, "sched", "sched_process_fork")
	for _, want := range []Field{
		{Name: "parent_comm", Type: "__data_loc char[]", Offset: 8, Size: 4},
		{Name: "parent_pid", Type: "pid_t", Offset: 12, Size: 4, Signed: true},
		{Name: "child_pid", Type: "pid_t", Offset: 20, Size: 4, Signed: true},
	} {
		if got, ok := f.Field(want.Name); !ok || got != want {
			t.Errorf("Field(%s) = %+v, %v; want %+v", want.Name, got, ok, want)
		}
	}
}

func TestParseFormatVariants(t *testing.T) {
	// An array field, a pointer field, and no "signed:" (kernels before
	// 2.6.33).
	const src = "name: sched_switch\nID: 7\nformat:\n" +
		"\tfield:char prev_comm[16];\toffset:8;\tsize:16;\n" +
		"\tfield:const char * name;\toffset:24;\tsize:8;\n" +
		"\nprint fmt: \"x\"\n"
	f, err := ParseFormat(strings.NewReader(src))
	if err != nil {
		t.Fatal(err)
	}
	if got := f.Fields[0]; got != (Field{Name: "prev_comm", Type: "char[16]", Offset: 8, Size: 16}) {
		t.Errorf("array field = %+v", got)
	}
	if got := f.Fields[1]; got.Name != "name" || got.Type != "const char *" {
		t.Errorf("pointer field = %+v", got)
	}
	if f.PrintFmt != `"x"` {
		t.Errorf("PrintFmt = %q", f.PrintFmt)
	}

	for _, bad := range []string{
		"",
		"hello\nworld\n",
		"name: x\nformat:\n", // no ID
		"name: x\nID: nine\n",
		"name: x\nID: 1\n\tfield:int a;\toffset:zero;\tsize:4;\n",
		"name: x\nID: 1\n\tfield:int a;\tsize:4;\n",
		"name: x\nID: 1\n\tfield:;\toffset:0;\tsize:4;\n",
	} {
		if _, err := ParseFormat(strings.NewReader(bad)); err == nil {
			t.Errorf("ParseFormat(%q) succeeded", bad)
		}
	}
}

func TestFormatFieldUint(t *testing.T) {
	f := fixtureFormat(t, "exceptions", "page_fault_user")
	// A raw sample as the kernel lays it out: common fields, then the
	// event's, 32 bytes.
	raw := make([]byte, 32)
	binary.LittleEndian.PutUint16(raw[0:], 190)
	binary.LittleEndian.PutUint32(raw[4:], 0xfffffffe) // pid -2, to check sign
	binary.LittleEndian.PutUint64(raw[8:], 0x7f0012345000)
	binary.LittleEndian.PutUint64(raw[16:], 0x401234)
	binary.LittleEndian.PutUint64(raw[24:], 7)
	for name, want := range map[string]uint64{
		"common_type": 190, "common_pid": 0xfffffffe,
		"address": 0x7f0012345000, "ip": 0x401234, "error_code": 7,
	} {
		fd, _ := f.Field(name)
		got, err := fd.Uint(raw)
		if err != nil || got != want {
			t.Errorf("%s.Uint = %#x, %v; want %#x", name, got, err, want)
		}
	}
	fd, _ := f.Field("common_pid")
	if v, _ := fd.Uint(raw); int32(v) != -2 {
		t.Errorf("common_pid as int32 = %d, want -2", int32(v))
	}

	ec, _ := f.Field("error_code")
	for _, short := range [][]byte{nil, raw[:24], raw[:31]} {
		if _, err := ec.Uint(short); err == nil {
			t.Errorf("Uint of a %d-byte record succeeded", len(short))
		}
	}
	for _, bad := range []Field{
		{Name: "odd", Offset: 0, Size: 3},
		{Name: "arr", Offset: 8, Size: 16},
		{Name: "neg", Offset: -1, Size: 1},
		{Name: "negsize", Offset: 0, Size: -8},
		{Name: "huge", Offset: 1 << 62, Size: 8},
	} {
		if _, err := bad.Uint(raw); err == nil {
			t.Errorf("%+v.Uint succeeded", bad)
		}
	}
}

func TestFlagValuesMmPageAlloc(t *testing.T) {
	f := fixtureFormat(t, "kmem", "mm_page_alloc")
	flags := FlagValues(f.PrintFmt)

	// Worked out by hand from include/linux/gfp_types.h and the expression
	// in the fixture:
	// GFP_HIGHUSER_MOVABLE = __GFP_RECLAIM (1<<10|1<<11) | __GFP_IO (1<<6) |
	// __GFP_FS (1<<7) | __GFP_HARDWALL (1<<20) | __GFP_HIGHMEM (1<<1) |
	// __GFP_MOVABLE (1<<3) | __GFP_SKIP_KASAN (0)
	//   = 0x400|0x800|0x40|0x80|0x100000|0x2|0x8 = 0x100cca.
	// GFP_TRANSHUGE_LIGHT = (GFP_HIGHUSER_MOVABLE | __GFP_COMP (1<<18) |
	// __GFP_NOMEMALLOC (1<<19) | __GFP_NOWARN (1<<13)) & ~__GFP_RECLAIM
	//   = 0x1c2cca & ~0xc00 = 0x1c20ca; GFP_TRANSHUGE adds 1<<10: 0x1c24ca.
	for name, want := range map[string]uint64{
		"__GFP_ZERO":           0x100,
		"__GFP_HIGHMEM":        0x2,
		"GFP_HIGHUSER_MOVABLE": 0x100cca,
		"GFP_KERNEL":           0xcc0,
		"GFP_ATOMIC":           0x820,
		"GFP_TRANSHUGE_LIGHT":  0x1c20ca,
		"GFP_TRANSHUGE":        0x1c24ca,
		"__GFP_DMA":            0x1,
		"__GFP_NO_OBJ_EXT":     1 << 24,
	} {
		if got, ok := flags[name]; !ok || got != want {
			t.Errorf("%s = %#x (present %v), want %#x", name, got, ok, want)
		}
	}
	// Every {VALUE, "NAME"} entry of the table, but not the {0, NULL}
	// terminator.
	if want := strings.Count(f.PrintFmt, `"}`); len(flags) != want {
		t.Errorf("got %d flags, want %d: %v", len(flags), want, flags)
	}
	if _, ok := flags[""]; ok {
		t.Error("the {0, NULL} terminator became a flag")
	}

	if got := FlagValues(fixtureFormat(t, "sched", "sched_process_fork").PrintFmt); len(got) != 0 {
		t.Errorf("sched_process_fork has no flag tables, got %v", got)
	}
}

func TestFlagValuesExpressions(t *testing.T) {
	const printFmt = `"{not a table} flags=%s sym=%s", __print_flags(REC->f, "|", ` +
		`{1, "ONE"}, {-1, "NEG"}, {~0U, "ALL"}, {0x10|010, "HEXOCT"}, {(int)-1, "INT"}, ` +
		`{(unsigned char)0x1ff, "UCHAR"}, {(short)0xffff, "SHORT"}, {( unsigned int)-1, "UINT"}, ` +
		`{3 + 4 * 2, "PREC"}, {1 << 2 + 1, "SHIFTPREC"}, {10 - 2 - 3, "LEFTASSOC"}, ` +
		`{1 | 2 & 3 ^ 4, "BITPREC"}, {!0, "NOT"}, {( __force foo_t)(1UL << 40), "TYPEDEF"}, {( gfp_t)(1UL << 40 | 4), "GFPT"}, ` +
		`{((void *)0x10), "POINTER"}, {"a,b", "STR"}, {0x8 , "a\"q"}, {1, "ONE"}, ` +
		`{FOO, "MACRO"}, {1 << 64, "BIGSHIFT"}, {(1 ? 2 : 3), "COND"}, {4 / 0, "DIV0"}, ` +
		`{0xfffffffffffffffffff, "OVERFLOW"}, {2, FOO_NAME}, { 0, ((void *)0) }), ` +
		`__print_symbolic_u64(REC->s, {5ULL, "FIVE"}, {6, "ONE"}), __print_hex(REC->h, {7, "HEX"})`
	got := FlagValues(printFmt)
	want := map[string]uint64{
		"ONE":       1, // the first value wins
		"NEG":       ^uint64(0),
		"ALL":       ^uint64(0),
		"HEXOCT":    0x18,
		"INT":       ^uint64(0),
		"UCHAR":     0xff,
		"SHORT":     ^uint64(0),
		"UINT":      0xffffffff,
		"PREC":      11,
		"SHIFTPREC": 8,
		"LEFTASSOC": 5,
		"BITPREC":   7, // C: 1 | ((2 & 3) ^ 4)
		"NOT":       1,
		"TYPEDEF":   1 << 40, // unknown typedef: value kept
		"GFPT":      4,       // gfp_t is unsigned int
		"POINTER":   0x10,
		`a"q`:       8,
		"FIVE":      5,
	}
	for name, w := range want {
		if g, ok := got[name]; !ok || g != w {
			t.Errorf("%s = %#x (present %v), want %#x", name, g, ok, w)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("unexpected entry %s = %#x", name, got[name])
		}
	}
}

func TestFlagValuesMalformed(t *testing.T) {
	for _, s := range []string{
		"", "__print_flags", "__print_flags(", "__print_flags(x, {1, \"A\"",
		"__print_symbolic(x, {1, \"A\"}", `__print_flags(x, "|", {1, "unterminated}`,
		"__print_flags x", "__print_flagsx(y, {1, \"A\"})",
	} {
		got := FlagValues(s) // must not panic
		if len(got) != 0 {
			t.Errorf("FlagValues(%q) = %v, want empty", s, got)
		}
	}
}
