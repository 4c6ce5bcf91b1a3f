package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/cowtrace/cowtrace/internal/testenv"
)

// TestOpenMetricsTextfile follows the path by which a fleet of runners
// reaches a Prometheus server: cowtrace run writes --format openmetrics
// into node_exporter's textfile directory, promtool check metrics accepts
// the file, and Debian's prometheus-node-exporter serves it on /metrics
// with no scrape error. Two runs share the directory, in two modes, each
// with its --label, as the README asks: the same families come from two
// files, which node_exporter merges only when their HELP is the same.
func TestOpenMetricsTextfile(t *testing.T) {
	testenv.Require(t, testenv.Root, testenv.Program("promtool"), testenv.Program("prometheus-node-exporter"))
	prog := testenv.BuildC(t, "cow_tree")
	dir := t.TempDir()
	// cow_tree 4 3: four children, child k writing k pages it shares with
	// the parent, which exits with status 3.
	const children, status = 4, 3
	files := map[string]string{}
	for _, r := range []struct{ label, mode string }{{"textfile-auto", "auto"}, {"textfile-classify", "classify"}} {
		path := filepath.Join(dir, r.label+".prom")
		files[r.label] = path
		cmd := exec.Command(os.Args[0], "run", "--mode", r.mode, "--label", r.label, "--format", "openmetrics", "-o", path,
			"--", prog, fmt.Sprint(children), fmt.Sprint(status))
		cmd.Env = append(os.Environ(), asMainEnv+"=1")
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != status {
			t.Fatalf("cowtrace run --mode %s: %v, want exit status %d (the command's)\n%s", r.mode, err, status, out)
		}
		check := exec.Command("promtool", "check", "metrics")
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		check.Stdin = f
		got, err := check.CombinedOutput()
		f.Close()
		if err != nil || len(got) > 0 {
			t.Errorf("promtool check metrics %s: %v\n%s", path, err, got)
		}
	}

	scraped := parseExposition(t, "/metrics", scrape(t, startNodeExporter(t, dir)))
	if got := gaugeValue(scraped, "node_textfile_scrape_error"); got != "0" {
		t.Errorf("node_textfile_scrape_error %s, want 0", got)
	}
	all := samples(scraped)
	for label, path := range files {
		if _, ok := all[fmt.Sprintf("node_textfile_mtime_seconds{file=%q}", path)]; !ok {
			t.Errorf("node_exporter read no %s", path)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		written := parseExposition(t, path, string(b))
		// Every sample of the file, served as written, with its HELP.
		var wrong []string
		ws := samples(written)
		for key, v := range ws {
			if got, ok := all[key]; !ok || got != v {
				wrong = append(wrong, fmt.Sprintf("%s %s served as %q", key, v, got))
			}
		}
		if len(wrong) > 0 {
			sort.Strings(wrong)
			t.Errorf("%s: %d of the file's %d samples not served as written, e.g.\n%s", label, len(wrong), len(ws), strings.Join(wrong[:min(len(wrong), 5)], "\n"))
		}
		for name, f := range written {
			if s := scraped[name]; s == nil || s.GetHelp() != f.GetHelp() {
				t.Errorf("%s: HELP of %s served as %q, written as %q", label, name, s.GetHelp(), f.GetHelp())
			}
		}
		// And what the run did, from node_exporter's side.
		if got := all[fmt.Sprintf("cowtrace_trace_exit_code{kernel=%q,label=%q}", kernelRelease(t), label)]; got != fmt.Sprint(status) {
			t.Errorf("%s: cowtrace_trace_exit_code %q, want %d", label, got, status)
		}
		checkTreeWPFaults(t, label, scraped["cowtrace_wp_faults"], children)
	}
}

// checkTreeWPFaults: child k of cow_tree takes k write-protect faults on
// the pages it shares, on top of a baseline that is the same for every
// child. Children are forked in order, so their pids rise with k.
func checkTreeWPFaults(t *testing.T, label string, f *dto.MetricFamily, children int) {
	t.Helper()
	if f == nil {
		t.Errorf("%s: no cowtrace_wp_faults served", label)
		return
	}
	type row struct {
		pid int
		wp  float64
	}
	var rows []row
	for _, m := range f.Metric {
		ls := labelMap(m)
		if ls["label"] != label || ls["role"] != "child" || ls["command"] != "cow_tree" {
			continue
		}
		var pid int
		fmt.Sscan(ls["pid"], &pid)
		rows = append(rows, row{pid, m.GetGauge().GetValue()})
	}
	if len(rows) != children {
		t.Errorf("%s: %d children served, want %d", label, len(rows), children)
		return
	}
	sort.Slice(rows, func(a, b int) bool { return rows[a].pid < rows[b].pid })
	base := rows[0].wp - 1
	for k, r := range rows {
		if r.wp-float64(k+1) != base {
			t.Errorf("%s: child %d (pid %d) %v wp faults, want %d pages + the baseline %v", label, k+1, r.pid, r.wp, k+1, base)
		}
	}
}

// startNodeExporter starts prometheus-node-exporter with its textfile
// collector alone, reading dir, on a free loopback port, and returns its
// /metrics URL. It is stopped and waited for when the test ends, and dies
// with the test binary (Pdeathsig) should that be killed first.
func startNodeExporter(t *testing.T, dir string) string {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), "node-exporter.log")
	// The free port is found by binding it and letting it go: another
	// process may take it in between, and then the exporter exits at once
	// and is started again on another.
	for attempt := 0; ; attempt++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		logf, err := os.Create(logPath)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("prometheus-node-exporter", "--collector.disable-defaults", "--collector.textfile",
			"--collector.textfile.directory="+dir, "--web.listen-address="+addr)
		cmd.Stdout, cmd.Stderr = logf, logf
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			logf.Close()
			t.Fatal(err)
		}
		logf.Close()
		exited := make(chan struct{})
		go func() {
			cmd.Wait()
			close(exited)
		}()
		t.Cleanup(func() {
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(10 * time.Second):
				cmd.Process.Kill()
				<-exited
			}
			if t.Failed() {
				b, _ := os.ReadFile(logPath)
				t.Logf("prometheus-node-exporter's log:\n%s", b)
			}
		})
		url := "http://" + addr + "/metrics"
		if waitListening(addr, exited) {
			return url
		}
		if attempt == 2 {
			b, _ := os.ReadFile(logPath)
			t.Fatalf("prometheus-node-exporter did not serve %s:\n%s", url, b)
		}
	}
}

// waitListening waits up to 15 s for addr to accept connections, and says
// whether it did before the process behind it exited.
func waitListening(addr string, exited <-chan struct{}) bool {
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return false
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// scrape GETs url as Prometheus would, in the text format.
func scrape(t *testing.T, url string) string {
	t.Helper()
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: nil}}
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", string(expfmt.FmtText))
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s, %v\n%s", url, resp.Status, err, body)
	}
	return string(body)
}

// parseExposition reads text in Prometheus' text format, as node_exporter
// reads its textfiles and Prometheus a scrape.
func parseExposition(t *testing.T, what, text string) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("%s: %v\n%s", what, err, text)
	}
	return fams
}

func labelMap(m *dto.Metric) map[string]string {
	ls := map[string]string{}
	for _, l := range m.Label {
		// An empty value is no label (node_exporter adds them to fill out a family's label names).
		if l.GetValue() != "" {
			ls[l.GetName()] = l.GetValue()
		}
	}
	return ls
}

// samples are the gauges of fams by name{label="value",...}, labels in
// name order, values as Go formats them.
func samples(fams map[string]*dto.MetricFamily) map[string]string {
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
			key := name
			if len(parts) > 0 {
				key += "{" + strings.Join(parts, ",") + "}"
			}
			out[key] = fmt.Sprint(m.GetGauge().GetValue())
		}
	}
	return out
}

// gaugeValue is the value of the family's one unlabelled gauge, "" if none.
func gaugeValue(fams map[string]*dto.MetricFamily, name string) string {
	if fams[name] == nil {
		return ""
	}
	return samples(map[string]*dto.MetricFamily{name: fams[name]})[name]
}

func kernelRelease(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}
