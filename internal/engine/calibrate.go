package engine

import (
	"context"
	"fmt"

	"github.com/cowtrace/cowtrace/internal/cow"
	"github.com/cowtrace/cowtrace/internal/workload"
	"github.com/cowtrace/cowtrace/perfevents"
)

// calibrate runs a small workload whose writer child makes exactly
// cow.CalibrationPages writes to pages it shares with its parent, probes
// every copy-routine candidate that kallsyms knows on that child, and lets
// cow.Calibration pick the one whose hits match. A candidate the kernel
// refuses, for any reason including a security policy, is recorded as
// rejected and the others are still tried.
func (s *Session) calibrate(ctx context.Context) error {
	syms, err := perfevents.LoadKallsymsCached(append([]string{cow.WPFunction, cow.CowFaultFunction}, append(cow.CopyCandidates, s.cfg.Probes...)...)...)
	if err != nil {
		return err
	}
	// do_cow_fault's hits split the copy routine's: its copies are of
	// private file pages, the others the write-protect faults'. Inlined
	// (6.18), it is no symbol, and the split is the stacks' alone.
	if _, ok := syms.Lookup(cow.CowFaultFunction); ok {
		s.causeProbe = cow.CowFaultFunction
	}
	cal := cow.NewCalibration(syms)
	cfg := workload.Config{Blocks: cow.CalibrationPages, BlockSize: 4096, Offset: 0, Touch: true,
		Children: []workload.Action{workload.ActionWrite}}
	p, err := workload.Start(cfg)
	if err != nil {
		return fmt.Errorf("copy routine calibration: %w", err)
	}
	defer p.Close()

	events := map[string]*perfevents.Event{}
	defer func() {
		for _, ev := range events {
			ev.Close()
		}
	}()
	_, err = workload.Drive(ctx, p, len(cfg.Children), workload.Hooks{
		AtGate: func(m workload.Message) error {
			for _, fn := range cal.Functions() {
				ev, err := s.kp.Open(fn, perfevents.Attr{}, m.Pid, perfevents.AnyCPU)
				if err != nil {
					if !refused(err) {
						return err
					}
					if fn == cow.WPFunction {
						s.mu.Lock()
						s.probeErrs[fn] = err
						s.mu.Unlock()
					}
					cal.Refused(fn, err)
					continue
				}
				events[fn] = ev
			}
			return nil
		},
	})
	if err != nil {
		return fmt.Errorf("copy routine calibration: %w", err)
	}
	for fn, ev := range events {
		v, err := ev.Count()
		if err != nil {
			return err
		}
		cal.Hits(fn, v)
	}
	s.copyRoutine, s.copyCheck = cal.Verdict()
	return nil
}
