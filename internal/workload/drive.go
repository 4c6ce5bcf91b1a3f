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
	d := &driver{p: p, n: nchildren, h: h, sums: make([]uint64, nchildren+1)}
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
		finished, err := d.handle(mm.m)
		switch {
		case err != nil:
			return nil, err
		case finished:
			return d.sums, nil
		}
	}
}

// driver is what Drive knows of the worker between its messages.
type driver struct {
	p    *Process
	n    int // children
	h    Hooks
	sums []uint64
	// With Hold: the children at their first gate, whether the parent
	// has forked them all and done its own work, how many children did
	// theirs, and whether their gates were opened after that.
	gated               []int
	forked, worked      bool
	done                int
	releasedAfterWorked bool
}

// handle opens the gates that m lets open, after its hook; finished is the
// parent's last message, after which the worker exits.
func (d *driver) handle(m Message) (finished bool, err error) {
	switch m.Kind {
	case KindReady:
		if d.h.Ready != nil {
			err = d.h.Ready(m)
		}
		if err == nil {
			err = d.p.Release(0)
		}
	case KindAtGate:
		err = d.atGate(m)
	case KindForked:
		d.forked = true
		err = d.releaseForked()
	case KindChildDone:
		if m.Child >= 1 && m.Child <= d.n {
			d.sums[m.Child] = m.Value
		}
		if d.h.ChildDone != nil {
			err = d.h.ChildDone(m)
		}
		d.done++
		if err == nil && d.h.Hold && d.worked {
			err = d.releaseWorked()
		}
	case KindParentWorked:
		d.worked = true
		err = d.releaseWorked()
	case KindParentDone:
		return true, d.parentDone(m)
	}
	return false, err
}

// atGate opens a child's first gate after its hook; with Hold, every
// child's at once, once they are all at it and the parent forked them all.
func (d *driver) atGate(m Message) error {
	if m.Child < 1 || m.Child > d.n {
		return fmt.Errorf("workload reported unknown child %d", m.Child)
	}
	if d.h.AtGate != nil {
		if err := d.h.AtGate(m); err != nil {
			return err
		}
	}
	if !d.h.Hold {
		return d.p.Release(m.Child)
	}
	d.gated = append(d.gated, m.Child)
	if d.forked {
		return d.releaseForked()
	}
	return nil
}

// releaseForked opens every gate once every process is alive and nobody
// touched the region since the fork (Hooks.Forked).
func (d *driver) releaseForked() error {
	if len(d.gated) != d.n {
		return nil
	}
	return d.releaseAll(d.h.Forked, true)
}

// releaseWorked lets the children exit once everyone did their work
// (Hooks.Worked).
func (d *driver) releaseWorked() error {
	if d.done != d.n || d.releasedAfterWorked {
		return nil
	}
	d.releasedAfterWorked = true
	return d.releaseAll(d.h.Worked, false)
}

// releaseAll opens the gate of every child (and with parent, the
// parent's) once the moment of hook has come.
func (d *driver) releaseAll(hook func() error, parent bool) error {
	if hook != nil {
		if err := hook(); err != nil {
			return err
		}
	}
	for c := 1; c <= d.n; c++ {
		if err := d.p.Release(c); err != nil {
			return err
		}
	}
	if parent {
		return d.p.Release(0)
	}
	return nil
}

// parentDone closes the parent's window (its hook), lets it exit and waits
// for it.
func (d *driver) parentDone(m Message) error {
	d.sums[0] = m.Value
	if d.h.ParentDone != nil {
		if err := d.h.ParentDone(m); err != nil {
			return err
		}
	}
	if err := d.p.Release(0); err != nil {
		return err
	}
	return d.p.Wait()
}
