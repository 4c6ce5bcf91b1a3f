package plot

import "fmt"

type rgb struct{ r, g, b uint8 }

func (c rgb) String() string { return fmt.Sprintf("#%02x%02x%02x", c.r, c.g, c.b) }

// palette colours the processes in turn. Paul Tol's "muted" scheme (nine
// colours made to stay apart for colour-blind readers) with black, Tol's
// dark red and Okabe and Ito's orange: under simulated protanopia,
// deuteranopia and tritanopia every two of the twelve still differ by 14
// CIELAB units or more (the test checks). Ordered so that the first
// processes get the colours that differ most and the pale ones come last.
var palette = []rgb{
	{0x33, 0x22, 0x88}, // indigo
	{0xe6, 0x9f, 0x00}, // orange
	{0x44, 0xaa, 0x99}, // teal
	{0xcc, 0x66, 0x77}, // rose
	{0x11, 0x77, 0x33}, // green
	{0xaa, 0x44, 0x99}, // purple
	{0x99, 0x99, 0x33}, // olive
	{0x88, 0xcc, 0xee}, // cyan
	{0x88, 0x22, 0x55}, // wine
	{0x00, 0x00, 0x00}, // black
	{0xdd, 0xcc, 0x77}, // sand
	{0x66, 0x33, 0x33}, // brown
}

// shape marks the end of a process's copies line. Past the palette the
// colours come round again, each time with the next shape, so that
// processes 1 and 13 differ by shape where they share a colour.
type shape int

const (
	circle shape = iota
	square
	triangle
	diamond
	shapes
)

// style is process i's colour and shape.
func style(i int) (rgb, shape) {
	return palette[i%len(palette)], shape(i / len(palette) % int(shapes))
}

var (
	white = rgb{0xff, 0xff, 0xff}
	ink   = rgb{0x22, 0x22, 0x22} // text
	axisC = rgb{0x55, 0x55, 0x55} // axes and the legend's key
	gridC = rgb{0xe4, 0xe4, 0xe4}
)
