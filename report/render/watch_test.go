package render

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/cowtrace/cowtrace/report"
)

// wideEpisode has every figure at its widest: a 7-digit pid, a 15-byte
// command, counts past 2^40, a duration of weeks.
func wideEpisode() *report.Episode {
	huge := report.U64(1<<40 + 12345)
	return &report.Episode{Kind: report.KindEpisode, ID: 123456, ParentPid: 4194304, ParentComm: "redis-server-15", ChildPid: 4194303,
		Comm: "abcdefghijklmno", Start: time.Date(2026, 12, 6, 23, 59, 59, 0, time.UTC), DurationMs: 40 * 24 * 3600e3, Tasks: 9,
		ParentCopies: huge, ParentWPFaults: huge, ParentCopiesByCause: &report.CopyCauses{WriteProtect: 1 << 40, PrivateFileFirstWrite: 12345},
		ChildCopies: huge, ChildWPFaults: huge, ChildCopiesByCause: &report.CopyCauses{WriteProtect: 1 << 40, PrivateFileFirstWrite: 12345},
		Copies: report.U64(2 * *huge), Bytes: report.U64(2 * *huge * 4096), SharedWith: []int{123455, 123457}, Complete: true}
}

// TestWatchTableWidth: whatever the figures, no line of the table passes
// WatchTableWidth columns (80-column terminals), and WatchTableWidth is
// under 80.
func TestWatchTableWidth(t *testing.T) {
	if WatchTableWidth >= 80 {
		t.Fatalf("WatchTableWidth %d", WatchTableWidth)
	}
	var b bytes.Buffer
	w, err := WatchTable(&b, 4194304, "redis-server-15", []string{"/usr/local/bin/a-very-long-program-name", "--with", "many", "arguments", "and", "more", "of", "them"}, 4096)
	if err != nil {
		t.Fatal(err)
	}
	e := wideEpisode()
	w.Episode(e)
	e.Complete, e.ChildCopies, e.Unmeasured = false, nil, map[string]string{"child_copies": strings.Repeat("a long reason ", 20)}
	w.Episode(e)
	w.Shared(&report.SharedBucket{Kind: report.KindShared, ParentPid: 4194304, ParentComm: "redis-server-15", Episodes: []int{123455, 123456},
		Start: e.Start, DurationMs: 1, Copies: e.Copies, WPFaults: e.Copies, Bytes: e.Bytes})
	w.Summary(&report.WatchSummary{Episodes: 123456, SharedBuckets: 99999, Copies: e.Copies, Bytes: e.Bytes,
		CopiesByCause: &report.CopyCauses{WriteProtect: 1 << 41, PrivateFileFirstWrite: 1 << 41}, DurationMs: 1e12, EndedBy: "interrupt",
		IncompleteEpisodes: 1, Incomplete: []string{strings.Repeat("incomplete because ", 10)}, Notes: []string{strings.Repeat("a note ", 30)}})
	for _, line := range strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n") {
		if len(line) > WatchTableWidth {
			t.Errorf("%d columns, want %d at most:\n%s", len(line), WatchTableWidth, line)
		}
	}
	for _, want := range []string{"4194304 4194303 abcdefghij", " 1.1T ", "8.0P", "  episode 123456: child_copies null: a long reason"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("no %q in\n%s", want, b.String())
		}
	}
}

func TestShortFigures(t *testing.T) {
	for _, c := range []struct {
		got, want string
	}{
		{shortCount(nil), "-"},
		{shortCount(report.U64(0)), "0"},
		{shortCount(report.U64(99999)), "99999"},
		{shortCount(report.U64(100000)), "100k"},
		{shortCount(report.U64(999999)), "1.0M"},
		{shortCount(report.U64(12345678)), "12.3M"},
		{shortBytes(report.U64(4096)), "4.0K"},
		{shortBytes(report.U64(16 << 20)), "16.0M"},
		{shortBytes(report.U64(1023 << 20)), "1023M"},
		{shortBytes(report.U64(1<<30 - 1)), "1.0G"},
		{shortDuration(1.5), "0.00s"},
		{shortDuration(1520), "1.52s"},
		{shortDuration(15800), "15.8s"},
		{shortDuration(125e3), "2m05"},
		{shortDuration(3.9e6), "1h05"},
		{shortDuration(400 * 3600e3), "16d"},
	} {
		if c.got != c.want || len(c.got) > wtNum {
			t.Errorf("got %q, want %q (%d columns at most)", c.got, c.want, wtNum)
		}
	}
}

// TestWatchMetrics: the counters and the histogram of a few records, read
// back by Prometheus' text parser (node_exporter's), and by promtool where
// it is installed.
func TestWatchMetrics(t *testing.T) {
	m := NewWatchMetrics(`lab"el`, 100, "redis-server", 4096, 1796601011.5)
	ep := func(comm string, parent, child uint64, fw uint64) *report.Episode {
		return &report.Episode{ParentPid: 100, ParentComm: "redis-server", Comm: comm, Complete: true,
			ParentCopies: report.U64(parent), ParentWPFaults: report.U64(parent + 1), ParentCopiesByCause: &report.CopyCauses{WriteProtect: parent},
			ChildCopies: report.U64(child), ChildWPFaults: report.U64(child), ChildCopiesByCause: &report.CopyCauses{WriteProtect: child - fw, PrivateFileFirstWrite: fw},
			Copies: report.U64(parent + child)}
	}
	m.Episode(ep("redis-server", 4000, 30, 0))
	m.Episode(ep("redis-server", 1000, 20, 2))
	m.Episode(ep("sh", 0, 3, 3))
	m.Episode(&report.Episode{ParentPid: 100, ParentComm: "redis-server", Comm: "sh", ParentCopies: report.U64(5)})            // incomplete
	m.Shared(&report.SharedBucket{ParentPid: 100, ParentComm: "redis-server", Copies: report.U64(7), WPFaults: report.U64(9)}) // causes unknown
	var b bytes.Buffer
	if err := m.Write(&b); err != nil {
		t.Fatal(err)
	}
	text := b.String()
	parser := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	value := func(name string, labels map[string]string) float64 {
		t.Helper()
		f := fams[name]
		if f == nil {
			t.Fatalf("no %s:\n%s", name, text)
		}
	metrics:
		for _, mt := range f.Metric {
			got := map[string]string{}
			for _, l := range mt.Label {
				got[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue metrics
				}
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				return mt.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				return mt.GetGauge().GetValue()
			}
		}
		t.Fatalf("no %s%v:\n%s", name, labels, text)
		return 0
	}
	redis := map[string]string{"command": "redis-server", "parent": "redis-server", "pid": "100", "label": `lab"el`}
	with := func(kv ...string) map[string]string {
		out := map[string]string{}
		for k, v := range redis {
			out[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			out[kv[i]] = kv[i+1]
		}
		return out
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"cowtrace_watch_episodes_total", redis, 2},
		{"cowtrace_watch_episodes_total", with("command", "sh"), 2},
		{"cowtrace_watch_incomplete_episodes_total", with("command", "sh"), 1},
		{"cowtrace_watch_copies_total", with("side", "parent", "cause", "write_protect"), 5000},
		{"cowtrace_watch_copies_total", with("side", "child", "cause", "write_protect"), 48},
		{"cowtrace_watch_copies_total", with("side", "child", "cause", "private_file_first_write"), 2},
		{"cowtrace_watch_copied_bytes_total", with("side", "child", "cause", "private_file_first_write"), 2 * 4096},
		{"cowtrace_watch_wp_faults_total", with("side", "parent"), 5002},
		{"cowtrace_watch_shared_buckets_total", map[string]string{"parent": "redis-server"}, 1},
		{"cowtrace_watch_shared_copies_total", map[string]string{"cause": "unknown"}, 7},
		{"cowtrace_watch_shared_wp_faults_total", map[string]string{"pid": "100"}, 9},
		{"cowtrace_watch_start_time_seconds", map[string]string{"pid": "100"}, 1796601011.5},
	} {
		if got := value(c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	h := fams["cowtrace_watch_episode_copies"]
	for _, mt := range h.GetMetric() {
		hist := mt.GetHistogram()
		var comm string
		for _, l := range mt.Label {
			if l.GetName() == "command" {
				comm = l.GetValue()
			}
		}
		counts := map[float64]uint64{}
		for _, b := range hist.Bucket {
			counts[b.GetUpperBound()] = b.GetCumulativeCount()
		}
		switch comm {
		case "redis-server":
			// 1020 and 4030 copies.
			if hist.GetSampleCount() != 2 || hist.GetSampleSum() != 5050 || counts[256] != 0 || counts[1024] != 1 || counts[4096] != 2 {
				t.Errorf("redis-server's histogram: %v", hist)
			}
		case "sh":
			if hist.GetSampleCount() != 1 || counts[1] != 0 || counts[4] != 1 {
				t.Errorf("sh's histogram: %v", hist)
			}
		}
	}
	if len(h.GetMetric()) != 2 {
		t.Errorf("%d histograms, want redis-server's and sh's", len(h.GetMetric()))
	}
	if strings.Contains(text, "# EOF") || strings.Contains(text, "# UNIT") {
		t.Errorf("OpenMetrics-only lines in the text format:\n%s", text)
	}
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "# HELP") && strings.Contains(line, `"`) {
			t.Errorf("a double quote in HELP, which promtool rejects: %s", line)
		}
	}
	if _, err := exec.LookPath("promtool"); err == nil {
		cmd := exec.Command("promtool", "check", "metrics")
		cmd.Stdin = strings.NewReader(text)
		if out, err := cmd.CombinedOutput(); err != nil || len(out) > 0 {
			t.Errorf("promtool check metrics: %v\n%s\n%s", err, out, text)
		}
	}
}
