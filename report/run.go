// Package report holds what a cowtrace run measured: the JSON contract that
// --format json writes and compare reads back (SchemaVersion: fields are
// added, never renamed or removed, within a schema version; every key is
// present, null where it does not apply or was not measured, json.go; the
// JSON Schema is docs/schema), and what is
// known about its rows, their counts and their matching across runs. The
// packages that measure (cow, engine, follow) import it and nothing else
// of report's: report/render draws it, report/expect and report/gate judge
// it (--expect, --max-increase).
package report

// SchemaVersion is the version of the JSON contract. Version 2 writes every
// key, null where version 1 left it out or wrote a 0 or "" that was not
// measured; ReadRuns reads both.
const SchemaVersion = 2

// Run is the result of one experiment (or one traced command).
type Run struct {
	SchemaVersion int    `json:"schema_version"`
	Kernel        string `json:"kernel"`   // uname -r
	Scenario      string `json:"scenario"` // e.g. "touched", "untouched"
	Label         string `json:"label" null:"empty"`

	Blocks    int  `json:"blocks"`
	BlockSize int  `json:"block_size"`
	Offset    int  `json:"offset"`
	Touched   bool `json:"touched"`
	// Blocks ... Region are the experiment's layout, null in a traced run.
	// Region is where the experiment's memory sat in the worker; faults
	// are split by whether their address falls inside it.
	Region *Region `json:"region"`

	// CopyRoutine is the kernel function behind Process.Copies when
	// kprobes are available, and CopyRoutineCheck says how cowtrace made
	// sure that this kernel's copy-on-write path really calls it.
	CopyRoutine      string `json:"copy_routine" null:"empty"`
	CopyRoutineCheck string `json:"copy_routine_check" null:"empty"`
	KprobeMethod     string `json:"kprobe_method" null:"empty"` // "pmu", "tracefs" or ""

	// Methods says how each measure was obtained, by JSON field name:
	// "counter:page-faults", "tracepoint:exceptions:page_fault_user",
	// "kprobe:copy_mc_to_kernel", "inferred:kmem:mm_page_alloc".
	Methods     map[string]string `json:"methods"`
	Unavailable []Unavailable     `json:"unavailable"`
	Notes       []string          `json:"notes"`

	LostRecords uint64 `json:"lost_records"`
	Throttled   uint64 `json:"throttled"`
	// Records is how many records the kernel delivered through the rings:
	// what the trace cost in records, on any machine.
	Records uint64 `json:"records"`
	// Complete says that every figure of the run adds up: no record was
	// lost and, in count mode, every task's samples sum to the kernel's
	// totals. When not, Incomplete says why, and the figures it touches are
	// null, with the reason in the row's Unmeasured.
	Complete   bool     `json:"complete"`
	Incomplete []string `json:"incomplete"`
	// CountMethod is how count mode learned each task's counts:
	// "exit-tracepoint" or "exit-syscall" (cowtrace doctor explains); ""
	// when faults were sampled one by one.
	CountMethod string `json:"count_method" null:"empty"`

	// Trace is set for cowtrace run and attach (see tree.go).
	Trace *Trace `json:"trace"`
	// CopiesBy says how each traced process's copies are split in its
	// Process.CopiesBy (--by): ByMapping or ByFunction; "" when not.
	CopiesBy string `json:"copies_by" null:"empty"`
	// Timeseries are the processes' copies and faults over time (--plot);
	// not in the JSON report.
	Timeseries []Timeseries `json:"-"`

	Processes []Process `json:"processes"`
}

// Region is the experiment's memory in the worker's address space.
type Region struct {
	Start  uint64 `json:"start"`
	Length uint64 `json:"length"`
}

// Unavailable is a facility the run could not use, and why.
type Unavailable struct {
	What string `json:"what"`
	Why  string `json:"why"`
}

// Process is one row: the parent, a child, or a traced process.
type Process struct {
	Role string `json:"role"` // "parent", "reader", "writer", ...
	Pid  int    `json:"pid"`
	// Window is the span of the process's life that the row covers.
	Window string `json:"window"`
	// Lineage places a traced run's row in its tree (tree.go); its
	// fields are flattened into the row, and absent on the experiment's.
	*Lineage

	PageFaults  *uint64 `json:"page_faults"`
	MinorFaults *uint64 `json:"minor_faults"`
	MajorFaults *uint64 `json:"major_faults"`
	// WPFaults are user write-protect faults (x86 error code present+write),
	// the faults that copy-on-write takes; nil when not measured.
	WPFaults *uint64 `json:"wp_faults"`
	// Copies are pages the kernel copied for this process: kprobe hits
	// on the copy routine, or else inferred from tracepoints.
	Copies *uint64 `json:"copies"`
	// InferredCopies is the tracepoint-only estimate, kept next to a kprobe
	// count when both exist so that one validates the other.
	InferredCopies *uint64 `json:"inferred_copies"`
	// CopiesByCause splits Copies by why the kernel copied; nil where the
	// method cannot tell.
	CopiesByCause *CopyCauses `json:"copies_by_cause"`

	InRegion *FaultClasses `json:"in_region"`
	Outside  *FaultClasses `json:"outside"`

	// Probes are kprobe hit counts by function name (the copy routine,
	// do_wp_page, --probe functions).
	Probes map[string]uint64 `json:"probes"`

	// CopiesBy splits the process's counted copies by mapping or by
	// function (Run.CopiesBy), largest first.
	CopiesBy []Share `json:"copies_by"`

	// Pagemap is the physical-frame evidence of --proof pagemap (children).
	Pagemap *Pagemap `json:"pagemap"`

	LostRecords uint64 `json:"lost_records"`

	// Unmeasured says, by JSON field, why a figure of this row that the
	// run measures for others is null.
	Unmeasured map[string]string `json:"unmeasured"`
}

// SetUnmeasured marks field (a JSON name) null in p, for the reason why.
func (p *Process) SetUnmeasured(field, why string) {
	if p.Unmeasured == nil {
		p.Unmeasured = map[string]string{}
	}
	p.Unmeasured[field] = why
}

// CopyCauses splits a process's copies by why the kernel copied the page.
type CopyCauses struct {
	// WriteProtect: a write-protect fault copied the page: one that
	// fork shared with another process, which is the copy sharing costs,
	// or a page of a private file mapping that a read had mapped.
	WriteProtect uint64 `json:"write_protect"`
	// PrivateFileFirstWrite: the first write to a not-present page of a
	// private file mapping copied the file's page (do_cow_fault): no fork
	// in it (a program's data and relocations, at its start).
	PrivateFileFirstWrite uint64 `json:"private_file_first_write"`
}

// FaultClasses counts user page faults by kind, from the x86 error code.
type FaultClasses struct {
	WP              uint64 `json:"wp"`                // write to a present read-only page (0x7)
	WriteNotPresent uint64 `json:"write_not_present"` // first write (0x6)
	Read            uint64 `json:"read"`              // read of a not-present or protected page
	Exec            uint64 `json:"exec"`              // instruction fetch (0x10)
	InferredCopies  uint64 `json:"inferred_copies"`   // wp faults that allocated a copy
	// KernelMode counts the faults above that the kernel took on the
	// process's memory in a system call (copy_to_user), not the process
	// itself: exceptions:page_fault_kernel instead of page_fault_user.
	KernelMode uint64 `json:"kernel_mode"`
	// Unclassified counts faults known by their address only: the
	// software page-fault event, on kernels without the x86 fault
	// tracepoints (arm64) or without the privileges for them, says where
	// a fault was, not of which kind.
	Unclassified uint64 `json:"unclassified"`

	// unmeasured are the classes the run's method could not tell, null
	// in JSON (Run.MarshalJSON sets it from Run.ClassMeasured).
	unmeasured classSet
}

// Total is the number of faults of every kind (KernelMode is a subset).
func (f *FaultClasses) Total() uint64 {
	return f.WP + f.WriteNotPresent + f.Read + f.Exec + f.Unclassified
}

// Find returns the first process with the role, or nil.
func (r *Run) Find(role string) *Process {
	for i := range r.Processes {
		if r.Processes[i].Role == role {
			return &r.Processes[i]
		}
	}
	return nil
}

// U64 is a convenience for filling optional counts.
func U64(v uint64) *uint64 { return &v }
