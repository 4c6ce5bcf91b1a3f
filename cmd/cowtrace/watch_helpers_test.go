package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cowtrace/cowtrace/internal/proof"
	"github.com/cowtrace/cowtrace/internal/testenv"
	"github.com/cowtrace/cowtrace/report"
)

// checkWatchLine is nil when line is one JSON document valid against
// docs/schema/watch.schema.json, else what is wrong.
func checkWatchLine(line []byte) error { return testenv.CheckJSON("watch", line) }

// watchRecords are the lines of cowtrace watch --format json, each
// checked against the schema.
type watchRecords struct {
	episodes []report.Episode
	shared   []report.SharedBucket
	summary  *report.WatchSummary
}

// parseWatch reads watch's JSON lines: every line valid against the
// schema, episodes and shared buckets, and one summary, last.
func parseWatch(t *testing.T, data []byte) watchRecords {
	t.Helper()
	var recs watchRecords
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Bytes()
		if err := checkWatchLine(line); err != nil {
			t.Fatalf("line %d not valid against watch.schema.json: %v\n%s", n, err, line)
		}
		if recs.summary != nil {
			t.Fatalf("line %d after the summary:\n%s", n, line)
		}
		var kind struct{ Kind string }
		if err := json.Unmarshal(line, &kind); err != nil {
			t.Fatal(err)
		}
		var err error
		switch kind.Kind {
		case report.KindEpisode:
			var e report.Episode
			err = json.Unmarshal(line, &e)
			recs.episodes = append(recs.episodes, e)
		case report.KindShared:
			var s report.SharedBucket
			err = json.Unmarshal(line, &s)
			recs.shared = append(recs.shared, s)
		case report.KindSummary:
			recs.summary = &report.WatchSummary{}
			err = json.Unmarshal(line, recs.summary)
		}
		if err != nil {
			t.Fatalf("line %d: %v\n%s", n, err, line)
		}
	}
	if recs.summary == nil {
		t.Fatalf("no summary line:\n%s", data)
	}
	return recs
}

// checkTotals: the summary adds up the lines before it.
func (r watchRecords) checkTotals(t *testing.T) {
	t.Helper()
	s := r.summary
	var copies uint64
	for _, e := range r.episodes {
		if e.Complete && e.Copies != nil {
			copies += *e.Copies
		}
	}
	for _, b := range r.shared {
		if b.Copies != nil {
			copies += *b.Copies
		}
	}
	if s.Episodes != len(r.episodes) || s.SharedBuckets != len(r.shared) || s.Copies == nil || *s.Copies != copies ||
		*s.Bytes != copies*uint64(s.PageSize) {
		t.Errorf("summary %d episodes, %d shared buckets, %v copies (%v bytes): the lines have %d, %d and %d",
			s.Episodes, s.SharedBuckets, u64s(s.Copies), u64s(s.Bytes), len(r.episodes), len(r.shared), copies)
	}
	if c := s.CopiesByCause; c != nil && c.WriteProtect+c.PrivateFileFirstWrite != *s.Copies {
		t.Errorf("summary: copies by cause %+v do not add up to %d", *c, *s.Copies)
	}
}

func u64s(v *uint64) string {
	if v == nil {
		return "null"
	}
	return strconv.FormatUint(*v, 10)
}

// watchProc is cowtrace watch in a process of its own (the test binary as
// cowtrace, so that SIGINT reaches it alone), started and waited for until
// it said "attached" on --ready-fd.
type watchProc struct {
	cmd            *exec.Cmd
	out            string // -o
	stdout, stderr bytes.Buffer
	done           chan struct{}
	code           int
}

// startWatch runs cowtrace watch --ready-fd 3 -o OUT ARGS and returns
// once it is attached; args may end with -- CMD.
func startWatch(t *testing.T, out string, args ...string) *watchProc {
	t.Helper()
	return startWatchStdio(t, out, nil, nil, args...)
}

// startWatchStdio is startWatch with watch's stdin and stdout, CMD's, given
// (nil: none, and a buffer).
func startWatchStdio(t *testing.T, out string, stdin *os.File, stdout io.Writer, args ...string) *watchProc {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	flags := []string{"watch", "--ready-fd", "3", "-o", out}
	var cmdArgs []string
	for i, a := range args {
		if a == "--" {
			args, cmdArgs = args[:i], args[i:]
			break
		}
	}
	wp := &watchProc{out: out, done: make(chan struct{})}
	wp.cmd = exec.Command(os.Args[0], append(append(flags, args...), cmdArgs...)...)
	wp.cmd.Env = append(os.Environ(), asMainEnv+"=1")
	wp.cmd.Stdout, wp.cmd.Stderr = &wp.stdout, &wp.stderr
	if stdin != nil {
		wp.cmd.Stdin = stdin
	}
	if stdout != nil {
		wp.cmd.Stdout = stdout
	}
	wp.cmd.ExtraFiles = []*os.File{w}
	wp.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := wp.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	go func() {
		err := wp.cmd.Wait()
		var ee *exec.ExitError
		switch {
		case err == nil:
		case errors.As(err, &ee):
			wp.code = ee.ExitCode()
		default:
			wp.code = -1
		}
		close(wp.done)
	}()
	t.Cleanup(func() {
		wp.cmd.Process.Kill()
		<-wp.done
	})
	line := make(chan string, 1)
	go func() {
		b, _ := bufio.NewReader(r).ReadString('\n')
		line <- b
	}()
	select {
	case l := <-line:
		if l != "attached\n" {
			<-wp.done
			t.Fatalf("cowtrace watch did not attach (exit %d): ready descriptor %q\n%s", wp.code, l, wp.stderr.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("cowtrace watch not attached after a minute:\n%s", wp.stderr.String())
	}
	return wp
}

// stop sends SIGINT and waits for watch's end: its exit status.
func (wp *watchProc) stop(t *testing.T) int {
	t.Helper()
	wp.cmd.Process.Signal(syscall.SIGINT)
	return wp.wait(t)
}

// wait waits up to two minutes for watch's end: its exit status.
func (wp *watchProc) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-wp.done:
	case <-time.After(2 * time.Minute):
		t.Fatalf("cowtrace watch still running after two minutes:\n%s", wp.stderr.String())
	}
	return wp.code
}

// records reads -o once watch ended.
func (wp *watchProc) records(t *testing.T) watchRecords {
	t.Helper()
	b, err := os.ReadFile(wp.out)
	if err != nil {
		t.Fatal(err)
	}
	return parseWatch(t, b)
}

// waitEpisodes waits up to two minutes until -o holds n episode lines,
// and returns the last.
func (wp *watchProc) waitEpisodes(t *testing.T, n int) report.Episode {
	t.Helper()
	marker := []byte(`{"kind":"episode",`)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		b, _ := os.ReadFile(wp.out)
		if got := bytes.Count(b, marker); got >= n {
			last := b[bytes.LastIndex(b, marker):]
			last = last[:bytes.IndexByte(last, '\n')+1]
			var e report.Episode
			if err := json.Unmarshal(last, &e); err != nil {
				t.Fatalf("%v: %s", err, last)
			}
			return e
		} else if time.Now().After(deadline) {
			t.Fatalf("%d episodes written after two minutes, want %d:\n%s\n%s", got, n, b, wp.stderr.String())
		}
		select {
		case <-wp.done:
			b, _ := os.ReadFile(wp.out)
			if bytes.Count(b, marker) < n {
				t.Fatalf("cowtrace watch exited %d with %d episodes written, want %d:\n%s", wp.code, bytes.Count(b, marker), n, wp.stderr.String())
			}
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// rssKiB is a process's resident memory, in KiB, by field of
// /proc/PID/status: "VmRSS" in all, "RssAnon" its anonymous part.
func rssKiB(t *testing.T, pid int, field string) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("%s %q", field, v)
			}
			return n
		}
	}
	t.Fatalf("no %s for %d", field, pid)
	return 0
}

// privateFrames are the physical frames of process pid's resident pages in
// its private writable mappings, by address: where copy-on-write copies.
func privateFrames(t *testing.T, pid int) map[uint64]uint64 {
	t.Helper()
	maps, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		t.Fatal(err)
	}
	page := uint64(os.Getpagesize())
	frames := map[uint64]uint64{}
	for _, line := range strings.Split(strings.TrimSpace(string(maps)), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[1] != "rw-p" {
			continue
		}
		var start, end uint64
		if _, err := fmt.Sscanf(f[0], "%x-%x", &start, &end); err != nil {
			t.Fatalf("%d's maps: %q", pid, line)
		}
		entries, err := proof.Read(pid, start, end-start)
		if err != nil {
			t.Fatal(err)
		}
		for i, e := range entries {
			// Present (bit 63), not swapped (62): the frame number.
			if e&(1<<63) != 0 && e&(1<<62) == 0 {
				frames[start+uint64(i)*page] = e & (1<<55 - 1)
			}
		}
	}
	return frames
}

// framesChanged counts the addresses resident in both before and after
// whose frame differs: each copy-on-write copy of a process gives it a new
// frame where it had the shared one.
func framesChanged(before, after map[uint64]uint64) int {
	n := 0
	for addr, f := range before {
		if g, ok := after[addr]; ok && g != f {
			n++
		}
	}
	return n
}
