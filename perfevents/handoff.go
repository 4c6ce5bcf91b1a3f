package perfevents

import (
	"fmt"
	"os"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// HolderName is the name (comm, at most 15 bytes) of the process HandOff
// forks, as ps shows it.
const HolderName = "cowtrace-closer"

// HandOff forks a holder process that keeps a copy of every perf event
// descriptor of this process, and nothing else, until this process has
// exited; the holder then exits itself, and the kernel releases the events
// in it. Call it from a program that is about to exit: its own closes and
// its exit are then fast, and whoever waits for it (a shell, a script, a
// benchmark) does not wait for the release.
//
// The release is what takes time: when the last event of a tracepoint (or a
// kprobe) closes, the kernel unregisters the probe and waits for an RCU grace
// period before it returns, 15-30 ms per tracepoint, one after the other
// under its event_mutex. perf stat waits for it too.
//
// The holder closes every other descriptor it inherited at once: standard
// streams (a pipe reading cowtrace's output gets its EOF when cowtrace
// exits), pipes to children (which must see their EOF), files. It holds no
// ring buffer (the kernel does not copy perf mappings into a child). It runs
// with every signal blocked and only makes raw system calls, since a forked
// copy of a Go process has no working runtime; SIGKILL still ends it.
//
// When HandOff returns, the holder holds the events and nothing else.
// Events the caller opens after HandOff are not held. Do not hand off events
// that must be closed before something else can be cleaned up (a tracefs
// kprobe_events entry cannot be removed while an event on it is open).
// It returns the holder's pid, or 0 when there was no event to hold.
func HandOff() (int, error) {
	handOffMu.Lock()
	defer handOffMu.Unlock()
	keep, maxFD, err := perfEventFDs()
	if err != nil {
		return 0, err
	}
	if len(keep) == 0 {
		return 0, nil
	}
	// p: its EOF tells the holder this process has exited. ready: its EOF
	// tells HandOff the holder holds nothing but the events any more.
	var p, ready [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		return 0, fmt.Errorf("hand events off: %w", err)
	}
	if err := unix.Pipe2(ready[:], unix.O_CLOEXEC); err != nil {
		unix.Close(p[0])
		unix.Close(p[1])
		return 0, fmt.Errorf("hand events off: %w", err)
	}
	defer unix.Close(ready[0])
	pl := newHolderPlan(append(keep, p[0], ready[1]), max(maxFD, p[0], p[1], ready[0], ready[1]), p[0], ready[1])

	// The child inherits the signal mask: blocked here, so that no signal
	// reaches the Go handlers in a process that cannot run them.
	runtime.LockOSThread()
	unblock, err := blockSignals()
	if err != nil {
		runtime.UnlockOSThread()
		unix.Close(p[0])
		unix.Close(p[1])
		unix.Close(ready[1])
		return 0, fmt.Errorf("hand events off: %w", err)
	}
	pid, errno := forkHolder(pl)
	unblock()
	runtime.UnlockOSThread()
	runtime.KeepAlive(pl)
	unix.Close(p[0])
	unix.Close(ready[1])
	if errno != 0 {
		unix.Close(p[1])
		return 0, fmt.Errorf("hand events off: fork: %w", errno)
	}
	// At EOF the holder has closed everything but the events (or died:
	// the events are then this process's alone again, which is only
	// slower): this process's streams and pipes are in no one else's
	// hands, and whoever reads them sees EOF when it exits.
	var b [1]byte
	for {
		if _, err := unix.Read(ready[0], b[:]); err != unix.EINTR {
			break
		}
	}
	// p[1] stays open, close-on-exec, until this process exits: the
	// holder's read of p[0] returns then.
	holderPipes = append(holderPipes, p[1])
	return int(pid), nil
}

// blockSignals blocks every signal on the calling thread, which must be
// locked to it, until unblock: a child forked meanwhile inherits the mask,
// so that no signal reaches a Go handler in a process that cannot run it.
func blockSignals() (unblock func(), err error) {
	var all, old unix.Sigset_t
	for i := range all.Val {
		all.Val[i] = ^uint64(0)
	}
	if err := unix.PthreadSigmask(unix.SIG_SETMASK, &all, &old); err != nil {
		return nil, fmt.Errorf("block signals: %w", err)
	}
	return func() { _ = unix.PthreadSigmask(unix.SIG_SETMASK, &old, nil) }, nil
}

var (
	handOffMu sync.Mutex
	// holderPipes are the write ends HandOff keeps open for the process's
	// life.
	holderPipes []int
)

// holderPlan is everything the holder needs, computed before the fork: the
// holder cannot allocate.
type holderPlan struct {
	// closeGaps are the descriptor ranges to close, [lo, hi] inclusive:
	// everything but the events and wait.
	closeGaps []fdRange
	// limit bounds the last, open-ended gap where close_range(2) is missing
	// (Linux < 5.9) and descriptors are closed one by one.
	limit uintptr
	wait  uintptr // read end of the pipe whose EOF says this process exited
	ready uintptr // write end of the pipe whose EOF says the closes are done
	name  [16]byte
}

type fdRange struct{ lo, hi uintptr }

func newHolderPlan(keep []int, maxFD, wait, ready int) *holderPlan {
	sort.Ints(keep)
	pl := &holderPlan{limit: uintptr(maxFD) + 64, wait: uintptr(wait), ready: uintptr(ready)}
	copy(pl.name[:15], HolderName)
	next := 0
	for _, fd := range keep {
		if fd > next {
			pl.closeGaps = append(pl.closeGaps, fdRange{uintptr(next), uintptr(fd - 1)})
		}
		next = fd + 1
	}
	pl.closeGaps = append(pl.closeGaps, fdRange{uintptr(next), uintptr(^uint32(0))})
	return pl
}

// perfEventFDs lists the descriptors that are perf events, and the highest
// descriptor open.
func perfEventFDs() (keep []int, maxFD int, err error) {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil, 0, fmt.Errorf("hand events off: %w", err)
	}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		maxFD = max(maxFD, fd)
		if link, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && link == "anon_inode:[perf_event]" {
			keep = append(keep, fd)
		}
	}
	return keep, maxFD, nil
}

// forkHolder forks with a raw clone, a plain fork (SIGCHLD): tracers see a
// fork, which their fork options govern (a clone without SIGCHLD would be
// traced as a thread by PTRACE_O_TRACECLONE, and stopped at its exit by a
// tracer gone on to other things). Nobody waits for the holder: it outlives
// this process and is reaped by whoever inherits it. In the child only this
// thread exists and the Go runtime does not work: nosplit all the way down,
// raw system calls only.
//
//go:nosplit
func forkHolder(pl *holderPlan) (uintptr, syscall.Errno) {
	pid, _, errno := syscall.RawSyscall6(syscall.SYS_CLONE, uintptr(syscall.SIGCHLD), 0, 0, 0, 0, 0)
	if errno != 0 || pid != 0 {
		return pid, errno
	}
	holderMain(pl)
	return 0, 0 // unreachable: holderMain exits
}

//go:nosplit
func holderMain(pl *holderPlan) {
	syscall.RawSyscall6(syscall.SYS_PRCTL, unix.PR_SET_NAME, uintptr(unsafe.Pointer(&pl.name[0])), 0, 0, 0, 0)
	for _, g := range pl.closeGaps {
		_, _, errno := syscall.RawSyscall(unix.SYS_CLOSE_RANGE, g.lo, g.hi, 0)
		if errno == 0 {
			continue
		}
		for fd := g.lo; fd <= g.hi && fd <= pl.limit; fd++ {
			syscall.RawSyscall(syscall.SYS_CLOSE, fd, 0, 0)
		}
	}
	// Its EOF tells HandOff the closes are done.
	syscall.RawSyscall(syscall.SYS_CLOSE, pl.ready, 0, 0)
	var b [1]byte
	for {
		_, _, errno := syscall.RawSyscall(syscall.SYS_READ, pl.wait, uintptr(unsafe.Pointer(&b[0])), 1)
		if errno != syscall.EINTR {
			break
		}
	}
	// The exit closes the events: the slow part, now in nobody's way.
	syscall.RawSyscall(syscall.SYS_EXIT_GROUP, 0, 0, 0)
}
