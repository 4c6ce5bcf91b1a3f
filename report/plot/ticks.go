package plot

import (
	"math"
	"strconv"
)

// axis is a scale from 0 to n steps of step, each a tick.
type axis struct {
	step float64
	n    int
}

func (a axis) max() float64 { return a.step * float64(a.n) }

// niceAxis is the axis from 0 that covers top in at most most steps, with
// the smallest step of 1, 2 or 5 times a power of ten: ticks a reader adds
// up at a glance (0, 200, 400 rather than 0, 235, 470). whole keeps the
// step at 1 or more, for counts.
func niceAxis(top float64, most int, whole bool) axis {
	if most < 1 {
		most = 1
	}
	if !(top > 0) || math.IsInf(top, 0) {
		top = 1
		if !whole {
			top = 0.001
		}
	}
	// A hair under the exact quotient, so that 0.3/0.1 counts as 3 steps.
	const eps = 1e-9
	p := math.Pow(10, math.Floor(math.Log10(top/float64(most))))
	for {
		for _, m := range []float64{1, 2, 5} {
			step := m * p
			if whole && step < 1 {
				continue
			}
			if n := int(math.Ceil(top/step - eps)); n <= most {
				return axis{step: step, n: max(n, 1)}
			}
		}
		p *= 10
	}
}

// label is the tick at i steps, with as many decimals as the step has.
func (a axis) label(i int) string {
	decimals := 0
	if d := -int(math.Floor(math.Log10(a.step) + 1e-9)); d > 0 {
		decimals = d
	}
	return strconv.FormatFloat(a.step*float64(i), 'f', decimals, 64)
}
