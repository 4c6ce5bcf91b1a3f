package stat

import (
	"testing"
	"time"
)

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{
		{[]float64{3}, 3},
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
	} {
		if got := Median(c.in); got != c.want {
			t.Errorf("Median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
	// Durations are whole nanoseconds: the mean of the middle two rounds down.
	in := []time.Duration{3, 1, 2, 4, 1}
	if got := Median(in[:4]); got != 2 {
		t.Errorf("Median(%v) = %v, want 2ns", in[:4], got)
	}
	if in[0] != 3 {
		t.Errorf("Median sorted its argument: %v", in)
	}
}
