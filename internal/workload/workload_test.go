package workload

import (
	"errors"
	"os"
	"strconv"
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
	if errors.Is(err, ErrNotApplicable) {
		t.Skip(err)
	}
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
		case KindReady, KindParentDone, KindForked:
			if err := p.Release(0); err != nil {
				t.Fatal(err)
			}
		case KindChildDone:
			if cfg.Hold {
				if err := p.Release(m.Child); err != nil {
					t.Fatal(err)
				}
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
		{Config{Blocks: 1, BlockSize: 1, ParentWrites: ParentWritesDuring}, "needs Hold"},
		{Config{Blocks: 1, BlockSize: 1, Clone: CloneVfork, Hold: true}, "cannot hold"},
		{Config{Blocks: 1, BlockSize: 1, Advice: "free"}, "unknown advice"},
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

// sums returns the byte sums by child (0: the parent) and the flags of the
// children's done messages.
func sums(msgs []Message) (map[int]uint64, map[int]uint32) {
	sums, flags := map[int]uint64{}, map[int]uint32{}
	for _, m := range msgs {
		if m.Kind == KindChildDone || m.Kind == KindParentDone {
			sums[m.Child] = m.Value
			flags[m.Child] = m.Flags
		}
	}
	return sums, flags
}

// TestSharedAddressSpace checks that vfork and clone-vm children write the
// parent's own memory: the parent reads back the writer's 'C'.
func TestSharedAddressSpace(t *testing.T) {
	for _, c := range []Clone{CloneVfork, CloneVM} {
		t.Run(string(c), func(t *testing.T) {
			cfg := Seed()
			cfg.Blocks, cfg.Clone = 50, c
			got, _ := sums(drive(t, cfg))
			want := map[int]uint64{0: 50 * 'C', 1: 50 * '0', 2: 50 * 'C'}
			if c == CloneVM {
				// Reader and writer run at once on the same memory: the
				// reader sees some of the writer's bytes.
				delete(want, 1)
			}
			for child, w := range want {
				if got[child] != w {
					t.Errorf("child %d: byte sum %d, want %d", child, got[child], w)
				}
			}
		})
	}
}

func TestScenarioKnobs(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mod    func(*Config)
		want   map[int]uint64
		flags1 uint32
	}{
		// The children get the region empty: zeroes to read, their own 'C'.
		{"wipeonfork", func(c *Config) { c.Advice = AdviceWipeOnFork }, map[int]uint64{0: 20 * '0', 1: 0, 2: 20 * 'C'}, 0},
		// The children have no region at all and say so.
		{"dontfork", func(c *Config) { c.Advice = AdviceDontFork }, map[int]uint64{0: 20 * '0', 1: 0, 2: 0}, FlagRegionMissing},
		{"parent-during", func(c *Config) { c.ParentWrites, c.Hold = ParentWritesDuring, true }, map[int]uint64{0: 20 * 'P', 1: 20 * '0', 2: 20 * 'C'}, 0},
		{"parent-after", func(c *Config) { c.ParentWrites = ParentWritesAfterExit }, map[int]uint64{0: 20 * 'P', 1: 20 * '0', 2: 20 * 'C'}, 0},
		{"huge", func(c *Config) { c.Huge = true }, map[int]uint64{0: 20 * '0', 1: 20 * '0', 2: 20 * 'C'}, 0},
		{"zero-page", func(c *Config) { c.Touch, c.ReadBefore = false, true }, map[int]uint64{0: 0, 1: 0, 2: 20 * 'C'}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Seed()
			cfg.Blocks = 20
			tc.mod(&cfg)
			got, flags := sums(drive(t, cfg))
			for child, w := range tc.want {
				if got[child] != w {
					t.Errorf("child %d: byte sum %d, want %d", child, got[child], w)
				}
			}
			if flags[1] != tc.flags1 {
				t.Errorf("reader flags %#x, want %#x", flags[1], tc.flags1)
			}
		})
	}
}

// TestStartOutOfDescriptors: whichever of Start's pipes, or the start of the
// worker itself, runs out of descriptors, Start returns an error (it once
// panicked in its own cleanup) and leaves no descriptor open.
func TestStartOutOfDescriptors(t *testing.T) {
	var saved syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &saved); err != nil {
		t.Fatal(err)
	}
	defer syscall.Setrlimit(syscall.RLIMIT_NOFILE, &saved)
	// The runtime's poller must exist before the limit drops: failing to
	// create it is fatal, not an error.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	w.Close()

	cfg := Seed()
	cfg.Blocks = 1
	open := openFDs(t)
	failed := 0
	// Two descriptors per pipe (the control pipe and a gate per process),
	// then those of os/exec: every step of Start gets its turn to fail.
	for free := range 2*(len(cfg.Children)+2) + 4 {
		lim := syscall.Rlimit{Cur: uint64(limitFor(open, free)), Max: saved.Max}
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			t.Fatal(err)
		}
		p, err := Start(cfg)
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &saved); err != nil {
			t.Fatal(err)
		}
		if err != nil {
			failed++
			continue
		}
		p.Close()
	}
	if failed == 0 {
		t.Fatal("Start never ran out of descriptors: the limits tested nothing")
	}
	if n := len(openFDs(t)); n != len(open) {
		t.Errorf("%d descriptors open after the failed starts, %d before", n, len(open))
	}
}

// openFDs returns the descriptors this process has open.
func openFDs(t *testing.T) map[int]bool {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	open := map[int]bool{}
	for _, e := range ents {
		if fd, err := strconv.Atoi(e.Name()); err == nil {
			open[fd] = true
		}
	}
	return open
}

// limitFor is the lowest RLIMIT_NOFILE that leaves free descriptors to
// open: the kernel hands out the lowest free numbers, and a test runner may
// leave holes and high descriptors open.
func limitFor(open map[int]bool, free int) int {
	lim := 0
	for ; free > 0 || open[lim]; lim++ {
		if !open[lim] {
			free--
		}
	}
	return lim
}

// TestWorkerQuietWhenAbandoned: when the tracer gives up with children at
// their gates (it failed to open their events), the worker leaves without
// an error of its own: the tracer's says what went wrong.
func TestWorkerQuietWhenAbandoned(t *testing.T) {
	p, err := Start(Seed())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	deadline := time.Now().Add(30 * time.Second)
	for atGate := 0; atGate < len(Seed().Children); {
		m, err := p.Next(deadline)
		if err != nil {
			t.Fatal(err)
		}
		switch m.Kind {
		case KindReady:
			err = p.Release(0)
		case KindAtGate:
			atGate++
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	p.closeFiles()
	if err := p.Wait(); err != nil {
		t.Errorf("worker abandoned at its children's gates: %v, want a quiet exit", err)
	}
}
