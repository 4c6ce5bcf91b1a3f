package report

import "time"

// The records of cowtrace watch: one per episode (a fork of the watched
// process and everything its child's tree did) as it ends, one per shared
// bucket (what the parent did while several episodes were open), and a
// summary at the end. With --format json each is one line, told apart by
// its kind; docs/schema/watch.schema.json describes them.

// The kinds of watch's records.
const (
	KindEpisode = "episode"
	KindShared  = "shared"
	KindSummary = "summary"
)

// Episode is one fork of the watched process: the child's tree, each task
// its whole life, and what the parent did while this episode alone was
// open. A figure not measured is nil, with the reason in Unmeasured.
type Episode struct {
	Kind string `json:"kind"` // KindEpisode
	// ID numbers the episodes in the order of their forks, from 1.
	ID         int    `json:"id"`
	ParentPid  int    `json:"parent_pid"`
	ParentComm string `json:"parent_comm"`
	ChildPid   int    `json:"child_pid"`
	// Comm is the child's command name at its end (after an exec).
	Comm string `json:"comm"`
	// Start is the fork; DurationMs runs to the exit of the last task of
	// the child's tree.
	Start      time.Time `json:"start"`
	DurationMs float64   `json:"duration_ms"`
	// Tasks is how many tasks the child's tree had, threads included.
	Tasks int `json:"tasks"`

	// PageFaults are every fault (first touches and reads as well as
	// write-protect faults): the child's own new pages are among its
	// faults that are not write-protect faults.
	ParentPageFaults    uint64      `json:"parent_page_faults"`
	ChildPageFaults     *uint64     `json:"child_page_faults"`
	ParentCopies        *uint64     `json:"parent_copies"`
	ParentWPFaults      *uint64     `json:"parent_wp_faults"`
	ParentCopiesByCause *CopyCauses `json:"parent_copies_by_cause"`
	ChildCopies         *uint64     `json:"child_copies"`
	ChildWPFaults       *uint64     `json:"child_wp_faults"`
	ChildCopiesByCause  *CopyCauses `json:"child_copies_by_cause"`
	// Copies are the parent's and the child's together, Bytes those
	// times the page size.
	Copies *uint64 `json:"copies"`
	Bytes  *uint64 `json:"bytes"`

	// SharedWith are the episodes open at the same time as this one: what
	// the parent did while they were is in their shared bucket, not here.
	SharedWith []int `json:"shared_with"`
	// Complete is false when a figure this trace measures is not known
	// whole for this episode (null, with the reason in Unmeasured).
	Complete bool `json:"complete"`
	// Unmeasured says, by JSON field, why a figure is null.
	Unmeasured map[string]string `json:"unmeasured,omitempty"`
}

// SharedBucket is what the parent did while several of its episodes were
// open: which of them caused a copy, the kernel does not say. It is
// reported once, when the last of its episodes is.
type SharedBucket struct {
	Kind       string `json:"kind"` // KindShared
	ParentPid  int    `json:"parent_pid"`
	ParentComm string `json:"parent_comm"`
	Episodes   []int  `json:"episodes"`
	// Start and DurationMs bound the time the episodes overlapped.
	Start         time.Time         `json:"start"`
	DurationMs    float64           `json:"duration_ms"`
	Copies        *uint64           `json:"copies"`
	WPFaults      *uint64           `json:"wp_faults"`
	CopiesByCause *CopyCauses       `json:"copies_by_cause"`
	Bytes         *uint64           `json:"bytes"`
	Unmeasured    map[string]string `json:"unmeasured,omitempty"`
}

// WatchSummary ends a watch: the totals of every episode and shared
// bucket reported, how the trace ended and what it measured with.
type WatchSummary struct {
	Kind   string `json:"kind"` // KindSummary
	Kernel string `json:"kernel"`
	Label  string `json:"label,omitempty"`
	// Pid is the process watched with -p; Command the one watch started.
	Pid     int      `json:"pid,omitempty"`
	Command []string `json:"command,omitempty"`
	// EndedBy is "interrupt", "duration" or "exit" (the target's).
	EndedBy    string    `json:"ended_by"`
	ExitCode   *int      `json:"exit_code,omitempty"`
	Start      time.Time `json:"start"`
	DurationMs float64   `json:"duration_ms"`

	Episodes      int `json:"episodes"`
	SharedBuckets int `json:"shared_buckets"`
	// Copies, their causes and Bytes are those of every complete episode
	// and every shared bucket together; nil where not measured.
	Copies        *uint64     `json:"copies"`
	CopiesByCause *CopyCauses `json:"copies_by_cause"`
	Bytes         *uint64     `json:"bytes"`
	// IncompleteEpisodes are the episodes with a figure not known whole.
	IncompleteEpisodes int `json:"incomplete_episodes"`
	PageSize           int `json:"page_size"`

	// Mode is "count" or "classify" (engine.Mode), Methods the run's
	// methods by measure, as in a run's report.
	Mode        string            `json:"mode"`
	Methods     map[string]string `json:"methods"`
	LostRecords uint64            `json:"lost_records"`
	Complete    bool              `json:"complete"`
	Incomplete  []string          `json:"incomplete"`
	Notes       []string          `json:"notes"`
}
