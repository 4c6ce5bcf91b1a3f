package plot

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestNiceAxis(t *testing.T) {
	for _, c := range []struct {
		top    float64
		most   int
		whole  bool
		step   float64
		n      int
		labels string // the last tick's
	}{
		{700, 10, true, 100, 7, "700"},
		{701, 10, true, 100, 8, "800"},
		{1530, 12, true, 200, 8, "1600"},
		{1530, 7, true, 500, 4, "2000"},
		{3, 10, true, 1, 3, "3"},
		{0.4, 10, true, 1, 1, "1"}, // counts step by 1 at least
		{0, 10, true, 1, 1, "1"},
		{0.52, 10, false, 0.1, 6, "0.6"},
		{0.3, 3, false, 0.1, 3, "0.3"},
		{0.7, 12, false, 0.1, 7, "0.7"},
		{0.0123, 6, false, 0.005, 3, "0.015"},
		{0, 10, false, 0.0001, 10, "0.0010"},
		{2.5e6, 8, true, 500000, 5, "2500000"},
		{42, 0, true, 50, 1, "50"},
	} {
		a := niceAxis(c.top, c.most, c.whole)
		if math.Abs(a.step-c.step) > c.step*1e-9 || a.n != c.n || a.label(a.n) != c.labels {
			t.Errorf("niceAxis(%g, %d, %v) = step %g, %d steps, last %q; want %g, %d, %q",
				c.top, c.most, c.whole, a.step, a.n, a.label(a.n), c.step, c.n, c.labels)
		}
	}
}

// TestNiceAxisAny: for any range, the step is 1, 2 or 5 times a power of
// ten, the ticks cover the range with none to spare past it, and there are
// no more than asked for.
func TestNiceAxisAny(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		top := math.Pow(10, r.Float64()*12-6)
		most := 1 + r.IntN(15)
		whole := r.IntN(2) == 0
		a := niceAxis(top, most, whole)
		m := a.step / math.Pow(10, math.Floor(math.Log10(a.step)+1e-9))
		if math.Abs(m-1) > 1e-6 && math.Abs(m-2) > 1e-6 && math.Abs(m-5) > 1e-6 {
			t.Fatalf("niceAxis(%g, %d, %v): step %g is not 1, 2 or 5 times a power of ten", top, most, whole, a.step)
		}
		if a.n > most || a.max() < top*(1-1e-9) || (a.n > 1 && float64(a.n-1)*a.step >= top*(1+1e-9)) {
			t.Fatalf("niceAxis(%g, %d, %v): %d steps of %g", top, most, whole, a.n, a.step)
		}
		if whole && a.step < 1 {
			t.Fatalf("niceAxis(%g, %d, true): step %g under 1", top, most, a.step)
		}
	}
}
