package main

import (
	"fmt"
	"strings"
	"time"
)

// readmeNotes follow the results table in the README: each guest's time, the
// whole run's, and for the arm64 guests what was measured how and what
// could not be checked there.
func readmeNotes(runs []*kernelRun, total time.Duration, parallel int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\nGuests, boot to power-off (%d at once, TCG), whole run %v:\n\n", parallel, total.Round(time.Second))
	for _, r := range runs {
		var secs []string
		var sum time.Duration
		for _, s := range r.Guest.Guests {
			secs = append(secs, fmt.Sprintf("%.0f", s.Boot.Elapsed.Seconds()))
			sum += s.Boot.Elapsed
		}
		passed, failed, _ := r.counts()
		fmt.Fprintf(&b, "- %s (%s): %d guests, %s s, %.0f s in all; %d checks passed, %d failed\n",
			r.name(), r.Kernel.Target.Arch, len(secs), strings.Join(secs, ", "), sum.Seconds(), passed, failed)
	}
	for _, r := range runs {
		if r.Kernel.Target.Arch == "arm64" {
			b.WriteString(arm64Notes(r))
		}
	}
	return b.String()
}

// arm64Notes say how an arm64 kernel was measured, with the numbers.
func arm64Notes(r *kernelRun) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n%s has no exceptions:page_fault_* tracepoints: faults are the page-fault event sampled with its address (in the region or not, no class), write-protect faults are `do_wp_page` hits.", r.name())
	b.WriteString(" A kernel without kprobes is stood in for by `--kprobe-method none` in the same guests (CONFIG_KPROBES cannot be booted away): copies told by their allocation's kernel stack.\n\n")
	line := func(name, what string) {
		rep, w, rd, err := writerReader(r.Guest, name)
		if err != nil {
			fmt.Fprintf(&b, "- %s: %v\n", what, err)
			return
		}
		in, _ := inRegion(rep, w)
		fmt.Fprintf(&b, "- %s (`%s`): writer %s copies, %d faults in the region, wp_faults %s; reader %s copies\n",
			what, rep.Methods["copies"], fmtp(w.Copies), in, wpText(rep, w), fmtp(rd.Copies))
	}
	line("touched", "kprobes")
	line("generic", "no kprobes")
	line("no-touch", "`--no-touch`, kprobes")
	line("generic-no-touch", "`--no-touch`, no kprobes")
	for _, l := range arm64MatrixLines(r.Guest) {
		fmt.Fprintf(&b, "- %s\n", l)
	}
	for _, n := range r.Notes {
		if strings.HasPrefix(n, "arm64: ") {
			fmt.Fprintf(&b, "- %s\n", strings.TrimPrefix(n, "arm64: "))
		}
	}
	return b.String()
}

func wpText(rep *cowtraceReport, p *cowtraceProcess) string {
	if rep.Methods["wp_faults"] == "" {
		return "not measured"
	}
	return fmt.Sprint(p.WPFaults)
}
