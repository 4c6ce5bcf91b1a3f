package experiment

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cowtrace/cowtrace/workload"
)

// hooks are the tracer's moments in a workload's life. Each runs while the
// process it concerns waits at its gate, so whatever a hook opens counts from
// the very first access.
type hooks struct {
	ready      func(m workload.Message) error // parent mapped the region; no child yet
	atGate     func(m workload.Message) error // child m.Child exists, has not touched the region
	parentDone func(m workload.Message) error // parent finished its final read
	childDone  func(m workload.Message) error // child m.Child finished touching the region

	// hold: the workload runs with workload.Config.Hold. Children are
	// then released together once the parent has forked them all and
	// each is at its gate (after forked), and kept alive after their work
	// until the parent has done its own (after worked).
	hold   bool
	forked func() error // every process alive, nobody touched the region since the fork
	worked func() error // every process did its work, nobody exited
}

type message struct {
	m   workload.Message
	err error
}

// drive runs a started worker to its end, calling h at each gate, and returns
// the byte sums reported by the parent (index 0) and children.
func drive(ctx context.Context, p *workload.Process, nchildren int, h hooks) ([]uint64, error) {
	msgs := make(chan message, 1)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			m, err := p.Next(time.Time{})
			select {
			case msgs <- message{m, err}:
			case <-stop:
				return
			}
			if err != nil {
				return
			}
		}
	}()

	sums := make([]uint64, nchildren+1)
	var gated []int // hold: children at their first gate
	forked, worked, done, releasedAll := false, false, 0, false
	// releaseAll opens the gate of every child (and with parent, the
	// parent's) once the moment of hook has come.
	releaseAll := func(hook func() error, parent bool) error {
		if hook != nil {
			if err := hook(); err != nil {
				return err
			}
		}
		for c := 1; c <= nchildren; c++ {
			if err := p.Release(c); err != nil {
				return err
			}
		}
		if parent {
			return p.Release(0)
		}
		return nil
	}
	for {
		var mm message
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case mm = <-msgs:
		}
		if mm.err != nil {
			if errors.Is(mm.err, workload.ErrExited) {
				return nil, fmt.Errorf("%w (%v)", mm.err, p.Wait())
			}
			return nil, mm.err
		}
		m := mm.m
		var err error
		switch m.Kind {
		case workload.KindReady:
			if h.ready != nil {
				err = h.ready(m)
			}
			if err == nil {
				err = p.Release(0)
			}
		case workload.KindAtGate:
			if m.Child < 1 || m.Child > nchildren {
				return nil, fmt.Errorf("workload reported unknown child %d", m.Child)
			}
			if h.atGate != nil {
				err = h.atGate(m)
			}
			switch {
			case err != nil:
			case h.hold:
				gated = append(gated, m.Child)
				if forked && len(gated) == nchildren {
					err = releaseAll(h.forked, true)
				}
			default:
				err = p.Release(m.Child)
			}
		case workload.KindForked:
			forked = true
			if len(gated) == nchildren {
				err = releaseAll(h.forked, true)
			}
		case workload.KindChildDone:
			if m.Child >= 1 && m.Child <= nchildren {
				sums[m.Child] = m.Value
			}
			if h.childDone != nil {
				err = h.childDone(m)
			}
			done++
			if err == nil && h.hold && worked && done == nchildren && !releasedAll {
				releasedAll = true
				err = releaseAll(h.worked, false)
			}
		case workload.KindParentWorked:
			worked = true
			if done == nchildren && !releasedAll {
				releasedAll = true
				err = releaseAll(h.worked, false)
			}
		case workload.KindParentDone:
			sums[0] = m.Value
			if h.parentDone != nil {
				err = h.parentDone(m)
			}
			if err == nil {
				err = p.Release(0)
			}
			if err == nil {
				err = p.Wait()
			}
			if err != nil {
				return nil, err
			}
			return sums, nil
		}
		if err != nil {
			return nil, err
		}
	}
}
