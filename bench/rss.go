package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// peakRSS runs argv once and returns the peak resident set of the tool's own
// process in KiB (VmHWM) and the CPU time of its threads, read when its
// threads stop at exit.
//
// wait4's rusage cannot give it: its ru_maxrss is the larger of the process's
// own peak and its reaped children's, and every tool here reaps the 1 GiB
// workload. So the tool runs under ptrace with PTRACE_O_TRACEEXIT (and
// TRACECLONE, since a Go or threaded tool may exit from any thread): each of
// its threads stops before it lets go of the memory, and VmHWM is read then.
// Its children (the workload) are forked, not cloned as threads, and are not
// traced. This costs a stop per thread, so it runs apart from the timed rounds.
func peakRSS(argv []string) (int64, time.Duration, error) {
	runtime.LockOSThread() // every ptrace request must come from the tracer thread
	defer runtime.UnlockOSThread()

	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return 0, 0, err
	}
	defer null.Close()
	pid, err := startTraced(argv, null)
	if err != nil {
		return 0, 0, err
	}
	return watchExits(pid, argv[0])
}

// startTraced starts argv under ptrace, its output to null, and returns
// once it is stopped after its execve with every thread's exit to stop at.
func startTraced(argv []string, null *os.File) (int, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = null, null
	cmd.SysProcAttr = &syscall.SysProcAttr{Ptrace: true}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	pid := cmd.Process.Pid
	var ws syscall.WaitStatus
	// The tracee stops with SIGTRAP after its execve.
	if _, err := syscall.Wait4(pid, &ws, syscall.WALL, nil); err != nil {
		return 0, err
	}
	const exitKill = 0x100000 // PTRACE_O_EXITKILL: the tracee dies with us
	if err := syscall.PtraceSetOptions(pid, syscall.PTRACE_O_TRACEEXIT|syscall.PTRACE_O_TRACECLONE|exitKill); err != nil {
		syscall.Kill(pid, syscall.SIGKILL)
		return 0, fmt.Errorf("ptrace options: %w", err)
	}
	return pid, nil
}

// watchExits resumes the traced process pid (named name) and its threads
// until it is gone, and returns the largest VmHWM and CPU time read at the
// exit stops of its threads.
func watchExits(pid int, name string) (peak int64, cpu time.Duration, _ error) {
	var ws syscall.WaitStatus
	tid, sig := pid, 0
	for {
		// ESRCH: the thread died (killed with its group) meanwhile.
		_ = syscall.PtraceCont(tid, sig)
		wtid, err := syscall.Wait4(-1, &ws, syscall.WALL, nil)
		if err == syscall.EINTR {
			tid, sig = -1, 0
			continue
		}
		if err != nil {
			return 0, 0, err
		}
		tid, sig = wtid, 0
		switch {
		case ws.Exited() || ws.Signaled():
			if wtid == pid {
				if peak == 0 {
					return 0, 0, fmt.Errorf("%s exited (%v) without an exit stop", name, ws)
				}
				if !ws.Exited() || ws.ExitStatus() != 0 {
					return 0, 0, fmt.Errorf("%s: %v", name, ws)
				}
				return peak, cpu, nil
			}
			tid = -1 // a thread is gone: nothing to resume
		case ws.Stopped() && ws.StopSignal() == syscall.SIGTRAP && ws.TrapCause() == syscall.PTRACE_EVENT_EXIT:
			peak = max(peak, vmHWM(wtid))
			cpu = max(cpu, groupCPU(pid))
		case ws.Stopped() && (ws.StopSignal() == syscall.SIGTRAP || ws.StopSignal() == syscall.SIGSTOP):
			// clone event, or a new thread's first stop: no signal to pass.
		case ws.Stopped():
			sig = int(ws.StopSignal()) // deliver what the tool was sent
		}
	}
}

// vmHWM reads the peak resident set of task tid's memory, in KiB.
func vmHWM(tid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", tid))
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "VmHWM:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

// groupCPU is the user+system time of every thread of process pid, living
// or dead (fields 14 and 15 of /proc/PID/stat), without its children's.
func groupCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces; count after its ')'.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	const ticksPerSecond = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / ticksPerSecond
}
