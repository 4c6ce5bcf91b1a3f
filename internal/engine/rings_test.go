package engine

import (
	"os"
	"reflect"
	"runtime"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cowtrace/cowtrace/report"
)

func TestSplitRingBudget(t *testing.T) {
	const page = 4096
	for _, c := range []struct {
		budget int64
		cpus   int
		user   bool
		pages  int // 0: an error
	}{
		// The default: 4 MiB per CPU at most, 512 KiB at least.
		{DefaultRingBudget, 1, false, cpuRingMaxPages},
		{DefaultRingBudget, 2, false, cpuRingMaxPages},
		{DefaultRingBudget, 8, false, cpuRingMaxPages},
		{DefaultRingBudget, 16, false, 512},
		{DefaultRingBudget, 48, false, 128}, // 682 KiB, rounded down to a power of two
		{DefaultRingBudget, 64, false, 128},
		{DefaultRingBudget, 256, false, cpuRingMinPages}, // 128 KiB each would fit: the floor wins
		// The user's: kept as asked, above 4 MiB and below 512 KiB.
		{64 << 20, 2, true, 8192},
		{8 << 20, 48, true, 32},
		{1 << 20, 16, true, 16},
		{3 << 20, 1, true, 512},
		{1 << 20, 17, true, 0}, // 60 KiB each: less than a record may take
		{2 << 30, 2, true, MaxRingSize / page},
		{3 << 30, 2, true, 0}, // 1.5 GiB each: more than a ring can map
		{64 << 30, 2, true, 0},
		{page, 1, true, 0},
		{DefaultRingBudget, 0, false, 0},
	} {
		got, err := splitRingBudget(c.budget, c.cpus, page, c.user)
		if c.pages == 0 {
			if err == nil {
				t.Errorf("split %d over %d (user %v) = %d pages, want an error", c.budget, c.cpus, c.user, got)
			}
			continue
		}
		if err != nil || got != c.pages {
			t.Errorf("split %d over %d (user %v) = %d, %v; want %d pages", c.budget, c.cpus, c.user, got, err, c.pages)
		}
		if c.user && int64(got*page*c.cpus) > c.budget {
			t.Errorf("split %d over %d: %d pages each exceed the budget", c.budget, c.cpus, got)
		}
	}
}

// TestRingSizeTooLarge: the refusal says the limit in the user's terms.
func TestRingSizeTooLarge(t *testing.T) {
	_, err := splitRingBudget(64<<30, 2, 4096, true)
	if want := "ring size 64G over 2 CPUs: a CPU's ring holds at most 1G, so 2 CPUs' at most 2G"; err == nil || err.Error() != want {
		t.Errorf("64G over 2 CPUs: %v, want %q", err, want)
	}
}

func TestRingCPUs(t *testing.T) {
	seq := func(n int) []int {
		s := make([]int, n)
		for i := range s {
			s[i] = i
		}
		return s
	}
	for _, c := range []struct {
		name            string
		online, allowed []int
		want            []int
	}{
		{"all", seq(4), seq(4), seq(4)},
		{"pinned", seq(4), []int{2}, []int{2}},
		// A mask names possible CPUs that are offline, or not even present.
		{"offline in the mask", []int{0, 1, 3}, seq(1024), []int{0, 1, 3}},
		{"offline CPU only", []int{0, 1, 3}, []int{2, 3}, []int{3}},
		{"no online CPU in the mask", []int{0, 1}, []int{5}, []int{0, 1}},
		{"unsorted mask", seq(8), []int{6, 1, 4}, []int{1, 4, 6}},
	} {
		if got := ringCPUs(c.online, c.allowed); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: ringCPUs(%v, %v) = %v, want %v", c.name, c.online, c.allowed, got, c.want)
		}
	}
}

func TestAffinityOfSelf(t *testing.T) {
	cpus, err := affinity(0)
	if err != nil || len(cpus) == 0 {
		t.Fatalf("affinity(0) = %v, %v", cpus, err)
	}
}

func TestFormatCPUList(t *testing.T) {
	for _, c := range []struct {
		cpus []int
		want string
	}{
		{nil, ""}, {[]int{0}, "0"}, {[]int{0, 1}, "0-1"}, {[]int{0, 1, 2, 3, 6}, "0-3,6"},
		{[]int{1, 3, 5}, "1,3,5"}, {[]int{0, 2, 3, 4, 9, 10}, "0,2-4,9-10"},
	} {
		if got := formatCPUList(c.cpus); got != c.want {
			t.Errorf("formatCPUList(%v) = %q, want %q", c.cpus, got, c.want)
		}
	}
}

// TestRingNote: the note says what was pinned, on which CPUs and why
// those.
func TestRingNote(t *testing.T) {
	for _, c := range []struct {
		plan ringPlan
		cpus []int
		want string
	}{
		{ringPlan{online: []int{0, 1}, pages: 1024, budget: DefaultRingBudget}, []int{0, 1},
			"ring buffers: 8.0 MiB pinned, 4M on each of 2 CPUs (0-1, every online CPU; the default 32M split over them, 512K to 4M per CPU)"},
		{ringPlan{online: []int{0, 1, 2, 3}, pages: 256, budget: 4 << 20, user: true}, []int{3},
			"ring buffers: 1.0 MiB pinned, 1M on each of 1 CPUs (3, of 0-3 online, the traced tasks' CPU affinity; --ring-size 4M split over them)"},
		{ringPlan{online: []int{0, 1, 2, 3}, pages: 64}, []int{2, 0},
			"ring buffers: 0.5 MiB pinned, 256K on each of 2 CPUs (0,2, of 0-3 online, the traced tasks' CPU affinity; a fixed size per CPU)"},
	} {
		s := &Session{plan: &c.plan, cpus: c.cpus}
		var run report.Run
		s.ringNotesLocked(&run)
		if len(run.Notes) != 1 || run.Notes[0] != c.want {
			t.Errorf("notes %q\nwant %q", run.Notes, c.want)
		}
	}
	var run report.Run
	(&Session{}).ringNotesLocked(&run)
	if len(run.Notes) != 0 {
		t.Errorf("a session without CPU rings notes %q", run.Notes)
	}
}

// TestPromptThreads: every thread runs at SCHED_FIFO until restore, and
// then has its old policy and nice value back.
func TestPromptThreads(t *testing.T) {
	type attrs map[int]unix.SchedAttr
	all := func() attrs {
		ents, err := os.ReadDir("/proc/self/task")
		if err != nil {
			t.Fatal(err)
		}
		m := attrs{}
		for _, e := range ents {
			tid, _ := strconv.Atoi(e.Name())
			if a, err := unix.SchedGetAttr(tid, 0); err == nil {
				a.Size, a.Flags = 0, 0
				m[tid] = *a
			}
		}
		return m
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	old, err := unix.Getpriority(unix.PRIO_PROCESS, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Setpriority(unix.PRIO_PROCESS, 0, 3); err != nil {
		t.Fatalf("nice 3: %v", err)
	}
	// Getpriority's raw result is 20 - nice.
	defer unix.Setpriority(unix.PRIO_PROCESS, 0, 20-old)
	before := all()
	restore, err := promptThreads()
	if err != nil {
		t.Skipf("no real-time priority here: %v", err)
	}
	for tid, a := range all() {
		if _, ok := before[tid]; ok && (a.Policy != unix.SCHED_FIFO || a.Priority != 1) {
			t.Errorf("thread %d: %+v, want SCHED_FIFO 1", tid, a)
		}
	}
	restore()
	for tid, a := range all() {
		if b, ok := before[tid]; ok && a != b {
			t.Errorf("thread %d after restore: %+v, want %+v", tid, a, b)
		}
	}
	if a := before[unix.Gettid()]; a.Nice != 3 {
		t.Errorf("this thread before: %+v, want nice 3", a)
	}
}
