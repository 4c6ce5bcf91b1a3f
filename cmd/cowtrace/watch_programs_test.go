package main

import (
	"math/rand"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"testing"

	"github.com/cowtrace/cowtrace/internal/testenv"
	"github.com/cowtrace/cowtrace/internal/testprog"
)

// Watch against the programs' own figures: Redis's copy-on-write size of
// each save, PostgreSQL's postmaster's page frames, a Python pool's
// workers' Private_Dirty.

// TestWatchRedisCowSize: two BGSAVEs and two BGREWRITEAOFs of a Redis
// server under writes, each an episode, against Redis's own figure for it
// (INFO persistence: rdb_last_cow_size, aof_last_cow_size), and against
// the server's page frames.
//
// Redis's figure is the save child's Private_Dirty, which the child reads
// from /proc/self/smaps at the end of its work, just before it exits. A
// page is private to the child when the child copied it, when the server
// copied it (its write leaves the original frame to the child alone), or
// when the child allocated it itself; and, without any copy, when the
// server released a page they shared (jemalloc purging freed memory),
// leaving it to the child. So Redis's figure R (in pages) and watch's
// copies of the server P and of the child C part by:
//
//	R - (P + C) = the child's own new pages + pages the server released
//	              - copies made after the child read its smaps
//
// The child's own new pages are among its page faults that were not
// write-protect faults, N (first touches and reads); the pages the server
// released, G, are those resident in its private mappings before the fork
// and gone after the episode (pagemap); copies after the child's last look
// are a handful. The bound checked:
//
//	-1% of R  <=  R - (P + C)  <=  N + G + 1% of R
//
// On this machine R - (P + C) is 32 to 44 pages (0.8% to 1.1%) for N of
// about 80 when the server released nothing, and 33 pages more than G when
// jemalloc purged during the save (G of 171 and 227 pages seen).
//
// The server's own copies are checked apart: each gives it a new frame
// where it shared one, so its frames that changed over the episode, F,
// are its copies, but for the pages released (a copied page released is
// not seen; a released page touched again has a new frame, no copy): the
// check is |P - F| <= G + 1% of R. Seen: equal or a few pages apart when
// nothing was released, 56 apart with 61 pages released.
func TestWatchRedisCowSize(t *testing.T) {
	testenv.Require(t, testenv.Root, testenv.CapSysAdmin)
	const keys, size, sets = 40000, 1000, 4000
	r := testprog.StartRedis(t)
	r.Must(t, "DEBUG", "POPULATE", strconv.Itoa(keys), "key", strconv.Itoa(size))
	// 20 us per key: the save outlasts the writes, which land during it.
	r.Must(t, "CONFIG", "SET", "rdb-key-save-delay", "20")
	wp := startWatch(t, filepath.Join(t.TempDir(), "watch.json"), "--format", "json", "-p", strconv.Itoa(r.Pid()))
	page := int64(os.Getpagesize())
	rng := rand.New(rand.NewSource(1))
	saves := []struct{ command, running, status, figure string }{
		{"BGSAVE", "rdb_bgsave_in_progress", "rdb_last_bgsave_status:ok", "rdb_last_cow_size"},
		{"BGREWRITEAOF", "aof_rewrite_in_progress", "aof_last_bgrewrite_status:ok", "aof_last_cow_size"},
	}
	for i := 0; i < 4; i++ {
		sv := saves[i%2]
		before := privateFrames(t, r.Pid())
		r.Must(t, sv.command)
		r.SetMany(t, keys, sets, size, rng)
		during := r.Info(t, sv.running) == 1
		r.WaitIdle(t)
		if !during {
			t.Fatalf("%s ended before the writes did: raise rdb-key-save-delay", sv.command)
		}
		if st := r.Must(t, "INFO", "persistence"); !regexp.MustCompile(`(?m)^` + sv.status + `\r?$`).MatchString(st) {
			t.Fatalf("%s failed:\n%s", sv.command, st)
		}
		cow := r.Info(t, sv.figure) / page
		e := wp.waitEpisodes(t, i+1)
		after := privateFrames(t, r.Pid())
		if !e.Complete || e.ParentPid != r.Pid() || e.Comm != "redis-server" || e.Copies == nil || e.ChildPageFaults == nil || e.ChildWPFaults == nil {
			t.Fatalf("%s: episode %+v: want redis-server's child, complete", sv.command, e)
		}
		var released int64
		for addr := range before {
			if _, ok := after[addr]; !ok {
				released++
			}
		}
		p, c, f := int64(*e.ParentCopies), int64(*e.ChildCopies), int64(framesChanged(before, after))
		n := int64(*e.ChildPageFaults - *e.ChildWPFaults)
		diff := cow - (p + c)
		t.Logf("%s: Redis's %s %d pages; watch: server %d + child %d copies = %d; difference %d pages (%.2f%%); child's other faults %d, server's pages released %d; server's frames changed %d",
			sv.command, sv.figure, cow, p, c, p+c, diff, 100*float64(diff)/float64(cow), n, released, f)
		if p < sets/4 {
			t.Errorf("%s: the server copied %d pages for %d SETs during it", sv.command, p, sets)
		}
		if diff < -cow/100 || diff > n+released+cow/100 {
			t.Errorf("%s: %s - copies = %d pages, want between -%d (1%%) and %d (the child's %d other faults, %d pages released, 1%%)",
				sv.command, sv.figure, diff, cow/100, n+released+cow/100, n, released)
		}
		if d := p - f; d < -(released+cow/100) || d > released+cow/100 {
			t.Errorf("%s: the server copied %d pages, %d of its frames changed: want no more apart than the %d released and 1%%", sv.command, p, f, released)
		}
	}
	if code := wp.stop(t); code != exitInterrupted {
		t.Errorf("exit %d, want %d:\n%s", code, exitInterrupted, wp.stderr.String())
	}
	recs := wp.records(t)
	recs.checkTotals(t)
	if len(recs.episodes) != 4 || len(recs.shared) != 0 {
		t.Errorf("%d episodes, %d shared buckets; want 4 and none", len(recs.episodes), len(recs.shared))
	}
}

// TestWatchPostgresBackends: each psql connection makes the postmaster
// fork a backend, one episode each. What the postmaster copied during an
// episode is what its page frames say: each of its copies gives it a new
// frame where it shared one, so the frames of its private pages that
// changed from before the connection to after the episode was written are
// its copies, exactly, when nothing else runs (autovacuum and parallel
// workers are off, and three connections before the watch let the
// postmaster's own busy pages part from the children it forked at its
// start). A backend's frames apart from the postmaster's, read while its
// session is idle, are the copies it made until then on pages it still
// has: its copies over its whole life are more, as it copies more as it
// exits (here about 215 copies against 68 frames apart: cowtrace attach
// --timeline shows 145 of a backend's 221 write-protect faults after its
// session went idle, as it ended).
func TestWatchPostgresBackends(t *testing.T) {
	testenv.Require(t, testenv.Root, testenv.CapSysAdmin, testprog.PostgreSQL)
	pg := testprog.StartPostgres(t, "autovacuum=off", "max_parallel_workers_per_gather=0", "fsync=off")
	for i := 0; i < 3; i++ {
		pg.Query(t, "SELECT count(*) FROM pg_class")
	}
	wp := startWatch(t, filepath.Join(t.TempDir(), "watch.json"), "--format", "json", "-p", strconv.Itoa(pg.Pid()))
	const connections = 5
	for i := 1; i <= connections; i++ {
		before := privateFrames(t, pg.Pid())
		s := pg.Connect(t)
		if got := s.Query(t, "SELECT count(*) > 0 FROM pg_class"); got != "t" {
			t.Fatalf("query: %q", got)
		}
		backend := privateFrames(t, s.Backend)
		s.Close(t)
		e := wp.waitEpisodes(t, i)
		after := privateFrames(t, pg.Pid())
		postmaster, apart := framesChanged(before, after), framesChanged(before, backend)
		if e.ChildPid != s.Backend || !e.Complete || e.Tasks != 1 || e.Comm != "postgres" || e.ParentCopies == nil || e.ChildCopies == nil {
			t.Fatalf("connection %d: episode %+v: want backend %d's, complete", i, e, s.Backend)
		}
		t.Logf("connection %d: backend %d: postmaster %d copies, its frames changed %d; backend %d copies (%d wp faults), its frames apart %d while idle",
			i, s.Backend, *e.ParentCopies, postmaster, *e.ChildCopies, *e.ChildWPFaults, apart)
		if d := int(*e.ParentCopies) - postmaster; d < -1 || d > 1 {
			t.Errorf("connection %d: the postmaster copied %d pages, %d of its frames changed", i, *e.ParentCopies, postmaster)
		}
		if int(*e.ChildCopies) < apart || *e.ChildCopies > *e.ChildWPFaults+e.ChildCopiesByCause.PrivateFileFirstWrite {
			t.Errorf("connection %d: the backend copied %d pages: want at least its %d frames apart, at most its %d write-protect faults and %d first writes",
				i, *e.ChildCopies, apart, *e.ChildWPFaults, e.ChildCopiesByCause.PrivateFileFirstWrite)
		}
	}
	if code := wp.stop(t); code != exitInterrupted {
		t.Errorf("exit %d, want %d:\n%s", code, exitInterrupted, wp.stderr.String())
	}
	recs := wp.records(t)
	recs.checkTotals(t)
	if len(recs.episodes) != connections {
		t.Errorf("%d episodes for %d connections", len(recs.episodes), connections)
	}
}

// TestWatchPythonPool: a multiprocessing pool with the fork start method
// (examples/python-pool/mp_pool.py): each worker is one episode, in which
// the worker's first gc.collect() copies the pages of the parent's 200000
// objects. Each worker's own figure, how much its Private_Dirty grew
// during its tasks, is a lower bound of its copies (it counts little but
// them), give or take the 10% by which the two figures' windows differ.
func TestWatchPythonPool(t *testing.T) {
	testenv.Require(t, testenv.Root)
	python := testprog.Python(t)
	_, self, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(self), "..", "..", "examples", "python-pool", "mp_pool.py")
	out := filepath.Join(t.TempDir(), "watch.json")
	code, stdout, stderr := runCLI("watch", "--format", "json", "-o", out, "--", python, script, "--workers", "3", "--tasks", "6")
	if code != exitOK || stderr != "cowtrace: attached\n" {
		t.Fatalf("exit %d, stderr %q\n%s", code, stderr, stdout)
	}
	grewKB := map[int]uint64{}
	for _, m := range regexp.MustCompile(`worker (\d+): \d+ tasks, Private_Dirty grew by (\d+) kB`).FindAllStringSubmatch(stdout, -1) {
		pid, _ := strconv.Atoi(m[1])
		grewKB[pid], _ = strconv.ParseUint(m[2], 10, 64)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	recs := parseWatch(t, b)
	recs.checkTotals(t)
	if len(recs.episodes) != 3 {
		t.Fatalf("%d episodes, want one per worker, 3:\n%s", len(recs.episodes), stdout)
	}
	for _, e := range recs.episodes {
		kb, ok := grewKB[e.ChildPid]
		if !ok && len(grewKB) == 3 {
			t.Errorf("episode %d: child %d is no worker of %v", e.ID, e.ChildPid, grewKB)
		}
		if !e.Complete || e.ChildCopies == nil || e.ChildCopiesByCause == nil || e.Tasks != 1 {
			t.Errorf("episode %+v: want complete, copies by cause", e)
			continue
		}
		t.Logf("worker %d: %d copies (%d kB), %d write-protect; its own figure: Private_Dirty grew by %d kB", e.ChildPid, *e.ChildCopies,
			*e.ChildCopies*4, e.ChildCopiesByCause.WriteProtect, kb)
		if ok && kb > 0 && *e.ChildCopies*uint64(os.Getpagesize())/1024 < kb*9/10 {
			t.Errorf("worker %d: %d copies, but its Private_Dirty grew by %d kB", e.ChildPid, *e.ChildCopies, kb)
		}
		if *e.ChildCopies < 1000 {
			t.Errorf("worker %d: %d copies; its gc.collect() alone writes the headers of 200000 objects", e.ChildPid, *e.ChildCopies)
		}
	}
	if len(recs.shared) == 0 {
		t.Errorf("no shared bucket: the three workers live together")
	}
}
