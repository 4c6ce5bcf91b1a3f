package cow

import (
	"encoding/binary"
	"strings"
	"testing"

	"github.com/cowtrace/cowtrace/perfevents"
)

func TestNewCopyPath(t *testing.T) {
	for _, tc := range []struct {
		kallsyms string
		want     string // "" for a rule, else part of the error
	}{
		{"ffffffff81100000 t do_wp_page\nffffffff81100800 t wp_page_copy.isra.0\nffffffff81101000 T x\n", ""},
		{"0000000000000000 t do_wp_page\n0000000000000000 T x\n", "hides addresses"},
		{"ffffffff81100000 T handle_mm_fault\n", "not in kallsyms"},
		// A last symbol has no known extent, and is no rule.
		{"ffffffff81100000 t do_wp_page\n", "not in kallsyms"},
	} {
		syms, err := perfevents.ParseKallsyms(strings.NewReader(tc.kallsyms), CopyPathFunctions...)
		if err != nil {
			t.Fatal(err)
		}
		p, err := NewCopyPath(syms)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q: %v", tc.kallsyms, err)
		case tc.want == "" && strings.Join(p.Functions(), ",") != "do_wp_page,wp_page_copy.isra.0":
			t.Errorf("%q: functions %v", tc.kallsyms, p.Functions())
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%q: err %v, want %q", tc.kallsyms, err, tc.want)
		}
	}
}

// TestCopyPathContains: a stack through do_wp_page is a copy; through
// do_fault, a copy only with an anonymous folio allocation on it (the
// inlined do_cow_fault), not a page-cache one.
func TestCopyPathContains(t *testing.T) {
	const kallsyms = `ffffffff81100000 t do_wp_page
ffffffff81100800 t do_fault
ffffffff81101000 T vma_alloc_folio_noprof
ffffffff81101400 T filemap_fault
ffffffff81101800 T other
`
	syms, err := perfevents.ParseKallsyms(strings.NewReader(kallsyms), CopyPathFunctions...)
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewCopyPath(syms)
	if err != nil {
		t.Fatal(err)
	}
	stack := func(ips ...uint64) *perfevents.Sample {
		var b []byte
		for _, ip := range ips {
			b = binary.NativeEndian.AppendUint64(b, ip)
		}
		return &perfevents.Sample{Callchain: b}
	}
	for _, tc := range []struct {
		name string
		smp  *perfevents.Sample
		want bool
	}{
		{"do_wp_page", stack(0xffffffff81101010, 0xffffffff81100100), true},
		{"do_cow_fault inlined", stack(0xffffffff81101010, 0xffffffff81100900), true},
		{"page cache under do_fault", stack(0xffffffff81101410, 0xffffffff81100900), false},
		{"elsewhere", stack(0xffffffff81101810, 0xffffffff81101010), false},
	} {
		if got := p.Contains(tc.smp); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
