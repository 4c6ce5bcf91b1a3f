package plot

import (
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"io"
	"math"

	"golang.org/x/image/font"
	"golang.org/x/image/math/fixed"
	"golang.org/x/image/vector"
)

// pngScale draws the PNG at twice the SVG's pixels: sharp on a HiDPI
// screen and when zoomed, and a page scales it down without blur.
const pngScale = 2

func (f *figure) png(w io.Writer) error {
	W, H := int(math.Ceil(f.w*pngScale)), int(math.Ceil(f.h*pngScale))
	img := image.NewRGBA(image.Rect(0, 0, W, H))
	draw.Draw(img, img.Bounds(), image.NewUniform(rgba(white)), image.Point{}, draw.Src)
	var r vector.Rasterizer
	for _, it := range f.items {
		switch it := it.(type) {
		case line:
			pieces := [][]pt{it.pts}
			if len(it.dash) > 0 {
				pieces = dashes(it.pts, it.dash)
			}
			var polys [][]pt
			for _, p := range pieces {
				polys = append(polys, stroke(p, it.width)...)
			}
			paint(&r, img, polys, it.color)
		case mark:
			// The white outline, then the shape.
			for _, m := range []mark{{it.x, it.y, it.r + 1, it.shape, white}, it} {
				paint(&r, img, [][]pt{m.outline()}, m.color)
			}
		case text:
			if err := drawText(img, it); err != nil {
				return err
			}
		}
	}
	return png.Encode(w, img)
}

// paint fills polys (in the figure's pixels) with c. The rasterizer
// covers only their bounding box: the whole image for each line would
// cost a pass over millions of pixels per series.
func paint(r *vector.Rasterizer, img *image.RGBA, polys [][]pt, c rgb) {
	minX, minY, maxX, maxY := math.Inf(1), math.Inf(1), math.Inf(-1), math.Inf(-1)
	for _, poly := range polys {
		for _, p := range poly {
			minX, minY = math.Min(minX, p.x), math.Min(minY, p.y)
			maxX, maxY = math.Max(maxX, p.x), math.Max(maxY, p.y)
		}
	}
	box := image.Rect(int(math.Floor(minX*pngScale)), int(math.Floor(minY*pngScale)),
		int(math.Ceil(maxX*pngScale)), int(math.Ceil(maxY*pngScale))).Intersect(img.Bounds())
	if box.Empty() {
		return
	}
	r.Reset(box.Dx(), box.Dy())
	for _, poly := range polys {
		for i, p := range poly {
			x, y := float32(p.x*pngScale-float64(box.Min.X)), float32(p.y*pngScale-float64(box.Min.Y))
			if i == 0 {
				r.MoveTo(x, y)
			} else {
				r.LineTo(x, y)
			}
		}
		r.ClosePath()
	}
	r.Draw(img, box, image.NewUniform(rgba(c)), image.Point{})
}

func rgba(c rgb) color.RGBA { return color.RGBA{c.r, c.g, c.b, 0xff} }

// stroke is a polyline of the given width as one rectangle per segment.
// The rasterizer adds up coverage and clamps it, so rectangles that
// overlap at a join neither leave a seam nor darken, as long as they all
// turn the same way, which building each from its own direction ensures.
// A segment reaches half the width past an inner joint to fill the corner
// (a miter, for the right angles of a step line); the ends stop square,
// as SVG's butt caps do.
func stroke(pts []pt, w float64) [][]pt {
	h := w / 2
	var out [][]pt
	for i := 0; i+1 < len(pts); i++ {
		a, b := pts[i], pts[i+1]
		dx, dy := b.x-a.x, b.y-a.y
		l := math.Hypot(dx, dy)
		if l == 0 {
			continue
		}
		ux, uy := dx/l, dy/l
		if i > 0 {
			a = pt{a.x - ux*h, a.y - uy*h}
		}
		if i+2 < len(pts) {
			b = pt{b.x + ux*h, b.y + uy*h}
		}
		nx, ny := -uy*h, ux*h
		out = append(out, []pt{{a.x + nx, a.y + ny}, {b.x + nx, b.y + ny}, {b.x - nx, b.y - ny}, {a.x - nx, a.y - ny}})
	}
	return out
}

// dashes cuts a polyline into its dashes, the pattern running on across
// corners as SVG's stroke-dasharray does.
func dashes(pts []pt, pattern []float64) [][]pt {
	var out [][]pt
	var cur []pt
	k, left := 0, pattern[0] // the dash or gap we are in, and what is left of it
	on := true
	for i := 0; i+1 < len(pts); i++ {
		a, b := pts[i], pts[i+1]
		seg := math.Hypot(b.x-a.x, b.y-a.y)
		at := 0.0
		for seg-at > 0 {
			step := math.Min(left, seg-at)
			p := func(d float64) pt { return pt{a.x + (b.x-a.x)*d/seg, a.y + (b.y-a.y)*d/seg} }
			if on {
				if len(cur) == 0 {
					cur = append(cur, p(at))
				}
				cur = append(cur, p(at+step))
			}
			at += step
			left -= step
			if left <= 1e-9 {
				if on && len(cur) > 1 {
					out = append(out, cur)
				}
				cur = nil
				k = (k + 1) % len(pattern)
				left = pattern[k]
				on = !on
			}
		}
	}
	if len(cur) > 1 {
		out = append(out, cur)
	}
	return out
}

// drawText draws t with the Go font at the PNG's scale: into a mask first,
// which an upward text is turned into.
func drawText(img *image.RGBA, t text) error {
	face, err := face(t.size * pngScale)
	if err != nil {
		return err
	}
	m := face.Metrics()
	adv := font.MeasureString(face, t.s)
	tw, asc, desc := adv.Ceil(), m.Ascent.Ceil(), m.Descent.Ceil()
	if tw == 0 {
		return nil
	}
	mask := image.NewAlpha(image.Rect(0, 0, tw, asc+desc))
	d := font.Drawer{Dst: mask, Src: image.Opaque, Face: face, Dot: fixed.P(0, asc)}
	d.DrawString(t.s)

	// Where the text starts along its baseline.
	shift := 0.0
	switch t.anchor {
	case middle:
		shift = float64(adv) / 64 / 2
	case end:
		shift = float64(adv) / 64
	}
	x, y := t.x*pngScale, t.y*pngScale
	src := image.NewUniform(rgba(t.color))
	if !t.up {
		at := image.Pt(int(math.Round(x-shift)), int(math.Round(y))-asc)
		draw.DrawMask(img, mask.Bounds().Add(at), src, image.Point{}, mask, image.Point{}, draw.Over)
		return nil
	}
	// Turned a quarter left: the mask's column u becomes row -u, its row
	// v (from the top of the ascent) column v-ascent right of the
	// baseline.
	up := image.NewAlpha(image.Rect(0, 0, asc+desc, tw))
	for v := 0; v < asc+desc; v++ {
		for u := 0; u < tw; u++ {
			up.SetAlpha(v, tw-1-u, mask.AlphaAt(u, v))
		}
	}
	at := image.Pt(int(math.Round(x))-asc, int(math.Round(y+shift))-tw)
	draw.DrawMask(img, up.Bounds().Add(at), src, image.Point{}, up, image.Point{}, draw.Over)
	return nil
}
