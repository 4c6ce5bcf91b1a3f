package proof

import (
	"errors"
	"os"
	"testing"
	"time"

	"github.com/cowtrace/cowtrace/internal/testenv"
	"github.com/cowtrace/cowtrace/internal/workload"
	"github.com/cowtrace/cowtrace/report"
)

func TestMain(m *testing.M) {
	workload.RunIfWorker()
	os.Exit(m.Run())
}

func TestCompare(t *testing.T) {
	const p = entryPresent
	parent := Frames{p | 10, p | 11, p | 12, 0, 0, p | entrySwapped | 5, p | 7, p | 7}
	child := Frames{p | 10, p | 99, 0, p | 13, 0, p | entrySwapped | 5, p | 7, p | 7}
	got := Compare(parent, child)
	want := report.FrameSharing{Pages: 8, Shared: 3, Private: 1, ParentOnly: 1, ChildOnly: 1, Neither: 2, ZeroPage: 2}
	if got != want {
		t.Errorf("Compare = %+v, want %+v", got, want)
	}
}

// TestCheck: Check gives what Read will, for this process's privileges.
func TestCheck(t *testing.T) {
	err := Check()
	if testenv.CapSysAdmin() == "" && err != nil {
		t.Errorf("with CAP_SYS_ADMIN: %v", err)
	}
	if testenv.CapSysAdmin() != "" && !errors.Is(err, ErrNoFrameNumbers) {
		t.Errorf("without CAP_SYS_ADMIN: %v, want ErrNoFrameNumbers", err)
	}
}

func TestReadRefusesUnaligned(t *testing.T) {
	if _, err := Read(os.Getpid(), 1, 4096); err == nil {
		t.Error("Read accepted an unaligned start")
	}
}

// TestForkSharesThenSplits runs the seed's workload with holds and reads the
// frames at both moments: right after the fork every written page of the
// region is the parent's frame in both children; after the writer's writes,
// exactly its 50 written pages have frames of their own.
func TestForkSharesThenSplits(t *testing.T) {
	testenv.Require(t, testenv.CapSysAdmin)
	cfg := workload.Seed()
	cfg.Blocks, cfg.BlockSize, cfg.Offset, cfg.Hold = 50, 4096, 100, true
	p, err := workload.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var region report.Region
	var parent int
	children := map[int]int{} // child index -> pid
	at := map[int]report.FrameSharing{}
	after := map[int]report.FrameSharing{}
	snapshot := func(into map[int]report.FrameSharing) {
		pf, err := Read(parent, region.Start, region.Length)
		if err != nil {
			t.Fatal(err)
		}
		for i, pid := range children {
			cf, err := Read(pid, region.Start, region.Length)
			if err != nil {
				t.Fatal(err)
			}
			into[i] = Compare(pf, cf)
		}
	}
	forked, worked, done := false, false, 0
	deadline := time.Now().Add(30 * time.Second)
	for {
		m, err := p.Next(deadline)
		if err != nil {
			t.Fatal(err)
		}
		switch m.Kind {
		case workload.KindReady:
			region, parent = report.Region{Start: m.Addr, Length: m.Value}, m.Pid
			p.Release(0)
		case workload.KindAtGate:
			children[m.Child] = m.Pid
		case workload.KindForked:
			forked = true
		case workload.KindChildDone:
			done++
		case workload.KindParentWorked:
			worked = true
		case workload.KindParentDone:
			p.Release(0)
			if err := p.Wait(); err != nil {
				t.Fatal(err)
			}
			for i, want := range []report.FrameSharing{
				1: {Pages: 50, Shared: 50}, 2: {Pages: 50, Shared: 50},
			} {
				if i > 0 && at[i] != want {
					t.Errorf("child %d at fork: %+v, want %+v", i, at[i], want)
				}
			}
			if want := (report.FrameSharing{Pages: 50, Shared: 50}); after[1] != want {
				t.Errorf("reader after writes: %+v, want %+v", after[1], want)
			}
			if want := (report.FrameSharing{Pages: 50, Private: 50}); after[2] != want {
				t.Errorf("writer after writes: %+v, want %+v", after[2], want)
			}
			return
		}
		if forked && len(children) == 2 && len(at) == 0 {
			snapshot(at)
			p.Release(1)
			p.Release(2)
			p.Release(0)
		}
		if worked && done == 2 && len(after) == 0 {
			snapshot(after)
			p.Release(1)
			p.Release(2)
		}
	}
}
