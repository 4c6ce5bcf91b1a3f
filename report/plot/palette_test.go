package plot

import (
	"math"
	"testing"
)

// Machado, Oliveira and Fernandes (2009), severity 1, in linear RGB: how
// a colour looks to a reader without one kind of cone.
var visions = map[string][3][3]float64{
	"normal":       {{1, 0, 0}, {0, 1, 0}, {0, 0, 1}},
	"protanopia":   {{0.152286, 1.052583, -0.204868}, {0.114503, 0.786281, 0.099216}, {-0.003882, -0.048116, 1.051998}},
	"deuteranopia": {{0.367322, 0.860646, -0.227968}, {0.280085, 0.672501, 0.047413}, {-0.011820, 0.042940, 0.968881}},
	"tritanopia":   {{1.255528, -0.076749, -0.178779}, {-0.078411, 0.930809, 0.147602}, {0.004733, 0.691367, 0.303900}},
}

// lab is c as seen through m, in CIELAB (D65).
func lab(c rgb, m [3][3]float64) [3]float64 {
	lin := func(v uint8) float64 {
		f := float64(v) / 255
		if f <= 0.04045 {
			return f / 12.92
		}
		return math.Pow((f+0.055)/1.055, 2.4)
	}
	in := [3]float64{lin(c.r), lin(c.g), lin(c.b)}
	var s [3]float64
	for i := range s {
		s[i] = math.Min(1, math.Max(0, m[i][0]*in[0]+m[i][1]*in[1]+m[i][2]*in[2]))
	}
	x := (0.4124*s[0] + 0.3576*s[1] + 0.1805*s[2]) / 0.95047
	y := 0.2126*s[0] + 0.7152*s[1] + 0.0722*s[2]
	z := (0.0193*s[0] + 0.1192*s[1] + 0.9505*s[2]) / 1.08883
	f := func(t float64) float64 {
		if t > 216.0/24389 {
			return math.Cbrt(t)
		}
		return (24389.0/27*t + 16) / 116
	}
	return [3]float64{116*f(y) - 16, 500 * (f(x) - f(y)), 200 * (f(y) - f(z))}
}

// TestPaletteColourBlind: at least ten processes get colours that every
// two differ by 14 CIELAB units or more (a difference plainly seen side by
// side) for readers with normal vision and without any one kind of cone.
func TestPaletteColourBlind(t *testing.T) {
	if len(palette) < 10 {
		t.Fatalf("%d colours, want at least 10", len(palette))
	}
	for name, m := range visions {
		for i := range palette {
			for j := range i {
				a, b := lab(palette[i], m), lab(palette[j], m)
				if d := math.Hypot(math.Hypot(a[0]-b[0], a[1]-b[1]), a[2]-b[2]); d < 14 {
					t.Errorf("%s: %v and %v differ by %.1f", name, palette[i], palette[j], d)
				}
			}
		}
	}
	// Drawn on white, every colour must stay visible as a thin line.
	for _, c := range palette {
		if l := lab(c, visions["normal"])[0]; l > 85 {
			t.Errorf("%v: lightness %.0f, too pale on white", c, l)
		}
	}
}

// TestStyleUnique: no two of the first len(palette)*shapes processes share
// both colour and mark.
func TestStyleUnique(t *testing.T) {
	type st struct {
		c rgb
		s shape
	}
	seen := map[st]int{}
	for i := range len(palette) * int(shapes) {
		c, s := style(i)
		if j, ok := seen[st{c, s}]; ok {
			t.Fatalf("processes %d and %d are both %v %d", j, i, c, s)
		}
		seen[st{c, s}] = i
	}
}
