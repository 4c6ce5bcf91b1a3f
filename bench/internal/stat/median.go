// Package stat holds the statistics that bench's commands print alike.
package stat

import "slices"

// Median is the middle of xs, or the mean of the two middle ones when xs
// has an even number of elements; xs is left as it was.
func Median[T ~int64 | ~float64](xs []T) T {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
