package engine

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// A fork copies its creator's events as they are at that instant. The
// events of a root are opened one after the other, and an attached root
// runs meanwhile: a task it creates then may hold some events and not
// others, or events not yet counting, and its counts fall short with
// nothing in them to show it. So a task that was not opened on is trusted
// only with evidence that it was created once every event of its root was
// in place (partialLocked):
//   - count mode: a sample of it read a group's seal (sealGroupsLocked);
//   - classify mode: it, or a task it descends from, wrote an EXIT or COMM
//     record, which only the carrier opened last on its CPU writes
//     (openCarriers); or its root created it after the root was seen
//     outside any fork system call since every event was in place: after
//     a fork that began after that, after a fault of the root in user
//     mode, or after /proc/TID/syscall showed it in another system call.
//     A thread makes one system call at a time, so no creation begun
//     before then can end after it.

// wholeSince is what tells, for one root task, the tasks it created once
// all its events were in place (CLOCK_MONOTONIC).
type wholeSince struct {
	openNs uint64 // every event of the root was open and counting
	// outsideNs: the root was seen outside any fork call, after openNs.
	outsideNs uint64
	// firstForkNs: the first FORK of the root at or after openNs.
	firstForkNs uint64
}

// partialWhy is what a task's counts say when they may fall short.
const partialWhy = "created while the trace was opening its events, before they were all in place: its counts may miss part of what it did"

// partialLocked says why task tk's counts may fall short of what it did,
// "" when they may not.
func (s *Session) partialLocked(tk *Task) string {
	if strayLocked(tk) {
		return strayWhy
	}
	if s.twiceLocked(tk) {
		return "created while the attach was opening the events of several threads: it holds some of two threads' events, and counted twice"
	}
	if tk.Root && s.opened[tk.Tid] {
		return ""
	}
	if !s.liveOpen {
		return "" // every event was in place before the first task ran
	}
	if s.group != nil {
		if len(tk.cpuCounts) == 0 && !tk.Exited {
			return "" // never sampled: settleCountsLocked says so
		}
		for _, cc := range tk.cpuCounts {
			if cc.sealed {
				return ""
			}
		}
		return partialWhy
	}
	for t, depth := tk, 0; t != nil && depth < 1_000_000; t, depth = t.parent, depth+1 {
		if t.ownRecord {
			return ""
		}
		p := t.parent
		if p == nil {
			break
		}
		if p.Root && s.opened[p.Tid] {
			if w := s.whole[p.Tid]; w != nil && (w.outsideNs != 0 && t.StartNs > w.outsideNs || w.firstForkNs != 0 && t.StartNs > w.firstForkNs) {
				return ""
			}
			break
		}
	}
	return partialWhy
}

// strayWhy is what the counts of a task known only by records that came
// after the exit of the task that had its tid say.
const strayWhy = "known only by records read after the exit of the task that had its tid, with no FORK: a record applied out of order, whose counts are not this row's"

// strayLocked says whether tk is known only by records that came after the
// exit of the task that had its tid: a task created in the trace has a
// FORK (a tid used again by one has its own), a root is opened on. Such
// records belong to the task that exited; their place is lost.
func strayLocked(tk *Task) bool {
	return tk.afterExit && !tk.forked && !tk.Root
}

// twiceLocked says whether task tk holds the events of two roots, which
// count the same faults twice: a thread that an attached thread created
// while the attach was opening the events, and which then had its own
// opened too, and the tasks it creates.
func (s *Session) twiceLocked(tk *Task) bool {
	if s.group == nil {
		return tk.twice
	}
	own := 0
	if tk.Root && s.opened[tk.Tid] {
		own = tk.Tid
	}
	for _, cc := range tk.cpuCounts {
		og := s.group.byLeader[cc.leader]
		if og == nil {
			continue
		}
		if own == 0 {
			own = og.root
		}
		if og.root != own {
			return true
		}
	}
	return false
}

// heldRoot notes that an event of root tid sampled task tk (classify).
func (s *Session) heldRoot(tk *Task, root int) {
	if tk.heldRoot == 0 {
		tk.heldRoot = root
		if tk.Root && s.opened[tk.Tid] {
			tk.heldRoot = tk.Tid
		}
	}
	tk.twice = tk.twice || root != tk.heldRoot
}

// forkSeen notes a FORK of a root after its events were all in place.
func (s *Session) forkSeen(parent *Task, ns uint64) {
	if w := s.whole[parent.Tid]; w != nil && parent.Root && s.opened[parent.Tid] && ns >= w.openNs && w.firstForkNs == 0 {
		w.firstForkNs = ns
	}
}

// userModeSeen notes that task tk faulted in user mode at ns: outside any
// system call then.
func (s *Session) userModeSeen(tk *Task, ns uint64) {
	if w := s.whole[tk.Tid]; w != nil && tk.Root && s.opened[tk.Tid] && ns >= w.openNs && (w.outsideNs == 0 || ns < w.outsideNs) {
		w.outsideNs = ns
	}
}

// outsideClone watches task tid for a few milliseconds until /proc shows
// it in a system call that creates no task, or waiting outside any; it
// returns when (CLOCK_MONOTONIC, after the read that showed it), 0 if it
// was running (or creating a task) every time.
func outsideClone(tid int) uint64 {
	for range 10 {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/syscall", tid))
		if err != nil {
			return 0
		}
		now := monotonicNs()
		f := strings.Fields(string(b))
		if len(f) > 0 && f[0] != "running" {
			if nr, err := strconv.Atoi(f[0]); err == nil && !mayCreate(nr) {
				return now
			}
		}
		time.Sleep(500 * time.Microsecond)
	}
	return 0
}

// mayCreate says whether system call nr may create a task: clone, clone3,
// fork and vfork of this architecture, and those numbers of the 32-bit
// ABIs (fork 2, clone 120, vfork 190 on i386 and arm), whose tasks show
// their own numbers.
func mayCreate(nr int) bool {
	calls := []int{unix.SYS_CLONE, unix.SYS_CLONE3, 2, 120, 190}
	if runtime.GOARCH == "amd64" {
		calls = append(calls, 57, 58) // fork, vfork
	}
	return slices.Contains(calls, nr)
}
