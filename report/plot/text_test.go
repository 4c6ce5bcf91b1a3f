package plot

import (
	"strings"
	"testing"
)

// TestWrap: no line is wider than the room, and nothing is lost: the lines
// hold every character of the text, in order.
func TestWrap(t *testing.T) {
	long := strings.Repeat("/very/long/path", 30)
	for _, s := range []string{
		"short",
		"cowtrace run: kernel 6.18-test, command \"python3 -c import multiprocessing as mp; mp.Pool(11).map(work, range(100000))\", exit status 0",
		long,
		"a " + long + " b",
		"päge cöpies " + strings.Repeat("ü", 300),
	} {
		for _, room := range []float64{80, 300, 968} {
			lines := wrap(s, titleSize, room)
			for _, l := range lines {
				if w := width(l, titleSize); w > room && len([]rune(l)) > 1 {
					t.Errorf("wrap(%.20q, %g): line %q is %g wide", s, room, l, w)
				}
			}
			if got, want := strings.Join(lines, ""), strings.Join(strings.Fields(s), ""); strings.ReplaceAll(got, " ", "") != want {
				t.Errorf("wrap(%.20q, %g) lost text: %q", s, room, lines)
			}
		}
	}
	if lines := wrap("short", titleSize, 968); len(lines) != 1 {
		t.Errorf("a short title takes %d lines", len(lines))
	}
}

// TestWidthSlack: the room kept for a text is more than the Go font needs,
// which the PNG draws with.
func TestWidthSlack(t *testing.T) {
	if w := width("pid 4194304 worker", legendSize); w < 100 || w > 160 {
		t.Errorf("width of a legend label: %g", w)
	}
	if width("wwww", 12) <= width("iiii", 12) {
		t.Error("width does not measure glyphs")
	}
}
