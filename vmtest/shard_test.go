package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cowtrace/cowtrace/internal/scenario"
	"github.com/cowtrace/cowtrace/vmtest/internal/guest"
)

// realCommands are the commands of the manifest buildAll makes, by name.
var realCommands = []string{
	"touched", "no-touch", "blocks-5000", "tracefs", "sigint", "sigterm", "count", "run-seed", "run-tree-tracefs", "matrix",
	"perfevents.test", "workload.test", "experiment.test", "cmd_cowtrace.test", "scenario.test", "proof.test", "follow.test", "report.test",
	"doctor", "doctor-json",
}

func commands(names ...string) []guest.Command {
	var out []guest.Command
	for _, n := range names {
		argv := []string{"/bin/cowtrace", "--format", "json"}
		switch {
		case n == "matrix":
			argv = []string{"/bin/cowtrace", "matrix", "--format", "json"}
		case strings.HasSuffix(n, ".test"):
			argv = []string{"/tests/x/" + n, "-test.v"}
		}
		out = append(out, guest.Command{Name: n, Argv: argv, Timeout: time.Minute})
	}
	return out
}

func plan(t *testing.T, cmds []guest.Command, budget time.Duration) ([]unit, []shard) {
	t.Helper()
	units, err := makeUnits(cmds, weightOf, splitters(), budget)
	if err != nil {
		t.Fatal(err)
	}
	return units, planShards(units, budget)
}

// TestPlanRealManifest: with the measured weights, every guest fits the
// budget, every unit runs exactly once, and the two commands heavier than
// a guest are cut into parts that together run each scenario once.
func TestPlanRealManifest(t *testing.T) {
	for _, budget := range []time.Duration{50 * time.Second, 40 * time.Second, 30 * time.Second, 2 * time.Minute, 10 * time.Minute} {
		t.Run(budget.String(), func(t *testing.T) {
			units, shards := plan(t, commands(realCommands...), budget)
			var total time.Duration
			for _, w := range realCommands {
				total += weightOf(w)
			}
			seen := map[string]int{}
			var load time.Duration
			for i, s := range shards {
				// Over budget only alone, with a unit that cannot be cut.
				if s.Weight() > budget && (len(s.Units) != 1 || !s.Units[0].Whole) {
					t.Errorf("guest %d: %v predicted, over the budget %v: %v", i+1, s.Weight(), budget, s.Units)
				}
				var sum time.Duration
				for j, u := range s.Units {
					seen[u.Cmd.Name]++
					sum += u.Weight
					if j > 0 && s.Units[j-1].order > u.order {
						t.Errorf("guest %d: %s before %s, against the manifest's order", i+1, s.Units[j-1].Cmd.Name, u.Cmd.Name)
					}
				}
				if sum != s.Load {
					t.Errorf("guest %d: load %v, units add up to %v", i+1, s.Load, sum)
				}
				load += s.Load
			}
			for _, u := range units {
				if seen[u.Cmd.Name] != 1 {
					t.Errorf("%s runs in %d guests, want 1", u.Cmd.Name, seen[u.Cmd.Name])
				}
			}
			if len(seen) != len(units) {
				t.Errorf("%d distinct commands in the guests, %d units", len(seen), len(units))
			}
			// Only the parts for the cut test binaries' other tests add
			// weight.
			if rest := load - total; rest != 0 && rest != defaultWeight && rest != cmdRestWeight && rest != defaultWeight+cmdRestWeight {
				t.Errorf("guests carry %v, the commands weigh %v", load, total)
			}
			// The fewest guests possible is the load over the room in one.
			room := budget - bootCost
			if low := int((load + room - 1) / room); len(shards) > low+1 {
				t.Errorf("%d guests for %v of commands in %v each; %d would do at best", len(shards), load, room, low)
			}
			split := budget-bootCost < weightOf("matrix")
			checkParts(t, units, "matrix", split, func(u unit) []string {
				i := slices.Index(u.Cmd.Argv, "--only")
				if i < 0 || i+1 >= len(u.Cmd.Argv) {
					t.Fatalf("%s: no --only in %q", u.Cmd.Name, u.Cmd.Argv)
				}
				return strings.Split(u.Cmd.Argv[i+1], ",")
			})
			checkParts(t, units, "scenario.test", split, func(u unit) []string {
				if i := slices.Index(u.Cmd.Argv, "-test.skip"); i >= 0 {
					if u.Cmd.Argv[i+1] != "^TestScenarios$" {
						t.Errorf("%s: %q", u.Cmd.Name, u.Cmd.Argv)
					}
					return nil
				}
				i := slices.Index(u.Cmd.Argv, "-test.run")
				if i < 0 {
					t.Fatalf("%s: no -test.run in %q", u.Cmd.Name, u.Cmd.Argv)
				}
				re := u.Cmd.Argv[i+1]
				pre, suf := "^TestScenarios$/^(", ")$"
				if !strings.HasPrefix(re, pre) || !strings.HasSuffix(re, suf) {
					t.Fatalf("%s: -test.run %q", u.Cmd.Name, re)
				}
				return strings.Split(strings.ReplaceAll(strings.TrimSuffix(strings.TrimPrefix(re, pre), suf), `\`, ""), "|")
			})
		})
	}
}

// checkParts: base is whole when it fits a guest, else cut into parts
// whose items are every scenario, each once.
func checkParts(t *testing.T, units []unit, base string, split bool, items func(unit) []string) {
	t.Helper()
	var parts []unit
	for _, u := range units {
		if u.Base == base {
			parts = append(parts, u)
		}
	}
	if !split {
		if len(parts) != 1 || parts[0].Parts != 1 || parts[0].Cmd.Name != base {
			t.Errorf("%s: %d parts, want it whole", base, len(parts))
		}
		return
	}
	if len(parts) < 2 {
		t.Fatalf("%s: %d parts, want it cut", base, len(parts))
	}
	var got []string
	for i, u := range parts {
		if u.Part != i+1 || u.Parts != len(parts) || u.Cmd.Name != partName(base, i+1, len(parts)) {
			t.Errorf("part %d: %s part %d of %d", i+1, u.Cmd.Name, u.Part, u.Parts)
		}
		got = append(got, items(u)...)
	}
	slices.Sort(got)
	if want := scenario.Names(); !slices.Equal(got, want) {
		t.Errorf("%s parts run %q, want every scenario once: %q", base, got, want)
	}
}

func TestPlanBudgetTooSmall(t *testing.T) {
	if _, err := makeUnits(commands("touched"), weightOf, splitters(), bootCost); err == nil {
		t.Fatal("a budget of only the boot time was accepted")
	}
}

// TestPlanHeavyUnitAlone: a command that cannot be cut and is heavier than
// a guest's room gets a guest of its own; the rest still fit.
func TestPlanHeavyUnitAlone(t *testing.T) {
	w := map[string]time.Duration{"big": 70 * time.Second, "a": 20 * time.Second, "b": 20 * time.Second, "c": 5 * time.Second}
	units, err := makeUnits(commands("a", "big", "b", "c"), func(n string) time.Duration { return w[n] }, nil, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	shards := planShards(units, time.Minute)
	if len(shards) != 2 {
		t.Fatalf("%d guests, want 2: %v", len(shards), shards)
	}
	if len(shards[0].Units) != 1 || shards[0].Units[0].Cmd.Name != "big" {
		t.Errorf("first guest %v, want big alone", shards[0].Units)
	}
	var names []string
	for _, u := range shards[1].Units {
		names = append(names, u.Cmd.Name)
	}
	if !slices.Equal(names, []string{"a", "b", "c"}) {
		t.Errorf("second guest %q, want a, b, c in the manifest's order", names)
	}
}

// TestPlanBalances: first-fit decreasing alone would fill one guest to the
// brim and leave the other nearly empty; the guests come out even.
func TestPlanBalances(t *testing.T) {
	w := map[string]time.Duration{"a": 20 * time.Second, "b": 20 * time.Second, "c": 15 * time.Second, "d": 15 * time.Second, "e": 10 * time.Second}
	units, err := makeUnits(commands("a", "b", "c", "d", "e"), func(n string) time.Duration { return w[n] }, nil, bootCost+50*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	shards := planShards(units, bootCost+50*time.Second)
	if len(shards) != 2 {
		t.Fatalf("%d guests, want 2", len(shards))
	}
	if d := shards[0].Load - shards[1].Load; d > 10*time.Second {
		t.Errorf("loads %v and %v: want them within 10 s", shards[0].Load, shards[1].Load)
	}
}

func TestMergeParts(t *testing.T) {
	p1 := &guest.Result{Name: "x[1/2]", Argv: []string{"x", "1"}, Duration: time.Second, Stdout: "--- PASS: A\n", Tracefs: &guest.TracefsState{}}
	p2 := &guest.Result{Name: "x[2/2]", ExitCode: 1, Duration: 2 * time.Second, Stdout: "--- FAIL: B\n", Tracefs: &guest.TracefsState{KprobeEvents: "p:left x\n"}}
	m := mergeParts("x", []*guest.Result{p1, p2})
	if m.Name != "x" || m.ExitCode != 1 || m.Duration != 3*time.Second {
		t.Errorf("merged %s exit %d in %v, want x exit 1 in 3s", m.Name, m.ExitCode, m.Duration)
	}
	if c := countTests(m.Stdout); c.Pass != 1 || c.Fail != 1 {
		t.Errorf("merged output counts %+v, want 1 pass 1 fail", c)
	}
	if m.Tracefs == nil || m.Tracefs.KprobeEvents != "p:left x\n" {
		t.Errorf("merged tracefs %+v: want the second part's leftover", m.Tracefs)
	}
	p2.Tracefs = nil
	if m := mergeParts("x", []*guest.Result{p1, p2}); m.Tracefs != nil {
		t.Error("a part that was not inspected merged into an inspected whole")
	}
	if m := mergeParts("x", []*guest.Result{p1, nil}); m != nil {
		t.Error("a missing part merged into a result")
	}
}

// matrixJSON is the stdout of `cowtrace matrix --format json --only names`
// where every scenario held.
func matrixJSON(names []string) string {
	type sc struct {
		Name string         `json:"name"`
		Held bool           `json:"held"`
		Run  map[string]any `json:"run"`
	}
	doc := struct {
		SchemaVersion int    `json:"schema_version"`
		Kernel        string `json:"kernel"`
		Scenarios     []sc   `json:"scenarios"`
	}{SchemaVersion: 1, Kernel: "6.1.0-test"}
	for _, n := range names {
		doc.Scenarios = append(doc.Scenarios, sc{Name: n, Held: true, Run: map[string]any{"methods": map[string]string{"copies": "kprobe:copy_mc_to_kernel"}}})
	}
	js, _ := json.Marshal(doc)
	return string(js)
}

// shardedRun runs the plan of cmds on fake guests: each command exits 0,
// the matrix parts print the scenarios their --only names.
func shardedRun(t *testing.T, cmds []guest.Command, budget time.Duration, edit func(r *guest.Result)) *guestRun {
	t.Helper()
	_, shards := plan(t, cmds, budget)
	var gs []*guestShard
	for i, s := range shards {
		b := &bootResult{Info: &guest.Info{Release: "6.1.0-test", KprobePMUType: 6, KprobeEvents: true}, Done: true, Elapsed: time.Duration(i+1) * time.Second}
		for _, u := range s.Units {
			r := &guest.Result{Name: u.Cmd.Name, Argv: u.Cmd.Argv, Duration: u.Weight, Tracefs: &guest.TracefsState{}}
			if u.Base == "matrix" {
				names := scenario.Names()
				if i := slices.Index(u.Cmd.Argv, "--only"); i >= 0 {
					names = strings.Split(u.Cmd.Argv[i+1], ",")
				}
				r.Stdout = matrixJSON(names)
			}
			if edit != nil {
				edit(r)
			}
			b.Results = append(b.Results, r)
		}
		b.Sent = len(b.Results)
		gs = append(gs, &guestShard{Index: i + 1, Of: len(shards), Units: s.Units, Manifest: s.manifest(), Boot: b})
	}
	return newShardedRun(guest.Manifest{Commands: cmds}, gs)
}

func TestShardedMatrixMerges(t *testing.T) {
	g := shardedRun(t, commands("touched", "matrix"), 30*time.Second, nil)
	if len(g.parts["matrix"]) < 2 {
		t.Fatalf("matrix in %d parts, want it cut", len(g.parts["matrix"]))
	}
	if err := checkMatrix(g); err != nil {
		t.Errorf("matrix check on merged parts: %v", err)
	}
	m, _ := g.matrix()
	if len(m.Scenarios) != len(scenario.Names()) {
		t.Errorf("%d scenarios merged, want %d", len(m.Scenarios), len(scenario.Names()))
	}
	if err := checkGuestDone(g); err != nil {
		t.Errorf("guest check: %v", err)
	}
	if err := checkNoLeftovers(g); err != nil {
		t.Errorf("leftovers: %v", err)
	}
	if g.Boot.Elapsed != time.Duration(len(g.Guests))*time.Second {
		t.Errorf("elapsed %v, want the longest guest's", g.Boot.Elapsed)
	}

	// A scenario run twice, in two parts, is caught.
	g = shardedRun(t, commands("matrix"), 35*time.Second, func(r *guest.Result) {
		// Parts of 4 scenarios in sorted order: touched is in the second.
		if strings.HasPrefix(r.Name, "matrix[3/") {
			r.Stdout = matrixJSON([]string{"touched"})
		}
	})
	if err := checkMatrix(g); err == nil || !strings.Contains(err.Error(), "scenario touched in both matrix[2/3] and matrix[3/3]") {
		t.Errorf("matrix check with touched in two parts: %v", err)
	}

	// A part that failed fails the whole, and a part that never reported
	// is named.
	g = shardedRun(t, commands("matrix"), 30*time.Second, func(r *guest.Result) {
		if strings.HasPrefix(r.Name, "matrix[1/") {
			r.ExitCode = 1
		}
	})
	if err := checkMatrix(g); err == nil {
		t.Error("matrix check passed with a part exiting 1")
	}
	g.Guests[len(g.Guests)-1].Boot.Results = nil
	g = newShardedRun(g.Manifest, g.Guests)
	if err := checkGuestDone(g); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("guest %d/%d", len(g.Guests), len(g.Guests))) {
		t.Errorf("guest check with a guest that sent nothing: %v", err)
	}
}

// TestCmdTestCutByWeight: cmd_cowtrace.test's tests are packed by their
// own weights, so that the descriptor sweep, which weighs most, runs alone.
func TestCmdTestCutByWeight(t *testing.T) {
	units, _ := plan(t, commands("cmd_cowtrace.test"), 90*time.Second)
	var runs []string
	for _, u := range units {
		i := slices.Index(u.Cmd.Argv, "-test.run")
		if i < 0 {
			if !slices.Contains(u.Cmd.Argv, "-test.skip") || !u.Whole {
				t.Errorf("%s: neither -test.run nor a whole rest part: %q", u.Cmd.Name, u.Cmd.Argv)
			}
			continue
		}
		runs = append(runs, u.Cmd.Argv[i+1])
	}
	want := []string{"^(TestFaultInjection)$", "^(TestConcurrentRuns|TestMatrixCommand|TestRunUnderPerf)$"}
	if !slices.Equal(runs, want) {
		t.Errorf("parts run %q, want %q", runs, want)
	}
	if got := fill([]string{"a", "b", "c"}, map[string]time.Duration{"a": 5, "b": 20, "c": 5}, 10); len(got) != 3 {
		t.Errorf("fill: %q", got)
	}
}
