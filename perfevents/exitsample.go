package perfevents

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrNoSampleRead: the kernel refuses PERF_SAMPLE_READ on an inherited
// event, which gives each task's own counts in its samples; Linux 6.12
// accepts it (commit 7e8b255650fc).
var ErrNoSampleRead = fmt.Errorf("%w: inherited events with PERF_SAMPLE_READ need Linux 6.12", ErrNotSupported)

// ExitSampled says whether an inherited group sampled at tracepoint
// exitTP (sched:sched_process_exit's id) reports a task's counts as it
// exits: that needs the tracepoint to fire before perf_event_exit_task
// tears the task's events down. Linux 6.12 fires it after (do_exit calls
// perf_event_exit_task, exit_mm, then the tracepoint); 6.18 and 7.x
// before. A version number cannot say what a distribution's kernel does, so
// this asks the kernel: it opens such a group on the calling thread, pinned
// to one CPU for the while, forks a child that exits at once, and looks for
// the child's sample. Under a millisecond. A kernel before 6.12 refuses the
// group: the error wraps ErrNoSampleRead. The answer is kept for the boot
// (rememberAnswer).
func ExitSampled(exitTP uint64) (bool, error) {
	return rememberAnswer("exit-sampled", fmt.Sprint(exitTP), func() (bool, error) { return askExitSampled(exitTP) })
}

func askExitSampled(exitTP uint64) (bool, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cpu, unpin, err := pinToCurrentCPU()
	if err != nil {
		return false, err
	}
	defer unpin()
	p, err := openExitProbe(exitTP, cpu)
	if err != nil {
		return false, err
	}
	defer p.close()
	if err := p.leader.Enable(); err != nil {
		return false, err
	}
	pid, err := forkExit()
	if err != nil {
		return false, err
	}
	if err := waitExited(pid); err != nil {
		return false, err
	}
	return p.sampledExitOf(pid)
}

// pinToCurrentCPU pins the calling (locked) thread to the CPU it runs on:
// the probe's events are opened on that CPU alone, and the child forked
// from the thread inherits the pinning. unpin restores the affinity.
func pinToCurrentCPU() (cpu int, unpin func(), err error) {
	var was unix.CPUSet
	if err := unix.SchedGetaffinity(0, &was); err != nil {
		return 0, nil, fmt.Errorf("exit sample probe: %w", err)
	}
	cpu, err = currentCPU()
	if err != nil {
		return 0, nil, err
	}
	var one unix.CPUSet
	one.Set(cpu)
	if err := unix.SchedSetaffinity(0, &one); err != nil {
		return 0, nil, fmt.Errorf("exit sample probe: pin to CPU %d: %w", cpu, err)
	}
	return cpu, func() { _ = unix.SchedSetaffinity(0, &was) }, nil
}

// exitProbeSampleType is what the exit probe's samples carry: the task,
// and the group's counts (PERF_SAMPLE_READ).
const exitProbeSampleType = unix.PERF_SAMPLE_TID | unix.PERF_SAMPLE_TIME | unix.PERF_SAMPLE_READ | unix.PERF_SAMPLE_IDENTIFIER

// exitProbe is the group ExitSampled asks with: sched_process_exit leading
// a page-fault counter, inherited, on the calling thread and one CPU,
// sampled into a ring of one page.
type exitProbe struct {
	leader, member *Event
	r              *Reader
}

func openExitProbe(exitTP uint64, cpu int) (_ *exitProbe, err error) {
	p := &exitProbe{}
	defer func() {
		if err != nil {
			p.close()
		}
	}()
	p.leader, err = Open(Attr{Label: "sched:sched_process_exit (exit sample probe)", Type: Tracepoint, Config: exitTP,
		SampleType: exitProbeSampleType, GroupRead: true, Inherit: true, Disabled: true}, unix.Gettid(), cpu)
	if errors.Is(err, ErrNotProbeable) {
		return nil, fmt.Errorf("exit sample probe: %w", ErrNoSampleRead)
	}
	if err != nil {
		return nil, err
	}
	p.member, err = OpenInGroup(Attr{Label: "page-faults (exit sample probe)", Type: Software, Config: PageFaults,
		GroupRead: true, Inherit: true}, unix.Gettid(), cpu, p.leader)
	if err != nil {
		return nil, err
	}
	if p.r, err = NewReader(); err != nil {
		return nil, err
	}
	if err := p.r.Add(p.leader.FD(), 1, 0); err != nil {
		return nil, err
	}
	return p, nil
}

// close closes what openExitProbe opened, the reader first.
func (p *exitProbe) close() {
	if p.r != nil {
		p.r.Close()
	}
	p.member.Close()
	p.leader.Close()
}

// waitExited reaps the child pid.
func waitExited(pid int) error {
	var ws unix.WaitStatus
	for {
		if _, err := unix.Wait4(pid, &ws, 0, nil); err != unix.EINTR {
			if err != nil {
				return fmt.Errorf("exit sample probe: wait: %w", err)
			}
			return nil
		}
	}
}

// sampledExitOf reads what the ring holds now and says whether it has
// pid's exit sample with both members' counts.
func (p *exitProbe) sampledExitOf(pid int) (bool, error) {
	p.r.SetDeadline(time.Now())
	var rec Record
	var s Sample
	for {
		if err := p.r.ReadInto(&rec); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return false, nil
			}
			return false, err
		}
		if rec.Type != unix.PERF_RECORD_SAMPLE {
			continue
		}
		if err := DecodeSample(rec.Data, exitProbeSampleType, &s); err == nil && int(s.Tid) == pid && s.Read.Len() == 2 {
			return true, nil
		}
	}
}

// currentCPU is the CPU the calling thread runs on now.
func currentCPU() (int, error) {
	var cpu, node uint32
	if _, _, errno := unix.RawSyscall(unix.SYS_GETCPU, uintptr(unsafe.Pointer(&cpu)), uintptr(unsafe.Pointer(&node)), 0); errno != 0 {
		return 0, fmt.Errorf("getcpu: %w", errno)
	}
	return int(cpu), nil
}

// forkExit forks a child of the calling (locked) thread that exits at
// once. The child makes one raw system call: a forked copy of a Go process
// has no working runtime.
func forkExit() (int, error) {
	unblock, err := blockSignals()
	if err != nil {
		return 0, fmt.Errorf("exit sample probe: %w", err)
	}
	pid, errno := rawForkExit()
	unblock()
	if errno != 0 {
		return 0, fmt.Errorf("exit sample probe: fork: %w", errno)
	}
	return int(pid), nil
}

//go:nosplit
func rawForkExit() (uintptr, syscall.Errno) {
	pid, _, errno := syscall.RawSyscall6(syscall.SYS_CLONE, uintptr(syscall.SIGCHLD), 0, 0, 0, 0, 0)
	if errno == 0 && pid == 0 {
		syscall.RawSyscall(syscall.SYS_EXIT_GROUP, 0, 0, 0)
	}
	return pid, errno
}
