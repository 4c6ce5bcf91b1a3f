// Command ringprobe measures what `cowtrace run` costs the machine it runs
// on, by the number of CPUs: the memory it takes (MemAvailable before, and
// at its lowest while `cowtrace run -- sh -c 'sleep 3'` runs), its open
// descriptors meanwhile, and the wall time of `cowtrace run -- true`. It
// runs in the vmtest guests booted with many vCPUs (go run ./vmtest -rings),
// and prints one JSON object per cowtrace binary; on a host it measures the
// host.
//
// Usage: ringprobe [-startups N] [-console] LABEL=PATH...
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cowtrace/cowtrace/vmtest/internal/guest"
)

// Result is what ringprobe prints for one cowtrace binary.
type Result = guest.RingResult

func main() {
	startups := flag.Int("startups", 5, "timed runs of `cowtrace run -- true`, of each binary in turn")
	flag.Parse()
	var rs []*Result
	bins := map[*Result]string{}
	for _, arg := range flag.Args() {
		label, path, ok := strings.Cut(arg, "=")
		if !ok {
			fmt.Fprintf(os.Stderr, "ringprobe: %q is not LABEL=PATH\n", arg)
			os.Exit(2)
		}
		r := &Result{Label: label, CPUs: runtime.NumCPU()}
		rs, bins[r] = append(rs, r), path
	}
	for _, r := range rs {
		if err := traceSleep(r, bins[r]); err != nil {
			r.Err = err.Error()
		}
	}
	// Interleaved, so that a change of the host's load under TCG hits
	// every binary alike.
	for range *startups {
		for _, r := range rs {
			if r.Err == "" {
				startup(r, bins[r])
			}
		}
	}
	for _, r := range rs {
		b, _ := json.Marshal(r)
		fmt.Println(string(b))
	}
}

// startup times one `cowtrace run -- true`.
func startup(r *Result, bin string) {
	settle()
	t0 := time.Now()
	out, err := exec.Command(bin, "run", "--format", "csv", "--", "true").CombinedOutput()
	if err != nil {
		r.Err = fmt.Sprintf("cowtrace run -- true: %v: %s", err, lastLine(string(out)))
		return
	}
	r.StartupMs = append(r.StartupMs, float64(time.Since(t0).Microseconds())/1000)
	progress("%s: cowtrace run -- true in %.0f ms", r.Label, r.StartupMs[len(r.StartupMs)-1])
}

// traceSleep runs `cowtrace run -- sh -c 'sleep 3'` and samples the memory
// and descriptors while sleep runs, when every event is open.
func traceSleep(r *Result, bin string) error {
	hasO := acceptsO(bin)
	settle()
	before, err := memAvailable()
	if err != nil {
		return err
	}
	out := filepath.Join(os.TempDir(), "ringprobe.json")
	cmd := exec.Command(bin, "run", "--format", "json", "-o", out, "--", "sh", "-c", "sleep 3")
	if !hasO {
		cmd = exec.Command(bin, "run", "--format", "json", "--", "sh", "-c", "sleep 3")
		f, err := os.Create(out)
		if err != nil {
			return err
		}
		defer f.Close()
		cmd.Stdout = f
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	low, seen := watchSleep(r, cmd.Process.Pid, before)
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("cowtrace run -- sh -c 'sleep 3': %v: %s", err, lastLine(stderr.String()))
	}
	if seen == 0 {
		return fmt.Errorf("never saw sleep running under cowtrace")
	}
	r.MemUsedKB = before - low
	progress("%s: traced sh -c 'sleep 3': %d kB, %d fds", r.Label, r.MemUsedKB, r.FDs)
	return readReport(r, out)
}

// acceptsO says whether bin's run takes -o. Binaries from before -o
// existed write the report to stdout: it goes to the same file, as
// cowtrace's stdout (a file, as /dev/null is with -o, so that os/exec adds
// no pipe in cowtrace).
func acceptsO(bin string) bool {
	help, _ := exec.Command(bin, "run", "-h").CombinedOutput()
	return strings.Contains(string(help), "\n  -o ")
}

// watchSleep samples MemAvailable and cowtrace's (pid's) descriptors ten
// times while sleep runs under it, and returns the lowest MemAvailable
// (before, if none was lower) and how many samples it took.
func watchSleep(r *Result, pid int, before int64) (low int64, seen int) {
	low = before
	deadline := time.Now().Add(5 * time.Minute)
	for seen < 10 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		if !sleeping(pid) {
			if seen > 0 {
				break
			}
			continue
		}
		seen++
		if m, err := memAvailable(); err == nil {
			low = min(low, m)
		}
		all, perf := fds(pid)
		r.FDs, r.PerfFDs = max(r.FDs, all), max(r.PerfFDs, perf)
	}
	return low, seen
}

// readReport takes the lost records and the notes of cowtrace's report.
func readReport(r *Result, out string) error {
	b, err := os.ReadFile(out)
	if err != nil {
		return err
	}
	var rep struct {
		Lost  int64    `json:"lost_records"`
		Notes []string `json:"notes"`
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		return err
	}
	r.Lost, r.Notes = rep.Lost, rep.Notes
	return nil
}

// settle waits until no cowtrace-closer (the process that releases the
// events of an exited cowtrace) is left, and a moment more, so that each
// measurement starts on a kernel at rest.
func settle() {
	t0 := time.Now()
	for time.Since(t0) < 5*time.Minute && len(procsNamed("cowtrace-closer")) > 0 {
		time.Sleep(100 * time.Millisecond)
	}
	progress("settled in %v", time.Since(t0).Round(time.Millisecond))
	time.Sleep(500 * time.Millisecond)
}

// toConsole sends progress to /dev/console: in a guest, vmtest -v shows
// it as it happens, where stderr is only seen at the end.
var toConsole = flag.Bool("console", false, "progress to /dev/console rather than stderr")

func progress(format string, args ...any) {
	w := os.Stderr
	if *toConsole {
		if f, err := os.OpenFile("/dev/console", os.O_WRONLY, 0); err == nil {
			defer f.Close()
			w = f
		}
	}
	fmt.Fprintf(w, "ringprobe: "+format+"\n", args...)
}

// sleeping says whether a descendant of pid named sh or sleep runs: the
// command has exec'd, so every event is open. (busybox's sh may run sleep
// in its own process.)
func sleeping(pid int) bool {
	for _, p := range append(procsNamed("sh"), procsNamed("sleep")...) {
		for q, n := p, 0; q > 1 && n < 64; n++ {
			if q = ppid(q); q == pid {
				return true
			}
		}
	}
	return false
}

// procsNamed lists the live processes named comm. Zombies are left out:
// they hold nothing any more, and the guest's init, which inherits the
// closers of exited cowtraces, never reaps them.
func procsNamed(comm string) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		name, state := stat(pid)
		if name == comm && state != "Z" {
			pids = append(pids, pid)
		}
	}
	return pids
}

// stat returns a process's name and state from /proc/PID/stat.
func stat(pid int) (comm, state string) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", ""
	}
	s := string(b)
	open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || closing < open {
		return "", ""
	}
	f := strings.Fields(s[closing+1:])
	if len(f) == 0 {
		return "", ""
	}
	return s[open+1 : closing], f[0]
}

func ppid(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 2 {
		return 0
	}
	n, _ := strconv.Atoi(f[1])
	return n
}

func fds(pid int) (all, perf int) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		all++
		if l, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && strings.Contains(l, "perf_event") {
			perf++
		}
	}
	return all, perf
}

func memAvailable() (int64, error) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "MemAvailable:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("no MemAvailable in /proc/meminfo")
}

func lastLine(s string) string {
	lines := slices.DeleteFunc(strings.Split(s, "\n"), func(l string) bool { return strings.TrimSpace(l) == "" })
	if len(lines) == 0 {
		return ""
	}
	return lines[len(lines)-1]
}
