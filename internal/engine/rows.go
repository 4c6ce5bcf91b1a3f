package engine

import (
	"fmt"
	"slices"
	"sort"

	"github.com/cowtrace/cowtrace/internal/cow"
	"github.com/cowtrace/cowtrace/perfevents"
	"github.com/cowtrace/cowtrace/report"
)

// Row fills the measures of one row, the sum over tasks tids, after Stop.
// With region, faults are split into in_region and outside; without, every
// fault is outside.
func (s *Session) Row(r *report.Process, tids []int, region bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var tasks []*Task
	for _, tid := range tids {
		if tk := s.tasks[tid]; tk != nil {
			tasks = append(tasks, tk)
		}
	}
	s.rowLocked(r, tasks, region)
}

// RowOf fills the measures of one row, the sum over tasks, after Stop.
func (s *Session) RowOf(r *report.Process, tasks []*Task) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rowLocked(r, tasks, false)
}

func (s *Session) rowLocked(r *report.Process, tasks []*Task, region bool) {
	var counters [3]uint64
	var counted [cow.NumCountKinds]uint64
	var in, out report.FaultClasses
	var lost uint64
	probes := map[string]uint64{}
	for _, tk := range tasks {
		for i, v := range tk.counters {
			counters[i] += v
		}
		for k, v := range tk.counted {
			counted[k] += v
		}
		ti, to := tk.classes()
		cow.AddClasses(&in, ti)
		cow.AddClasses(&out, to)
		for fn, n := range tk.probes {
			probes[fn] += n
		}
		for _, rg := range s.rings {
			if rg.tid == tk.Tid {
				lost += rg.lost
			}
		}
	}
	if s.settled != nil {
		s.countedRowLocked(r, tasks, in, out)
		return
	}
	r.PageFaults, r.MinorFaults, r.MajorFaults = report.U64(counters[0]), report.U64(counters[1]), report.U64(counters[2])
	if s.cpus != nil && !s.sampledCounter(1) {
		r.MinorFaults = nil
	}
	if s.cpus != nil && !s.sampledCounter(2) {
		r.MajorFaults = nil
	}
	for _, fn := range s.probedLocked() {
		probes[fn] += 0
	}
	if len(probes) > 0 {
		r.Probes = probes
	}
	switch {
	case s.tp.Fault != nil && s.mode == ModeCount:
		countedRow(r, counted, s.tp.Alloc != nil)
	case s.tp.Fault != nil:
		total := s.sampledRow(r, in, out, region, lost)
		r.WPFaults = report.U64(total.WP)
		if s.cpus != nil && !s.sampledCounter(0) {
			r.PageFaults = report.U64(total.Total())
		}
	case s.faultAddr:
		// Faults by address (arm64, or asked for): where, not which kind.
		s.sampledRow(r, in, out, region, lost)
	}
	if s.tp.Fault == nil {
		// Without the fault tracepoint, do_wp_page's hits where it was
		// probed: it handles every write-protect fault.
		if n, ok := probes[cow.WPFunction]; ok {
			r.WPFaults = report.U64(n)
		}
	}
	if s.copyPath != nil && s.copyPath.Err() != nil {
		r.InferredCopies = nil // FillRun says why
	}
	if routine := s.copyRoutineLocked(); routine != "" {
		r.Copies = report.U64(probes[routine])
	} else if r.InferredCopies != nil {
		r.Copies = report.U64(*r.InferredCopies)
	}
	s.copyCausesLocked(r, tasks)
	if s.escaped > 0 {
		nullRow(r, fmt.Sprintf("%d page faults of the traced tasks happened on CPUs without a ring, whose they were is not known", s.escaped))
		return
	}
	for _, tk := range tasks {
		if why := s.partialLocked(tk); why != "" {
			nullRow(r, why)
			return
		}
	}
}

// straysLocked counts the tasks strayLocked says are.
func (s *Session) straysLocked() int {
	n := 0
	for _, tk := range s.all {
		if !tk.forgotten && strayLocked(tk) {
			n++
		}
	}
	return n
}

// nullRow makes every figure of r null, for why.
func nullRow(r *report.Process, why string) {
	for _, f := range []struct {
		name string
		p    **uint64
	}{{"page_faults", &r.PageFaults}, {"minor_faults", &r.MinorFaults}, {"major_faults", &r.MajorFaults},
		{"wp_faults", &r.WPFaults}, {"copies", &r.Copies}, {"inferred_copies", &r.InferredCopies}} {
		if *f.p != nil {
			*f.p = nil
			r.SetUnmeasured(f.name, why)
		}
	}
	r.InRegion, r.Outside, r.Probes, r.CopiesByCause = nil, nil, nil, nil
}

// copyCausesLocked splits r's copies by cause where the method tells:
// do_cow_fault's hits among the copy routine's, or else the copies'
// stacks (cow.CopyCause); not where copies are paired with faults.
func (s *Session) copyCausesLocked(r *report.Process, tasks []*Task) {
	if r.Copies == nil {
		return
	}
	if s.copyRoutineLocked() != "" {
		if fw, ok := r.Probes[s.causeProbe]; ok && s.causeProbe != "" && fw <= *r.Copies {
			r.CopiesByCause = &report.CopyCauses{WriteProtect: *r.Copies - fw, PrivateFileFirstWrite: fw}
		}
		return
	}
	if s.copyPath == nil || s.tp.Alloc == nil || r.InferredCopies == nil {
		return
	}
	var by [cow.FirstWriteCopy + 1]uint64
	for _, tk := range tasks {
		for c, n := range tk.copiesBy {
			by[c] += n
		}
	}
	r.CopiesByCause = &report.CopyCauses{WriteProtect: by[cow.WPCopy], PrivateFileFirstWrite: by[cow.FirstWriteCopy]}
}

// copyCausesMethod names how copies_by_cause is told, "" where it is not.
func (s *Session) copyCausesMethod() string {
	if s.copyRoutineLocked() != "" {
		if s.causeProbe != "" && s.probeErrs[s.causeProbe] == nil {
			return fmt.Sprintf("kprobe:%s hits among kprobe:%s's", s.causeProbe, s.copyRoutineLocked())
		}
		return ""
	}
	if s.copyPath != nil && s.tp.Alloc != nil {
		return "callchain: do_wp_page (write protect) or do_cow_fault (private file first write) on the copy's kernel stack"
	}
	return ""
}

// countedRowLocked fills r from count mode's settled counts of tasks, and
// says in r.Unmeasured why a figure is null.
func (s *Session) countedRowLocked(r *report.Process, tasks []*Task, in, out report.FaultClasses) {
	g, c := s.group, s.settled
	vals := make([]uint64, len(g.members))
	unknown := map[int]string{}
	copiesWhy := ""
	for _, tk := range tasks {
		for m, v := range c.vals[tk] {
			vals[m] += v
		}
		for m, why := range c.unknown[tk] {
			if _, ok := unknown[m]; !ok {
				unknown[m] = why
			}
		}
		if why := c.copiesUnknown[tk]; why != "" && copiesWhy == "" {
			copiesWhy = why
		}
	}
	why := func(field string, kinds ...memberKind) (*uint64, bool) {
		var sum uint64
		any := false
		for _, k := range kinds {
			m, ok := g.index[k]
			if !ok {
				continue
			}
			any = true
			if w, bad := unknown[m]; bad {
				r.SetUnmeasured(field, w)
				return nil, true
			}
			sum += vals[m]
		}
		if !any {
			return nil, false
		}
		return report.U64(sum), true
	}
	r.PageFaults, _ = why("page_faults", mPageFaults)
	r.MinorFaults, _ = why("minor_faults", mMinor)
	r.MajorFaults, _ = why("major_faults", mMajor)
	if s.tp.Fault != nil {
		r.WPFaults, _ = why("wp_faults", mWP, mKWP)
	}
	probes := map[string]uint64{}
	var probesWhy string
	for m, mem := range g.members {
		if mem.kind != mProbe {
			continue
		}
		if w, bad := unknown[m]; bad && probesWhy == "" {
			probesWhy = w
		}
		probes[mem.probe] = vals[m]
	}
	if probesWhy != "" {
		r.SetUnmeasured("probes", probesWhy)
	} else if len(probes) > 0 {
		r.Probes = probes
	}
	if s.tp.Fault == nil {
		if n, ok := r.Probes[cow.WPFunction]; ok {
			r.WPFaults = report.U64(n)
		} else if probesWhy != "" {
			r.SetUnmeasured("wp_faults", probesWhy)
		}
	}
	if s.copyPath != nil && s.tp.Alloc != nil && s.copyPath.Err() == nil {
		total := in
		cow.AddClasses(&total, out)
		if copiesWhy != "" {
			r.SetUnmeasured("inferred_copies", copiesWhy)
		} else {
			r.InferredCopies = report.U64(total.InferredCopies)
		}
	}
	switch routine := s.copyRoutineLocked(); {
	case routine != "" && r.Probes != nil:
		r.Copies = report.U64(r.Probes[routine])
	case routine != "":
		r.SetUnmeasured("copies", probesWhy)
	case r.InferredCopies != nil:
		r.Copies = report.U64(*r.InferredCopies)
	case copiesWhy != "":
		r.SetUnmeasured("copies", copiesWhy)
	}
	s.copyCausesLocked(r, tasks)
}

// sampledRow fills r from the classified samples: fault classes in and
// outside the region (or all outside without one), the copies, the lost
// records of the tasks' rings. It returns the classes summed.
func (s *Session) sampledRow(r *report.Process, in, out report.FaultClasses, region bool, lost uint64) report.FaultClasses {
	total := in
	cow.AddClasses(&total, out)
	if region {
		r.InRegion, r.Outside = &in, &out
	} else {
		r.Outside = &total
	}
	if s.tp.Alloc != nil {
		r.InferredCopies = report.U64(total.InferredCopies)
	}
	r.LostRecords = lost
	return total
}

// countedRow fills r from count mode's filtered counters.
func countedRow(r *report.Process, sums [cow.NumCountKinds]uint64, alloc bool) {
	r.WPFaults = report.U64(sums[cow.CountWP] + sums[cow.CountKWP])
	r.InRegion = &report.FaultClasses{
		WP:              sums[cow.CountInWP] + sums[cow.CountKInWP],
		WriteNotPresent: sums[cow.CountInFirstWrite] + sums[cow.CountKInFirstWrite],
		Read:            sums[cow.CountInRead] + sums[cow.CountKInRead],
		Exec:            sums[cow.CountInExec],
		KernelMode:      sums[cow.CountKInWP] + sums[cow.CountKInFirstWrite] + sums[cow.CountKInRead],
	}
	// Outside is left nil: only write-protect faults are counted over the
	// whole address space, and a class without a counter is not a zero.
	// An allocation carries no address: InRegion.InferredCopies stays
	// unmeasured (cow.CountNote says so).
	if alloc {
		r.InferredCopies = report.U64(sums[cow.CountCopyAllocs])
	}
}

// probedLocked are the functions that were probed.
func (s *Session) probedLocked() []string {
	var out []string
	for _, fn := range s.probeFns {
		if s.probeErrs[fn] == nil {
			out = append(out, fn)
		}
	}
	return out
}

// copyRoutineLocked is the copy routine whose hits are the copies: the
// calibrated one when it was probed, except wp_page_copy where allocation
// stacks can tell copies, since wp_page_copy also runs when a write replaces
// the shared zero page and copies nothing (its hits stay a probe column).
func (s *Session) copyRoutineLocked() string {
	switch {
	case s.copyRoutine == "" || s.probeErrs[s.copyRoutine] != nil:
		return ""
	case s.copyRoutine == cow.ZeroPageCopier && s.copyPath != nil && s.tp.Alloc != nil:
		return ""
	}
	return s.copyRoutine
}

// FillRun fills the run-wide fields of run after Stop: what was measured
// with which method, what was unavailable and why, the copy routine, lost
// and throttled records, and the notes that go with them.
func (s *Session) FillRun(run *report.Run, region bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	run.Kernel = perfevents.KernelRelease()
	counters := "counter"
	counted := s.group != nil
	if s.cpus != nil && !counted {
		// Sampled, not counted: see OpenInherited.
		counters = "sampled"
	}
	run.Methods = cow.Methods(cow.Used{
		Counters:               counters,
		UserOnly:               s.userOnly,
		NoMinor:                s.cpus != nil && !counted && !s.sampledCounter(1),
		NoMajor:                s.cpus != nil && (counted && !s.group.has(mMajor) || !counted && !s.sampledCounter(2)),
		AtExit:                 counted,
		PageFaultsByTracepoint: s.cpus != nil && !counted && !s.sampledCounter(0),
		Fault:                  s.tp.Fault != nil,
		KernelFault:            s.tp.KernelFault != nil,
		Alloc:                  s.tp.Alloc != nil,
		Callchain:              s.copyPath != nil,
		FaultAddr:              s.faultAddr,
		WPProbe:                s.faultAddr && slices.Contains(s.probedLocked(), cow.WPFunction),
		Region:                 region,
		Count:                  s.mode == ModeCount,
		AllocFilter:            s.allocFilter,
		CopyRoutine:            s.copyRoutineLocked(),
		Probes:                 s.probedLocked(),
	})
	if m := s.copyCausesMethod(); m != "" {
		run.Methods["copies_by_cause"] = m
	}
	run.Unavailable = append(run.Unavailable, s.unavailable...)
	if s.copyPath != nil && s.copyPath.Err() != nil {
		for _, k := range []string{"copies", "inferred_copies"} {
			if run.Methods[k] == cow.CallchainMethod {
				delete(run.Methods, k)
			}
		}
		run.Unavailable = append(run.Unavailable, report.Unavailable{What: "callchain copies", Why: s.copyPath.Err().Error()})
	}
	var probeNotes []report.Unavailable
	for fn, err := range s.probeErrs {
		probeNotes = append(probeNotes, report.Unavailable{What: "kprobe:" + fn, Why: err.Error()})
	}
	sort.Slice(probeNotes, func(i, j int) bool { return probeNotes[i].What < probeNotes[j].What })
	run.Unavailable = append(run.Unavailable, probeNotes...)
	if s.kp != nil {
		run.KprobeMethod = string(s.kp.Method())
		run.CopyRoutine, run.CopyRoutineCheck = s.copyRoutine, s.copyCheck
	}
	for _, rg := range s.rings {
		run.LostRecords += rg.lost
		run.Throttled += rg.throttled
	}
	run.Records = s.records
	if s.foreignIDs > 0 {
		run.Notes = append(run.Notes, fmt.Sprintf("%d samples carried another perf event's id, each told by the counts it read: "+
			"the kernel gives every software event that fires at one fault or switch the first one's id, and another perf user samples the same events here", s.foreignIDs))
	}
	if n := s.straysLocked(); n > 0 {
		run.Incomplete = append(run.Incomplete, fmt.Sprintf("%d tasks are known only by records read after the exit of the task that had their tid: those records were applied out of order", n))
	}
	if run.LostRecords > 0 && s.group == nil {
		run.Incomplete = append(run.Incomplete, fmt.Sprintf("the kernel dropped %d records (a ring was full): fault, copy and probe counts are lower bounds", run.LostRecords))
	}
	switch {
	case s.group != nil:
		run.CountMethod = string(s.group.method)
		run.Notes = append(run.Notes, s.group.note(s.copyRoutine != ""))
		if s.settled != nil {
			run.Notes = append(run.Notes, s.settled.notes...)
			run.Incomplete = append(run.Incomplete, s.settled.incomplete...)
		}
	case s.mode == ModeCount && s.tp.Fault != nil:
		run.Notes = append(run.Notes, cow.CountNote)
	}
	if s.fallback != "" {
		run.Notes = append(run.Notes, s.fallback)
	}
	if s.userOnly {
		run.Notes = append(run.Notes, fmt.Sprintf("without privileges (euid %d, no CAP_PERFMON, kernel.perf_event_paranoid %d): page faults are user mode's only (:u), as perf stat -e page-faults:u counts them; write-protect faults, their classes and copies need root, CAP_PERFMON or kernel.perf_event_paranoid -1",
			s.access.Euid, s.access.Paranoid))
	}
	s.ringNotesLocked(run)
	if n := s.budgetNoteLocked(); n != "" {
		run.Notes = append(run.Notes, n)
	}
	run.Complete = len(run.Incomplete) == 0
}
