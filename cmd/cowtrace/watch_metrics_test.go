package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/cowtrace/cowtrace/internal/testenv"
)

// TestWatchOpenMetricsTextfile follows watch's counters to Prometheus by
// node_exporter's textfile collector. A watch of a shell rewrites its file
// as each episode ends (read while it still runs); a watch of cow_episodes,
// its children forked in pairs, adds a second file to the same directory,
// with shared buckets. promtool check metrics accepts both, node_exporter
// serves every sample as written with no scrape error, and the counters
// and the histogram hold what the episodes cost.
func TestWatchOpenMetricsTextfile(t *testing.T) {
	testenv.Require(t, testenv.Root, testenv.Program("promtool"), testenv.Program("prometheus-node-exporter"))
	prog := testenv.BuildC(t, "cow_episodes")
	dir := t.TempDir()

	// A shell that forks three children once watch is attached.
	shell := exec.Command("sh", "-c", "read x; /bin/true; /bin/true; /bin/true; exec sleep 60")
	in, err := shell.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	shell.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := shell.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		shell.Process.Kill()
		shell.Wait()
	}()
	live := filepath.Join(dir, "shell.prom")
	wp := startWatch(t, live, "--format", "openmetrics", "--label", "shell", "-p", strconv.Itoa(shell.Process.Pid))
	fmt.Fprintln(in, "go")
	pid := strconv.Itoa(shell.Process.Pid)
	episodes := fmt.Sprintf(`cowtrace_watch_episodes_total{command="true",label="shell",parent="sh",pid="%s"} 3`, pid)
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		b, _ := os.ReadFile(live)
		if strings.Contains(string(b), episodes+"\n") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s after a minute, no %q:\n%s", live, episodes, b)
		}
	}
	if code := wp.stop(t); code != exitInterrupted {
		t.Errorf("watch -p ended by SIGINT: exit %d, want %d\n%s", code, exitInterrupted, wp.stderr.String())
	}

	pairs := filepath.Join(dir, "pairs.prom")
	if code, stdout, stderr := runCLI("watch", "--format", "openmetrics", "-o", pairs, "--label", "pairs", "--", prog, "2", "100", "50", "overlap"); code != exitOK || stdout != "" || stderr != "cowtrace: attached\n" {
		t.Fatalf("watch -- cow_episodes: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}

	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		fi, _ := e.Info()
		if name := e.Name(); name != "shell.prom" && name != "pairs.prom" || fi.Mode().Perm() != 0o644 {
			t.Errorf("%s in the textfile directory, mode %v: want the two files, 0644, no temporary file left", name, fi.Mode().Perm())
		}
	}
	written := map[string]map[string]*dto.MetricFamily{}
	for _, path := range []string{live, pairs} {
		check := exec.Command("promtool", "check", "metrics")
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		check.Stdin = f
		out, err := check.CombinedOutput()
		f.Close()
		if err != nil || len(out) > 0 {
			t.Errorf("promtool check metrics %s: %v\n%s", path, err, out)
		}
		b, _ := os.ReadFile(path)
		written[path] = parseExposition(t, path, string(b))
	}

	scraped := parseExposition(t, "/metrics", scrape(t, startNodeExporter(t, dir)))
	if got := gaugeValue(scraped, "node_textfile_scrape_error"); got != "0" {
		t.Errorf("node_textfile_scrape_error %s, want 0", got)
	}
	served := metricValues(scraped)
	for path, fams := range written {
		for key, v := range metricValues(fams) {
			if served[key] != v {
				t.Errorf("%s: %s %s served as %q", filepath.Base(path), key, v, served[key])
			}
		}
		for name, f := range fams {
			if s := scraped[name]; s == nil || s.GetHelp() != f.GetHelp() || s.GetType() != f.GetType() {
				t.Errorf("%s: %s served with HELP %q and type %v, written %q %v", filepath.Base(path), name, s.GetHelp(), s.GetType(), f.GetHelp(), f.GetType())
			}
		}
	}

	// What the pairs cost, from node_exporter's side: four episodes, two
	// shared buckets of the parent's 50 copies each, the children's 100 or
	// 101 pages each, and the histogram's count and sum the episodes'.
	pairsPid := ""
	for key := range served {
		if strings.HasPrefix(key, `cowtrace_watch_episodes_total{command="cow_episodes",label="pairs",`) {
			pairsPid = key[strings.Index(key, `pid="`)+5 : strings.LastIndex(key, `"`)]
		}
	}
	value := func(name string, labels ...string) float64 {
		t.Helper()
		ls := append([]string{"label=pairs", "parent=cow_episodes", "pid=" + pairsPid}, labels...)
		sort.Strings(ls)
		for i, l := range ls {
			k, v, _ := strings.Cut(l, "=")
			ls[i] = fmt.Sprintf("%s=%q", k, v)
		}
		key := name + "{" + strings.Join(ls, ",") + "}"
		v, ok := served[key]
		if !ok {
			t.Fatalf("no %s served", key)
		}
		f, _ := strconv.ParseFloat(v, 64)
		return f
	}
	if n := value("cowtrace_watch_episodes_total", "command=cow_episodes"); n != 4 {
		t.Errorf("%v episodes, want 4", n)
	}
	if n := value("cowtrace_watch_shared_buckets_total"); n != 2 {
		t.Errorf("%v shared buckets, want 2", n)
	}
	if n := value("cowtrace_watch_shared_copies_total", "cause=write_protect"); n < 100 || n > 100+2*episodeSlack {
		t.Errorf("%v copies in shared buckets, want the parent's 2 x 50", n)
	}
	side := func(family, side string) float64 {
		return value(family, "command=cow_episodes", "cause=write_protect", "side="+side)
	}
	childCopies, parentCopies := side("cowtrace_watch_copies_total", "child"), side("cowtrace_watch_copies_total", "parent")
	if childCopies < 4*100 || childCopies > 4*(101+episodeSlack) || parentCopies > 4*episodeSlack {
		t.Errorf("children copied %v pages, the parent alone %v: want 100 or 101 each, and next to none", childCopies, parentCopies)
	}
	if bytes := side("cowtrace_watch_copied_bytes_total", "child"); bytes != childCopies*float64(os.Getpagesize()) {
		t.Errorf("children copied %v bytes for %v pages", bytes, childCopies)
	}
	if n := value("cowtrace_watch_copies_total", "command=cow_episodes", "cause=private_file_first_write", "side=child"); n > 4*episodeSlack {
		t.Errorf("children copied %v private file pages at their first write, want next to none", n)
	}
	h := scraped["cowtrace_watch_episode_copies"]
	if h == nil || h.GetType() != dto.MetricType_HISTOGRAM {
		t.Fatalf("no histogram served: %v", h)
	}
	for _, m := range h.Metric {
		if labelMap(m)["label"] != "pairs" {
			continue
		}
		hist := m.GetHistogram()
		if hist.GetSampleCount() != 4 || hist.GetSampleSum() != childCopies+parentCopies {
			t.Errorf("histogram: %d episodes, %v copies; want 4 and %v", hist.GetSampleCount(), hist.GetSampleSum(), childCopies+parentCopies)
		}
		for _, b := range hist.Bucket {
			want := uint64(0)
			if b.GetUpperBound() >= 256 {
				want = 4 // 100 to 110 copies each
			}
			if b.GetCumulativeCount() != want {
				t.Errorf("histogram bucket le=%v: %d episodes, want %d", b.GetUpperBound(), b.GetCumulativeCount(), want)
			}
		}
	}
}

// metricValues are the samples of fams, counters, gauges and histograms
// alike, by name{label="value",...} (labels in name order), values as Go
// formats them; a histogram gives its _count and _sum.
func metricValues(fams map[string]*dto.MetricFamily) map[string]string {
	out := map[string]string{}
	for name, f := range fams {
		for _, m := range f.Metric {
			ls := labelMap(m)
			keys := make([]string, 0, len(ls))
			for k := range ls {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			var parts []string
			for _, k := range keys {
				parts = append(parts, fmt.Sprintf("%s=%q", k, ls[k]))
			}
			labels := ""
			if len(parts) > 0 {
				labels = "{" + strings.Join(parts, ",") + "}"
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				out[name+labels] = fmt.Sprint(m.GetCounter().GetValue())
			case dto.MetricType_HISTOGRAM:
				out[name+"_count"+labels] = fmt.Sprint(m.GetHistogram().GetSampleCount())
				out[name+"_sum"+labels] = fmt.Sprint(m.GetHistogram().GetSampleSum())
			default:
				out[name+labels] = fmt.Sprint(m.GetGauge().GetValue())
			}
		}
	}
	return out
}
