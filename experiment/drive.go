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
			if err == nil {
				err = p.Release(m.Child)
			}
		case workload.KindChildDone:
			if m.Child >= 1 && m.Child <= nchildren {
				sums[m.Child] = m.Value
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
