package engine

import (
	"errors"
	"fmt"
	"math/bits"
	"os"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/cowtrace/cowtrace/perfevents"
	"github.com/cowtrace/cowtrace/report"
)

// The rings of inherited events (run, attach) are one per CPU, and a CPU's
// ring is pinned memory whether or not a traced task ever runs there: 4 MiB
// on each of 48 CPUs was 192 MiB. So they are sized from one budget for all
// of them, and opened only on the CPUs the target may run on.
const (
	// DefaultRingBudget is the ring memory of run and attach when the
	// user sets none: split over the target's CPUs, but within
	// [cpuRingMinPages, cpuRingMaxPages] per CPU.
	DefaultRingBudget = 32 << 20
	// cpuRingMaxPages (4 MiB) is what one CPU gets at most from the
	// default budget, as on every machine before the budget: more does not
	// help on few CPUs.
	cpuRingMaxPages = 1024
	// cpuRingMinPages (512 KiB, perf record's default) is the least one
	// CPU gets from the default budget, however many CPUs share it: with
	// cowtrace at real-time priority (promptThreads), the 1 GiB workload
	// (a writer child that faults on 262144 pages, five records each) lost
	// no record under cowtrace run with it on the 2-CPU development machine
	// in any of 16 runs at loads of 3 to 7.
	cpuRingMinPages = 128
	// MinRingSize is the smallest ring a user may ask for per CPU: the
	// kernel writes records of up to 64 KiB (header.size has 16 bits), and
	// a record larger than the ring is lost however fast it is read.
	MinRingSize = 64 << 10
	// MaxRingSize is the largest ring one CPU can have: its data and
	// metadata page are mapped in one mmap whose length must fit an int32
	// (perfevents.Reader.Add), which leaves 1 GiB of data, a power of two,
	// whatever the page size.
	MaxRingSize = 1 << 30
)

// promptThreads puts every thread of cowtrace at the lowest real-time
// priority (SCHED_FIFO 1) until restore: how much a ring must hold is what
// the traced tasks write while the reader, woken, waits for a CPU. The
// reader's thread alone is not enough: the Go scheduler hands its goroutine
// and the Ps between threads, and one of them waiting behind the load
// stalls it. On the 2-CPU development machine at a load of 7, the 1 GiB
// workload under cowtrace run lost records with 512 KiB rings per CPU in
// every run at normal priority, and in 4 runs of 4 with the reader's thread
// alone at SCHED_FIFO 1; with every thread there, in none of 4 run in turn
// with those (perf record offers the same as --realtime). The threads sleep
// between wake-ups and the reader drains quickly (0.2 s of CPU for the 1.3
// million records of that workload), so they take the traced tasks' CPUs no
// longer than before, only sooner. SCHED_RESET_ON_FORK keeps the priority
// from any task or thread created meanwhile.
func promptThreads() (restore func(), err error) {
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return func() {}, err
	}
	was := map[int]*unix.SchedAttr{}
	restore = func() {
		for tid, a := range was {
			// A thread that ended meanwhile is gone with its priority.
			_ = unix.SchedSetAttr(tid, a, 0)
		}
	}
	rt := unix.SchedAttr{Policy: unix.SCHED_FIFO, Priority: 1, Flags: unix.SCHED_FLAG_RESET_ON_FORK}
	for _, e := range ents {
		tid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		a, err := unix.SchedGetAttr(tid, 0)
		if err != nil {
			continue
		}
		if err := unix.SchedSetAttr(tid, &rt, 0); err != nil {
			if errors.Is(err, unix.ESRCH) {
				continue
			}
			restore()
			return func() {}, fmt.Errorf("sched_setattr SCHED_FIFO: %w", err)
		}
		was[tid] = a
	}
	return restore, nil
}

// ringPlan is the size of every CPU's ring, decided at the first
// OpenInherited from the CPUs that its task may run on.
type ringPlan struct {
	online []int
	pages  int   // data pages per ring
	budget int64 // the bytes split; 0 when Config.RingPages fixed the size
	user   bool  // the budget is the user's (Config.RingBudget)
	// guards count the page faults of each root's tasks on every CPU
	// when some online CPU has no ring (see openGuard), by root tid.
	guards map[int]*perfevents.Event
}

// splitRingBudget gives each of n rings its share of budget bytes in data
// pages: a power of two, as the kernel wants, rounded down so that the
// budget holds. A user's budget (user) is kept even when it gives few
// pages; the default is kept within [cpuRingMinPages, cpuRingMaxPages].
func splitRingBudget(budget int64, n, pageSize int, user bool) (int, error) {
	if n < 1 {
		return 0, fmt.Errorf("ring budget over %d CPUs", n)
	}
	share := budget / int64(n) / int64(pageSize)
	pages := 0
	if share > 0 {
		pages = 1 << (bits.Len64(uint64(share)) - 1)
	}
	if user {
		if most := MaxRingSize * int64(n); budget > most {
			return 0, fmt.Errorf("ring size %s over %d CPUs: a CPU's ring holds at most %s, so %d CPUs' at most %s",
				formatBytes(budget), n, formatBytes(MaxRingSize), n, formatBytes(most))
		}
		if int64(pages)*int64(pageSize) < MinRingSize {
			return 0, fmt.Errorf("ring size %s over %d CPUs is less than %s per CPU (a record can be that large)",
				formatBytes(budget), n, formatBytes(MinRingSize))
		}
		return pages, nil
	}
	return min(max(pages, cpuRingMinPages), cpuRingMaxPages), nil
}

// ringCPUs returns the CPUs, of those online, where tasks of a target with
// CPU affinity allowed can run. An affinity without an online CPU (the
// kernel does not leave one so) gives every online CPU.
func ringCPUs(online, allowed []int) []int {
	var cpus []int
	for _, c := range online {
		if slices.Contains(allowed, c) {
			cpus = append(cpus, c)
		}
	}
	if len(cpus) == 0 {
		return online
	}
	return cpus
}

// affinity reads task tid's CPU affinity. For run, tid is the locked
// thread that forks the command, whose affinity the command inherits.
func affinity(tid int) ([]int, error) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(tid, &set); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return nil, fmt.Errorf("CPU affinity of %d: %w", tid, perfevents.ErrNoProcess)
		}
		return nil, fmt.Errorf("CPU affinity of %d: %w", tid, err)
	}
	var cpus []int
	for c := 0; c < len(set)*64; c++ {
		if set.IsSet(c) {
			cpus = append(cpus, c)
		}
	}
	return cpus, nil
}

// cpusFor returns the indices in s.cpus of the CPUs task tid may run on,
// giving a ring to each that has none yet. The first call plans the rings'
// size from its task's CPUs; a later thread (attach) allowed on other CPUs
// gets rings of that same size there, beyond the budget.
func (s *Session) cpusFor(tid int) ([]int, error) {
	allowed, err := affinity(tid)
	if errors.Is(err, perfevents.ErrNoProcess) {
		return nil, err
	}
	if s.plan == nil {
		online, oerr := perfevents.OnlineCPUs()
		if oerr != nil {
			return nil, oerr
		}
		if err != nil {
			// A kernel whose CPU mask is larger than unix.CPUSet's
			// 1024 bits refuses the call; every CPU is the safe side.
			allowed = online
		}
		budget, user := s.cfg.RingBudget, s.cfg.RingBudget > 0
		if !user {
			budget = DefaultRingBudget
		}
		p := &ringPlan{online: online, budget: budget, user: user, pages: s.cfg.RingPages}
		if p.pages == 0 {
			if p.pages, err = splitRingBudget(budget, len(ringCPUs(online, allowed)), os.Getpagesize(), user); err != nil {
				return nil, err
			}
		} else {
			p.budget, p.user = 0, false
		}
		if !s.access.Privileged && !p.user {
			// Without CAP_IPC_LOCK a user may lock
			// kernel.perf_event_mlock_kb (516 KiB) per CPU: the ring and
			// its metadata page.
			p.pages = min(p.pages, 128)
		}
		s.plan = p
	} else if err != nil {
		allowed = s.plan.online
	}
	var cis []int
	for _, cpu := range ringCPUs(s.plan.online, allowed) {
		ci := slices.Index(s.cpus, cpu)
		if ci < 0 {
			s.cpus, s.cpuOwners = append(s.cpus, cpu), append(s.cpuOwners, nil)
			ci = len(s.cpus) - 1
		}
		cis = append(cis, ci)
	}
	return cis, nil
}

// ringOwnerAttr makes a the event that owns its CPU's ring when it is the
// first there: a CPU's ring serves every traced task on that CPU and wakes
// the reader at a quarter; only the mapped event's watermark counts.
func (s *Session) ringOwnerAttr(a *perfevents.Attr) {
	a.Watermark = uint32(s.plan.pages * os.Getpagesize() / 4)
}

// openCarriers opens, once every other event of root task tid is open on
// every CPU, one dummy event per CPU that carries tid's tasks' records
// (FORK, EXIT, COMM, and MMAP2 when mappings are recorded) in classify
// mode. Opened last, it tells a task that holds every event from one that
// may not (partialLocked): a task that wrote an EXIT or a COMM record held
// the carrier of that CPU, so it was created after all of tid's events
// were in place. (Count mode's groups tell it by their seal, and their
// leaders carry the records.)
func (s *Session) openCarriers(tid int, base perfevents.Attr, cis []int) error {
	for _, ci := range cis {
		a := base
		a.Label, a.Type, a.Config, a.SampleType = "task records", perfevents.Software, perfevents.Dummy, idType
		a.TaskRecords, a.Mmaps = true, s.cfg.OnMmap != nil
		ev, err := perfevents.Open(a, tid, s.cpus[ci])
		if err != nil {
			return err
		}
		s.track(ev, eventInfo{kind: kindDummy, root: tid})
		if err := s.output(ev, ci); err != nil {
			return err
		}
	}
	return nil
}

// output maps ev's ring when ev is the first event on CPU index ci, and
// else sends ev's records into that CPU's ring.
func (s *Session) output(ev *perfevents.Event, ci int) error {
	if s.cpuOwners[ci] != nil {
		return s.redirect(ev, ci)
	}
	cookie := len(s.rings)
	s.rings = append(s.rings, ring{tid: -1})
	if err := s.reader.Add(ev.FD(), s.plan.pages, cookie); err != nil {
		return err
	}
	s.cpuOwners[ci] = ev
	for len(s.ringOf) <= ci {
		s.ringOf = append(s.ringOf, -1)
	}
	s.ringOf[ci] = cookie
	return nil
}

// openGuard opens, when task tid's CPUs leave out some online CPU, one
// page-fault counter on tid on every CPU, inherited: a task that widens its
// affinity later (sched_setaffinity, taskset, a cpuset) runs untraced on a
// CPU without a ring, and the difference between this count and the sampled
// one is what it did there. It is opened after the sampled events and goes
// first in s.events, which Stop disables in order, so that on its own it
// never counts more than they do.
func (s *Session) openGuard(tid int, base perfevents.Attr, cis []int) error {
	if len(cis) == len(s.plan.online) {
		return nil
	}
	a := base
	a.Label, a.Type, a.Config = "page-faults (every CPU)", perfevents.Software, perfevents.PageFaults
	ev, err := perfevents.Open(a, tid, perfevents.AnyCPU)
	if err != nil {
		return err
	}
	s.events = append([]*perfevents.Event{ev}, s.events...)
	if s.plan.guards == nil {
		s.plan.guards = map[int]*perfevents.Event{}
	}
	s.plan.guards[tid] = ev
	return nil
}

// ringNotesLocked says, after Stop, how much ring memory the inherited
// events pinned and where, and whether any fault happened on a CPU without
// a ring.
func (s *Session) ringNotesLocked(run *report.Run) {
	p := s.plan
	if p == nil || len(s.cpus) == 0 {
		return
	}
	page := int64(os.Getpagesize())
	each := int64(p.pages) * page
	pinned := int64(len(s.cpus)) * (each + page) // and the metadata page
	cpus := slices.Sorted(slices.Values(s.cpus))
	where := "every online CPU"
	if len(cpus) < len(p.online) {
		where = fmt.Sprintf("of %s online, the traced tasks' CPU affinity", formatCPUList(p.online))
	}
	var sized string
	switch {
	case p.budget == 0:
		sized = "a fixed size per CPU"
	case p.user:
		sized = fmt.Sprintf("--ring-size %s split over them", formatBytes(p.budget))
	default:
		sized = fmt.Sprintf("the default %s split over them, %s to %s per CPU", formatBytes(p.budget),
			formatBytes(cpuRingMinPages*page), formatBytes(cpuRingMaxPages*page))
	}
	run.Notes = append(run.Notes, fmt.Sprintf("ring buffers: %.1f MiB pinned, %s on each of %d CPUs (%s, %s; %s)",
		float64(pinned)/(1<<20), formatBytes(each), len(cpus), formatCPUList(cpus), where, sized))
	if s.readerPrio != nil {
		run.Notes = append(run.Notes, fmt.Sprintf("cowtrace read the rings at normal priority (%v): under load, records are lost "+
			"sooner with small rings; --ring-size sets how much they hold", s.readerPrio))
	}
	if len(p.guards) > 0 && s.group == nil {
		note, escaped := s.escapeNoteLocked()
		run.Notes = append(run.Notes, note)
		if escaped {
			run.Incomplete = append(run.Incomplete, note)
		}
	}
}

// escapeNoteLocked compares the guards' page faults, counted on every CPU,
// with those sampled into the rings; escaped says some were missed, and
// then no row's figures are known whole (s.escaped).
func (s *Session) escapeNoteLocked() (note string, escaped bool) {
	var all, sampled uint64
	for _, g := range s.plan.guards {
		v, err := g.Count()
		if err != nil {
			return fmt.Sprintf("faults on CPUs without a ring: not checked (%v)", err), true
		}
		all += v
	}
	var lost, throttled uint64
	for _, rg := range s.rings {
		lost, throttled = lost+rg.lost, throttled+rg.throttled
	}
	for _, tk := range s.all {
		if s.sampledCounter(0) {
			sampled += tk.counters[0]
			continue
		}
		// The faults the tracepoints classified: as many as the
		// page-fault counter saw, or more (a fault taken with page faults
		// disabled reaches the tracepoint, not the counter).
		in, out := tk.classes()
		sampled += in.Total() + out.Total()
	}
	switch {
	case all <= sampled:
		return fmt.Sprintf("faults on CPUs without a ring: none (a page-fault counter on every CPU saw %d, the rings %d)", all, sampled), false
	case lost > 0 || throttled > 0:
		return fmt.Sprintf("faults on CPUs without a ring: not known, records were lost (a page-fault counter on every CPU saw %d, the rings %d)", all, sampled), false
	}
	s.escaped = all - sampled
	return fmt.Sprintf("faults on CPUs without a ring: %d page faults of the traced tasks happened on CPUs without a ring "+
		"(a task widened its CPU affinity, or a CPU came online), and which process took them is not known, so no row's faults and copies are: "+
		"a page-fault counter on every CPU saw %d, the rings %d; trace with an affinity that holds every CPU the tasks use",
		all-sampled, all, sampled), true
}

// formatCPUList writes CPUs in the kernel's list format ("0-3,6"); cpus
// must be in ascending order.
func formatCPUList(cpus []int) string {
	var b strings.Builder
	for i := 0; i < len(cpus); {
		j := i
		for j+1 < len(cpus) && cpus[j+1] == cpus[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(cpus[i]))
		if j > i {
			b.WriteByte('-')
			b.WriteString(strconv.Itoa(cpus[j]))
		}
		i = j + 1
	}
	return b.String()
}

// formatBytes writes n in the largest binary unit that divides it, as
// --ring-size takes it ("512K", "32M").
func formatBytes(n int64) string {
	for _, u := range []struct {
		shift uint
		unit  string
	}{{30, "G"}, {20, "M"}, {10, "K"}} {
		if n >= 1<<u.shift && n%(1<<u.shift) == 0 {
			return fmt.Sprintf("%d%s", n>>u.shift, u.unit)
		}
	}
	return strconv.FormatInt(n, 10)
}
