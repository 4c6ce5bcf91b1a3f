package perfevents

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ExitCountsReported says whether this kernel writes the PERF_RECORD_READ
// of an InheritStat event when a task that inherited it exits. Linux 6.12
// does not: it marks the exiting task's event context dead
// (TASK_TOMBSTONE) before it syncs the inherited counts, and the READ is
// written only for a live context, so the counts go to the parent event
// with no record of whose they were; 6.18 writes them. A kernel version
// cannot say which a distribution's kernel does, so this asks the kernel:
// it opens an inherited counter on the calling thread, forks a child that
// exits at once, and looks for the child's READ. Under a millisecond. It
// needs OpenSwapGuard's event, and fails as that does without it.
func ExitCountsReported() (bool, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cpus, err := OnlineCPUs()
	if err != nil {
		return false, err
	}
	// Without the guard the kernel may swap the child's event context
	// with this thread's, and the child would exit holding the original
	// events, which report nothing.
	g, err := OpenSwapGuard(unix.Gettid())
	if err != nil {
		return false, err
	}
	defer g.Close()
	// Every CPU's copy of the event reports at the exit, whether the child
	// ran there or not: one CPU's ring sees it.
	a := Attr{Label: "dummy (exit counts probe)", Type: Software, Config: Dummy, Inherit: true, InheritStat: true,
		CountOnly: true, SampleType: unix.PERF_SAMPLE_TID | unix.PERF_SAMPLE_TIME | unix.PERF_SAMPLE_IDENTIFIER}
	ev, err := Open(a, unix.Gettid(), cpus[0])
	if err != nil {
		return false, err
	}
	defer ev.Close()
	r, err := NewReader()
	if err != nil {
		return false, err
	}
	defer r.Close()
	if err := r.Add(ev.FD(), 1, 0); err != nil {
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
				return false, fmt.Errorf("exit counts probe: wait: %w", err)
			}
			break
		}
	}
	r.SetDeadline(time.Now())
	var rec Record
	for {
		if err := r.ReadInto(&rec); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return false, nil
			}
			return false, err
		}
		if rec.Type != unix.PERF_RECORD_READ {
			continue
		}
		if p, _, _, _, _, id, err := DecodeRead(rec.Data, ReadFormat); err == nil && int(p) == pid && id == ev.ID() {
			return true, nil
		}
	}
}

// forkExit forks a child of the calling (locked) thread that exits at
// once. The child makes one raw system call: a forked copy of a Go process
// has no working runtime.
func forkExit() (int, error) {
	unblock, err := blockSignals()
	if err != nil {
		return 0, fmt.Errorf("exit counts probe: %w", err)
	}
	pid, errno := rawForkExit()
	unblock()
	if errno != 0 {
		return 0, fmt.Errorf("exit counts probe: fork: %w", errno)
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
