package main

import (
	"fmt"
	"strings"
	"time"
)

// readmeNotes follow the results table in the README: each guest's time, the
// whole run's, and for the boots whose faults have no class what was
// measured how and what could not be checked there.
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
		if classlessCopies(r.Kernel.Expect) {
			b.WriteString(classlessNotes(r))
		}
	}
	return b.String()
}

// classlessNotes say how a kernel whose faults have no class was measured,
// with the numbers.
func classlessNotes(r *kernelRun) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n%s has no exceptions:page_fault_* tracepoints: faults are the page-fault event sampled with its address (in the region or not, no class)", r.name())
	if wpByProbe(r.Kernel.Expect) {
		b.WriteString(", write-protect faults are `do_wp_page` hits")
	}
	b.WriteString(".")
	if r.Kernel.Expect.WithoutKprobesToo {
		b.WriteString(" A kernel without kprobes is stood in for by `--kprobe-method none` in the same guests (CONFIG_KPROBES cannot be booted away): copies told by their allocation's kernel stack.")
	}
	b.WriteString("\n\n")
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
	if r.Kernel.Expect.WithoutKprobesToo {
		line("generic", "no kprobes")
	}
	line("no-touch", "`--no-touch`, kprobes")
	if r.Kernel.Expect.WithoutKprobesToo {
		line("generic-no-touch", "`--no-touch`, no kprobes")
	}
	for _, l := range r.Guest.matrixLines() {
		fmt.Fprintf(&b, "- %s\n", l)
	}
	for _, n := range r.Skipped {
		fmt.Fprintf(&b, "- %s\n", n)
	}
	return b.String()
}

func wpText(rep *cowtraceReport, p *cowtraceProcess) string {
	if rep.Methods["wp_faults"] == "" {
		return "not measured"
	}
	return fmt.Sprint(p.WPFaults)
}
