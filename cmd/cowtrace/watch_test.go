package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cowtrace/cowtrace/internal/engine"
	"github.com/cowtrace/cowtrace/internal/testenv"
	"github.com/cowtrace/cowtrace/internal/watch"
	"github.com/cowtrace/cowtrace/report"
	"github.com/cowtrace/cowtrace/report/render"
)

// TestWatchBadInput: a command line watch cannot follow is one line and
// exit 2, before anything starts.
func TestWatchBadInput(t *testing.T) {
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Skipf("true: %v", err)
	}
	for _, args := range [][]string{
		{"watch"},
		{"watch", "-p", "1", "--", "true"},
		{"watch", "-p", "-3"},
		{"watch", "-p", "1", "--format", "openmetrics"},
		{"watch", "-p", "1", "--format", "csv"},
		{"watch", "-p", "1", "--duration", "-1s"},
		{"watch", "-p", "1", "--ready-fd", "1"},
		{"watch", "-p", "1", "--mode", "fast"},
		{"watch", "-p", "1", "-o", "/nonexistent/dir/x.json"},
		{"watch", "-p", "1", "--format", "openmetrics", "-o", "/nonexistent/dir/x.prom"},
		{"watch", "-p", strconv.Itoa(gone.Process.Pid)},
	} {
		code, stdout, stderr := runCLI(args...)
		if code != exitUsage || stdout != "" || strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, "cowtrace: ") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want 2 and one line", args, code, stdout, stderr)
		}
	}
	// A command that is not there: a shell's 127, as run's.
	code, stdout, stderr := runCLI("watch", "--", "/nonexistent/program")
	if code != 127 || stdout != "" || stderr != "cowtrace: watch: /nonexistent/program: no such file or directory\n" {
		t.Errorf("watch -- /nonexistent/program: exit %d, stdout %q, stderr %q; want 127 and one line", code, stdout, stderr)
	}
}

// episodeBounds: what libc, the stack and the fork's own bookkeeping copy
// beside cow_episodes's pages, at most, on either side of an episode (4 on
// this machine: the parent's stack and libc's data, the child's too).
const episodeSlack = 8

// runEpisodes runs cowtrace watch --format json on cow_episodes ARGS and
// returns its records, each line checked against the schema.
func runEpisodes(t *testing.T, flags []string, args ...string) watchRecords {
	t.Helper()
	prog := testenv.BuildC(t, "cow_episodes")
	out := filepath.Join(t.TempDir(), "watch.json")
	code, stdout, stderr := runCLI(append(append([]string{"watch", "--format", "json", "-o", out}, flags...), append([]string{"--", prog}, args...)...)...)
	if code != exitOK || stdout != "" || stderr != "cowtrace: attached\n" {
		t.Fatalf("watch %v: exit %d, stdout %q, stderr %q", args, code, stdout, stderr)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	recs := parseWatch(t, b)
	recs.checkTotals(t)
	if s := recs.summary; !s.Complete || s.EndedBy != "exit" || s.ExitCode == nil || *s.ExitCode != 0 || s.Command[0] != prog {
		t.Errorf("summary %+v: want complete, ended by the command's exit 0", *s)
	}
	return recs
}

// checkEpisode: e is one of cow_episodes's, in which the parent copied
// parent pages and the child child pages, beside the slack, all by
// write-protect faults.
func checkEpisode(t *testing.T, e report.Episode, parent, child uint64) {
	t.Helper()
	in := func(v *uint64, lo uint64) bool { return v != nil && *v >= lo && *v <= lo+episodeSlack }
	if !in(e.ParentCopies, parent) || !in(e.ChildCopies, child) {
		t.Errorf("episode %d (child %d): parent %s, child %s copies; want %d and %d, %d more at most",
			e.ID, e.ChildPid, u64s(e.ParentCopies), u64s(e.ChildCopies), parent, child, episodeSlack)
	}
	for _, s := range []struct {
		side       string
		copies, wp *uint64
		by         *report.CopyCauses
	}{{"parent", e.ParentCopies, e.ParentWPFaults, e.ParentCopiesByCause}, {"child", e.ChildCopies, e.ChildWPFaults, e.ChildCopiesByCause}} {
		// cow_episodes's own pages are anonymous: every copy is a
		// write-protect fault's.
		if s.by == nil || s.by.WriteProtect < *s.copies-min(*s.copies, episodeSlack) || s.by.WriteProtect+s.by.PrivateFileFirstWrite != *s.copies {
			t.Errorf("episode %d: %s's copies %d by cause %+v: want them write-protect faults', but for the slack", e.ID, s.side, *s.copies, s.by)
		}
		if s.wp == nil || *s.wp < s.by.WriteProtect {
			t.Errorf("episode %d: %s: %s write-protect faults for %d of its copies", e.ID, s.side, u64s(s.wp), s.by.WriteProtect)
		}
	}
	if !e.Complete || e.Tasks != 1 || e.Comm != "cow_episodes" || e.ParentComm != "cow_episodes" || len(e.Unmeasured) > 0 {
		t.Errorf("episode %+v: want complete, one task, cow_episodes both", e)
	}
	if e.Bytes == nil || *e.Bytes != *e.Copies*uint64(os.Getpagesize()) {
		t.Errorf("episode %d: %s bytes for %s copies", e.ID, u64s(e.Bytes), u64s(e.Copies))
	}
}

// TestWatchEpisodes: six forks one after another; in episode i the parent
// copies the 50 pages it writes while the child lives, the child the
// 100 + i pages it writes. Each is one line, in order, with those figures.
func TestWatchEpisodes(t *testing.T) {
	testenv.Require(t, testenv.Root)
	recs := runEpisodes(t, nil, "6", "100", "50")
	if len(recs.episodes) != 6 || len(recs.shared) != 0 {
		t.Fatalf("%d episodes, %d shared buckets; want 6 and none", len(recs.episodes), len(recs.shared))
	}
	for i, e := range recs.episodes {
		// One parent, cow_episodes, for children of their own.
		if e.ID != i+1 || len(e.SharedWith) != 0 || e.ParentPid != recs.episodes[0].ParentPid || e.ChildPid == e.ParentPid ||
			i > 0 && e.ChildPid == recs.episodes[i-1].ChildPid {
			t.Errorf("line %d: episode %+v", i+1, e)
		}
		checkEpisode(t, e, 50, uint64(100+i))
		if i > 0 && e.Start.Before(recs.episodes[i-1].Start.Add(time.Duration(recs.episodes[i-1].DurationMs*1e6))) {
			t.Errorf("episode %d starts before episode %d ended", e.ID, i)
		}
	}
	if s := recs.summary; s.Mode != "count" || s.CopiesByCause == nil || s.IncompleteEpisodes != 0 {
		t.Errorf("summary: mode %s, by cause %v: want count, known", s.Mode, s.CopiesByCause)
	}
}

// TestWatchOverlap: children forked two at a time, the parent writing its
// 50 pages while both live: those copies go to the pair's shared bucket,
// once, and neither episode has them.
func TestWatchOverlap(t *testing.T) {
	testenv.Require(t, testenv.Root)
	recs := runEpisodes(t, nil, "3", "100", "50", "overlap")
	if len(recs.episodes) != 6 || len(recs.shared) != 3 {
		t.Fatalf("%d episodes, %d shared buckets; want 6 and 3", len(recs.episodes), len(recs.shared))
	}
	byID := map[int]report.Episode{}
	for _, e := range recs.episodes {
		byID[e.ID] = e
		if len(e.SharedWith) != 1 || e.ChildCopies == nil || *e.ChildCopies < 100 || *e.ParentCopies > episodeSlack {
			t.Errorf("episode %d: shared with %v, child %s, parent %s copies; want one other, 100 or more, %d at most",
				e.ID, e.SharedWith, u64s(e.ChildCopies), u64s(e.ParentCopies), episodeSlack)
		}
	}
	for _, b := range recs.shared {
		if len(b.Episodes) != 2 || b.Copies == nil || *b.Copies < 50 || *b.Copies > 50+episodeSlack || b.CopiesByCause == nil {
			t.Errorf("shared bucket %+v: want two episodes and the parent's 50 copies", b)
			continue
		}
		a, c := byID[b.Episodes[0]], byID[b.Episodes[1]]
		if a.SharedWith[0] != c.ID || c.SharedWith[0] != a.ID {
			t.Errorf("shared bucket of %v: episodes share with %v and %v", b.Episodes, a.SharedWith, c.SharedWith)
		}
	}
}

// TestWatchClassify: in classify mode (a record per fault) each episode is
// one line with its parent's copies, as in count mode.
func TestWatchClassify(t *testing.T) {
	testenv.Require(t, testenv.Root)
	recs := runEpisodes(t, []string{"--mode", "classify"}, "4", "100", "50")
	if len(recs.episodes) != 4 {
		t.Fatalf("%d episodes, want 4", len(recs.episodes))
	}
	for i, e := range recs.episodes {
		checkEpisode(t, e, 50, uint64(100+i))
	}
	if s := recs.summary; s.Mode != "classify" {
		t.Errorf("summary: mode %s, want classify", s.Mode)
	}
}

// TestWatchTable: the human output of the same episodes: a line each, in
// 80 columns, then the totals.
func TestWatchTable(t *testing.T) {
	testenv.Require(t, testenv.Root)
	prog := testenv.BuildC(t, "cow_episodes")
	code, stdout, stderr := runCLI("watch", "--", prog, "3", "100", "50", "overlap")
	if code != exitOK || stderr != "cowtrace: attached\n" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	episodeLine := regexp.MustCompile(`^\d\d:\d\d:\d\d \d+ +\d+ cow_episodes +\d+\.\d\ds +\d+ +\d+ +\d+ +\d+ +0 +[\d.]+K$`)
	sharedLine := regexp.MustCompile(`^\d\d:\d\d:\d\d \d+ +shared \d,\d +\d+\.\d\ds +\d+ +\d+ {17}0 +[\d.]+K$`)
	var episodes, shared int
	for _, l := range strings.Split(stdout, "\n") {
		if len(l) > render.WatchTableWidth {
			t.Errorf("line of %d columns, more than %d:\n%s", len(l), render.WatchTableWidth, l)
		}
		switch {
		case episodeLine.MatchString(l):
			episodes++
		case sharedLine.MatchString(l):
			shared++
		}
	}
	if episodes != 6 || shared != 3 || !regexp.MustCompile(`\n6 episodes, \d+ copies = \d+ bytes \([\d.]+M\), 3 shared buckets\n`).MatchString(stdout) {
		t.Errorf("%d episode lines, %d shared lines, want 6 and 3 and their totals:\n%s", episodes, shared, stdout)
	}
}

// TestWatchEnds: watch -p ends at Ctrl-C (130, after the summary), at
// --duration (0) and at the process's exit (0), each said in the summary;
// an episode still running then is there, its child's figures null with
// the reason, and the exit status is 3. It says "cowtrace: attached" once,
// on stderr and on --ready-fd.
func TestWatchEnds(t *testing.T) {
	testenv.Require(t, testenv.Root)
	// Three forks once watch is attached (the line on its stdin), then
	// the shell becomes sleep, or waits for its last child.
	const forks = "read x; /bin/true; /bin/true; /bin/true; "
	for _, c := range []struct {
		name, script, endedBy string
		flags                 []string
		end                   func(wp *watchProc, target *exec.Cmd) int
		code, complete        int
	}{
		{"interrupt", forks + "exec sleep 60", "interrupt", nil, func(wp *watchProc, _ *exec.Cmd) int { return wp.stop(t) }, exitInterrupted, 3},
		// Classify mode reports an episode as its tree ends too, not at
		// the parent's next fork (here none: the third would come with
		// sleep's exit, and the watch end by "exit").
		{"interrupt-classify", forks + "exec sleep 60", "interrupt", []string{"--mode", "classify"}, func(wp *watchProc, _ *exec.Cmd) int { return wp.stop(t) }, exitInterrupted, 3},
		{"duration", forks + "exec sleep 60", "duration", []string{"--duration", "2s"}, func(wp *watchProc, _ *exec.Cmd) int { return wp.wait(t) }, exitOK, 3},
		{"exit", forks + "exec sleep 60", "exit", nil, func(wp *watchProc, target *exec.Cmd) int {
			target.Process.Kill()
			target.Wait()
			return wp.wait(t)
		}, exitOK, 3},
		{"running", forks + "sleep 60; exit", "duration", []string{"--duration", "1s"}, func(wp *watchProc, _ *exec.Cmd) int { return wp.wait(t) }, exitIncomplete, 3},
	} {
		t.Run(c.name, func(t *testing.T) {
			target := exec.Command("sh", "-c", c.script)
			go2, err := target.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			// The sleep that outlives the test is killed with its group.
			target.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			if err := target.Start(); err != nil {
				t.Skipf("sh: %v", err)
			}
			defer func() {
				syscall.Kill(-target.Process.Pid, syscall.SIGKILL)
				target.Wait()
			}()
			wp := startWatch(t, filepath.Join(t.TempDir(), "w.json"), append([]string{"--format", "json", "-p", strconv.Itoa(target.Process.Pid)}, c.flags...)...)
			fmt.Fprintln(go2, "go")
			wp.waitEpisodes(t, 3)
			code := c.end(wp, target)
			recs := wp.records(t)
			s := recs.summary
			if code != c.code || s.EndedBy != c.endedBy || s.Pid != target.Process.Pid || strings.Count(wp.stderr.String(), "cowtrace: attached\n") != 1 {
				t.Errorf("exit %d, ended by %q: want %d and %q\n%s", code, s.EndedBy, c.code, c.endedBy, wp.stderr.String())
			}
			complete := 0
			for _, e := range recs.episodes {
				if e.ParentPid != target.Process.Pid || e.ParentCopies == nil {
					t.Errorf("episode %+v: want the shell's child", e)
				}
				if e.Complete {
					complete++
					if e.ChildCopies == nil || *e.ChildCopies == 0 || e.Comm != "true" {
						t.Errorf("episode %d: child %q, %s copies: want true's, some", e.ID, e.Comm, u64s(e.ChildCopies))
					}
					continue
				}
				// Its name is the one it had at the fork (sh), or
				// where the trace saw its exec in time (classify
				// mode), sleep.
				if (e.Comm != "sh" && e.Comm != "sleep") || e.ChildCopies != nil || !strings.Contains(e.Unmeasured["child_copies"], "still running when the trace ended") {
					t.Errorf("incomplete episode %+v: want the shell's last child still running, its copies null with why", e)
				}
			}
			if complete != c.complete || len(recs.episodes)-complete != s.IncompleteEpisodes || s.Complete != (s.IncompleteEpisodes == 0) {
				t.Errorf("%d episodes, %d complete, summary %d incomplete (complete %v): want %d complete", len(recs.episodes), complete, s.IncompleteEpisodes, s.Complete, c.complete)
			}
		})
	}
}

// TestWatchMemory: the memory of a watch does not grow with its episodes.
// cow_episodes runs 1500 episodes at a time, four times; the watch's
// resident memory is read when it attached and after each 1500 (once all
// of them are written). The figures are logged (go test -v); the test
// fails only when the last 4500 episodes grew its anonymous part by more
// than 6 MiB, as 1.5 KiB kept per episode (a forgotten task, a record)
// would.
func TestWatchMemory(t *testing.T) {
	testenv.Require(t, testenv.Root)
	prog := testenv.BuildC(t, "cow_episodes")
	const perPhase, phases = 1500, 4
	out := filepath.Join(t.TempDir(), "watch.json")
	// The program says "paused" on stdout after each phase, and goes on
	// at each line on its stdin.
	pr, pw := io.Pipe()
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdinW.Close()
	// What is kept, not the garbage the collector lets pile up before it
	// runs: at the default GOGC the heap swings by several MiB between
	// two readings, as much as the leak looked for.
	t.Setenv("GOGC", "20")
	wp := startWatchStdio(t, out, stdinR, pw, "--format", "json", "--", prog, strconv.Itoa(perPhase), "1", "1", "pause")
	stdinR.Close()
	paused := bufio.NewScanner(pr)
	pid := wp.cmd.Process.Pid
	rss, anon := []int64{rssKiB(t, pid, "VmRSS")}, []int64{rssKiB(t, pid, "RssAnon")}
	for phase := 1; phase <= phases; phase++ {
		if !paused.Scan() || paused.Text() != "paused" {
			t.Fatalf("phase %d: cow_episodes said %q", phase, paused.Text())
		}
		wp.waitEpisodes(t, phase*perPhase)
		rss, anon = append(rss, rssKiB(t, pid, "VmRSS")), append(anon, rssKiB(t, pid, "RssAnon"))
		if phase < phases {
			fmt.Fprintln(stdinW, "go")
		}
	}
	stdinW.Close()
	go io.Copy(io.Discard, pr)
	if code := wp.wait(t); code != exitOK {
		t.Fatalf("watch exited %d:\n%s", code, wp.stderr.String())
	}
	recs := wp.records(t)
	if recs.summary.Episodes != perPhase*phases || recs.summary.IncompleteEpisodes != 0 || recs.summary.LostRecords != 0 {
		t.Errorf("summary: %d episodes (%d incomplete), %d records lost; want %d, all complete",
			recs.summary.Episodes, recs.summary.IncompleteEpisodes, recs.summary.LostRecords, perPhase*phases)
	}
	var figures []string
	for i, r := range rss {
		figures = append(figures, fmt.Sprintf("%d episodes: %d KiB (%d KiB anonymous)", i*perPhase, r, anon[i]))
	}
	t.Logf("cowtrace watch's resident memory (VmRSS): %s", strings.Join(figures, ", "))
	// The anonymous part is what a leak grows (Go's heap); the rest of
	// VmRSS, the binary's pages and the perf rings' (a file mapping), was
	// about 12 MiB from the start in every run measured.
	if grew := anon[phases] - anon[1]; grew > 6<<10 {
		t.Errorf("anonymous resident memory grew by %d KiB over the last %d episodes", grew, (phases-1)*perPhase)
	}
}

// TestWatchSchema: every kind of record watch writes, with figures and
// with nulls, is valid against docs/schema/watch.schema.json, and the
// schema refuses what it promises not to hold. No kernel needed: the
// records are built from episodes as the watcher makes them.
func TestWatchSchema(t *testing.T) {
	counts := engine.Counts{PageFaults: 50, WPFaults: 12, Copies: 10, WPCopies: 9, FirstWriteCopies: 1, ByCause: true}
	ep := watch.Episode{ID: 1, Parent: watch.Proc{Pid: 100, Comm: "redis-server"}, Child: watch.Proc{Pid: 200, Comm: "redis-server"},
		StartNs: 1e9, EndNs: 3e9, Tasks: 1, ParentCounts: counts, ChildCounts: counts}
	running := ep
	running.ID, running.Why = 2, "still running when the trace ended"
	var lines bytes.Buffer
	w := render.WatchJSON(&lines)
	for _, m := range []engine.Measures{{Sampled: true, ByCause: true}, {NoCopies: "no copy method", NoWPFaults: "no fault kinds"}, {Sampled: true}} {
		r := watch.Records{Measures: m, PageSize: 4096, WallOffsetNs: time.Now().UnixNano()}
		for _, e := range []watch.Episode{ep, running} {
			rec := r.Episode(e)
			w.Episode(&rec)
		}
		sh := r.Shared(watch.Shared{Parent: ep.Parent, Episodes: []int{1, 2}, StartNs: 2e9, EndNs: 25e8, Counts: counts})
		w.Shared(&sh)
	}
	exit := 0
	for _, s := range []report.WatchSummary{
		{Kind: "summary", Kernel: "6.18", Pid: 100, EndedBy: "interrupt", Start: time.Now(), Episodes: 2, Copies: report.U64(20), Bytes: report.U64(20 * 4096),
			CopiesByCause: &report.CopyCauses{WriteProtect: 18, PrivateFileFirstWrite: 2}, PageSize: 4096, Mode: "count", Methods: map[string]string{"copies": "x"},
			Incomplete: []string{}, Notes: []string{"n"}},
		{Kind: "summary", Kernel: "6.18", Command: []string{"redis-server"}, ExitCode: &exit, EndedBy: "exit", Start: time.Now(), PageSize: 4096, Mode: "classify",
			Methods: map[string]string{}, Incomplete: []string{"lost"}, Notes: []string{}, Label: "x"},
	} {
		w.Summary(&s)
	}
	for i, line := range bytes.Split(bytes.TrimSpace(lines.Bytes()), []byte("\n")) {
		if err := checkWatchLine(line); err != nil {
			t.Errorf("line %d: %v\n%s", i+1, err, line)
		}
	}
	// What the schema refuses.
	good := `{"kind":"shared","parent_pid":1,"parent_comm":"a","episodes":[1,2],"start":"2026-12-06T23:59:59.5Z","duration_ms":1,"copies":null,"wp_faults":null,"copies_by_cause":null,"bytes":null}`
	if err := checkWatchLine([]byte(good)); err != nil {
		t.Fatalf("%v\n%s", err, good)
	}
	for _, bad := range []string{
		strings.Replace(good, `"kind":"shared"`, `"kind":"bucket"`, 1),
		strings.Replace(good, `"copies":null,`, ``, 1),
		strings.Replace(good, `"episodes":[1,2]`, `"episodes":[1]`, 1),
		strings.Replace(good, `"start":"2026-12-06T23:59:59.5Z"`, `"start":"yesterday"`, 1),
		strings.Replace(good, `"copies":null`, `"copies":-1`, 1),
		strings.Replace(good, `"copies_by_cause":null`, `"copies_by_cause":{"write_protect":1}`, 1),
		strings.Replace(good, `"bytes":null`, `"bytes":null,"extra":1`, 1),
	} {
		if checkWatchLine([]byte(bad)) == nil {
			t.Errorf("the schema takes %s", bad)
		}
	}
}
