package render

import (
	"fmt"
	"io"
	"strings"

	"github.com/cowtrace/cowtrace/report"
)

// footnotes are the keys of a narrow table's methods: [1], [2], ... in the
// order the columns first need them, one per explanation, so that columns
// measured alike (page faults, minor, major) share one.
type footnotes struct {
	notes []string
}

// key is the footnote key of note, "" for none.
func (f *footnotes) key(note string) string {
	if note == "" {
		return ""
	}
	for i, n := range f.notes {
		if n == note {
			return fmt.Sprintf("[%d]", i+1)
		}
	}
	f.notes = append(f.notes, note)
	return fmt.Sprintf("[%d]", len(f.notes))
}

// write explains each key once.
func (f *footnotes) write(w io.Writer, st style) {
	for i, n := range f.notes {
		prose(w, st, fmt.Sprintf("[%d] ", i+1), n)
	}
}

// methodNote is a method in a few words, for a footnote: what the wide
// layout's methods say in a paragraph.
func methodNote(method string) string {
	user := ""
	if strings.Contains(method, ":u") {
		user = ", user mode only"
	}
	switch {
	case method == "":
		return ""
	case strings.HasPrefix(method, "counter:exceptions:page_fault_user"):
		return "x86 fault tracepoints counted in the kernel, by error code (wp: 0x7)"
	case strings.HasPrefix(method, "counter:kmem:mm_page_alloc"):
		return "inferred: copy-shaped page allocations, counted in the kernel"
	case strings.HasSuffix(method, report.AtExitMethod):
		return "perf software counters, each task's own (count mode)"
	case strings.HasPrefix(method, "counter:"):
		return "perf software counters, per task" + user
	case method == "sampled:page-faults with address":
		return "page-fault event: where each fault was, not of which kind"
	case strings.HasPrefix(method, "sampled:"):
		return "perf software events, every event sampled" + user
	case strings.HasPrefix(method, "tracepoint:"):
		return "x86 fault tracepoints, every fault sampled and classified"
	case strings.HasPrefix(method, "kprobe:"):
		return "kprobe hits on " + strings.TrimPrefix(method, "kprobe:")
	case strings.HasPrefix(method, "inferred:"):
		return "inferred: a wp fault followed by a page allocation"
	case strings.HasPrefix(method, "callchain:"):
		return "page allocations on the copy-on-write path (kernel stacks)"
	case strings.HasPrefix(method, "pagemap:"):
		return "/proc/PID/pagemap of each child against the parent's"
	}
	return method
}
