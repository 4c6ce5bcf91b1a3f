package report

import (
	"fmt"
	"io"
	"strconv"
)

// Attribution kinds of Run.CopiesBy (--by).
const (
	// ByMapping splits a process's copies by the mapping each copied page
	// lies in: "[heap]", "[stack]", "[anon]", a file's path.
	ByMapping = "mapping"
	// ByFunction splits them by the user function whose write faulted.
	ByFunction = "function"
)

// Share is one line of a process's split copies (Process.CopiesBy): a
// mapping or a function and the copies that landed in it or that it caused.
type Share struct {
	Name   string `json:"name"`
	Copies uint64 `json:"copies"`
	// Pages is how many distinct pages those copies were of: fewer than
	// Copies when a page was copied again (after a later fork).
	Pages uint64 `json:"pages"`
	// Share is Copies over the process's copies that have a share (0..1).
	Share float64 `json:"share"`
}

// Timeseries is one process's cumulative copies and write-protect faults
// over the trace, for --plot. It is not part of the JSON contract.
type Timeseries struct {
	Pid    int
	Comm   string
	Copies []Point
	Faults []Point
}

// Point is a cumulative count at a time since the trace started.
type Point struct {
	Ms float64
	N  uint64
}

// attribRows is how many shares a process's table shows before it sums the
// rest into one line; the JSON report has them all.
const attribRows = 12

// writeAttribution renders, after the main table, one small table per
// process with copies: where they landed (or which code caused them), how
// many pages, and what share of the process's copies.
func writeAttribution(w io.Writer, run *Run, markdown bool) error {
	if run.CopiesBy == "" {
		return nil
	}
	bw := &errWriter{w: w}
	for i := range run.Processes {
		p := &run.Processes[i]
		if len(p.CopiesBy) == 0 || p.Role == "thread" {
			continue
		}
		var total uint64
		for _, s := range p.CopiesBy {
			total += s.Copies
		}
		title := fmt.Sprintf("copies by %s: pid %d", run.CopiesBy, p.Pid)
		if p.Lineage != nil {
			title += " (" + p.Comm + ")"
		}
		title += fmt.Sprintf(", %d copies, %s", total, mib(total))
		if markdown {
			fmt.Fprintf(bw, "\n**%s**\n\n", title)
		} else {
			fmt.Fprintf(bw, "\n%s\n", title)
		}
		if bw.err != nil {
			return bw.err
		}
		var rows [][]string
		for _, s := range topShares(p.CopiesBy, attribRows) {
			rows = append(rows, []string{s.Name, strconv.FormatUint(s.Copies, 10), strconv.FormatUint(s.Pages, 10),
				fmt.Sprintf("%.2f", float64(s.Copies)*4096/(1<<20)), fmt.Sprintf("%.1f%%", 100*s.Share)})
		}
		if err := writeTable(w, markdown, 0, []string{run.CopiesBy, "copies", "pages", "MiB", "share"}, rows); err != nil {
			return err
		}
	}
	return bw.err
}

// topShares keeps the n-1 largest shares (they come sorted) and sums the
// others into one line.
func topShares(ss []Share, n int) []Share {
	if len(ss) <= n {
		return ss
	}
	out := append([]Share{}, ss[:n-1]...)
	rest := Share{Name: fmt.Sprintf("(%d others)", len(ss)-n+1)}
	for _, s := range ss[n-1:] {
		rest.Copies += s.Copies
		rest.Pages += s.Pages
		rest.Share += s.Share
	}
	return append(out, rest)
}

func mib(copies uint64) string {
	return fmt.Sprintf("%.2f MiB", float64(copies)*4096/(1<<20))
}

// attribMethodLines explain --by in words.
func attribMethodLines(run *Run) []string {
	switch run.CopiesBy {
	case ByMapping:
		return []string{
			"copies by mapping: each counted copy at its write-protect fault's address, in the process's mappings at that moment (PERF_RECORD_MMAP2 records; a fork's child starts from its parent's, an exec, told by its new main stack, from none, an attached process from its /proc/PID/maps)",
			"  [heap], [stack], [vdso]: the kernel's names; anonymous memory in no record or unnamed is [heap] when it lies between the executable's end and the lowest mapping of the mmap area (brk starts within 1 GiB of the executable), [stack] above every mapping, else [anon] (anonymous mmaps: allocator arenas, thread stacks)",
		}
	case ByFunction:
		return []string{
			"copies by function: each counted copy's faulting user instruction (the tracepoint's ip), in the mapping it lay in then, as a file offset, through the ELF's program headers to an address, and that to the function of .symtab or else .dynsym that holds it; ?+OFFSET (FILE) where no symbol covers it",
			"  [kernel mode]: the fault was the kernel's, writing into the process's memory in a system call (read() into a buffer); [fault not seen]: the copy's fault was not sampled",
		}
	}
	return nil
}
