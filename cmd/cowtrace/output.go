package main

import (
	"io"
	"os"
	"strconv"

	"github.com/cowtrace/cowtrace/report/render"
	"golang.org/x/term"
)

// output is where a command writes its report: stdout, or the file of -o.
type output struct {
	io.Writer
	file     *os.File // nil: stdout
	reported bool     // the report is written whole
}

// openOutput opens -o PATH (truncating it, as a shell's > would) before
// anything starts: a path that cannot be written is a usage error then,
// not a run whose results are lost at the end.
func openOutput(path string, stdout io.Writer) (*output, error) {
	if path == "" {
		return &output{Writer: stdout}, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o666)
	if err != nil {
		return nil, usagef("-o: %v", err)
	}
	return &output{Writer: f, file: f}, nil
}

// close closes the file of -o. Without a report in it, a regular file is
// removed: an empty or half-written report left behind would be read by the
// next script as a result. -o /dev/stderr and pipes are left alone.
func (o *output) close(reported bool) error {
	if o.file == nil {
		return nil
	}
	if !reported {
		if fi, err := o.file.Stat(); err == nil && fi.Mode().IsRegular() {
			os.Remove(o.file.Name())
		}
	}
	return o.file.Close()
}

// finish closes the output at the end of a command whose result is *err:
// the command's own error comes first, a failed close next.
func (o *output) finish(err *error) {
	if cerr := o.close(o.reported); *err == nil {
		*err = cerr
	}
}

// layout is the room a table printed to w has, for --format table: the
// terminal's width when w is one, else $COLUMNS when set (COLUMNS=200
// cowtrace ... | less), else render's default of 80, as for a file or a
// pipe, where no width is known.
func layout(w io.Writer) render.Layout {
	if f, ok := w.(*os.File); ok {
		if width, _, err := term.GetSize(int(f.Fd())); err == nil && width > 0 {
			return render.Layout{Width: width}
		}
	}
	if n, err := strconv.Atoi(os.Getenv("COLUMNS")); err == nil && n > 0 {
		return render.Layout{Width: n}
	}
	return render.Layout{}
}
