package follow

import (
	"context"
	"math/rand"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cowtrace/cowtrace/internal/testprog"
	"github.com/cowtrace/cowtrace/perfevents"
	"github.com/cowtrace/cowtrace/report"
)

// Sizes of the Redis tests: keys of valueSize bytes, overwritten at random
// by setsDuringSave SETs while a BGSAVE runs, slowed down by saveDelayUs
// per key so that the writes land during the save.
const (
	redisKeys      = 40000
	valueSize      = 1000
	setsDuringSave = 4000
	saveDelayUs    = 20
)

// attachRedis attaches to redis with --by mapping until stop is called.
func attachRedis(t *testing.T, pid int) (stop func() *report.Run) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	attached := make(chan struct{})
	type result struct {
		run *report.Run
		err error
	}
	done := make(chan result, 1)
	go func() {
		run, err := Attach(ctx, Options{KprobeMethod: perfevents.KprobeNone, By: report.ByMapping},
			AttachSpec{Pid: pid, Attached: func() { close(attached) }})
		done <- result{run, err}
	}()
	select {
	case <-attached:
	case res := <-done:
		t.Fatalf("attach: %v", res.err)
	}
	return func() *report.Run {
		cancel()
		res := <-done
		if res.err != nil {
			t.Fatal(res.err)
		}
		if res.run.LostRecords != 0 {
			t.Errorf("%d records lost", res.run.LostRecords)
		}
		return res.run
	}
}

// TestRedisAppendOnlyNoCopies: with appendonly on and no snapshot, Redis
// writes its AOF with write() and never forks: writes cost no copy at all.
func TestRedisAppendOnlyNoCopies(t *testing.T) {
	requireTracing(t)
	r := testprog.StartRedis(t)
	r.Must(t, "DEBUG", "POPULATE", strconv.Itoa(redisKeys), "key", strconv.Itoa(valueSize))
	stop := attachRedis(t, r.Pid())
	r.SetMany(t, redisKeys, setsDuringSave, valueSize, rand.New(rand.NewSource(1)))
	run := stop()
	if len(run.Processes) != 1 {
		t.Fatalf("%d processes, want redis-server alone: %+v", len(run.Processes), run.Processes)
	}
	p := run.Processes[0]
	t.Logf("redis-server %d: %d wp faults, %d copies, by mapping %+v", p.Pid, *p.WPFaults, *p.Copies, p.CopiesBy)
	if *p.Copies != 0 || len(p.CopiesBy) != 0 {
		t.Errorf("redis-server copied %d pages without a fork: %+v", *p.Copies, p.CopiesBy)
	}
}

// TestRedisBGSAVEMatchesCowSize compares cowtrace's copies with Redis's own
// figure for a BGSAVE under writes: rdb_last_cow_size, the save child's
// Private_Dirty (smaps) at its end. A page is private to the child when the
// child copied it, or when the parent did (the parent's write gives the
// parent the new page and leaves the original to the child alone), or when
// the child allocated it itself: so the figure is the copies of both, plus
// the child's own new pages, which cowtrace counts as its first-touch faults
// (write_not_present, and reads, which give anonymous memory a page of its
// own on this kernel).
func TestRedisBGSAVEMatchesCowSize(t *testing.T) {
	requireTracing(t)
	r := testprog.StartRedis(t)
	r.Must(t, "DEBUG", "POPULATE", strconv.Itoa(redisKeys), "key", strconv.Itoa(valueSize))
	r.Must(t, "CONFIG", "SET", "rdb-key-save-delay", strconv.Itoa(saveDelayUs))
	stop := attachRedis(t, r.Pid())
	r.Must(t, "BGSAVE")
	r.SetMany(t, redisKeys, setsDuringSave, valueSize, rand.New(rand.NewSource(2)))
	inSave := r.Info(t, "rdb_bgsave_in_progress") == 1
	for deadline := time.Now().Add(2 * time.Minute); r.Info(t, "rdb_bgsave_in_progress") == 1; {
		if time.Now().After(deadline) {
			t.Fatal("BGSAVE still running after 2 minutes")
		}
		time.Sleep(50 * time.Millisecond)
	}
	run := stop()
	if !inSave {
		t.Fatal("the BGSAVE ended before the writes did: raise saveDelayUs")
	}
	if st := r.Must(t, "INFO", "persistence"); !strings.Contains(st, "rdb_last_bgsave_status:ok") {
		t.Fatalf("BGSAVE failed:\n%s", st)
	}
	cow := r.Info(t, "rdb_last_cow_size")
	if len(run.Processes) != 2 {
		t.Fatalf("%d processes, want redis-server and its save child: %+v", len(run.Processes), run.Processes)
	}
	parent, child := run.Processes[0], run.Processes[1]
	copies := *parent.Copies + *child.Copies
	newPages := child.Outside.WriteNotPresent + child.Outside.Read
	diff := cow - int64(copies)*4096
	t.Logf("rdb_last_cow_size %d bytes (%d pages); cowtrace: parent %d + child %d copies = %d bytes; child's first touches %d pages; difference %d bytes (%d pages)",
		cow, cow/4096, *parent.Copies, *child.Copies, copies*4096, newPages, diff, diff/4096)
	for _, p := range []report.Process{parent, child} {
		t.Logf("  %d (%s) by mapping: %+v", p.Pid, p.Comm, p.CopiesBy)
	}
	if copies < setsDuringSave/4 {
		t.Errorf("%d copies for %d SETs during the save", copies, setsDuringSave)
	}
	if diff < 0 || diff > int64(newPages)*4096 {
		t.Errorf("rdb_last_cow_size - copies x 4096 = %d bytes, want 0..%d (the child's first-touch pages)", diff, newPages*4096)
	}
}
