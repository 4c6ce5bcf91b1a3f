package plot

import (
	"strings"
	"sync"
	"unicode/utf8"

	"golang.org/x/image/font"
	"golang.org/x/image/font/gofont/goregular"
	"golang.org/x/image/font/opentype"
	"golang.org/x/image/font/sfnt"
)

// The PNG is drawn with the Go font, so its text is measured with it too.
// An SVG's text is drawn with whatever sans-serif font the viewer has:
// DejaVu Sans (Debian's default, and Verdana's metrics) runs 4-15% wider
// than the Go font, Arial about as wide. Every width that the layout
// reserves is the Go font's times slack, so that no viewer's text runs out
// of its box, and both formats share one layout.
const slack = 1.2

var goFont = sync.OnceValues(func() (*sfnt.Font, error) { return opentype.Parse(goregular.TTF) })

var (
	facesMu sync.Mutex
	faces   = map[float64]font.Face{}
)

// face is the Go font at size pixels (72 DPI: a point is a pixel).
func face(size float64) (font.Face, error) {
	facesMu.Lock()
	defer facesMu.Unlock()
	if f, ok := faces[size]; ok {
		return f, nil
	}
	fnt, err := goFont()
	if err != nil {
		return nil, err
	}
	f, err := opentype.NewFace(fnt, &opentype.FaceOptions{Size: size, DPI: 72, Hinting: font.HintingNone})
	if err != nil {
		return nil, err
	}
	faces[size] = f
	return f, nil
}

// width is the room the layout gives s at size: the Go font's advance
// times slack.
func width(s string, size float64) float64 {
	f, err := face(size)
	if err != nil {
		// The embedded font parsed in the tests; a guess keeps the layout
		// going should it not, and the PNG says the error.
		return float64(utf8.RuneCountInString(s)) * size * 0.6 * slack
	}
	return float64(font.MeasureString(f, s)) / 64 * slack
}

// wrap breaks s into lines of at most room wide at size, at spaces where it
// can and inside a word only where the word alone is wider: a title is
// never cut.
func wrap(s string, size, room float64) []string {
	var lines []string
	cur := ""
	for _, w := range strings.Fields(s) {
		if cur != "" && width(cur+" "+w, size) <= room {
			cur += " " + w
			continue
		}
		if cur != "" {
			lines = append(lines, cur)
		}
		cur = ""
		for width(w, size) > room {
			n := fit(w, size, room)
			lines = append(lines, w[:n])
			w = w[n:]
		}
		cur = w
	}
	if cur != "" {
		lines = append(lines, cur)
	}
	return lines
}

// fit is how many bytes of w, whole runes and at least one, fit in room.
func fit(w string, size, room float64) int {
	n := 0
	for n < len(w) {
		_, l := utf8.DecodeRuneInString(w[n:])
		if n > 0 && width(w[:n+l], size) > room {
			break
		}
		n += l
	}
	return n
}
