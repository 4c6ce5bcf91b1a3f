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
	var was unix.CPUSet
	if err := unix.SchedGetaffinity(0, &was); err != nil {
		return false, fmt.Errorf("exit sample probe: %w", err)
	}
	cpu, err := currentCPU()
	if err != nil {
		return false, err
	}
	var one unix.CPUSet
	one.Set(cpu)
	if err := unix.SchedSetaffinity(0, &one); err != nil {
		return false, fmt.Errorf("exit sample probe: pin to CPU %d: %w", cpu, err)
	}
	defer func() { _ = unix.SchedSetaffinity(0, &was) }()

	const st = unix.PERF_SAMPLE_TID | unix.PERF_SAMPLE_TIME | unix.PERF_SAMPLE_READ | unix.PERF_SAMPLE_IDENTIFIER
	leader, err := Open(Attr{Label: "sched:sched_process_exit (exit sample probe)", Type: Tracepoint, Config: exitTP,
		SampleType: st, GroupRead: true, Inherit: true, Disabled: true}, unix.Gettid(), cpu)
	if errors.Is(err, ErrNotProbeable) {
		return false, fmt.Errorf("exit sample probe: %w", ErrNoSampleRead)
	}
	if err != nil {
		return false, err
	}
	defer leader.Close()
	member, err := OpenInGroup(Attr{Label: "page-faults (exit sample probe)", Type: Software, Config: PageFaults,
		GroupRead: true, Inherit: true}, unix.Gettid(), cpu, leader)
	if err != nil {
		return false, err
	}
	defer member.Close()
	r, err := NewReader()
	if err != nil {
		return false, err
	}
	defer r.Close()
	if err := r.Add(leader.FD(), 1, 0); err != nil {
		return false, err
	}
	if err := leader.Enable(); err != nil {
		return false, err
	}
	pid, err := forkExit()
	if err != nil {
		return false, err
	}
	var ws unix.WaitStatus
	for {
		if _, err := unix.Wait4(pid, &ws, 0, nil); err != unix.EINTR {
			if err != nil {
				return false, fmt.Errorf("exit sample probe: wait: %w", err)
			}
			break
		}
	}
	r.SetDeadline(time.Now())
	var rec Record
	var s Sample
	for {
		if err := r.ReadInto(&rec); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return false, nil
			}
			return false, err
		}
		if rec.Type != unix.PERF_RECORD_SAMPLE {
			continue
		}
		if err := DecodeSample(rec.Data, st, &s); err == nil && int(s.Tid) == pid && s.Read.Len() == 2 {
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
