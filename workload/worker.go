package workload

import (
	"encoding/json"
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
	if err := runWorker(cfg); err != nil {
		fmt.Fprintf(os.Stderr, "cowtrace workload: %v\n", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func runWorker(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	// One locked thread and no collector: after the fork, the parent's Go
	// runtime must not wander to new threads or write its heap, or its own
	// copy-on-write faults would blur the parent's row.
	runtime.LockOSThread()
	debug.SetGCPercent(-1)

	size := cfg.Blocks * cfg.BlockSize
	region, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return fmt.Errorf("mmap %d bytes: %w", size, err)
	}
	// Transparent huge pages would turn 1000 faults on 4 KiB pages into a
	// handful on 2 MiB ones on kernels where THP is "always" (Debian's):
	// the experiment asks for base pages so every kernel counts the same.
	if err := unix.Madvise(region, unix.MADV_NOHUGEPAGE); err != nil {
		return fmt.Errorf("madvise(MADV_NOHUGEPAGE): %w", err)
	}
	if cfg.Touch {
		fill(region, '0')
	}

	base := unsafe.Pointer(&region[0])
	if err := send(Message{Kind: KindReady, Pid: os.Getpid(), Addr: uint64(uintptr(base)), Value: uint64(size)}); err != nil {
		return err
	}
	if !waitGate(parentGateFD) {
		return nil // the tracer went away: leave without touching anything
	}

	pids := make([]int, len(cfg.Children))
	syscall.ForkLock.Lock()
	for i, action := range cfg.Children {
		pid, errno := forkChild(base, uintptr(cfg.Blocks), uintptr(cfg.BlockSize), uintptr(cfg.Offset),
			uint64(i+1), action == ActionWrite, uintptr(firstChildFD+i))
		if errno != 0 {
			syscall.ForkLock.Unlock()
			for _, p := range pids[:i] {
				unix.Kill(p, unix.SIGKILL)
			}
			return fmt.Errorf("fork: %w", errno)
		}
		pids[i] = int(pid)
	}
	syscall.ForkLock.Unlock()

	for _, pid := range pids {
		if err := reap(pid); err != nil {
			return err
		}
	}
	var sum uint64
	for i := 0; i < cfg.Blocks; i++ {
		sum += uint64(region[i*cfg.BlockSize+cfg.Offset])
	}
	if err := send(Message{Kind: KindParentDone, Pid: os.Getpid(), Value: sum}); err != nil {
		return err
	}
	waitGate(parentGateFD)
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
	if !status.Exited() || status.ExitStatus() != 0 {
		return fmt.Errorf("child %d ended badly (wait status %#x)", pid, uint32(status))
	}
	return nil
}

// forkChild forks with a raw clone. In the child only this thread exists and
// there is no working Go runtime: it may only store to memory and make raw
// system calls, and it must not grow its stack, hence nosplit all the way
// down. The child never returns from here.
//
//go:nosplit
func forkChild(base unsafe.Pointer, blocks, blockSize, offset uintptr, child uint64, write bool, gate uintptr) (uintptr, syscall.Errno) {
	pid, _, errno := syscall.RawSyscall6(syscall.SYS_CLONE, uintptr(syscall.SIGCHLD), 0, 0, 0, 0, 0)
	if errno != 0 || pid != 0 {
		return pid, errno
	}
	childMain(base, blocks, blockSize, offset, child, write, gate)
	return 0, 0 // unreachable: childMain exits
}

//go:nosplit
func childMain(base unsafe.Pointer, blocks, blockSize, offset uintptr, child uint64, write bool, gate uintptr) {
	// The Go signal handlers cannot run here; with every signal blocked a
	// stray SIGPIPE or SIGURG cannot land in them (SIGKILL still works).
	mask := ^uint64(0)
	syscall.RawSyscall6(syscall.SYS_RT_SIGPROCMASK, unix.SIG_SETMASK, uintptr(unsafe.Pointer(&mask)), 0, 8, 0, 0)

	pid, _, _ := syscall.RawSyscall(syscall.SYS_GETPID, 0, 0, 0)
	// The message layout of Message.encode, as little-endian words.
	var msg [msgSize / 8]uint64
	msg[0] = uint64(KindAtGate) | child<<32
	msg[1] = uint64(pid)
	// This write and the read below dirty every stack page the child will
	// use, so their copy-on-write copies happen before the tracer opens
	// the child's events: after the gate, the child faults only in the region.
	syscall.RawSyscall(syscall.SYS_WRITE, ctlFD, uintptr(unsafe.Pointer(&msg[0])), msgSize)
	var b [8]byte
	n, _, _ := syscall.RawSyscall(syscall.SYS_READ, gate, uintptr(unsafe.Pointer(&b[0])), 1)
	if n != 1 {
		syscall.RawSyscall(syscall.SYS_EXIT_GROUP, 1, 0, 0)
	}

	var sum uint64
	for i := uintptr(0); i < blocks; i++ {
		p := (*byte)(unsafe.Add(base, i*blockSize+offset))
		if write {
			*p = 'C'
		}
		sum += uint64(*p)
	}

	msg[0] = uint64(KindChildDone) | child<<32
	msg[3] = sum
	syscall.RawSyscall(syscall.SYS_WRITE, ctlFD, uintptr(unsafe.Pointer(&msg[0])), msgSize)
	syscall.RawSyscall(syscall.SYS_EXIT_GROUP, 0, 0, 0)
}
