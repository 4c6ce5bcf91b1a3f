package render

import (
	"fmt"
	"strings"

	"github.com/cowtrace/cowtrace/report"
)

// methodLines explains each method once, in words.
func methodLines(run *report.Run) []string {
	var out []string
	m := run.Methods
	atExit := strings.HasSuffix(m["page_faults"], report.AtExitMethod)
	switch {
	case atExit:
		out = append(out, "page faults, minor, major: perf software counters, inherited by every task, each task's own counts from samples of its counters as it leaves a CPU and as it exits, checked against the counters' totals (count mode)")
	case strings.HasPrefix(m["page_faults"], "tracepoint:"):
		out = append(out, "page faults: every fault the tracepoints below classified; major: perf software event major-faults, every event sampled with its thread id (the software counters page-faults and minor-faults with --counters)")
	case strings.HasPrefix(m["page_faults"], "sampled:") && m["minor_faults"] == "":
		out = append(out, "page faults, major: perf software events page-faults, major-faults, every event sampled with its thread id (minor faults with --counters)")
	case strings.HasPrefix(m["page_faults"], "sampled:"):
		out = append(out, "page faults, minor, major: perf software events page-faults, minor-faults, major-faults, every event sampled with its thread id")
	case m["page_faults"] != "":
		out = append(out, "page faults, minor, major: perf software counters page-faults, minor-faults, major-faults, per task")
	}
	if strings.HasPrefix(m["wp_faults"], "counter:") && atExit {
		out = append(out, "wp faults: tracepoints exceptions:page_fault_user (error code 0x7) and page_fault_kernel (0x3, on user addresses) counted in the kernel behind filters, each task's own count from its samples as for page faults, no record per fault")
	} else if strings.HasPrefix(m["wp_faults"], "counter:") {
		out = append(out, "wp faults, ... in region: tracepoint exceptions:page_fault_user counted in the kernel behind filters on the x86 error code (wp = 0x7) and the region's addresses, no sampling")
	} else if m["wp_faults"] != "" {
		line := "wp faults, ... in region: tracepoint exceptions:page_fault_user, every fault sampled and classified by its x86 error code (wp = write to a present page, 0x7)"
		if strings.HasSuffix(m["wp_faults"], "+page_fault_kernel") {
			line += "; with page_fault_kernel for the faults a system call takes on the process's memory"
		}
		out = append(out, line)
	}
	if c := m["copies"]; strings.HasPrefix(c, "kprobe:") {
		out = append(out, fmt.Sprintf("copies: kprobe (%s) hits on %s, the routine that copies pages on this kernel", run.KprobeMethod, strings.TrimPrefix(c, "kprobe:")))
	}
	if m["inferred_copies"] != "" {
		label := "inferred copies"
		if m["copies"] == m["inferred_copies"] {
			label = "copies"
		}
		switch {
		case strings.HasPrefix(m["inferred_copies"], "callchain:"):
			out = append(out, label+": kmem:mm_page_alloc of one non-zeroed user page whose kernel stack (resolved with kallsyms) runs through do_wp_page: the page a copy-on-write fault copies into")
		case strings.HasPrefix(m["inferred_copies"], "counter:"):
			out = append(out, label+": inferred, not measured: kmem:mm_page_alloc of one non-zeroed user page in the process, counted in the kernel behind a filter")
		default:
			out = append(out, label+": inferred, not measured: wp faults followed in the same task by kmem:mm_page_alloc of one non-zeroed user page")
		}
	}
	for _, fn := range probeNames(run) {
		if fn != run.CopyRoutine {
			out = append(out, fmt.Sprintf("%s: kprobe (%s) hits", fn, run.KprobeMethod))
		}
	}
	return append(out, attribMethodLines(run)...)
}

// attribMethodLines explain --by in words.
func attribMethodLines(run *report.Run) []string {
	switch run.CopiesBy {
	case report.ByMapping:
		return []string{
			"copies by mapping: each counted copy at its write-protect fault's address, in the process's mappings at that moment (PERF_RECORD_MMAP2 records; a fork's child starts from its parent's, an exec, told by its new main stack, from none, an attached process from its /proc/PID/maps)",
			"  [heap], [stack], [vdso]: the kernel's names; anonymous memory in no record or unnamed is [heap] when it lies between the executable's end and the lowest mapping of the mmap area (brk starts within 1 GiB of the executable), [stack] above every mapping, else [anon] (anonymous mmaps: allocator arenas, thread stacks)",
		}
	case report.ByFunction:
		return []string{
			"copies by function: each counted copy's faulting user instruction (the tracepoint's ip), in the mapping it lay in then, as a file offset, through the ELF's program headers to an address, and that to the function of .symtab or else .dynsym that holds it; ?+OFFSET (FILE) where no symbol covers it",
			"  [kernel mode]: the fault was the kernel's, writing into the process's memory in a system call (read() into a buffer); [fault not seen]: the copy's fault was not sampled",
		}
	}
	return nil
}
