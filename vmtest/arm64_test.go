package main

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cowtrace/cowtrace/vmtest/internal/guest"
)

func TestSkipArm64Tests(t *testing.T) {
	units := []unit{
		{Base: "perfevents.test", Part: 1, Parts: 1, Cmd: testCmd("perfevents.test")},
		// A split part that skips tests of its own already: one -test.skip,
		// both patterns.
		{Base: "cmd_cowtrace.test", Part: 3, Parts: 3, Cmd: testCmd("cmd_cowtrace.test", "-test.skip", "^(TestA)$")},
		{Base: "report.test", Part: 1, Parts: 1, Cmd: testCmd("report.test")},
	}
	notes := skipArm64Tests(units)
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
		t.Errorf("cmd argv %q: want its own skip, then arm64's", a)
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
		return `{"schema_version":1,"blocks":1000,"methods":{"copies":"` + copies + `","in_region":"` + faultAddrMethod + `","wp_faults":"kprobe:do_wp_page"},` +
			`"processes":[{"role":"writer","wp_faults":1000,"copies":` + writer + `,"in_region":{"unclassified":1000}},{"role":"reader","copies":` + reader + `,"in_region":{}}]}`
	}
	res := []*guest.Result{
		{Name: "touched", Stdout: rep("kprobe:copy_user_highpage", "1000", "0")},
		{Name: "generic", Stdout: rep("callchain:x", "1000", "0")},
	}
	shard := &guestShard{Index: 1, Of: 1, Boot: &bootResult{Results: res, Elapsed: 42 * time.Second, Done: true, Sent: 2}}
	g := newShardedRun(guest.Manifest{}, []*guestShard{shard})
	r := &kernelRun{Kernel: kernel{Label: "6.1-arm64", Target: targets["arm64"]}, Guest: g, Notes: []string{"arm64: scenario.test skips X: why"}}
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

// TestArm64ChecksOnce: each check of the arm64 guests is there once, the
// arm64 replacements of the matrix and count checks among them, and none
// that is for a kernel with fault tracepoints or with counters only.
func TestArm64ChecksOnce(t *testing.T) {
	seen := map[string]bool{}
	for _, c := range checksFor(arm64Checks(), arm64Expect) {
		if seen[c.Name] {
			t.Errorf("check %q twice", c.Name)
		}
		seen[c.Name] = true
	}
	for _, c := range followChecks {
		if c.For != nil && !c.For(arm64Expect) && seen[c.Name] {
			t.Errorf("check %q is not for arm64", c.Name)
		}
	}
	var matrix, count int
	for _, c := range arm64Checks() {
		switch c.Cmd {
		case "matrix":
			matrix++
		case "count":
			count++
		}
	}
	if matrix != 1 || count != 1 {
		t.Errorf("%d matrix and %d count checks, want 1 each", matrix, count)
	}
}
