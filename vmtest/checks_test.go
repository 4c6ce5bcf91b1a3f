package main

import (
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/cowtrace/cowtrace/internal/cow"
	"github.com/cowtrace/cowtrace/vmtest/internal/guest"
)

// fakeReport builds a `cowtrace --format json` document in the shape of the
// contract, for a writer that copied n blocks.
func fakeReport(method string, blocks, n int64, touched bool) string {
	i64 := func(v int64) *int64 { return &v }
	wp := n
	procs := []map[string]any{
		{"role": "parent", "pid": 1, "wp_faults": 13, "copies": i64(13), "inferred_copies": i64(13),
			"in_region": map[string]int64{"wp": 0}, "probes": map[string]int64{"do_wp_page": 13}},
		{"role": "reader", "pid": 2, "wp_faults": 0, "copies": i64(0), "inferred_copies": i64(0),
			"in_region": map[string]int64{"wp": 0}, "probes": map[string]int64{"do_wp_page": 0}},
		{"role": "writer", "pid": 3, "wp_faults": wp, "copies": i64(n), "inferred_copies": i64(n),
			"in_region": map[string]int64{"wp": wp}, "probes": map[string]int64{"do_wp_page": wp, "copy_mc_to_kernel": n}},
	}
	doc := map[string]any{
		"schema_version": 1, "kernel": "6.1.0-56-amd64", "blocks": blocks, "touched": touched,
		"copy_routine": "copy_mc_to_kernel", "kprobe_method": method,
		"methods":   map[string]string{"copies": "kprobe:copy_mc_to_kernel"},
		"processes": procs,
	}
	b, _ := json.Marshal(doc)
	return string(b)
}

func fakeGuest() *guestRun {
	var m guest.Manifest
	var results []*guest.Result
	add := func(name, stdout string, mod func(*guest.Result)) {
		m.Commands = append(m.Commands, guest.Command{Name: name, InspectTracefs: !strings.HasSuffix(name, ".test")})
		r := &guest.Result{Name: name, Stdout: stdout, Tracefs: &guest.TracefsState{}}
		if mod != nil {
			mod(r)
		}
		results = append(results, r)
	}
	add("touched", fakeReport("pmu", 1000, 1000, true), nil)
	add("no-touch", fakeReport("pmu", 1000, 0, false), nil)
	add("blocks-5000", fakeReport("pmu", 5000, 5000, true), nil)
	add("tracefs", fakeReport("tracefs", 1000, 1000, true), nil)
	for _, s := range []string{"sigint", "sigterm"} {
		add(s, "", func(r *guest.Result) { r.WaitLineSeen, r.SignalSent, r.ExitCode = true, "interrupt", 130 })
	}
	add("perfevents.test", "--- PASS: TestX (0.00s)\nPASS\n", nil)
	b := &bootResult{
		Info:    &guest.Info{Release: "6.1.0-56-amd64", KprobePMUType: 6, KprobeEvents: true, THP: true, Lockdown: "none"},
		Results: results, Done: true, Sent: len(results),
	}
	return newGuestRun(b, m)
}

// The commands of the experiment, and those of runchecks.go ("" stands for
// the checks of no command).
var (
	experimentCmds = []string{"", "touched", "no-touch", "blocks-5000", "tracefs", "sigint", "sigterm"}
	followCmds     = []string{"run-seed", "run-tree-tracefs", "matrix", "count"}
)

// checksOn are the checks for e of the commands cmds.
func checksOn(e expectation, cmds []string) []check {
	var out []check
	for _, c := range checksFor(checks, e) {
		if slices.Contains(cmds, c.Cmd) {
			out = append(out, c)
		}
	}
	return out
}

func allChecks() []check {
	return append(checksOn(kprobes, experimentCmds), testBinaryCheck("perfevents.test"))
}

func TestChecksPassOnGoodGuest(t *testing.T) {
	for _, r := range runChecks(fakeGuest(), allChecks(), nil) {
		if r.Err != "" || r.Skipped != "" {
			t.Errorf("%s: err %q, skipped %q", r.Name, r.Err, r.Skipped)
		}
	}
}

func TestChecksCatchFailures(t *testing.T) {
	for _, tc := range []struct {
		check string // the check that must fail
		want  string // in its error
		spoil func(g *guestRun)
	}{
		{"touched: writer copies == blocks", "writer copies = 999", func(g *guestRun) {
			g.results["touched"].Stdout = fakeReport("pmu", 1000, 999, true)
		}},
		{"touched: copies by the kernel's best method", "copy_routine is empty", func(g *guestRun) {
			g.results["touched"].Stdout = strings.Replace(g.results["touched"].Stdout, `"copy_routine":"copy_mc_to_kernel"`, `"copy_routine":""`, 1)
		}},
		{"touched: parent copies present", "parent copies is null", func(g *guestRun) {
			g.results["touched"].Stdout = strings.Replace(g.results["touched"].Stdout, `"copies":13`, `"copies":null`, 1)
		}},
		{"touched: inferred copies == copies", "writer: copies 1000, inferred_copies 7", func(g *guestRun) {
			g.results["touched"].Stdout = strings.Replace(g.results["touched"].Stdout, `"inferred_copies":1000`, `"inferred_copies":7`, 1)
		}},
		{"touched: writer copies == blocks", "exit 2", func(g *guestRun) {
			g.results["touched"].ExitCode = 2
		}},
		{"tracefs kprobes agree with the PMU", "writer copies: tracefs 10, pmu 1000", func(g *guestRun) {
			g.results["tracefs"].Stdout = fakeReport("tracefs", 1000, 10, true)
		}},
		{"tracefs kprobes agree with the PMU", "kprobe_events not empty", func(g *guestRun) {
			g.results["tracefs"].Tracefs.KprobeEvents = "p:kprobes/cowtrace_1 copy_mc_to_kernel\n"
		}},
		{"SIGINT mid-run exits clean, no kprobe left", "killed by interrupt", func(g *guestRun) {
			g.results["sigint"].Signaled = "interrupt"
		}},
		{"SIGTERM mid-run exits clean, no kprobe left", "Go panic", func(g *guestRun) {
			g.results["sigterm"].Stderr = "panic: close of closed channel\n\ngoroutine 1 [running]:\n"
		}},
		{"SIGTERM mid-run exits clean, no kprobe left", "never printed", func(g *guestRun) {
			g.results["sigterm"].WaitLineSeen = false
		}},
		{"no run leaves kprobes or tracefs mounts", "tracefs left mounted on /sys/kernel/tracing", func(g *guestRun) {
			g.results["no-touch"].Tracefs.StillMounted = []string{"/sys/kernel/tracing"}
		}},
		{"guest finished and sent every result", "no done marker", func(g *guestRun) {
			g.Boot.Done = false
		}},
		{"kernel offers what vmtest expects of it", "no /sys/bus/event_source/devices/kprobe/type", func(g *guestRun) {
			g.Boot.Info.KprobePMUType = -1
		}},
		{"kernel offers what vmtest expects of it", `lockdown "integrity", want "none"`, func(g *guestRun) {
			g.Boot.Info.Lockdown = "integrity"
		}},
		{"kernel offers what vmtest expects of it", "transparent huge pages: false, want true", func(g *guestRun) {
			g.Boot.Info.THP = false
		}},
		{"test binary perfevents.test", "exit 1", func(g *guestRun) {
			g.results["perfevents.test"].ExitCode = 1
		}},
	} {
		t.Run(tc.want, func(t *testing.T) {
			g := fakeGuest()
			tc.spoil(g)
			wantFails(t, g, allChecks(), tc.check, tc.want)
		})
	}
}

// wantFails: of checks run on g, the one named name fails, saying want.
func wantFails(t *testing.T, g *guestRun, checks []check, name, want string) {
	t.Helper()
	for _, r := range runChecks(g, checks, nil) {
		if r.Name == name {
			if !strings.Contains(r.Err, want) {
				t.Errorf("%s: err %q, want it to contain %q", r.Name, r.Err, want)
			}
			return
		}
	}
	t.Errorf("no check named %q", name)
}

func TestChecksSkipWithoutCowtrace(t *testing.T) {
	g := fakeGuest()
	g.Manifest.Commands = nil
	for _, r := range runChecks(g, checks, nil) {
		if r.Cmd != "" && r.Skipped == "" {
			t.Errorf("%s ran without its command", r.Name)
		}
	}
}

func TestChecksSkipFlag(t *testing.T) {
	g := fakeGuest()
	g.results["touched"].Stdout = fakeReport("pmu", 1000, 999, true)
	for _, r := range runChecks(g, allChecks(), regexp.MustCompile(`^touched: `)) {
		if strings.HasPrefix(r.Name, "touched: ") && (r.Skipped == "" || r.failed()) {
			t.Errorf("%s: not skipped (%+v)", r.Name, r)
		}
	}
}

func TestShellJoin(t *testing.T) {
	got := shellJoin([]string{"go", "run", "./vmtest", "-kernels", "", "-skip", "^touched: (x|y)", "it's"})
	want := `go run ./vmtest -kernels '' -skip '^touched: (x|y)' 'it'\''s'`
	if got != want {
		t.Errorf("shellJoin = %s, want %s", got, want)
	}
}

// fakeCountersReport is a touched-like report of a kernel that permits
// the software events only: page faults, and faults in the region by
// address.
func fakeCountersReport(blocks, writer, reader int64) string {
	procs := []map[string]any{
		{"role": "parent", "pid": 1, "page_faults": 23, "copies": nil, "inferred_copies": nil,
			"in_region": map[string]int64{}, "outside": map[string]int64{"unclassified": 23}},
		{"role": "reader", "pid": 2, "page_faults": reader, "copies": nil, "inferred_copies": nil,
			"in_region": map[string]int64{"unclassified": reader}},
		{"role": "writer", "pid": 3, "page_faults": writer, "copies": nil, "inferred_copies": nil,
			"in_region": map[string]int64{"unclassified": writer}},
	}
	doc := map[string]any{
		"schema_version": 1, "kernel": "6.1.0-57-amd64", "blocks": blocks, "kprobe_method": "pmu",
		"methods": map[string]string{"page_faults": "counter:page-faults", "in_region": cow.FaultAddrMethod, "outside": cow.FaultAddrMethod},
		"unavailable": []map[string]string{
			{"what": "tracepoint:exceptions:page_fault_user", "why": "tracefs is empty: kernel lockdown (confidentiality)"},
			{"what": "copy routine", "why": "every candidate refused: kernel lockdown (confidentiality)"},
		},
		"processes": procs,
	}
	b, _ := json.Marshal(doc)
	return string(b)
}

var lockdown = expectation{Copies: methodNone, Faults: faultsAddress, THP: true, Lockdown: "confidentiality"}

func fakeLockdownGuest() *guestRun {
	var m guest.Manifest
	var results []*guest.Result
	add := func(name, stdout string, mod func(*guest.Result)) {
		m.Commands = append(m.Commands, guest.Command{Name: name, InspectTracefs: true})
		r := &guest.Result{Name: name, Stdout: stdout, Tracefs: &guest.TracefsState{Err: "open /vmtest-tracefs/kprobe_events: no such file or directory"}}
		if mod != nil {
			mod(r)
		}
		results = append(results, r)
	}
	add("touched", fakeCountersReport(1000, 1000, 0), nil)
	add("no-touch", fakeCountersReport(1000, 1000, 1000), nil)
	add("blocks-5000", fakeCountersReport(5000, 5000, 0), nil)
	add("tracefs", "", func(r *guest.Result) {
		r.ExitCode, r.Stderr = 1, "cowtrace: --kprobe-method tracefs: kernel lockdown (confidentiality) hides kprobe_events\n"
	})
	g := newGuestRun(&bootResult{
		Info:    &guest.Info{Release: "6.1.0-57-amd64", KprobePMUType: 6, THP: true, Lockdown: "confidentiality", TracefsErr: "open: no such file"},
		Results: results, Done: true, Sent: len(results),
	}, m)
	g.Expect = lockdown
	return g
}

func TestChecksFor(t *testing.T) {
	for _, c := range checksFor(checks, lockdown) {
		if c.For == nil {
			continue
		}
		if strings.Contains(c.Name, "kprobe") && !strings.Contains(c.Name, "lockdown") || strings.Contains(c.Name, "copies ==") {
			t.Errorf("lockdown boot gets %q", c.Name)
		}
	}
	for _, c := range checksFor(checks, kprobes) {
		if c.For != nil && (c.For(lockdown) && !c.For(kprobes)) {
			t.Errorf("kprobe kernel gets %q", c.Name)
		}
	}
}

func TestCountersOnlyChecks(t *testing.T) {
	checks := checksOn(lockdown, experimentCmds)
	for _, r := range runChecks(fakeLockdownGuest(), checks, nil) {
		if r.Err != "" || r.Skipped != "" {
			t.Errorf("%s: err %q, skipped %q", r.Name, r.Err, r.Skipped)
		}
	}
	for _, tc := range []struct {
		check, want string
		spoil       func(g *guestRun)
	}{
		{"touched: software events only; copies and wp faults not measured", `methods.copies = "kprobe:x"`, func(g *guestRun) {
			g.results["touched"].Stdout = strings.Replace(g.results["touched"].Stdout, `"methods":{`, `"methods":{"copies":"kprobe:x",`, 1)
		}},
		{"touched: writer faults once per block in the region, reader never", "writer in_region.unclassified = 999", func(g *guestRun) {
			g.results["touched"].Stdout = fakeCountersReport(1000, 999, 0)
		}},
		{"no-touch: writer and reader fault once per block in the region", "reader in_region.unclassified = 0, want 1000", func(g *guestRun) {
			g.results["no-touch"].Stdout = fakeCountersReport(1000, 1000, 0)
		}},
		{"tracefs route refused in one line, nothing left", "exit 0, want exit 1", func(g *guestRun) {
			g.results["tracefs"].ExitCode = 0
		}},
		{"unavailable names the lockdown for kprobes and tracepoints", `does not name the lockdown`, func(g *guestRun) {
			g.results["touched"].Stdout = strings.Replace(g.results["touched"].Stdout, "tracefs is empty: kernel lockdown (confidentiality)", "not found (x86 only)", 1)
		}},
		{"no run leaves kprobes or tracefs mounts", "left mounted", func(g *guestRun) {
			g.results["touched"].Tracefs.StillMounted = []string{"/sys/kernel/tracing"}
		}},
		{"kernel offers what vmtest expects of it", `lockdown "none", want "confidentiality"`, func(g *guestRun) {
			g.Boot.Info.Lockdown = "none"
		}},
	} {
		g := fakeLockdownGuest()
		tc.spoil(g)
		wantFails(t, g, checks, tc.check, tc.want)
	}
}

// TestChecksByBoot: on every boot of the matrix each check is there once,
// the commands its checks read are exactly the commands it runs, the
// matrix and count mode have one check each, and every check is for some
// boot.
func TestChecksByBoot(t *testing.T) {
	used := map[string]bool{}
	for _, sp := range specs {
		runs := map[string]bool{}
		for _, c := range cowtraceCommands {
			if c.For == nil || c.For(sp.Expect) {
				runs[c.Name] = true
			}
		}
		names := map[string]bool{}
		read := map[string]int{}
		for _, c := range checksFor(checks, sp.Expect) {
			used[c.Name] = true
			if names[c.Name] {
				t.Errorf("%s: check %q twice", sp.Name, c.Name)
			}
			names[c.Name] = true
			if c.Cmd != "" {
				read[c.Cmd]++
			}
		}
		for cmd := range runs {
			if read[cmd] == 0 {
				t.Errorf("%s runs %s, which no check of it reads", sp.Name, cmd)
			}
		}
		for cmd := range read {
			if !runs[cmd] {
				t.Errorf("%s has checks of %s, which it does not run", sp.Name, cmd)
			}
		}
		if read["matrix"] != 1 || read["count"] != 1 {
			t.Errorf("%s: %d matrix and %d count checks, want 1 each", sp.Name, read["matrix"], read["count"])
		}
	}
	for _, c := range checks {
		if !used[c.Name] {
			t.Errorf("check %q is for no boot", c.Name)
		}
	}
}
