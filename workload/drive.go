package workload

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Hooks are a tracer's moments in a workload's life. Each runs while the
// process it concerns waits at its gate, so whatever a hook opens counts from
// the very first access.
type Hooks struct {
	Ready      func(m Message) error // parent mapped the region; no child yet
	AtGate     func(m Message) error // child m.Child exists, has not touched the region
	ParentDone func(m Message) error // parent finished its final read
	ChildDone  func(m Message) error // child m.Child finished touching the region

	// Hold: the workload runs with Config.Hold. Children are
	// then released together once the parent has forked them all and
	// each is at its gate (after Forked), and kept alive after their work
	// until the parent has done its own (after Worked).
	Hold   bool
	Forked func() error // every process alive, nobody touched the region since the fork
	Worked func() error // every process did its work, nobody exited
}

type message struct {
	m   Message
	err error
}

// Drive runs a started worker to its end, calling h at each gate, and returns
// the byte sums reported by the parent (index 0) and children.
func Drive(ctx context.Context, p *Process, nchildren int, h Hooks) ([]uint64, error) {
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
			if errors.Is(mm.err, ErrExited) {
				return nil, fmt.Errorf("%w (%v)", mm.err, p.Wait())
			}
			return nil, mm.err
		}
		m := mm.m
		var err error
		switch m.Kind {
		case KindReady:
			if h.Ready != nil {
				err = h.Ready(m)
			}
			if err == nil {
				err = p.Release(0)
			}
		case KindAtGate:
			if m.Child < 1 || m.Child > nchildren {
				return nil, fmt.Errorf("workload reported unknown child %d", m.Child)
			}
			if h.AtGate != nil {
				err = h.AtGate(m)
			}
			switch {
			case err != nil:
			case h.Hold:
				gated = append(gated, m.Child)
				if forked && len(gated) == nchildren {
					err = releaseAll(h.Forked, true)
				}
			default:
				err = p.Release(m.Child)
			}
		case KindForked:
			forked = true
			if len(gated) == nchildren {
				err = releaseAll(h.Forked, true)
			}
		case KindChildDone:
			if m.Child >= 1 && m.Child <= nchildren {
				sums[m.Child] = m.Value
			}
			if h.ChildDone != nil {
				err = h.ChildDone(m)
			}
			done++
			if err == nil && h.Hold && worked && done == nchildren && !releasedAll {
				releasedAll = true
				err = releaseAll(h.Worked, false)
			}
		case KindParentWorked:
			worked = true
			if done == nchildren && !releasedAll {
				releasedAll = true
				err = releaseAll(h.Worked, false)
			}
		case KindParentDone:
			sums[0] = m.Value
			if h.ParentDone != nil {
				err = h.ParentDone(m)
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
