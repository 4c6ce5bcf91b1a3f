package engine

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// settledCounts is what count mode concluded after Stop: each task's count
// per member, and why a count is not known.
type settledCounts struct {
	vals map[*Task][]uint64
	// unknown says, per task and member index, why the count is not known.
	unknown map[*Task]map[int]string
	// copiesUnknown says why copies told by their stack are not known for
	// a task: allocation records of its root's groups were lost.
	copiesUnknown map[*Task]string
	// incomplete are the reasons the run is not exact.
	incomplete []string
	// notes are what the run says besides.
	notes []string
}

func (c *settledCounts) setUnknown(tk *Task, m int, why string) {
	if c.unknown[tk] == nil {
		c.unknown[tk] = map[int]string{}
	}
	if _, ok := c.unknown[tk][m]; !ok {
		c.unknown[tk][m] = why
	}
}

// rootGroups are the groups of one root task, one per CPU, their totals,
// and the tasks that hold copies of them.
type rootGroups struct {
	root   int
	groups []*openGroup
	totals [][]uint64 // per group, per member
	tasks  []*Task
}

// settleCountsLocked checks count mode's samples against the kernel's
// totals and settles every task's counts (see pertask.go): per root and
// member, the kernel's total less the tasks' last samples is what no
// sample reported yet. It is 0 when every task ended with its counts
// sampled; a task still running may hold some of it, and the only such
// task holds all of it; anything else is a count the run cannot place.
func (s *Session) settleCountsLocked() error {
	g := s.group
	c := &settledCounts{vals: map[*Task][]uint64{}, unknown: map[*Task]map[int]string{}, copiesUnknown: map[*Task]string{}}
	s.settled = c
	roots := map[int]*rootGroups{}
	var order []*rootGroups
	for _, og := range g.groups {
		rg := roots[og.root]
		if rg == nil {
			rg = &rootGroups{root: og.root}
			roots[og.root] = rg
			order = append(order, rg)
		}
		totals, err := og.totals()
		if err != nil {
			return err
		}
		t := make([]uint64, len(g.members))
		for id, v := range totals {
			if m := g.memberOf(id, s.ids); m >= 0 {
				t[m] = v
			}
		}
		rg.groups = append(rg.groups, og)
		rg.totals = append(rg.totals, t)
	}
	for _, tk := range s.all {
		if tk.forgotten {
			continue
		}
		v := make([]uint64, len(g.members))
		for _, cc := range tk.cpuCounts {
			for m, x := range cc.vals {
				v[m] += x
			}
		}
		c.vals[tk] = v
		if rg := roots[s.rootOfLocked(tk, len(order) == 1)]; rg != nil {
			rg.tasks = append(rg.tasks, tk)
		} else if len(tk.cpuCounts) == 0 && !tk.Exited {
			// Known only by its records, with no sample yet, and no
			// way to tell whose groups it holds.
			for m := range g.members {
				c.setUnknown(tk, m, "still running when the trace ended, and never sampled")
			}
		}
	}
	s.nullPartialLocked(c)
	for _, rg := range order {
		s.settleRootLocked(rg, c)
	}
	if n := s.order.late; n > 0 {
		c.incomplete = append(c.incomplete, fmt.Sprintf("%d records were read after later ones were applied (a ring was read over %d ms late): tasks' records may be out of order", n, orderSlack/1_000_000))
	}
	return nil
}

// nullPartialLocked makes unknown the counts of every task that may hold
// only some of its root's events (partialLocked).
func (s *Session) nullPartialLocked(c *settledCounts) {
	for _, tk := range s.all {
		if tk.forgotten {
			continue
		}
		if why := s.partialLocked(tk); why != "" {
			for m := range s.group.members {
				c.setUnknown(tk, m, why)
			}
			c.copiesUnknown[tk] = why
		}
	}
}

// rootOfLocked is the tid of the root whose groups tk holds copies of: the
// one its samples name, else its creator's, else, with one root, that one;
// 0 when unknown.
func (s *Session) rootOfLocked(tk *Task, single bool) int {
	for t, depth := tk, 0; t != nil && depth < 1_000_000; t, depth = t.parent, depth+1 {
		if len(t.cpuCounts) > 0 {
			if og := s.group.byLeader[t.cpuCounts[0].leader]; og != nil {
				return og.root
			}
		}
		if s.opened[t.Tid] && t.Root {
			return t.Tid
		}
	}
	if single {
		return s.group.groups[0].root
	}
	return 0
}

// final says whether tk's counts ended with its last sample: it exited,
// and its last sample was taken at the exit; or, still alive, it sampled
// after the counters were frozen, or was off its CPU then (freeze).
func (s *Session) final(tk *Task) bool {
	if !tk.Exited {
		return s.freezeNs != 0 && (tk.lastSampleNs > s.freezeNs || tk.offAfterFreeze)
	}
	switch tk.lastSample {
	case mExit:
		return true
	case mExitCall, mSignal:
		return s.group.method == exitSyscall
	}
	// A task that made its exit call may still leave its CPU on the way
	// out (do_exit can sleep), which samples it again, but it counts
	// nothing more: the kernels of this method (6.12 to 6.15) tear its
	// events down before its memory, so no fault of its own comes after
	// the call (but for io_uring's requests, cancelled on the way out,
	// whose completion could still write to it: a risk this rule takes).
	return s.group.method == exitSyscall && tk.exitCalled
}

// settleRootLocked settles the tasks of one root's groups.
//
// Stop disables the groups and then reads every ring to its end, but a
// task still running then may go on writing for a moment (a sample under
// way when the disable reaches its CPU, a child forked just as it was
// disabled), so the totals, read last, can hold what no ring delivered.
// Such a tail belongs to a task not seen ending: any task whose EXIT was
// read had written all its records before it (each ring is written in
// order). So a count that no sample reports is still-running tasks' when
// there are some, the one task's when there is one and no task of the
// root went unseen (the FORK records match task:task_newtask). With lost
// records (a ring overflowed) nothing is sure.
func (s *Session) settleRootLocked(rg *rootGroups, c *settledCounts) {
	g := s.group
	var open []*Task // tasks whose counts may have grown since their last sample
	for _, tk := range rg.tasks {
		if !s.final(tk) && !s.quietSinceLocked(tk, c) {
			open = append(open, tk)
		}
	}
	lost := s.lostLocked(rg)
	unseen := s.checkForksLocked(rg)
	for m, mem := range g.members {
		if mem.kind == mExit && s.dropExitSamples {
			continue // the samples that would report it were dropped
		}
		var rest int64
		for gi := range rg.groups {
			rest += int64(rg.totals[gi][m])
		}
		for _, tk := range rg.tasks {
			rest -= int64(c.vals[tk][m])
		}
		for _, og := range rg.groups {
			if sums := s.forgotten[og.leaderID]; sums != nil {
				rest -= int64(sums[m])
			}
		}
		switch {
		case rest == 0:
			continue
		case rest > 0 && lost == "" && len(open) == 1 && unseen == "":
			c.vals[open[0]][m] += uint64(rest)
			continue
		case rest > 0 && lost == "" && len(open) > 0 && allRunning(open):
			why := fmt.Sprintf("still running when the trace ended: %d %s of %d such tasks are not told apart", rest, mem.noun, len(open))
			if unseen != "" {
				why += " (" + unseen + ")"
			}
			for _, tk := range open {
				c.setUnknown(tk, m, why)
			}
			continue
		}
		why := fmt.Sprintf("the kernel counted %d %s that no task's samples report", rest, mem.noun)
		if rest < 0 {
			why = fmt.Sprintf("the tasks' samples report %d %s more than the kernel counted", -rest, mem.noun)
		}
		if reasons := strings.Trim(lost+"; "+unseen, "; "); reasons != "" {
			why += " (" + reasons + ")"
		}
		c.incomplete = append(c.incomplete, why)
		for _, tk := range rg.tasks {
			c.setUnknown(tk, m, why)
		}
	}
	s.checkAllocsLocked(rg, c, open)
	s.checkEscapesLocked(rg, c)
}

// quietSinceLocked says whether task tk, still running, has not run since
// its last sample: then its counts are those of its samples. The kernel
// counts the times a task was switched in (/proc/PID/task/TID/schedstat,
// third field) and the group the times it was switched out, each sampled;
// for a task created during the trace the two start together, and they are
// equal only while it is off every CPU and was not switched in after its
// last sampled switch-out. Read after the groups were disabled, a switch-in
// since then only makes the answer no.
func (s *Session) quietSinceLocked(tk *Task, c *settledCounts) bool {
	m, ok := s.group.index[mSwitch]
	if !ok || tk.Exited || tk.parent == nil || tk.Root {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/schedstat", tk.Pid, tk.Tid))
	if err != nil {
		return false
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return false
	}
	in, err := strconv.ParseUint(f[2], 10, 64)
	return err == nil && in == c.vals[tk][m]
}

// allRunning says whether every task in tks is one still running: then a
// count that no sample reported yet is theirs, just not told apart; a task
// that exited without its last sample makes it a measurement missed.
func allRunning(tks []*Task) bool {
	for _, tk := range tks {
		if tk.Exited {
			return false
		}
	}
	return true
}

// lostLocked says which of rg's CPUs' rings overflowed, "" when none.
func (s *Session) lostLocked(rg *rootGroups) string {
	var out []string
	for _, og := range rg.groups {
		if rg := s.rings[s.ringOf[og.ci]]; rg.lost > 0 {
			out = append(out, fmt.Sprintf("%d records lost on CPU %d", rg.lost, s.cpus[og.ci]))
		}
	}
	return strings.Join(out, "; ")
}

// checkForksLocked compares the tasks the root's tasks created
// (task:task_newtask) with the FORK records read; it returns why they
// differ, "" when they do not.
func (s *Session) checkForksLocked(rg *rootGroups) string {
	m, ok := s.group.index[mNewTask]
	if !ok {
		return ""
	}
	var created uint64
	for gi := range rg.groups {
		created += rg.totals[gi][m]
	}
	forks := s.forgottenForks[rg.root]
	for _, tk := range rg.tasks {
		if tk.parent != nil {
			forks++
		}
	}
	if forks == created {
		return ""
	}
	return fmt.Sprintf("the traced tasks created %d tasks and %d FORK records were read", created, forks)
}

// checkAllocsLocked compares the allocation samples read with those the
// kernel wrote, where copies are told by their stack: those not read are
// the open tasks', as with counts (settleRootLocked).
func (s *Session) checkAllocsLocked(rg *rootGroups, c *settledCounts, open []*Task) {
	var wrote, read uint64
	for _, og := range rg.groups {
		if og.allocs == nil {
			return
		}
		n, err := og.allocs()
		if err != nil {
			c.incomplete = append(c.incomplete, fmt.Sprintf("allocation records: %v", err))
			return
		}
		wrote, read = wrote+n, read+og.allocSamples
	}
	if wrote == read {
		return
	}
	why := fmt.Sprintf("%d of %d allocation records were read: copies told by their stack are not all known", read, wrote)
	if wrote > read && s.lostLocked(rg) == "" && len(open) > 0 && allRunning(open) {
		why = fmt.Sprintf("still running when the trace ended: %d allocation records of %d such tasks came after it", wrote-read, len(open))
		for _, tk := range open {
			c.copiesUnknown[tk] = why
		}
		return
	}
	c.incomplete = append(c.incomplete, why)
	for _, tk := range rg.tasks {
		c.copiesUnknown[tk] = why
	}
}

// checkEscapesLocked compares, where some online CPU has no ring, the
// root's page faults on every CPU (openGuard) with those its groups
// counted: a task that widened its CPU affinity ran where nothing samples
// it. Its runtime there shows in its samples: a task's copies on every CPU
// run as long as it does (time enabled), each only while it runs on that
// CPU (time running).
func (s *Session) checkEscapesLocked(rg *rootGroups, c *settledCounts) {
	guard := s.plan.guards[rg.root]
	if guard == nil {
		return
	}
	all, err := guard.Count()
	if err != nil {
		c.incomplete = append(c.incomplete, fmt.Sprintf("faults on CPUs without a ring: not checked (%v)", err))
		return
	}
	m := s.group.index[mPageFaults]
	var counted uint64
	for gi := range rg.groups {
		counted += rg.totals[gi][m]
	}
	if all <= counted {
		c.notes = append(c.notes, fmt.Sprintf("faults on CPUs without a ring: none (a page-fault counter on every CPU saw %d, the groups on the traced CPUs %d)", all, counted))
		return
	}
	var suspects []*Task
	for _, tk := range rg.tasks {
		var enabled, running uint64
		for _, cc := range tk.cpuCounts {
			enabled, running = max(enabled, cc.enabled), running+cc.running
		}
		if enabled > running+escapeSlack {
			suspects = append(suspects, tk)
		}
	}
	if len(suspects) == 0 {
		suspects = rg.tasks
	}
	why := fmt.Sprintf("ran on a CPU without events (its CPU affinity widened beyond the traced CPUs): %d page faults happened there", all-counted)
	c.incomplete = append(c.incomplete, fmt.Sprintf("faults on CPUs without a ring: %d page faults of the traced tasks happened on CPUs without a ring "+
		"(a task widened its CPU affinity, or a CPU came online); the %d tasks that ran there have no counts; "+
		"trace with an affinity that holds every CPU the tasks use", all-counted, len(suspects)))
	for _, tk := range suspects {
		for m := range s.group.members {
			c.setUnknown(tk, m, why)
		}
		c.copiesUnknown[tk] = why
	}
}

// escapeSlack is how much less a task's time running on the traced CPUs
// may be than its time enabled without its having run elsewhere: its last
// sample on a CPU precedes the end of its last stint there by the few
// microseconds of the switch.
const escapeSlack = 100_000 // 100 µs
