package workload

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// workerArg is the hidden first argument with which the tracer re-executes
// its own binary as the workload, so that the tracer's faults never land in
// the workload's rows.
const workerArg = "__cowtrace_workload"

// File descriptors the worker inherits (exec.Cmd.ExtraFiles start at 3).
const (
	ctlFD        = 3 // write end of the message pipe to the tracer
	parentGateFD = 4 // read end of the parent's gate
	firstChildFD = 5 // read ends of the children's gates, in Config.Children order
)

// RunIfWorker turns the process into the workload when it was started by
// Start, and never returns in that case. Call it first thing in main (and in
// TestMain of tests that run experiments), before anything else runs.
func RunIfWorker() {
	if len(os.Args) < 3 || os.Args[1] != workerArg {
		return
	}
	var cfg Config
	if err := json.Unmarshal([]byte(os.Args[2]), &cfg); err != nil {
		fmt.Fprintf(os.Stderr, "cowtrace workload: bad configuration: %v\n", err)
		os.Exit(2)
	}
	if err := runWorker(cfg); err != nil && !errors.Is(err, errTracerGone) {
		fmt.Fprintf(os.Stderr, "cowtrace workload: %v\n", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// errTracerGone: the tracer closed its ends of the pipes, because it failed
// or exited. Its own error says what went wrong; a second line from the
// worker would only blur it.
var errTracerGone = errors.New("the tracer went away")

func runWorker(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	// One locked thread and no collector: after the fork, the parent's Go
	// runtime must not wander to new threads or write its heap, or its own
	// copy-on-write faults would blur the parent's row.
	runtime.LockOSThread()
	debug.SetGCPercent(-1)

	region, err := prepareRegion(cfg)
	if err != nil {
		return err
	}
	base := unsafe.Pointer(&region[0])
	if err := send(Message{Kind: KindReady, Pid: os.Getpid(), Addr: uint64(uintptr(base)), Value: uint64(len(region))}); err != nil {
		return err
	}
	if !waitGate(parentGateFD) {
		return nil // the tracer went away: leave without touching anything
	}

	pids, stacks, err := startChildren(cfg, base)
	defer unmapStacks(stacks)
	if err != nil {
		return err
	}

	if cfg.Hold {
		if err := send(Message{Kind: KindForked, Pid: os.Getpid(), Value: uint64(len(pids))}); err != nil {
			return err
		}
		if !waitGate(parentGateFD) {
			return abandon(pids)
		}
	}
	if err := workWhileChildrenRun(cfg, region); err != nil {
		return err
	}
	return reapAndReport(cfg, region, pids)
}

// unmapStacks unmaps the clone-vm children's stacks once they are reaped.
func unmapStacks(stacks [][]byte) {
	for _, st := range stacks {
		unix.Munmap(st)
	}
}

// workWhileChildrenRun is the parent's own part while its children run:
// its writes (ParentWritesDuring) and, when held, the message that they
// are done.
func workWhileChildrenRun(cfg Config, region []byte) error {
	if cfg.ParentWrites == ParentWritesDuring {
		writeBlocks(region, cfg, 'P')
	}
	if cfg.Hold {
		return send(Message{Kind: KindParentWorked, Pid: os.Getpid()})
	}
	return nil
}

// reapAndReport reaps the children, writes after their exit if asked
// (ParentWritesAfterExit), reports the parent's sum and waits at the gate
// until the tracer has read every count.
func reapAndReport(cfg Config, region []byte, pids []int) error {
	for _, pid := range pids {
		if err := reap(pid); err != nil {
			return err
		}
	}
	if cfg.ParentWrites == ParentWritesAfterExit {
		writeBlocks(region, cfg, 'P')
	}
	if err := send(Message{Kind: KindParentDone, Pid: os.Getpid(), Value: sumBlocks(region, cfg)}); err != nil {
		return err
	}
	waitGate(parentGateFD)
	return nil
}

// prepareRegion maps the region and does to it what the configuration asks
// before the fork: write it, read it, advise the kernel.
func prepareRegion(cfg Config) ([]byte, error) {
	region, err := mapRegion(cfg.Blocks*cfg.BlockSize, cfg.Huge)
	if err != nil {
		return nil, err
	}
	if cfg.Touch {
		fill(region, '0')
	}
	if cfg.ReadBefore {
		// KeepAlive uses the sum, so that the reads are not optimised away.
		runtime.KeepAlive(sumBlocks(region, cfg))
	}
	switch cfg.Advice {
	case AdviceDontFork:
		err = unix.Madvise(region, unix.MADV_DONTFORK)
	case AdviceWipeOnFork:
		err = unix.Madvise(region, unix.MADV_WIPEONFORK)
	}
	if err != nil {
		return nil, fmt.Errorf("madvise(%s): %w", cfg.Advice, err)
	}
	return region, nil
}

func sumBlocks(region []byte, cfg Config) uint64 {
	var sum uint64
	for i := 0; i < cfg.Blocks; i++ {
		sum += uint64(region[i*cfg.BlockSize+cfg.Offset])
	}
	return sum
}

func writeBlocks(region []byte, cfg Config, c byte) {
	for i := 0; i < cfg.Blocks; i++ {
		region[i*cfg.BlockSize+cfg.Offset] = c
	}
}

// hugePage is the size of an x86-64 transparent huge page (a PMD).
const hugePage = 2 << 20

// mapRegion maps size bytes of private anonymous memory. Transparent huge
// pages would turn 1000 faults on 4 KiB pages into a handful on 2 MiB ones on
// kernels where THP is "always" (Debian's): unless huge is asked for, the
// region gets base pages so that every kernel counts the same. A kernel
// built without THP has only base pages and refuses the advice (EINVAL):
// the region is then as wanted without it. A huge region starts on a 2 MiB
// boundary and spans whole huge pages, or the kernel could not back it with
// any; without THP it cannot be had at all (ErrNotApplicable).
func mapRegion(size int, huge bool) ([]byte, error) {
	if !huge {
		region, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
		if err != nil {
			return nil, fmt.Errorf("mmap %d bytes: %w", size, err)
		}
		if err := madvise(region, unix.MADV_NOHUGEPAGE); err != nil && !withoutTHP(err) {
			unix.Munmap(region)
			return nil, fmt.Errorf("madvise(MADV_NOHUGEPAGE): %w", err)
		}
		return region, nil
	}
	length := (uintptr(size) + hugePage - 1) &^ (hugePage - 1)
	p, err := unix.MmapPtr(-1, 0, nil, length+hugePage, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, fmt.Errorf("mmap %d bytes: %w", length+hugePage, err)
	}
	addr := uintptr(p)
	aligned := (addr + hugePage - 1) &^ (hugePage - 1)
	// Give back the unaligned head and tail so that the region is a VMA
	// of its own.
	if aligned > addr {
		if err := unix.MunmapPtr(p, aligned-addr); err != nil {
			return nil, fmt.Errorf("munmap: %w", err)
		}
	}
	if tail := addr + length + hugePage - (aligned + length); tail > 0 {
		if err := unix.MunmapPtr(unsafe.Add(p, aligned+length-addr), tail); err != nil {
			return nil, fmt.Errorf("munmap: %w", err)
		}
	}
	whole := unsafe.Slice((*byte)(unsafe.Add(p, aligned-addr)), length)
	if err := madvise(whole, unix.MADV_HUGEPAGE); err != nil {
		unix.MunmapPtr(unsafe.Add(p, aligned-addr), length)
		if withoutTHP(err) {
			return nil, errNoTHP
		}
		return nil, fmt.Errorf("madvise(MADV_HUGEPAGE): %w", err)
	}
	return whole[:size], nil
}

// childStackSize is the stack of a clone-vm child: it runs only the nosplit
// child code, a few hundred bytes deep.
const childStackSize = 64 << 10

// startChildren creates the children; for clone-vm also their stacks, which
// the caller unmaps once the children are reaped.
func startChildren(cfg Config, base unsafe.Pointer) (pids []int, stacks [][]byte, err error) {
	syscall.ForkLock.Lock()
	defer syscall.ForkLock.Unlock()
	for i, action := range cfg.Children {
		var flags uintptr
		if action == ActionWrite {
			flags |= childWrite
		}
		if cfg.Hold {
			flags |= childHold
		}
		args := [childArgs]uintptr{uintptr(base), uintptr(cfg.Blocks), uintptr(cfg.BlockSize), uintptr(cfg.Offset),
			uintptr(i + 1), flags, uintptr(firstChildFD + i)}
		var pid uintptr
		var errno syscall.Errno
		switch cfg.Clone {
		case CloneFork:
			pid, errno = forkChild(base, args[1], args[2], args[3], args[4], args[5], args[6])
		case CloneVfork:
			pid, errno = cloneShared(unix.CLONE_VM|unix.CLONE_VFORK|uintptr(unix.SIGCHLD), 0, &args)
		case CloneVM:
			st, err := unix.Mmap(-1, 0, childStackSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_STACK)
			if err != nil {
				errno = err.(syscall.Errno)
				break
			}
			stacks = append(stacks, st)
			// The child starts with its stack pointer at the arguments,
			// which cloneShared passes on to childMain; the stack grows
			// down from there.
			top := len(st) - 256
			*(*[childArgs]uintptr)(unsafe.Pointer(&st[top])) = args
			pid, errno = cloneShared(unix.CLONE_VM|uintptr(unix.SIGCHLD), uintptr(unsafe.Pointer(&st[top])), &args)
		}
		if errno != 0 {
			for _, p := range pids {
				unix.Kill(p, unix.SIGKILL)
				reap(p)
			}
			return nil, stacks, fmt.Errorf("clone (%s): %w", cloneName(cfg.Clone), errno)
		}
		pids = append(pids, int(pid))
	}
	return pids, stacks, nil
}

func cloneName(c Clone) string {
	if c == CloneFork {
		return "fork"
	}
	return string(c)
}

// abandon kills and reaps the children when the tracer went away while they
// were held.
func abandon(pids []int) error {
	for _, p := range pids {
		unix.Kill(p, unix.SIGKILL)
	}
	for _, p := range pids {
		reap(p)
	}
	return nil
}

// fill writes every byte like the seed's memset, doubling the copied span so
// that it costs no more than a memset.
func fill(b []byte, c byte) {
	if len(b) == 0 {
		return
	}
	b[0] = c
	for n := 1; n < len(b); n *= 2 {
		copy(b[n:], b[:n])
	}
}

func send(m Message) error {
	var b [msgSize]byte
	m.encode(&b)
	for {
		_, err := unix.Write(ctlFD, b[:])
		if err == unix.EINTR {
			continue
		}
		if err == unix.EPIPE {
			return errTracerGone
		}
		if err != nil {
			return fmt.Errorf("write to tracer: %w", err)
		}
		return nil
	}
}

// waitGate blocks until the tracer opens the gate; false when the tracer
// closed it instead (it exited or gave up).
func waitGate(fd int) bool {
	var b [1]byte
	for {
		n, err := unix.Read(fd, b[:])
		if err == unix.EINTR {
			continue
		}
		return err == nil && n == 1
	}
}

// reap waits with a raw wait4: the blocking call must not hand the thread's P
// to the scheduler, which could start a new thread inside the parent's
// measured window.
func reap(pid int) error {
	var status syscall.WaitStatus
	for {
		_, _, errno := syscall.RawSyscall6(syscall.SYS_WAIT4, uintptr(pid), uintptr(unsafe.Pointer(&status)), 0, 0, 0, 0)
		if errno == syscall.EINTR {
			continue
		}
		if errno != 0 {
			return fmt.Errorf("wait4(%d): %w", pid, errno)
		}
		break
	}
	if status.Exited() && status.ExitStatus() == childAbandoned {
		return fmt.Errorf("child %d: %w", pid, errTracerGone)
	}
	if !status.Exited() || status.ExitStatus() != 0 {
		return fmt.Errorf("child %d ended badly (wait status %#x)", pid, uint32(status))
	}
	return nil
}

// Flags of childMain.
const (
	childWrite = 1 << iota // write each block (else read it)
	childHold              // after reporting, wait at the gate again before exiting
)

// childAbandoned is the exit status of a child whose gate the tracer closed
// instead of opening.
const childAbandoned = 3

// childArgs is the number of words childMain takes; cloneShared passes them
// on the stack.
const childArgs = 7

// forkChild forks with a raw clone. In the child only this thread exists and
// there is no working Go runtime: it may only store to memory and make raw
// system calls, and it must not grow its stack, hence nosplit all the way
// down. The child never returns from here.
//
//go:nosplit
func forkChild(base unsafe.Pointer, blocks, blockSize, offset, child, flags, gate uintptr) (uintptr, syscall.Errno) {
	pid, _, errno := syscall.RawSyscall6(syscall.SYS_CLONE, uintptr(syscall.SIGCHLD), 0, 0, 0, 0, 0)
	if errno != 0 || pid != 0 {
		return pid, errno
	}
	childMain(base, blocks, blockSize, offset, child, flags, gate)
	return 0, 0 // unreachable: childMain exits
}

// childMain is the child's whole life. It is called from forkChild in a
// forked child, and from cloneShared's assembly in a child that shares the
// parent's address space; all its arguments are words so that both calling
// conventions agree.
//
//go:nosplit
func childMain(base unsafe.Pointer, blocks, blockSize, offset, child, flags, gate uintptr) {
	// The Go signal handlers cannot run here; with every signal blocked a
	// stray SIGPIPE or SIGURG cannot land in them (SIGKILL still works).
	mask := ^uint64(0)
	syscall.RawSyscall6(syscall.SYS_RT_SIGPROCMASK, unix.SIG_SETMASK, uintptr(unsafe.Pointer(&mask)), 0, 8, 0, 0)

	pid, _, _ := syscall.RawSyscall(syscall.SYS_GETPID, 0, 0, 0)
	// The message layout of Message.encode, as little-endian words.
	var msg [msgSize / 8]uint64
	msg[0] = uint64(KindAtGate) | uint64(child)<<32
	msg[1] = uint64(pid)
	// This write and the read below dirty every stack page the child will
	// use, so their copy-on-write copies happen before the tracer opens
	// the child's events: after the gate, the child faults only in the region.
	syscall.RawSyscall(syscall.SYS_WRITE, ctlFD, uintptr(unsafe.Pointer(&msg[0])), msgSize)
	var b [8]byte
	n, _, _ := syscall.RawSyscall(syscall.SYS_READ, gate, uintptr(unsafe.Pointer(&b[0])), 1)
	if n != 1 {
		syscall.RawSyscall(syscall.SYS_EXIT_GROUP, childAbandoned, 0, 0)
	}

	// Under MADV_DONTFORK the child has no mapping there and a touch
	// would kill it; mincore of the first page says so without faulting.
	var sum uint64
	_, _, errno := syscall.RawSyscall(syscall.SYS_MINCORE, uintptr(base), 1, uintptr(unsafe.Pointer(&b[0])))
	if errno == syscall.ENOMEM {
		msg[1] |= uint64(FlagRegionMissing) << 32
	} else {
		for i := uintptr(0); i < blocks; i++ {
			p := (*byte)(unsafe.Add(base, i*blockSize+offset))
			if flags&childWrite != 0 {
				*p = 'C'
			}
			sum += uint64(*p)
		}
	}

	msg[0] = uint64(KindChildDone) | uint64(child)<<32
	msg[3] = sum
	syscall.RawSyscall(syscall.SYS_WRITE, ctlFD, uintptr(unsafe.Pointer(&msg[0])), msgSize)
	if flags&childHold != 0 {
		syscall.RawSyscall(syscall.SYS_READ, gate, uintptr(unsafe.Pointer(&b[0])), 1)
	}
	syscall.RawSyscall(syscall.SYS_EXIT_GROUP, 0, 0, 0)
}
