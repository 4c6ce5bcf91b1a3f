package main

import (
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/cowtrace/cowtrace/internal/workload"
)

// untracedArg makes this binary drive the experiment's worker with nobody
// tracing it: the baseline, and the command that perf and bpftrace wrap.
const untracedArg = "__untraced"

// writerLine starts the line, on stderr, in which either workload names its
// writer child: tools that count by pid system-wide (bpftrace) are read
// with it.
const writerLine = "writer pid"

// runUntraced runs the worker cowtrace runs for --blocks N --block-size 4096
// --offset 0, opening each gate as soon as its process reaches it, as
// cowtrace does once its events are open.
func runUntraced(args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("usage: %s BLOCKS", untracedArg)
	}
	blocks, err := strconv.Atoi(args[0])
	if err != nil {
		return err
	}
	cfg := workload.Seed()
	cfg.Blocks, cfg.BlockSize, cfg.Offset = blocks, 4096, 0
	p, err := workload.Start(cfg)
	if err != nil {
		return err
	}
	defer p.Close()
	for {
		m, err := p.Next(time.Time{})
		if err != nil {
			return err
		}
		switch m.Kind {
		case workload.KindReady:
			err = p.Release(0)
		case workload.KindAtGate:
			if m.Child > 0 && cfg.Children[m.Child-1] == workload.ActionWrite {
				fmt.Fprintf(os.Stderr, "%s %d\n", writerLine, m.Pid)
			}
			err = p.Release(m.Child)
		case workload.KindParentDone:
			if err := p.Release(0); err != nil {
				return err
			}
			return p.Wait()
		}
		if err != nil {
			return err
		}
	}
}
