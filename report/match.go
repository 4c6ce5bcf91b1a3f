package report

import (
	"sort"
	"strconv"
	"strings"
)

// Matched is one process across runs: the same command at the same place in
// each run's tree (or, for the experiment, the same role). Procs has one
// entry per run, nil where that run has no such process.
type Matched struct {
	Name  string // as shown: "sh/sh#2/true", "writer", "total"
	Depth int
	Procs []*Process
}

// sep joins the segments of a process's key: a comm may hold any byte but
// NUL, so no command name can forge another process's path.
const sep = "\x00"

// MatchProcesses pairs the rows of runs. Pids differ from run to run, so a
// traced process is known by its path of commands from the root, each with
// its ordinal among the siblings of that name in start order: in
// `sh -c 'a & a & b'` the two a's are a#1 and a#2 wherever their pids fall.
// Thread rows (--threads) follow their process as "thread N". The rows come
// in tree order, the union of every run's tree; the experiment's rows are
// matched by role.
func MatchProcesses(runs []*Run) []Matched {
	type node struct {
		key      string
		depth    int
		children []*node
		procs    []*Process
	}
	root := &node{}
	nodes := map[string]*node{}
	for i, r := range runs {
		keys := rowKeys(r)
		for j := range r.Processes {
			p := &r.Processes[j]
			path := strings.Split(keys[p], sep)
			parent := root
			for d := range path {
				key := strings.Join(path[:d+1], sep)
				n := nodes[key]
				if n == nil {
					n = &node{key: key, depth: d, procs: make([]*Process, len(runs))}
					nodes[key] = n
					parent.children = append(parent.children, n)
				}
				parent = n
			}
			parent.procs[i] = p
		}
	}
	exists := func(key string) bool { return nodes[key] != nil }
	var out []Matched
	var walk func(n *node)
	walk = func(n *node) {
		for _, c := range n.children {
			out = append(out, Matched{Name: displayName(c.key, exists), Depth: c.depth, Procs: c.procs})
			walk(c)
		}
	}
	walk(root)
	return out
}

// rowKeys gives each row of r its key: the role for the experiment, the
// path of comm#ordinal segments from the root for a traced run.
func rowKeys(r *Run) map[*Process]string {
	t := &tree{keys: map[*Process]string{}, procRow: map[at]*Process{}, ordinal: map[*Process]int{}}
	if r.Trace == nil {
		for i := range r.Processes {
			t.keys[&r.Processes[i]] = r.Processes[i].Role
		}
		return t.keys
	}
	var procs, threads []*Process
	for i := range r.Processes {
		p := &r.Processes[i]
		switch {
		case p.Lineage == nil:
			t.keys[p] = p.Role
		case p.Tid != 0:
			threads = append(threads, p)
		default:
			t.procRow[at{p.Pid, p.Depth}] = p
			procs = append(procs, p)
		}
	}
	byStart(procs)
	// Ordinals among same-named siblings, counted in start order.
	type sibling struct {
		parent *Process
		comm   string
	}
	seen := map[sibling]int{}
	for _, p := range procs {
		s := sibling{t.parentOf(p), p.Comm}
		seen[s]++
		t.ordinal[p] = seen[s]
	}
	for _, p := range procs {
		t.keyOf(p)
	}
	byStart(threads)
	n := map[int]int{}
	for _, th := range threads {
		n[th.Pid]++
		owner, ok := t.keys[t.procRow[at{th.Pid, th.Depth}]]
		if !ok {
			// A thread row without its process row is not what
			// cowtrace writes; keep it apart rather than guess.
			owner = th.Comm + "#pid" + strconv.Itoa(th.Pid)
		}
		t.keys[th] = owner + sep + "thread " + strconv.Itoa(n[th.Pid])
	}
	return t.keys
}

// at is where a process row sits in a traced run's tree.
type at struct{ pid, depth int }

// tree is a traced run's process rows as rowKeys builds their keys.
type tree struct {
	keys    map[*Process]string
	procRow map[at]*Process
	ordinal map[*Process]int // among the siblings of its name, from 1
}

// parentOf is the row with p's ppid one level up, as cowtrace run built the
// tree; a process without one is a root.
func (t *tree) parentOf(p *Process) *Process {
	if p.Depth == 0 {
		return nil
	}
	return t.procRow[at{p.Ppid, p.Depth - 1}]
}

// keyOf is p's path of comm#ordinal segments from its root. The recursion
// ends: each parent is one level nearer the root.
func (t *tree) keyOf(p *Process) string {
	if k, ok := t.keys[p]; ok {
		return k
	}
	k := p.Comm + "#" + strconv.Itoa(t.ordinal[p])
	if parent := t.parentOf(p); parent != nil {
		k = t.keyOf(parent) + sep + k
	}
	t.keys[p] = k
	return k
}

// byStart orders rows by when they started, then by pid.
func byStart(ps []*Process) {
	sort.SliceStable(ps, func(i, j int) bool {
		if ps[i].StartMs != ps[j].StartMs {
			return ps[i].StartMs < ps[j].StartMs
		}
		return ps[i].Pid < ps[j].Pid
	})
}

// displayName turns a key into what the table shows: segments joined by
// "/", each with its ordinal only where some run has a second sibling of that
// name (exists says whether a key is in any run).
func displayName(key string, exists func(key string) bool) string {
	segs := strings.Split(key, sep)
	out := make([]string, len(segs))
	for d, s := range segs {
		out[d] = s
		i := strings.LastIndexByte(s, '#')
		if i < 0 || strings.HasPrefix(s, "thread ") {
			continue
		}
		second := strings.Join(append(segs[:d:d], s[:i+1]+"2"), sep)
		if !exists(second) {
			out[d] = s[:i]
		}
	}
	return strings.Join(out, "/")
}
