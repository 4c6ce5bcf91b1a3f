package experiment

import (
	"fmt"

	"github.com/cowtrace/cowtrace/internal/proof"
	"github.com/cowtrace/cowtrace/internal/workload"
	"github.com/cowtrace/cowtrace/report"
)

// Proof is a physical-frame proof that a run can add (--proof).
type Proof string

// ProofPagemap reads the region's frames from /proc/PID/pagemap in the
// parent and each child right after the fork and after the writes.
const ProofPagemap Proof = "pagemap"

// ParseProof validates a --proof value.
func ParseProof(s string) (Proof, error) {
	switch p := Proof(s); p {
	case "", ProofPagemap:
		return p, nil
	}
	return "", fmt.Errorf("unknown proof %q (want pagemap)", s)
}

// extras gathers what scenarios and proofs add to a run besides counts: what
// the children said about the region, how much of a huge-page region was
// huge at fork, and the pagemap snapshots.
type extras struct {
	cfg      workload.Config
	proof    Proof
	parent   int
	region   report.Region
	children map[int]int // child index -> pid
	parentAt proof.Frames
	childAt  map[int]proof.Frames
	pagemaps map[int]*report.Pagemap // by pid
	notes    []string
}

func newExtras(cfg workload.Config, p Proof) *extras {
	return &extras{cfg: cfg, proof: p, children: map[int]int{}, childAt: map[int]proof.Frames{},
		pagemaps: map[int]*report.Pagemap{}}
}

func (x *extras) ready(m workload.Message) {
	x.parent, x.region = m.Pid, report.Region{Start: m.Addr, Length: m.Value}
	if !x.cfg.Huge {
		return
	}
	// Whether the kernel found huge pages is the scenario's premise: say it.
	if huge, size, err := proof.HugeKiB(m.Pid, m.Addr); err != nil {
		x.notes = append(x.notes, fmt.Sprintf("thp: could not read the region's huge pages: %v", err))
	} else {
		x.notes = append(x.notes, fmt.Sprintf("thp: %d of the %d KiB of the region's mapping (whole 2 MiB pages) were transparent huge pages at fork (smaps AnonHugePages)",
			huge, size))
	}
}

func (x *extras) atGate(m workload.Message) { x.children[m.Child] = m.Pid }

func (x *extras) childDone(role string, m workload.Message) {
	if m.Flags&workload.FlagRegionMissing != 0 {
		x.notes = append(x.notes, fmt.Sprintf("%s: the region was not mapped in the child, which touched nothing", role))
	}
}

// forked reads every process's frames right after the fork.
func (x *extras) forked() error {
	if x.proof != ProofPagemap {
		return nil
	}
	var err error
	if x.parentAt, err = proof.Read(x.parent, x.region.Start, x.region.Length); err != nil {
		return err
	}
	for i, pid := range x.children {
		if x.childAt[i], err = proof.Read(pid, x.region.Start, x.region.Length); err != nil {
			return err
		}
	}
	return nil
}

// worked reads them again after the writes and compares each child with the
// parent at both moments.
func (x *extras) worked() error {
	if x.proof != ProofPagemap {
		return nil
	}
	parentAfter, err := proof.Read(x.parent, x.region.Start, x.region.Length)
	if err != nil {
		return err
	}
	for i, pid := range x.children {
		after, err := proof.Read(pid, x.region.Start, x.region.Length)
		if err != nil {
			return err
		}
		x.pagemaps[pid] = &report.Pagemap{
			AtFork:      proof.Compare(x.parentAt, x.childAt[i]),
			AfterWrites: proof.Compare(parentAfter, after),
		}
	}
	return nil
}

// apply adds the notes and pagemap results to the finished run.
func (x *extras) apply(run *report.Run) {
	run.Notes = append(run.Notes, x.notes...)
	for i := range run.Processes {
		p := &run.Processes[i]
		pm := x.pagemaps[p.Pid]
		if pm == nil || p.Role == "parent" {
			continue
		}
		p.Pagemap = pm
		run.Notes = append(run.Notes, fmt.Sprintf(
			"pagemap: %s: of %d pages, %d shared the parent's frame right after fork; after the writes %d shared, %d private",
			p.Role, pm.AtFork.Pages, pm.AtFork.Shared, pm.AfterWrites.Shared, pm.AfterWrites.Private))
	}
	if x.proof == ProofPagemap {
		run.Methods["pagemap"] = "pagemap:/proc/PID/pagemap"
	}
}
