package render

import (
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cowtrace/cowtrace/report"
)

// The outputs of cowtrace watch. Records come one at a time, as episodes
// end, for hours: each writer writes each record at once, keeping nothing
// of it, and the summary last.

// WatchWriter writes watch's records as they come.
type WatchWriter interface {
	Episode(e *report.Episode) error
	Shared(s *report.SharedBucket) error
	// Summary ends the output.
	Summary(s *report.WatchSummary) error
}

// WatchJSON writes each record as one JSON line (docs/schema/watch.schema.json).
func WatchJSON(w io.Writer) WatchWriter { return watchJSON{json.NewEncoder(w)} }

type watchJSON struct{ enc *json.Encoder }

func (j watchJSON) Episode(e *report.Episode) error      { return j.enc.Encode(e) }
func (j watchJSON) Shared(s *report.SharedBucket) error  { return j.enc.Encode(s) }
func (j watchJSON) Summary(s *report.WatchSummary) error { return j.enc.Encode(s) }

// The table's columns, narrow enough for an 80-column terminal: numbers of
// more than five digits are shortened (123k, 1.2M) and commands cut; the
// JSON lines have every figure whole.
const (
	wtStart  = 8 // 15:04:05
	wtParent = 7 // its pid: the title names its command
	wtChild  = 20
	wtDur    = 5 // 1.52s, 2m05s
	wtNum    = 5
	// WatchTableWidth is the widest line the table writes.
	WatchTableWidth = wtStart + 1 + wtParent + 1 + wtChild + 1 + wtDur + 6*(1+wtNum)
)

// WatchTable writes a header, one line per episode and shared bucket as
// each comes, and the totals at the end, every line within
// WatchTableWidth columns. pid and comm are the process watched, argv its
// command for watch -- CMD (nil with -p); page is the page size the bytes
// are counted in. An episode's parent is the watched process, which the
// title names: a line gives the parent's pid (the JSON lines its command
// too, which an exec may have changed).
func WatchTable(w io.Writer, pid int, comm string, argv []string, page int) (WatchWriter, error) {
	t := &watchTable{w: w, loc: time.Local}
	what := comm
	if len(argv) > 0 {
		what = strings.Join(append([]string{filepath.Base(argv[0])}, argv[1:]...), " ")
	}
	b := &strings.Builder{}
	fmt.Fprintf(b, "%s\n", cut(fmt.Sprintf("cowtrace watch: pid %d (%s)", pid, what), WatchTableWidth))
	wrapLine(b, "", fmt.Sprintf("A line as each fork's child tree ends. copy, wp: pages copied and "+
		"write-protect faults, the parent's while the episode alone was open, the child tree's in its "+
		"whole life; file: of those copies, first writes to private file pages (no sharing in them); "+
		"bytes: copies x %d; -: not measured (the reason follows).", page))
	fmt.Fprintf(b, "%*s%-*s %-*s\n", wtStart+1+wtParent+1+wtChild+1+wtDur+1, "", 2*wtNum+1, "--parent---", 2*wtNum+1, "---child---")
	t.line(b, "start", "parent", "child", "dur", "copy", "wp", "copy", "wp", "file", "bytes")
	_, err := io.WriteString(w, b.String())
	return t, err
}

// wrapLine writes head and text in lines of WatchTableWidth columns at
// most, the lines after the first indented by two spaces.
func wrapLine(b *strings.Builder, head, text string) {
	b.WriteString(wrap(head+text, WatchTableWidth, "  "))
}

type watchTable struct {
	w   io.Writer
	loc *time.Location
}

func (t *watchTable) line(b *strings.Builder, start, parent, child, dur string, nums ...string) {
	fmt.Fprintf(b, "%-*s %-*s %-*s %*s", wtStart, start, wtParent, cut(parent, wtParent), wtChild, cut(child, wtChild), wtDur, dur)
	for _, n := range nums {
		fmt.Fprintf(b, " %*s", wtNum, n)
	}
	b.WriteByte('\n')
}

func (t *watchTable) Episode(e *report.Episode) error {
	var b strings.Builder
	t.line(&b, e.Start.In(t.loc).Format("15:04:05"), strconv.Itoa(e.ParentPid), procName(e.ChildPid, e.Comm), shortDuration(e.DurationMs),
		shortCount(e.ParentCopies), shortCount(e.ParentWPFaults), shortCount(e.ChildCopies), shortCount(e.ChildWPFaults),
		fileCopies(e.ParentCopiesByCause, e.ChildCopiesByCause), shortBytes(e.Bytes))
	writeReasons(&b, fmt.Sprintf("episode %d", e.ID), e.Unmeasured)
	if len(e.SharedWith) > 0 {
		wrapLine(&b, "  ", fmt.Sprintf("episode %d overlapped %s: the parent's copies meanwhile are in their shared line", e.ID, intList(e.SharedWith)))
	}
	_, err := io.WriteString(t.w, b.String())
	return err
}

func (t *watchTable) Shared(s *report.SharedBucket) error {
	var b strings.Builder
	t.line(&b, s.Start.In(t.loc).Format("15:04:05"), strconv.Itoa(s.ParentPid), "shared "+intList(s.Episodes), shortDuration(s.DurationMs),
		shortCount(s.Copies), shortCount(s.WPFaults), "", "", fileCopies(s.CopiesByCause), shortBytes(s.Bytes))
	writeReasons(&b, "shared "+intList(s.Episodes), s.Unmeasured)
	_, err := io.WriteString(t.w, b.String())
	return err
}

func (t *watchTable) Summary(s *report.WatchSummary) error {
	var b strings.Builder
	copies := "copies not measured"
	if s.Copies != nil {
		copies = fmt.Sprintf("%s = %d bytes (%s)", plural(int(*s.Copies), "copy"), *s.Bytes, shortBytes(s.Bytes))
	}
	wrapLine(&b, "", fmt.Sprintf("%s, %s, %s", plural(s.Episodes, "episode"), copies, plural(s.SharedBuckets, "shared bucket")))
	if c := s.CopiesByCause; c != nil {
		wrapLine(&b, "", fmt.Sprintf("copies by cause: %d write-protect, %d private-file first writes", c.WriteProtect, c.PrivateFileFirstWrite))
	}
	wrapLine(&b, "", fmt.Sprintf("watched %s, ended by %s", shortDuration(s.DurationMs), s.EndedBy))
	if n := s.IncompleteEpisodes; n > 0 {
		wrapLine(&b, "incomplete: ", fmt.Sprintf("%s with a figure not known whole (said under each), not in the copies above", plural(n, "episode")))
	}
	for _, n := range s.Incomplete {
		wrapLine(&b, "incomplete: ", n)
	}
	for _, n := range s.Notes {
		wrapLine(&b, "note: ", n)
	}
	_, err := io.WriteString(t.w, b.String())
	return err
}

// writeReasons says why figures of a line are null, once per reason.
func writeReasons(b *strings.Builder, what string, unmeasured map[string]string) {
	byWhy := map[string][]string{}
	var whys []string
	for field, why := range unmeasured {
		if byWhy[why] == nil {
			whys = append(whys, why)
		}
		byWhy[why] = append(byWhy[why], field)
	}
	sort.Strings(whys)
	for _, why := range whys {
		fields := byWhy[why]
		sort.Strings(fields)
		wrapLine(b, "  ", fmt.Sprintf("%s: %s null: %s", what, strings.Join(fields, ", "), why))
	}
}

func procName(pid int, comm string) string { return strconv.Itoa(pid) + " " + comm }

// cut shortens s to n bytes, marking the cut with ~.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "~"
}

func intList(ids []int) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.Itoa(id)
	}
	return strings.Join(s, ",")
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	if strings.HasSuffix(noun, "y") {
		return fmt.Sprintf("%d %sies", n, noun[:len(noun)-1])
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// fileCopies are the private-file first-write copies of the sides, "-"
// when a side's split is not known.
func fileCopies(sides ...*report.CopyCauses) string {
	var n uint64
	for _, c := range sides {
		if c == nil {
			return "-"
		}
		n += c.PrivateFileFirstWrite
	}
	return shortCount(&n)
}

// shortCount writes a count in at most five characters: whole up to
// 99999, then with a unit (123k, 1.2M).
func shortCount(v *uint64) string {
	if v == nil {
		return "-"
	}
	if *v < 100000 {
		return strconv.FormatUint(*v, 10)
	}
	return shortUnits(float64(*v), 1000, []string{"k", "M", "G", "T", "P", "E"})
}

// shortBytes writes bytes in at most five characters, in binary units.
func shortBytes(v *uint64) string {
	if v == nil {
		return "-"
	}
	if *v < 1024 {
		return strconv.FormatUint(*v, 10)
	}
	return shortUnits(float64(*v), 1024, []string{"K", "M", "G", "T", "P", "E"})
}

// shortUnits divides v by base until it is under base, and writes it with
// one decimal under 100, none above: 4.0K, 16.5M, 1023M.
func shortUnits(v, base float64, units []string) string {
	i := -1
	for v >= base && i+1 < len(units) || i < 0 {
		v /= base
		i++
	}
	switch {
	case v < 99.95:
		return fmt.Sprintf("%.1f%s", v, units[i])
	case v >= base-0.5 && i+1 < len(units):
		return fmt.Sprintf("1.0%s", units[i+1])
	}
	return fmt.Sprintf("%.0f%s", v, units[i])
}

// shortDuration writes a duration in at most five characters.
func shortDuration(ms float64) string {
	d := time.Duration(ms * float64(time.Millisecond))
	switch {
	case d < 10*time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	case d < 100*time.Second:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d < time.Hour:
		return fmt.Sprintf("%dm%02d", int(d.Minutes()), int(d.Seconds())%60)
	case d < 100*time.Hour:
		return fmt.Sprintf("%dh%02d", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}
