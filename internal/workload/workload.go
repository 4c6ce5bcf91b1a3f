// Package workload starts the processes of cowtrace's copy-on-write
// experiment: a worker parent that maps private anonymous memory, optionally
// writes all of it, and forks children that read or write one byte per block.
//
// The worker is cowtrace's own binary re-executed (see RunIfWorker), so the
// tracer's own page faults never count. Every process stops at a gate, a pipe
// that the tracer holds, and touches memory only after the tracer has opened
// its events: no sleeps, no races.
package workload

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Action is what a child does to each block.
type Action int

const (
	// ActionRead reads the byte at Config.Offset of every block.
	ActionRead Action = iota
	// ActionWrite writes 'C' there, like the seed's second child.
	ActionWrite
)

func (a Action) String() string {
	if a == ActionWrite {
		return "writer"
	}
	return "reader"
}

// Config describes one run of the experiment. The zero values of the fields
// after Children give the seed's experiment; the scenarios (package
// scenario) set them.
type Config struct {
	Blocks    int  // number of blocks in the region
	BlockSize int  // bytes per block
	Offset    int  // offset of the byte each child reads or writes
	Touch     bool // write every byte before the fork (the seed's memset)
	// Children are forked in this order; each waits at its own gate.
	Children []Action

	// ReadBefore reads the byte of every block before the fork. Without
	// Touch that maps the kernel's shared zero page there.
	ReadBefore bool `json:",omitempty"`
	// Huge puts the region on a 2 MiB boundary and asks for transparent
	// huge pages (MADV_HUGEPAGE); otherwise it gets MADV_NOHUGEPAGE where
	// the kernel has THP. A kernel without THP cannot run it (Applicable).
	Huge bool `json:",omitempty"`
	// Advice is applied to the region with madvise before the fork.
	Advice Advice `json:",omitempty"`
	// ParentWrites says when the parent writes 'P' to every block.
	ParentWrites ParentWrites `json:",omitempty"`
	// Clone is how the children are created.
	Clone Clone `json:",omitempty"`
	// Hold keeps every process alive at two more gates, so that the
	// tracer can look at all of them together: right after the fork
	// (KindForked) and after everyone's work (KindParentWorked plus each
	// child's KindChildDone), before anyone exits.
	Hold bool `json:",omitempty"`
}

// Advice is an madvise(2) advice for the region.
type Advice string

const (
	AdviceNone       Advice = ""
	AdviceDontFork   Advice = "dontfork"   // MADV_DONTFORK: children get no mapping at all
	AdviceWipeOnFork Advice = "wipeonfork" // MADV_WIPEONFORK: children get the mapping, empty
)

// ParentWrites is when the parent writes the region after the fork.
type ParentWrites string

const (
	ParentWritesNever     ParentWrites = ""
	ParentWritesDuring    ParentWrites = "during"     // while the children live (needs Hold)
	ParentWritesAfterExit ParentWrites = "after-exit" // once every child has been reaped
)

// Clone is how the children are created.
type Clone string

const (
	CloneFork  Clone = ""      // clone(SIGCHLD): a fork, the address space copied on write
	CloneVfork Clone = "vfork" // clone(CLONE_VM|CLONE_VFORK): the parent's address space, parent suspended
	CloneVM    Clone = "clone-vm"
	// CloneVM is clone(CLONE_VM) with a stack of the child's own: the
	// parent's address space, both running.
)

// Seed returns the seed program's experiment: 1000 blocks of 102400 bytes,
// written before the fork, a reader child and a writer child at offset 10240.
func Seed() Config {
	return Config{Blocks: 1000, BlockSize: 102400, Offset: 10240, Touch: true,
		Children: []Action{ActionRead, ActionWrite}}
}

// maxChildren bounds the gate descriptors handed to the worker.
const maxChildren = 64

// Validate reports the first bad setting as a one-line error.
func (c Config) Validate() error {
	switch {
	case c.Blocks <= 0:
		return fmt.Errorf("blocks must be positive, got %d", c.Blocks)
	case c.BlockSize <= 0:
		return fmt.Errorf("block size must be positive, got %d", c.BlockSize)
	case c.Offset < 0 || c.Offset >= c.BlockSize:
		return fmt.Errorf("offset %d is outside a block of %d bytes", c.Offset, c.BlockSize)
	case len(c.Children) > maxChildren:
		return fmt.Errorf("at most %d children, got %d", maxChildren, len(c.Children))
	case c.Advice != AdviceNone && c.Advice != AdviceDontFork && c.Advice != AdviceWipeOnFork:
		return fmt.Errorf("unknown advice %q", c.Advice)
	case c.ParentWrites != ParentWritesNever && c.ParentWrites != ParentWritesDuring && c.ParentWrites != ParentWritesAfterExit:
		return fmt.Errorf("unknown parent-writes mode %q", c.ParentWrites)
	case c.Clone != CloneFork && c.Clone != CloneVfork && c.Clone != CloneVM:
		return fmt.Errorf("unknown clone mode %q", c.Clone)
	case c.ParentWrites == ParentWritesDuring && !c.Hold:
		// Without the holds a child may have exited before the parent
		// writes, and whether the parent copies would be a race.
		return fmt.Errorf("the parent writing while the children live needs Hold")
	case c.Clone == CloneVfork && c.Hold:
		return fmt.Errorf("vfork suspends the parent until the child exits: it cannot hold its children")
	}
	if uint64(c.Blocks)*uint64(c.BlockSize) > 1<<40 {
		return fmt.Errorf("region of %d x %d bytes is too large", c.Blocks, c.BlockSize)
	}
	return nil
}

// Process is a started worker, parked at its first gate.
type Process struct {
	cmd   *exec.Cmd
	ctl   *os.File   // read end of the message pipe
	gates []*os.File // write ends: [0] the parent's, [i] Children[i-1]'s
	buf   [msgSize]byte
}

// ErrExited means the worker ended before saying what the caller waited for.
var ErrExited = errors.New("workload exited early")

// Start re-executes the running binary as the worker. The caller must have
// called RunIfWorker at the top of main (or TestMain). A cfg that this
// kernel cannot run (see Config.Applicable) gives an error wrapping
// ErrNotApplicable.
func Start(cfg Config) (_ *Process, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	// The worker would fail too, but only the tracer can tell the caller
	// why: checked here, the error wraps ErrNotApplicable.
	if err := cfg.Applicable(); err != nil {
		return nil, err
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find own executable: %w", err)
	}
	js, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}

	// p is a local, not the named result: "return nil, err" sets that to
	// nil before the deferred cleanup reads it.
	p := &Process{}
	defer func() {
		if err != nil {
			p.closeFiles()
		}
	}()
	extra, err := p.openPipes(len(cfg.Children) + 1)
	if err != nil {
		return nil, err
	}
	// The worker's ends, closed here once it has them.
	defer func() {
		for _, f := range extra {
			f.Close()
		}
	}()

	cmd := exec.Command(exe, workerArg, string(js))
	cmd.Stdout = os.Stderr // the worker prints nothing on success
	cmd.Stderr = os.Stderr
	cmd.ExtraFiles = extra
	// GC off, one P and no asynchronous preemption: the parent's runtime
	// stays quiet in the measured window (see runWorker).
	cmd.Env = append(os.Environ(), "GOGC=off", "GOMAXPROCS=1", "GODEBUG=asyncpreemptoff=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid:   true,            // Close can kill the worker and its children together
		Pdeathsig: syscall.SIGKILL, // a killed tracer leaves no workload behind
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start workload: %w", err)
	}
	p.cmd = cmd
	return p, nil
}

// openPipes opens the control pipe and a gate pipe for each of n processes.
// p keeps the control pipe's read end and the gates' write ends; the
// worker's ends come back in the order of its descriptors from 3 on, for
// Start to hand over and close, and are closed here on an error.
func (p *Process) openPipes(n int) (worker []*os.File, err error) {
	defer func() {
		if err != nil {
			for _, f := range worker {
				f.Close()
			}
			worker = nil
		}
	}()
	ctlR, ctlW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("start workload: %w", err)
	}
	p.ctl = ctlR
	worker = append(worker, ctlW)
	for range n {
		r, w, err := os.Pipe()
		if err != nil {
			return worker, fmt.Errorf("start workload: %w", err)
		}
		p.gates = append(p.gates, w)
		worker = append(worker, r)
	}
	return worker, nil
}

// Pid is the worker parent's process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Next returns the next message of the worker or its children, waiting at
// most until deadline (zero: no limit).
func (p *Process) Next(deadline time.Time) (Message, error) {
	if err := p.ctl.SetReadDeadline(deadline); err != nil {
		return Message{}, err
	}
	if _, err := io.ReadFull(p.ctl, p.buf[:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			// Only the caller may Wait: it may be waiting already.
			return Message{}, ErrExited
		}
		return Message{}, fmt.Errorf("read from workload: %w", err)
	}
	return decodeMessage(p.buf[:])
}

// Release opens the gate of the parent (0) or of child i (1-based).
func (p *Process) Release(child int) error {
	if child < 0 || child >= len(p.gates) || p.gates[child] == nil {
		return fmt.Errorf("no gate for child %d", child)
	}
	if _, err := p.gates[child].Write([]byte{1}); err != nil {
		return fmt.Errorf("open gate %d: %w", child, err)
	}
	return nil
}

// Wait waits for the worker parent to exit.
func (p *Process) Wait() error {
	if p.cmd.ProcessState != nil {
		if !p.cmd.ProcessState.Success() {
			return fmt.Errorf("workload: %s", p.cmd.ProcessState)
		}
		return nil
	}
	if err := p.cmd.Wait(); err != nil {
		return fmt.Errorf("workload: %w", err)
	}
	return nil
}

// Close kills whatever is left of the worker and its children and reaps the
// worker. Closing the gates first lets children blocked on them leave by
// themselves; the kill covers the ones already running.
func (p *Process) Close() error {
	p.closeFiles()
	if p.cmd == nil || p.cmd.ProcessState != nil {
		return nil
	}
	pgid := p.cmd.Process.Pid
	syscall.Kill(-pgid, syscall.SIGKILL)
	p.cmd.Wait()
	// The children are the worker's, not ours: they die on their own
	// time (tearing down a large region takes a while) and are reaped by
	// whoever inherits them. Wait, boundedly, until none of them runs, so
	// that nothing of the workload outlives the run.
	for deadline := time.Now().Add(5 * time.Second); groupRunning(pgid) && time.Now().Before(deadline); {
		time.Sleep(2 * time.Millisecond)
	}
	return nil
}

// groupRunning says whether a process of process group pgid is still alive
// (zombies waiting for their new parent to reap them do not count).
func groupRunning(pgid int) bool {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return false
	}
	for _, e := range ents {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// After the parenthesised comm: state ppid pgrp ...
		i := bytes.LastIndexByte(stat, ')')
		f := strings.Fields(string(stat[i+1:]))
		if len(f) > 2 && f[2] == strconv.Itoa(pgid) && f[0] != "Z" && f[0] != "X" {
			return true
		}
	}
	return false
}

func (p *Process) closeFiles() {
	for i, g := range p.gates {
		if g != nil {
			g.Close()
			p.gates[i] = nil
		}
	}
	if p.ctl != nil {
		p.ctl.Close()
		p.ctl = nil
	}
}
