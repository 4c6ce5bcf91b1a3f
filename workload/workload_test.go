package workload

import (
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	RunIfWorker()
	os.Exit(m.Run())
}

// drive runs a worker to the end, opening each gate as soon as its process
// reports, and returns the messages in arrival order.
func drive(t *testing.T, cfg Config) []Message {
	t.Helper()
	p, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var got []Message
	deadline := time.Now().Add(30 * time.Second)
	for {
		m, err := p.Next(deadline)
		if err != nil {
			t.Fatalf("after %v: %v", got, err)
		}
		got = append(got, m)
		switch m.Kind {
		case KindReady, KindParentDone:
			if err := p.Release(0); err != nil {
				t.Fatal(err)
			}
		case KindAtGate:
			if err := p.Release(m.Child); err != nil {
				t.Fatal(err)
			}
		}
		if m.Kind == KindParentDone {
			if err := p.Wait(); err != nil {
				t.Fatal(err)
			}
			return got
		}
	}
}

func TestSeedWorkloadSums(t *testing.T) {
	cfg := Seed()
	cfg.Blocks = 100
	msgs := drive(t, cfg)
	var ready Message
	sums := map[int]uint64{}
	pids := map[int]int{}
	for _, m := range msgs {
		switch m.Kind {
		case KindReady:
			ready = m
		case KindAtGate:
			pids[m.Child] = m.Pid
		case KindChildDone, KindParentDone:
			sums[m.Child] = m.Value
		}
	}
	if ready.Value != uint64(cfg.Blocks*cfg.BlockSize) || ready.Addr == 0 {
		t.Errorf("ready message %+v: want the region of %d bytes", ready, cfg.Blocks*cfg.BlockSize)
	}
	// The reader sees the memset's '0', the writer its own 'C', and the
	// parent still '0': the writer's stores went to private copies.
	want := map[int]uint64{0: 100 * '0', 1: 100 * '0', 2: 100 * 'C'}
	for child, w := range want {
		if sums[child] != w {
			t.Errorf("child %d: byte sum %d, want %d", child, sums[child], w)
		}
	}
	if len(pids) != 2 || pids[1] == pids[2] || pids[1] == 0 {
		t.Errorf("child pids %v: want two distinct pids", pids)
	}
}

func TestUntouchedReadsZeroes(t *testing.T) {
	cfg := Seed()
	cfg.Blocks, cfg.Touch = 10, false
	for _, m := range drive(t, cfg) {
		if m.Kind == KindParentDone && m.Value != 0 {
			t.Errorf("parent read %d from untouched memory, want 0", m.Value)
		}
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Blocks: 0, BlockSize: 1}, "blocks must be positive"},
		{Config{Blocks: 1, BlockSize: 0}, "block size must be positive"},
		{Config{Blocks: 1, BlockSize: 10, Offset: 10}, "outside a block"},
		{Config{Blocks: 1, BlockSize: 10, Offset: -1}, "outside a block"},
		{Config{Blocks: 1 << 30, BlockSize: 1 << 20}, "too large"},
	} {
		err := tc.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%+v) = %v, want %q", tc.cfg, err, tc.want)
		}
	}
	if err := Seed().Validate(); err != nil {
		t.Errorf("seed config: %v", err)
	}
}

func TestWorkerDiesWithClosedGates(t *testing.T) {
	p, err := Start(Seed())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Next(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	pid := p.Pid()
	p.Close()
	if err := syscall.Kill(pid, 0); err == nil {
		t.Errorf("worker %d still alive after Close", pid)
	}
}
