package render

// cowtrace watch --format openmetrics: counters of the episodes seen and
// what they copied, and a histogram of each episode's copies, by command,
// rewritten whole after each record for node_exporter's textfile
// collector, and through it a fleet's Prometheus.
//
// Unlike a run's report (openmetrics.go), these are counters: they grow
// for as long as the watch runs, and Prometheus' rate() and increase()
// are what one asks of them; a restarted watch starts them again from 0,
// which Prometheus takes for the counter reset it is. The two text formats
// name a counter differently: Prometheus' text format 0.0.4, which
// node_exporter, promtool and Prometheus' own scrapes read, puts the
// _total suffix in the TYPE line; OpenMetrics 1.0 names the family without
// it. The file is written in the former, the textfile collector's, with no
// line of OpenMetrics' own (no # UNIT, no # EOF). The HELP and label rules
// are openmetrics.go's: constant HELP without double quotes, the same in
// every file, so that node_exporter merges the families of several
// watchers' files; label values escaped and made UTF-8.
//
// Every series is labelled by the watched process's pid and command name
// (parent) and, where there is one, --label: two watchers' files in one
// directory never give the same series. The child's command (command) is
// the other label of episodes: Redis names its children redis-rdb-bgsave
// and redis-aof-rewrite, so a BGSAVE's bill is apart from a rewrite's. The
// series are as many as the commands seen, not the episodes: memory stays
// flat over hours.

import (
	"bufio"
	"io"
	"sort"
	"strconv"
	"strings"

	"github.com/cowtrace/cowtrace/report"
)

// The HELP of watch's families.
const (
	wmHelpStart        = "When cowtrace watch started, in seconds since the epoch: its counters count from then"
	wmHelpEpisodes     = "Episodes that ended: forks of the watched process whose child tree has exited"
	wmHelpIncomplete   = "Episodes that ended with a figure not known whole, counted in episodes but not in copies or the histogram"
	wmHelpCopies       = "Pages copied in episodes: by side (the parent while the episode alone was open, the child tree in its whole life) and cause (write_protect: a write to a page shared or read before; private_file_first_write: a first write to a private file page; unknown: not told here)"
	wmHelpBytes        = "Bytes copied in episodes, the copies times the page size, by side and cause as the copies"
	wmHelpWPFaults     = "Write-protect faults in episodes, by side as the copies"
	wmHelpShared       = "Shared buckets reported: stretches when several episodes of the parent were open together"
	wmHelpSharedCopies = "Pages the parent copied while several of its episodes were open, which of them caused each not being known, by cause"
	wmHelpSharedBytes  = "Bytes the parent copied while several of its episodes were open, by cause"
	wmHelpSharedWP     = "Write-protect faults of the parent while several of its episodes were open"
	wmHelpHistogram    = "Pages copied per episode, the parent's and the child tree's together, for the episodes whose copies are known whole"
)

// wmBuckets are the histogram's upper bounds, in pages: powers of 4 from 0
// (an episode that copied nothing) to 4 GiB of 4 KiB pages.
var wmBuckets = func() []uint64 {
	b := []uint64{0}
	for v := uint64(1); v <= 1<<20; v *= 4 {
		b = append(b, v)
	}
	return b
}()

// WatchMetrics accumulates watch's counters; Write writes them whole.
type WatchMetrics struct {
	base     []omLabel
	page     uint64
	start    []omLabel // the start time's labels: the watched process's
	startSec string
	counters map[string]*wmCounters // by family name
	hists    map[string]*wmHist     // by label key
}

// wmCounters are one counter family's series, by label key.
type wmCounters struct {
	help   string
	series map[string]*wmSeries
}

type wmSeries struct {
	labels []omLabel
	v      uint64
}

type wmHist struct {
	labels     []omLabel
	buckets    []uint64 // cumulative counts, by wmBuckets
	sum, count uint64
}

// NewWatchMetrics starts the counters of a watch of process pid (command
// comm) that started at startUnix (seconds since the epoch), labelled label
// (--label, "" for none); page is the page size bytes are counted in.
func NewWatchMetrics(label string, pid int, comm string, page int, startUnix float64) *WatchMetrics {
	m := &WatchMetrics{page: uint64(page), counters: map[string]*wmCounters{}, hists: map[string]*wmHist{}}
	if label != "" {
		m.base = []omLabel{{"label", label}}
	}
	m.start = m.parentLabels(pid, comm)
	m.startSec = strconv.FormatFloat(startUnix, 'f', 3, 64)
	return m
}

func (m *WatchMetrics) add(name, help string, labels []omLabel, v uint64) {
	c := m.counters[name]
	if c == nil {
		c = &wmCounters{help: help, series: map[string]*wmSeries{}}
		m.counters[name] = c
	}
	key := omKey(labels)
	s := c.series[key]
	if s == nil {
		s = &wmSeries{labels: labels}
		c.series[key] = s
	}
	s.v += v
}

// omKey is a label set as one string, for maps.
func omKey(ls []omLabel) string {
	var b strings.Builder
	for _, l := range ls {
		b.WriteString(l.name + "\x00" + l.value + "\x00")
	}
	return b.String()
}

func (m *WatchMetrics) parentLabels(pid int, comm string, more ...omLabel) []omLabel {
	return omWith(m.base, append([]omLabel{{"pid", strconv.Itoa(pid)}, {"parent", comm}}, more...)...)
}

// wmPart is copies of one cause.
type wmPart struct {
	cause string
	n     uint64
}

// addCopies counts one side's copies by cause (unknown where not told).
func (m *WatchMetrics) addCopies(family, bytesFamily, help, bytesHelp string, ls []omLabel, copies *uint64, by *report.CopyCauses) {
	if copies == nil {
		return
	}
	parts := []wmPart{{"unknown", *copies}}
	if by != nil {
		parts = []wmPart{{"write_protect", by.WriteProtect}, {"private_file_first_write", by.PrivateFileFirstWrite}}
	}
	for _, p := range parts {
		l := omWith(ls, omLabel{"cause", p.cause})
		m.add(family, help, l, p.n)
		m.add(bytesFamily, bytesHelp, l, p.n*m.page)
	}
}

// Episode counts an episode.
func (m *WatchMetrics) Episode(e *report.Episode) {
	ls := m.parentLabels(e.ParentPid, e.ParentComm, omLabel{"command", e.Comm})
	m.add("cowtrace_watch_episodes_total", wmHelpEpisodes, ls, 1)
	if !e.Complete {
		m.add("cowtrace_watch_incomplete_episodes_total", wmHelpIncomplete, ls, 1)
		return
	}
	for _, s := range []struct {
		side   string
		copies *uint64
		by     *report.CopyCauses
		wp     *uint64
	}{{"parent", e.ParentCopies, e.ParentCopiesByCause, e.ParentWPFaults}, {"child", e.ChildCopies, e.ChildCopiesByCause, e.ChildWPFaults}} {
		sl := omWith(ls, omLabel{"side", s.side})
		m.addCopies("cowtrace_watch_copies_total", "cowtrace_watch_copied_bytes_total", wmHelpCopies, wmHelpBytes, sl, s.copies, s.by)
		if s.wp != nil {
			m.add("cowtrace_watch_wp_faults_total", wmHelpWPFaults, sl, *s.wp)
		}
	}
	if e.Copies == nil {
		return
	}
	key := omKey(ls)
	h := m.hists[key]
	if h == nil {
		h = &wmHist{labels: ls, buckets: make([]uint64, len(wmBuckets))}
		m.hists[key] = h
	}
	for i, le := range wmBuckets {
		if *e.Copies <= le {
			h.buckets[i]++
		}
	}
	h.sum += *e.Copies
	h.count++
}

// Shared counts a shared bucket.
func (m *WatchMetrics) Shared(s *report.SharedBucket) {
	ls := m.parentLabels(s.ParentPid, s.ParentComm)
	m.add("cowtrace_watch_shared_buckets_total", wmHelpShared, ls, 1)
	m.addCopies("cowtrace_watch_shared_copies_total", "cowtrace_watch_shared_copied_bytes_total", wmHelpSharedCopies, wmHelpSharedBytes, ls, s.Copies, s.CopiesByCause)
	if s.WPFaults != nil {
		m.add("cowtrace_watch_shared_wp_faults_total", wmHelpSharedWP, ls, *s.WPFaults)
	}
}

// Write writes every family, in name order, each series in label order.
func (m *WatchMetrics) Write(w io.Writer) error {
	var fams []*omFamily
	start := &omFamily{name: "cowtrace_watch_start_time_seconds", help: wmHelpStart}
	start.add(m.start, m.startSec)
	fams = append(fams, start)
	for name, c := range m.counters {
		f := &omFamily{name: name, help: c.help, typ: "counter"}
		for _, s := range c.series {
			f.add(s.labels, omUint(s.v))
		}
		fams = append(fams, f)
	}
	if len(m.hists) > 0 {
		const name = "cowtrace_watch_episode_copies"
		f := &omFamily{name: name, help: wmHelpHistogram, typ: "histogram"}
		keys := make([]string, 0, len(m.hists))
		for k := range m.hists {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			h := m.hists[k]
			for i, le := range wmBuckets {
				f.addSample(name+"_bucket", omWith(h.labels, omLabel{"le", strconv.FormatUint(le, 10)}), omUint(h.buckets[i]))
			}
			f.addSample(name+"_bucket", omWith(h.labels, omLabel{"le", "+Inf"}), omUint(h.count))
			f.addSample(name+"_sum", h.labels, omUint(h.sum))
			f.addSample(name+"_count", h.labels, omUint(h.count))
		}
		fams = append(fams, f)
	}
	sort.Slice(fams, func(a, b int) bool { return fams[a].name < fams[b].name })
	bw := bufio.NewWriter(w)
	for _, f := range fams {
		if f.typ == "counter" {
			sort.Slice(f.samples, func(a, b int) bool { return omKey(f.samples[a].labels) < omKey(f.samples[b].labels) })
		}
		f.write(bw)
	}
	return bw.Flush()
}
