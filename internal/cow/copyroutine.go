package cow

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cowtrace/cowtrace/perfevents"
)

// CopyCandidates are the kernel functions that may copy a page on the
// copy-on-write path, most specific first. Which exists, which can be probed
// and which the path really calls differs by kernel and architecture:
// copy_page is what the seed probed, but Debian's x86 kernels refuse it
// (noinstr), and copy the page with copy_mc_to_kernel when machine-check
// recovery is built in; arm64 copies with copy_user_highpage. wp_page_copy
// comes last because it also runs when a write replaces the shared zero
// page, which copies nothing.
var CopyCandidates = []string{
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

// ZeroPageCopier is the candidate that also runs when a write replaces the
// shared zero page, which copies nothing: its hits count copies only where
// nothing better tells them.
const ZeroPageCopier = "wp_page_copy"

// WPFunction is the handler of every write-protect fault, copy or reuse.
const WPFunction = "do_wp_page"

// CalibrationPages is the number of known copy-on-write writes of the
// calibration run: a writer child that writes one byte into each of that
// many pages it shares with its parent.
const CalibrationPages = 64

// Calibration gathers what the calibration run found, candidate by
// candidate, and picks the copy routine.
type Calibration struct {
	present  []string // in kallsyms, in CopyCandidates' order
	rejected []string
	hits     map[string]uint64
}

// NewCalibration starts a calibration over the candidates that syms holds
// as text symbols.
func NewCalibration(syms *perfevents.Symbols) *Calibration {
	c := &Calibration{hits: map[string]uint64{}}
	for _, fn := range CopyCandidates {
		if sym, ok := syms.Lookup(fn); ok && sym.IsText() {
			c.present = append(c.present, fn)
		} else {
			c.rejected = append(c.rejected, fn+" (not in kallsyms)")
		}
	}
	return c
}

// Functions are the functions to probe on the calibration's writer:
// WPFunction, then the present candidates.
func (c *Calibration) Functions() []string {
	return append([]string{WPFunction}, c.present...)
}

// Refused records a function that could not be probed.
func (c *Calibration) Refused(fn string, err error) {
	c.rejected = append(c.rejected, fmt.Sprintf("%s (%s)", fn, shortReason(err)))
}

// Hits records a probed function's hits on the writer.
func (c *Calibration) Hits(fn string, n uint64) { c.hits[fn] = n }

// Verdict picks the first candidate whose hits match the known copies (a
// little more is allowed: the writer's own stack), or "" and what was
// measured. Attaching alone proves nothing: a function can exist and attach
// on a kernel whose build never calls it on this path, and would then report
// a silent zero.
func (c *Calibration) Verdict() (name, check string) {
	wp := "do_wp_page not probed"
	if v, ok := c.hits[WPFunction]; ok {
		wp = fmt.Sprintf("do_wp_page %d", v)
	}
	rejected := append([]string{}, c.rejected...)
	for _, fn := range c.present {
		v, ok := c.hits[fn]
		if !ok {
			continue
		}
		if name == "" && v >= CalibrationPages && v <= CalibrationPages+CalibrationPages/8 {
			name = fn
			continue
		}
		rejected = append(rejected, fmt.Sprintf("%s (%d hits)", fn, v))
	}
	if name == "" {
		return "", fmt.Sprintf("no candidate matched %d known copy-on-write writes (%s); rejected: %s",
			CalibrationPages, wp, strings.Join(rejected, ", "))
	}
	check = fmt.Sprintf("%s: %d hits on %d known copy-on-write writes (%s); rejected: %s",
		name, c.hits[name], CalibrationPages, wp, strings.Join(rejected, ", "))
	if name == ZeroPageCopier {
		check += "; note: wp_page_copy also counts zero-page replacements, which copy nothing"
	}
	return name, check
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
