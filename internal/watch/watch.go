// Package watch splits a trace followed as it goes (engine's stream) into
// episodes: each fork of a watched process (the one attached to, or run's
// command) opens one, which ends when the child and all its descendants
// have exited. An episode's bill is what the child's tree did in its whole
// life and what the parent did meanwhile: the copies that sharing its pages
// with the child cost it, as a Redis server pays them while its child saves
// a snapshot.
//
// The parent's counts are known at its samples (engine.TaskCounts: as a
// thread leaves a CPU, forks or exits), so its share is split at those
// instants: what it did between two of them goes to the one episode open
// then, or, when several were, to a bucket they share, counted once and
// reported when the last of them ends. The fork itself is sampled, so an
// episode starts exactly at its fork; it ends at the parent's first sample
// after the child's tree is gone, when nothing of its own can be copied
// any more.
package watch

import (
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/cowtrace/cowtrace/internal/engine"
)

// Proc names a process: its pid and command name.
type Proc struct {
	Pid  int
	Comm string
}

// Episode is one fork of a watched process and all it led to.
type Episode struct {
	// ID numbers the episodes in the order of their forks, from 1.
	ID     int
	Parent Proc
	Child  Proc
	// StartNs is the fork, EndNs the exit of the last task of the child's
	// tree (CLOCK_MONOTONIC).
	StartNs, EndNs uint64
	// Tasks is how many tasks the child's tree had, threads included.
	Tasks int
	// Child is what the child's tree did, each task its whole life.
	ChildCounts engine.Counts
	// ParentCounts is what the parent did while this episode alone was
	// open, from the fork to its first sample after EndNs.
	ParentCounts engine.Counts
	// SharedWith are the episodes open at the same time as this one: what
	// the parent did while they were is in their Shared record, not here.
	SharedWith []int
	// Why says why a figure is not whole, "" when it is.
	Why string
}

// Shared is what a parent did while several of its episodes were open:
// which of them caused a copy, the kernel does not say.
type Shared struct {
	Parent   Proc
	Episodes []int
	// StartNs and EndNs bound the time the episodes overlapped.
	StartNs, EndNs uint64
	Counts         engine.Counts
}

// Watcher builds episodes from the engine's stream. Its On methods are the
// engine.Config callbacks; Episode and Shared are called as each is done.
type Watcher struct {
	Episode func(Episode)
	Shared  func(Shared)

	mu sync.Mutex
	// procs are the watched processes, by engine.TaskRef.Proc.
	procs map[int]*ledger
	// children are the processes created by the watched ones' descendants
	// and the episodes they belong to, by task ID.
	tasks  map[int]*episode
	nextID int
}

// ledger is a watched process's counts over time: each thread's latest,
// and what its episodes owe it.
type ledger struct {
	proc Proc
	// threads are its live threads' latest counts, by task ID; gone is
	// what its exited threads counted.
	threads map[int]engine.Counts
	gone    engine.Counts
	// last is the sum at the latest sample, at lastNs.
	last   engine.Counts
	lastNs uint64
	// episodes are those not reported yet, in fork order.
	episodes []*episode
	// buckets are the shared buckets not reported yet, by key (the ids).
	buckets map[string]*bucket
}

type episode struct {
	Episode
	ledger *ledger
	live   int // tasks of the tree alive
	closed bool
	// buckets are the keys of the shared buckets it is in.
	buckets map[string]bool
}

type bucket struct {
	Shared
	members []*episode
}

// New makes a Watcher.
func New() *Watcher {
	return &Watcher{procs: map[int]*ledger{}, tasks: map[int]*episode{}}
}

// ledgerOf is the ledger of watched process proc, made on first sight: a
// process the trace did not see created (the attached one, run's command)
// is watched.
func (w *Watcher) ledgerOf(r engine.TaskRef) *ledger {
	l := w.procs[r.Proc]
	if l == nil {
		l = &ledger{proc: Proc{Pid: r.Pid, Comm: r.Comm}, threads: map[int]engine.Counts{}, buckets: map[string]*bucket{}}
		w.procs[r.Proc] = l
	}
	if r.Pid == r.Tid && r.Comm != "" {
		l.proc.Comm = r.Comm
	}
	return l
}

// OnFork is engine.Config.OnFork.
func (w *Watcher) OnFork(f engine.Fork) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if ep := w.tasks[f.Parent.ID]; ep != nil {
		// A task of an episode's tree: its child joins the tree.
		w.tasks[f.Child.ID] = ep
		ep.live++
		ep.Tasks++
		return
	}
	l := w.ledgerOf(f.Parent)
	l.threads[f.Parent.ID] = f.ParentCounts
	w.checkpoint(l, f.TimeNs)
	// A fork is one of the parent's samples: the episodes that ended
	// before it are done.
	w.reportDone(l, f.TimeNs)
	if f.Thread {
		return // a thread of the watched process
	}
	w.nextID++
	ep := &episode{Episode: Episode{ID: w.nextID, Parent: l.proc, Child: Proc{Pid: f.Child.Pid, Comm: f.Child.Comm}, StartNs: f.TimeNs, Tasks: 1},
		ledger: l, live: 1, buckets: map[string]bool{}}
	l.episodes = append(l.episodes, ep)
	w.tasks[f.Child.ID] = ep
}

// OnCounts is engine.Config.OnCounts.
func (w *Watcher) OnCounts(c engine.TaskCounts) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.tasks[c.Task.ID] != nil {
		return // an episode's task: its end counts
	}
	l := w.ledgerOf(c.Task)
	l.threads[c.Task.ID] = c.Counts
	if c.More {
		return // the process's other threads at the same instant follow
	}
	w.checkpoint(l, c.TimeNs)
	w.reportDone(l, c.TimeNs)
}

// OnTaskEnd is engine.Config.OnTaskEnd.
func (w *Watcher) OnTaskEnd(e engine.TaskEnd) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if ep := w.tasks[e.Task.ID]; ep != nil {
		delete(w.tasks, e.Task.ID)
		ep.ChildCounts.Add(e.Counts)
		if e.Task.Pid == ep.Child.Pid && e.Task.Tid == ep.Child.Pid && e.Task.Comm != "" {
			ep.Child.Comm = e.Task.Comm // its name at its end (after an exec)
		}
		if e.Why != "" && ep.Why == "" {
			ep.Why = "a task of the child's tree: " + e.Why
		}
		if ep.live--; ep.live == 0 {
			ep.closed, ep.EndNs = true, e.TimeNs
		}
		return
	}
	l := w.ledgerOf(e.Task)
	l.threads[e.Task.ID] = e.Counts
	w.checkpoint(l, e.TimeNs)
	l.gone.Add(e.Counts)
	delete(l.threads, e.Task.ID)
	w.reportDone(l, e.TimeNs)
}

// checkpoint charges what the watched process did since its last sample,
// up to ns, to the episode open meanwhile, or to the bucket of those open.
func (w *Watcher) checkpoint(l *ledger, ns uint64) {
	now := l.gone
	for _, c := range l.threads {
		now.Add(c)
	}
	delta := now.Sub(l.last)
	prev := l.lastNs
	l.last, l.lastNs = now, ns
	var open []*episode
	for _, ep := range l.episodes {
		if ep.StartNs < ns && (!ep.closed || ep.EndNs > prev) {
			open = append(open, ep)
		}
	}
	switch len(open) {
	case 0:
	case 1:
		open[0].ParentCounts.Add(delta)
	default:
		ids := make([]string, len(open))
		for i, ep := range open {
			ids[i] = strconv.Itoa(ep.ID)
		}
		key := strings.Join(ids, ",")
		b := l.buckets[key]
		if b == nil {
			b = &bucket{Shared: Shared{Parent: l.proc, StartNs: max(prev, open[len(open)-1].StartNs)}, members: open}
			for _, ep := range open {
				b.Episodes = append(b.Episodes, ep.ID)
				ep.buckets[key] = true
				for _, other := range open {
					if other != ep && !slices.Contains(ep.SharedWith, other.ID) {
						ep.SharedWith = append(ep.SharedWith, other.ID)
					}
				}
			}
			l.buckets[key] = b
		}
		b.Counts.Add(delta)
		b.EndNs = ns
	}
}

// reportDone reports the episodes of l whose tree is gone and whose last
// stretch of the parent's counts is in (its first sample after the end
// came at ns), and the buckets all of whose episodes are reported.
func (w *Watcher) reportDone(l *ledger, ns uint64) {
	l.episodes = slices.DeleteFunc(l.episodes, func(ep *episode) bool {
		if !ep.closed || ns < ep.EndNs {
			return false
		}
		w.report(ep)
		return true
	})
	w.reportBuckets(l)
}

func (w *Watcher) report(ep *episode) {
	sort.Ints(ep.SharedWith)
	if w.Episode != nil {
		w.Episode(ep.Episode)
	}
}

func (w *Watcher) reportBuckets(l *ledger) {
	for key, b := range l.buckets {
		done := true
		for _, ep := range b.members {
			done = done && !slices.Contains(l.episodes, ep)
		}
		if done {
			delete(l.buckets, key)
			if w.Shared != nil {
				w.Shared(b.Shared)
			}
		}
	}
}

// Flush reports what is left at the end of the trace, at ns: the episodes
// whose tree is gone, with the parent's counts as its latest samples give
// them (it may have run since without one), and those still running, with
// what their tree did so far is not known, as their Why says.
func (w *Watcher) Flush(ns uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, l := range w.procs {
		for _, ep := range l.episodes {
			if !ep.closed {
				ep.EndNs = ns
				ep.Why = "still running when the trace ended: the child's tree's counts are those of its tasks that ended"
			}
			w.report(ep)
		}
		l.episodes = nil
		w.reportBuckets(l)
	}
}
