package cow

import (
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
