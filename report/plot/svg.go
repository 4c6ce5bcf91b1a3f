package plot

import (
	"bufio"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// The viewer picks the font: the layout has room for the widest of these
// (see slack).
const svgFonts = "DejaVu Sans, Verdana, Arial, Helvetica, sans-serif"

func (f *figure) svg(w io.Writer) error {
	b := bufio.NewWriter(w)
	fmt.Fprintf(b, `<svg xmlns="http://www.w3.org/2000/svg" width="%s" height="%s" viewBox="0 0 %[1]s %[2]s" font-family="%s">`+"\n",
		num(f.w), num(f.h), svgFonts)
	fmt.Fprintf(b, `<rect width="100%%" height="100%%" fill="%s"/>`+"\n", white)
	for _, it := range f.items {
		switch it := it.(type) {
		case line:
			svgLine(b, it)
		case text:
			svgText(b, it)
		case mark:
			svgMark(b, it)
		}
	}
	b.WriteString("</svg>\n")
	return b.Flush()
}

func svgLine(b *bufio.Writer, l line) {
	b.WriteString(`<path d="`)
	for i, p := range l.pts {
		if i == 0 {
			b.WriteString("M")
		} else {
			b.WriteString("L")
		}
		b.WriteString(num(p.x) + " " + num(p.y))
	}
	fmt.Fprintf(b, `" fill="none" stroke="%s" stroke-width="%s"`, l.color, num(l.width))
	if len(l.dash) > 0 {
		var d []string
		for _, v := range l.dash {
			d = append(d, num(v))
		}
		fmt.Fprintf(b, ` stroke-dasharray="%s"`, strings.Join(d, " "))
	}
	if l.title == "" {
		b.WriteString("/>\n")
		return
	}
	b.WriteString("><title>")
	escape(b, l.title)
	b.WriteString("</title></path>\n")
}

func svgText(b *bufio.Writer, t text) {
	fmt.Fprintf(b, `<text x="%s" y="%s" font-size="%s" fill="%s"`, num(t.x), num(t.y), num(t.size), t.color)
	switch t.anchor {
	case middle:
		b.WriteString(` text-anchor="middle"`)
	case end:
		b.WriteString(` text-anchor="end"`)
	}
	if t.up {
		fmt.Fprintf(b, ` transform="rotate(-90 %s %s)"`, num(t.x), num(t.y))
	}
	b.WriteString(">")
	escape(b, t.s)
	b.WriteString("</text>\n")
}

func svgMark(b *bufio.Writer, m mark) {
	style := fmt.Sprintf(`fill="%s" stroke="%s" stroke-width="1"`, m.color, white)
	if m.shape == circle {
		fmt.Fprintf(b, `<circle cx="%s" cy="%s" r="%s" %s/>`+"\n", num(m.x), num(m.y), num(m.r), style)
		return
	}
	b.WriteString(`<path d="`)
	for i, p := range m.outline() {
		if i == 0 {
			b.WriteString("M")
		} else {
			b.WriteString("L")
		}
		b.WriteString(num(p.x) + " " + num(p.y))
	}
	fmt.Fprintf(b, `Z" %s/>`+"\n", style)
}

// escape writes s as XML character data. Names come from the traced
// program: a comm may hold '<', '&', control bytes or bytes that are not
// UTF-8, which XML cannot carry even escaped; EscapeText writes U+FFFD for
// those.
func escape(b *bufio.Writer, s string) {
	_ = xml.EscapeText(b, []byte(s))
}

// num is a coordinate to a hundredth of a pixel, which no viewer can show,
// so that the golden files do not change with the last bits of a float.
func num(v float64) string {
	v = math.Round(v*100) / 100
	if v == 0 {
		v = 0 // not -0
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}
