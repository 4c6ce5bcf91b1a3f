package main

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cowtrace/cowtrace/internal/cow"
	"github.com/cowtrace/cowtrace/vmtest/internal/guest"
)

func TestSkipTests(t *testing.T) {
	units := []unit{
		{Base: "perfevents.test", Part: 1, Parts: 1, Cmd: testCmd("perfevents.test")},
		// A split part that skips tests of its own already: one -test.skip,
		// both patterns.
		{Base: "cmd_cowtrace.test", Part: 3, Parts: 3, Cmd: testCmd("cmd_cowtrace.test", "-test.skip", "^(TestA)$")},
		{Base: "report.test", Part: 1, Parts: 1, Cmd: testCmd("report.test")},
	}
	notes := skipTests(units, testsNeedingFaultClasses)
	if len(notes) != 1 {
		t.Errorf("notes %q: want one, for perfevents.test (the cmd part is not its first)", notes)
	}
	if a := units[0].Cmd.Argv; a[len(a)-2] != "-test.skip" || !strings.Contains(a[len(a)-1], "TestOpenTracefsPrivate") {
		t.Errorf("perfevents argv %q", a)
	}
	a := units[1].Cmd.Argv
	if n := strings.Count(strings.Join(a, " "), "-test.skip"); n != 1 {
		t.Errorf("cmd argv %q has %d -test.skip", a, n)
	}
	if i := slices.Index(a, "-test.skip"); !strings.HasPrefix(a[i+1], "^(TestA)$|") || !strings.Contains(a[i+1], "TestConcurrentRuns") {
		t.Errorf("cmd argv %q: want its own skip, then the classless boot's", a)
	}
	if a := units[2].Cmd.Argv; slices.Contains(a, "-test.skip") {
		t.Errorf("report argv %q: nothing to skip", a)
	}
}

func TestClassExpectations(t *testing.T) {
	for expect, class := range map[string]bool{
		"writer.in_region.wp == blocks":                true,
		"reader.in_region.read == 0":                   true,
		"writer.in_region.write_not_present == blocks": true,
		"parent.in_region.inferred_copies == 0":        false,
		"writer.copies == blocks":                      false,
		"reader.wp_faults == 0":                        false,
		"writer.in_region.wp_extra == 1":               false,
	} {
		if got := classRE.MatchString(expect); got != class {
			t.Errorf("%q: class %v, want %v", expect, got, class)
		}
	}
}

func testCmd(name string, extra ...string) guest.Command {
	return guest.Command{Name: name, Argv: append([]string{"/tests/" + name}, extra...)}
}

func TestReadmeNotes(t *testing.T) {
	rep := func(copies, writer, reader string) string {
		return `{"schema_version":1,"blocks":1000,"methods":{"copies":"` + copies + `","in_region":"` + cow.FaultAddrMethod + `","wp_faults":"kprobe:do_wp_page"},` +
			`"processes":[{"role":"writer","wp_faults":1000,"copies":` + writer + `,"in_region":{"unclassified":1000}},{"role":"reader","copies":` + reader + `,"in_region":{}}]}`
	}
	res := []*guest.Result{
		{Name: "touched", Stdout: rep("kprobe:copy_user_highpage", "1000", "0")},
		{Name: "generic", Stdout: rep("callchain:x", "1000", "0")},
	}
	shard := &guestShard{Index: 1, Of: 1, Boot: &bootResult{Results: res, Elapsed: 42 * time.Second, Done: true, Sent: 2}}
	g := newShardedRun(guest.Manifest{}, []*guestShard{shard})
	sp, _ := lookupSpec("6.1-arm64")
	r := &kernelRun{Kernel: kernel{Label: sp.Name, Target: targets["arm64"], Expect: sp.Expect}, Guest: g, Skipped: []string{"scenario.test skips X: why"}}
	notes := readmeNotes([]*kernelRun{r}, 90*time.Second, 2)
	for _, want := range []string{
		"whole run 1m30s",
		"- 6.1-arm64 (arm64): 1 guests, 42 s, 42 s in all",
		"- kprobes (`kprobe:copy_user_highpage`): writer 1000 copies, 1000 faults in the region, wp_faults 1000; reader 0 copies",
		"- no kprobes (`callchain:x`): writer 1000 copies",
		"- `--no-touch`, kprobes: " + errNoResult.Error(),
		"- scenario.test skips X: why",
	} {
		if !strings.Contains(notes, want) {
			t.Errorf("notes lack %q:\n%s", want, notes)
		}
	}
}

// fakeClasslessReport is a report of a kernel with kprobes whose faults
// have no class, as arm64's: copies by copy_user_highpage's hits (by
// allocation stacks with kprobes refused), faults in the region
// unclassified, write-protect faults do_wp_page's hits.
func fakeClasslessReport(kprobes bool, blocks, writer, reader int64) string {
	i64 := func(v int64) *int64 { return &v }
	methods := map[string]string{"copies": "kprobe:copy_user_highpage", "in_region": cow.FaultAddrMethod,
		"wp_faults": "kprobe:do_wp_page", "inferred_copies": "callchain:x"}
	routine, method := "copy_user_highpage", "pmu"
	if !kprobes {
		methods = map[string]string{"copies": "callchain:x", "in_region": cow.FaultAddrMethod, "inferred_copies": "callchain:x"}
		routine, method = "", ""
	}
	proc := func(role string, pid int, copies, inRegion int64) map[string]any {
		p := map[string]any{"role": role, "pid": pid, "copies": i64(copies), "inferred_copies": i64(copies),
			"in_region": map[string]int64{"unclassified": inRegion}}
		if kprobes {
			p["wp_faults"] = copies
			p["probes"] = map[string]int64{"do_wp_page": copies, "copy_user_highpage": copies}
		}
		return p
	}
	doc := map[string]any{
		"schema_version": 1, "kernel": "6.1.0-57-arm64", "blocks": blocks, "copy_routine": routine, "kprobe_method": method,
		"methods":     methods,
		"unavailable": []map[string]string{{"what": "tracepoint:exceptions:page_fault_user", "why": "not found (x86 only)"}},
		"processes":   []map[string]any{proc("parent", 1, 9, 0), proc("reader", 2, 0, reader), proc("writer", 3, writer, blocks)},
	}
	b, _ := json.Marshal(doc)
	return string(b)
}

// fakeClasslessMatrix is a matrix of 11 scenarios run with kprobe copies,
// all held; vfork's writer.in_region.wp reads 0, as a class does where
// faults have none.
func fakeClasslessMatrix() string {
	var scenarios []map[string]any
	for _, name := range []string{"touched", "untouched", "zero-page", "thp", "vfork", "clone-vm", "wipeonfork", "after-exit", "many-writers", "parent-writes", "swap"} {
		s := map[string]any{"name": name, "outcome": "x", "held": true,
			"run":          map[string]any{"schema_version": 1, "methods": map[string]string{"copies": "kprobe:copy_user_highpage"}},
			"expectations": []map[string]any{{"expect": "writer.copies == blocks", "held": true}}}
		if name == "vfork" {
			s["held"] = false
			s["expectations"] = []map[string]any{{"expect": "writer.in_region.wp == blocks", "held": false, "detail": "writer.in_region.wp = 0"}}
		}
		scenarios = append(scenarios, s)
	}
	b, _ := json.Marshal(map[string]any{"schema_version": 1, "kernel": "6.1.0-57-arm64", "scenarios": scenarios})
	return string(b)
}

func fakeClasslessGuest(t *testing.T) *guestRun {
	sp, ok := lookupSpec("6.1-arm64")
	if !ok {
		t.Fatal("no 6.1-arm64")
	}
	var m guest.Manifest
	var results []*guest.Result
	for name, stdout := range map[string]string{
		"touched":          fakeClasslessReport(true, 1000, 1000, 0),
		"no-touch":         fakeClasslessReport(true, 1000, 0, 1000),
		"blocks-5000":      fakeClasslessReport(true, 5000, 5000, 0),
		"generic":          fakeClasslessReport(false, 1000, 1000, 0),
		"generic-no-touch": fakeClasslessReport(false, 1000, 0, 1000),
		"count":            fakeClasslessReport(true, 1000, 1000, 0),
		"matrix":           fakeClasslessMatrix(),
	} {
		m.Commands = append(m.Commands, guest.Command{Name: name})
		results = append(results, &guest.Result{Name: name, Stdout: stdout})
	}
	g := newGuestRun(&bootResult{Info: &guest.Info{Release: "6.1.0-57-arm64", KprobePMUType: 6, KprobeEvents: true, THP: true},
		Results: results, Done: true, Sent: len(results)}, m)
	g.Expect = sp.Expect
	return g
}

// TestClasslessChecks: the checks of a boot whose faults have no class
// pass on its reports, and fail when what they read is off.
func TestClasslessChecks(t *testing.T) {
	sp, _ := lookupSpec("6.1-arm64")
	cmds := []string{"touched", "no-touch", "blocks-5000", "generic", "generic-no-touch", "count", "matrix"}
	checks := checksOn(sp.Expect, cmds)
	for _, r := range runChecks(fakeClasslessGuest(t), checks, nil) {
		if r.Err != "" || r.Skipped != "" {
			t.Errorf("%s: err %q, skipped %q", r.Name, r.Err, r.Skipped)
		}
	}
	for _, tc := range []struct {
		check, want string
		spoil       func(g *guestRun)
	}{
		{"touched: faults by address: writer in-region == blocks, reader 0", "reader in-region faults = 3", func(g *guestRun) {
			g.results["touched"].Stdout = fakeClasslessReport(true, 1000, 1000, 3)
		}},
		{"touched: faults by address: writer in-region == blocks, reader 0", "methods.in_region", func(g *guestRun) {
			g.results["touched"].Stdout = strings.Replace(g.results["touched"].Stdout, cow.FaultAddrMethod, "tracepoint:x", 1)
		}},
		{"touched: writer wp_faults (do_wp_page) == blocks", "methods.wp_faults", func(g *guestRun) {
			g.results["touched"].Stdout = strings.Replace(g.results["touched"].Stdout, `"wp_faults":"kprobe:do_wp_page"`, `"wp_faults":"tracepoint:x"`, 1)
		}},
		{"no-touch: writer copies nothing, no do_wp_page; in-region faults == blocks for both", "writer copies = 7", func(g *guestRun) {
			g.results["no-touch"].Stdout = fakeClasslessReport(true, 1000, 7, 1000)
		}},
		{"blocks 5000: writer copies, do_wp_page and in-region faults 5000", "writer copies = 4999", func(g *guestRun) {
			g.results["blocks-5000"].Stdout = fakeClasslessReport(true, 5000, 4999, 0)
		}},
		{"no kprobes (--kprobe-method none): writer copies == blocks, reader 0, by allocation stacks", "copy_routine", func(g *guestRun) {
			g.results["generic"].Stdout = fakeClasslessReport(true, 1000, 1000, 0)
		}},
		{"no kprobes: copies == the kprobe run's, process by process", "writer copies: by allocation stacks 998, by kprobe 1000", func(g *guestRun) {
			g.results["generic"].Stdout = fakeClasslessReport(false, 1000, 998, 0)
		}},
		{"count mode: kprobe copies; says its fault counters need the x86 tracepoint", "does not name", func(g *guestRun) {
			g.results["count"].Stdout = strings.Replace(g.results["count"].Stdout, "tracepoint:exceptions:page_fault_user", "x", 1)
		}},
		{"matrix: every scenario's outcome holds with the best copies method", "vfork: expected x; did not hold: writer.copies = 1", func(g *guestRun) {
			g.results["matrix"].Stdout = strings.Replace(g.results["matrix"].Stdout, `"expect":"writer.in_region.wp == blocks"`, `"expect":"writer.copies == blocks","detail":"writer.copies = 1"`, 1)
		}},
	} {
		g := fakeClasslessGuest(t)
		tc.spoil(g)
		wantFails(t, g, checks, tc.check, tc.want)
	}
	lines := fakeClasslessGuest(t).matrixLines()
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "matrix: 11 of 11 scenarios held with kprobe copies") ||
		lines[1] != "matrix: vfork held but for writer.in_region.wp == blocks: fault classes need the x86 fault tracepoints" {
		t.Errorf("matrix lines %q", lines)
	}
}
