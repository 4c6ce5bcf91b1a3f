package experiment

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/cowtrace/cowtrace/perfevents"
	"github.com/cowtrace/cowtrace/workload"
)

// copyCandidates are the kernel functions that may copy a page on the
// copy-on-write path, most specific first. Which exists, which can be probed
// and which the path really calls differs by kernel and architecture:
// copy_page is what the seed probed, but Debian's x86 kernels refuse it
// (noinstr), and copy the page with copy_mc_to_kernel when machine-check
// recovery is built in. wp_page_copy comes last because it also runs when a
// write replaces the shared zero page, which copies nothing.
var copyCandidates = []string{
	"copy_page",
	"copy_mc_to_kernel",
	"copy_mc_enhanced_fast_string",
	"copy_mc_fragile",
	"__wp_page_copy_user",
	"copy_user_highpage",
	"copy_highpage",
	"copy_mc_user_highpage",
	"folio_copy",
	"wp_page_copy",
}

// wpFunction is the handler of every write-protect fault, copy or reuse.
const wpFunction = "do_wp_page"

// calibrationPages is the number of known copy-on-write writes of the
// calibration run.
const calibrationPages = 64

// copyRoutine is the outcome of the calibration.
type copyRoutine struct {
	name  string // "" when no candidate passed
	check string // what was measured, for the report
}

// findCopyRoutine runs a small calibration workload whose writer child makes
// exactly calibrationPages writes to pages it shares with its parent, probes
// every candidate that kallsyms knows on that child, and picks the first one
// whose hits match. Attaching alone proves nothing: a function can exist and
// attach on a kernel whose build never calls it on this path, and would then
// report a silent zero.
func findCopyRoutine(ctx context.Context, kp kprober, syms *perfevents.Symbols) (copyRoutine, error) {
	var present, rejected []string
	for _, fn := range copyCandidates {
		if sym, ok := syms.Lookup(fn); ok && sym.IsText() {
			present = append(present, fn)
		} else {
			rejected = append(rejected, fn+" (not in kallsyms)")
		}
	}
	cfg := workload.Config{Blocks: calibrationPages, BlockSize: 4096, Offset: 0, Touch: true,
		Children: []workload.Action{workload.ActionWrite}}
	p, err := workload.Start(cfg)
	if err != nil {
		return copyRoutine{}, err
	}
	defer p.Close()

	events := map[string]*perfevents.Event{}
	defer func() {
		for _, ev := range events {
			ev.Close()
		}
	}()
	_, err = drive(ctx, p, len(cfg.Children), hooks{
		atGate: func(m workload.Message) error {
			for _, fn := range append([]string{wpFunction}, present...) {
				ev, err := kp.open(fn, m.Pid)
				if err != nil {
					if errors.Is(err, perfevents.ErrNotFound) || errors.Is(err, perfevents.ErrNotProbeable) {
						rejected = append(rejected, fmt.Sprintf("%s (%s)", fn, shortReason(err)))
						continue
					}
					return err
				}
				events[fn] = ev
			}
			return nil
		},
	})
	if err != nil {
		return copyRoutine{}, fmt.Errorf("copy routine calibration: %w", err)
	}

	hits := map[string]uint64{}
	for fn, ev := range events {
		v, err := ev.Count()
		if err != nil {
			return copyRoutine{}, err
		}
		hits[fn] = v
	}
	wp := "do_wp_page not probed"
	if v, ok := hits[wpFunction]; ok {
		wp = fmt.Sprintf("do_wp_page %d", v)
	}
	var chosen string
	for _, fn := range present {
		v, ok := hits[fn]
		if !ok {
			continue
		}
		if chosen == "" && v >= calibrationPages && v <= calibrationPages+calibrationPages/8 {
			chosen = fn
			continue
		}
		rejected = append(rejected, fmt.Sprintf("%s (%d hits)", fn, v))
	}
	if chosen == "" {
		return copyRoutine{check: fmt.Sprintf("no candidate matched %d known copy-on-write writes (%s); rejected: %s",
			calibrationPages, wp, strings.Join(rejected, ", "))}, nil
	}
	check := fmt.Sprintf("%s: %d hits on %d known copy-on-write writes (%s); rejected: %s",
		chosen, hits[chosen], calibrationPages, wp, strings.Join(rejected, ", "))
	if chosen == "wp_page_copy" {
		check += "; note: wp_page_copy also counts zero-page replacements, which copy nothing"
	}
	return copyRoutine{name: chosen, check: check}, nil
}

func shortReason(err error) string {
	switch {
	case errors.Is(err, perfevents.ErrNotFound):
		return "not found"
	case errors.Is(err, perfevents.ErrNotProbeable):
		return "not probe-able"
	}
	return err.Error()
}
