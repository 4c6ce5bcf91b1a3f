package main

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/cowtrace/cowtrace/internal/scenario"
	"github.com/cowtrace/cowtrace/vmtest/internal/guest"
)

// Sharding: the commands of one kernel are spread over several guests, so
// that each guest, boot to power-off, stays within -guest-budget. Under TCG
// one guest is one host core, so several short guests also finish sooner
// than one long one whenever there are cores to spare.

// commandWeights are the measured guest times of the commands, under TCG on
// the project's 2-core machine with two guests at once and other work
// beside them (load 8 to 13), the longest of the kernels with kprobes,
// rounded up (cmd_cowtrace.test's as cut below). A command that is not
// listed weighs defaultWeight.
var commandWeights = map[string]time.Duration{
	"cmd_cowtrace.test": mapWeight(cmdSlowTests),
	"matrix":            60 * time.Second,
	"scenario.test":     60 * time.Second,
	"experiment.test":   40 * time.Second,
	"follow.test":       35 * time.Second,
	"blocks-5000":       15 * time.Second,
	"run-seed":          12 * time.Second,
	"touched":           8 * time.Second,
	"tracefs":           6 * time.Second,
	"no-touch":          6 * time.Second,
	"workload.test":     6 * time.Second,
	"sigint":            5 * time.Second,
	"sigterm":           5 * time.Second,
	"perfevents.test":   5 * time.Second,
	"doctor":            5 * time.Second,
	"count":             4 * time.Second,
}

const defaultWeight = 3 * time.Second

// bootCost is what a guest spends outside its commands: qemu start-up,
// the kernel's boot and initramfs unpacking under TCG, and power-off.
const bootCost = 10 * time.Second

func weightOf(name string) time.Duration {
	if w, ok := commandWeights[name]; ok {
		return w
	}
	return defaultWeight
}

// unit is one command as a guest runs it: a whole command of the manifest,
// or one part of a command split so that it fits a guest.
type unit struct {
	Cmd         guest.Command // Cmd.Name is unique among the units
	Base        string        // the manifest command it is, or is a part of
	Part, Parts int           // 1-based; Parts is 1 for a whole command
	Weight      time.Duration
	// Whole: the unit cannot be cut further (a command without a
	// splitter, one item, or a rest part), so it may exceed the budget.
	Whole bool
	order int // position in the manifest, to keep its order in a guest
}

// splitter cuts a command into parts by items: each part runs a subset of
// them. rest, if set, is the part that runs whatever the subsets leave out
// (such as a test binary's other tests).
type splitter struct {
	Items []string
	Part  func(c guest.Command, items []string) guest.Command
	Rest  func(c guest.Command) guest.Command
	// RestWeight is what Rest costs; it is not counted in the command's
	// weight, which is spread over the items.
	RestWeight time.Duration
	// ItemWeights, when set, weigh each item on its own (the command's
	// weight is then their sum): parts are filled in order up to the room.
	ItemWeights map[string]time.Duration
}

// splitters are the commands that may be cut: the matrix by scenario
// (`cowtrace matrix --only`), and the scenario package's test binary by
// TestScenarios subtest, one per scenario, with its other tests in a part
// of their own.
func splitters() map[string]splitter {
	names := scenario.Names()
	return map[string]splitter{
		"matrix": {
			Items: names,
			Part: func(c guest.Command, items []string) guest.Command {
				c.Argv = append(slices.Clip(c.Argv), "--only", strings.Join(items, ","))
				return c
			},
		},
		"scenario.test": {
			Items: names,
			Part: func(c guest.Command, items []string) guest.Command {
				q := make([]string, len(items))
				for i, it := range items {
					q[i] = regexp.QuoteMeta(it)
				}
				c.Argv = append(slices.Clip(c.Argv), "-test.run", "^TestScenarios$/^("+strings.Join(q, "|")+")$")
				return c
			},
			Rest: func(c guest.Command) guest.Command {
				c.Argv = append(slices.Clip(c.Argv), "-test.skip", "^TestScenarios$")
				return c
			},
			RestWeight: defaultWeight,
		},
		// The command's slowest tests, each on its own if need be: under
		// TCG they run every command many times (fd limits, concurrent
		// runs, the matrix).
		"cmd_cowtrace.test": byTestName(cmdSlowTests, cmdRestWeight),
	}
}

// cmdRestWeight is what cmd_cowtrace.test's other tests weigh, apart.
const cmdRestWeight = 20 * time.Second

// cmdSlowTests are cmd_cowtrace.test's tests that take most of its time in
// a guest, with their measured weights (the longest of four kernels).
var cmdSlowTests = map[string]time.Duration{
	"TestFaultInjection": 135 * time.Second,
	"TestConcurrentRuns": 30 * time.Second,
	"TestMatrixCommand":  15 * time.Second,
	"TestRunUnderPerf":   5 * time.Second,
}

// mapWeight adds up the weights.
func mapWeight(m map[string]time.Duration) time.Duration {
	var w time.Duration
	for _, v := range m {
		w += v
	}
	return w
}

// byTestName cuts a test binary by top-level test, heaviest first: each
// part runs some of tests, the rest part the others, which weigh rest.
func byTestName(weights map[string]time.Duration, rest time.Duration) splitter {
	tests := slices.Collect(maps.Keys(weights))
	slices.SortFunc(tests, func(a, b string) int {
		if c := cmp.Compare(weights[b], weights[a]); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	anchored := func(items []string) string {
		q := make([]string, len(items))
		for i, it := range items {
			q[i] = regexp.QuoteMeta(it)
		}
		return "^(" + strings.Join(q, "|") + ")$"
	}
	return splitter{
		Items: tests,
		Part: func(c guest.Command, items []string) guest.Command {
			c.Argv = append(slices.Clip(c.Argv), "-test.run", anchored(items))
			return c
		},
		Rest: func(c guest.Command) guest.Command {
			c.Argv = append(slices.Clip(c.Argv), "-test.skip", anchored(tests))
			return c
		},
		RestWeight:  rest,
		ItemWeights: weights,
	}
}

// partName names part i of n of a command.
func partName(base string, i, n int) string { return fmt.Sprintf("%s[%d/%d]", base, i, n) }

// makeUnits turns the manifest into units, cutting every command that has
// a splitter and would not fit a guest alone into the fewest parts that do
// (items spread evenly, each item weighing an equal share).
func makeUnits(cmds []guest.Command, weight func(string) time.Duration, split map[string]splitter, budget time.Duration) ([]unit, error) {
	room := budget - bootCost
	if room <= 0 {
		return nil, fmt.Errorf("guest budget %v leaves no room for commands after the %v a guest takes to boot and power off", budget, bootCost)
	}
	var out []unit
	for _, c := range cmds {
		w := weight(c.Name)
		sp, ok := split[c.Name]
		if !ok || w <= room || len(sp.Items) < 2 {
			out = append(out, unit{Cmd: c, Base: c.Name, Part: 1, Parts: 1, Weight: w, Whole: true, order: len(out)})
			continue
		}
		per := w / time.Duration(len(sp.Items))
		// As many items in a part as fit the room (one at least: an item
		// alone over budget is the best there is), then as few parts as
		// that allows, evened out: 11 items of which 6 fit is 6 + 5.
		fit := max(1, int(room/per))
		n := (len(sp.Items) + fit - 1) / fit
		size := (len(sp.Items) + n - 1) / n
		chunks := slices.Collect(slices.Chunk(sp.Items, size))
		if sp.ItemWeights != nil {
			chunks = fill(sp.Items, sp.ItemWeights, room)
		}
		total := len(chunks)
		if sp.Rest != nil {
			total++
		}
		done := 0
		for i, ch := range chunks {
			p := sp.Part(c, ch)
			p.Name = partName(c.Name, i+1, total)
			// Shares by items so far, so that the parts add up to w.
			pw := w*time.Duration(done+len(ch))/time.Duration(len(sp.Items)) - w*time.Duration(done)/time.Duration(len(sp.Items))
			if sp.ItemWeights != nil {
				pw = 0
				for _, it := range ch {
					pw += sp.ItemWeights[it]
				}
			}
			done += len(ch)
			out = append(out, unit{Cmd: p, Base: c.Name, Part: i + 1, Parts: total, Weight: pw, Whole: len(ch) == 1, order: len(out)})
		}
		if sp.Rest != nil {
			p := sp.Rest(c)
			p.Name = partName(c.Name, total, total)
			out = append(out, unit{Cmd: p, Base: c.Name, Part: total, Parts: total, Weight: sp.RestWeight, Whole: true, order: len(out)})
		}
	}
	return out, nil
}

// fill packs items, in order, into parts of at most room by their
// weights; an item heavier than room gets a part of its own.
func fill(items []string, weights map[string]time.Duration, room time.Duration) [][]string {
	var out [][]string
	var cur []string
	var load time.Duration
	for _, it := range items {
		if len(cur) > 0 && load+weights[it] > room {
			out, cur, load = append(out, cur), nil, 0
		}
		cur = append(cur, it)
		load += weights[it]
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// shard is the units one guest runs.
type shard struct {
	Units []unit
	Load  time.Duration // the units' weights added up, without bootCost
}

// Weight is the guest's predicted wall time, boot to power-off.
func (s *shard) Weight() time.Duration { return bootCost + s.Load }

func (s *shard) manifest() guest.Manifest {
	var m guest.Manifest
	for _, u := range s.Units {
		m.Commands = append(m.Commands, u.Cmd)
	}
	return m
}

// bases are the manifest commands the shard runs all or part of.
func (s *shard) bases() map[string]bool {
	b := map[string]bool{}
	for _, u := range s.Units {
		b[u.Base] = true
	}
	return b
}

// planShards packs units into as few guests as first-fit decreasing
// manages within budget, then spreads them over that many guests heaviest
// first onto the least loaded (which evens the guests out), keeping that
// only if every guest still fits. A unit that does not fit even alone gets
// a guest of its own. In each guest the units keep the manifest's order.
func planShards(units []unit, budget time.Duration) []shard {
	room := budget - bootCost
	byWeight := slices.Clone(units)
	slices.SortStableFunc(byWeight, func(a, b unit) int { return int(b.Weight - a.Weight) })

	var ffd []shard
	for _, u := range byWeight {
		placed := false
		for i := range ffd {
			if ffd[i].Load+u.Weight <= room {
				ffd[i].Units = append(ffd[i].Units, u)
				ffd[i].Load += u.Weight
				placed = true
				break
			}
		}
		if !placed {
			ffd = append(ffd, shard{Units: []unit{u}, Load: u.Weight})
		}
	}

	out := ffd
	lpt := make([]shard, len(ffd))
	fits := true
	for _, u := range byWeight {
		i := 0
		for j := range lpt {
			if lpt[j].Load < lpt[i].Load {
				i = j
			}
		}
		if len(lpt[i].Units) > 0 && lpt[i].Load+u.Weight > room {
			fits = false
			break
		}
		lpt[i].Units = append(lpt[i].Units, u)
		lpt[i].Load += u.Weight
	}
	if fits {
		out = lpt
	}
	for i := range out {
		slices.SortFunc(out[i].Units, func(a, b unit) int { return a.order - b.order })
	}
	// Heaviest guest first, so that it starts first in the pool.
	slices.SortStableFunc(out, func(a, b shard) int { return int(b.Load - a.Load) })
	return out
}

// mergeParts makes one result of a split command's parts, in part order,
// as if it had run whole: the first failure's exit status, the durations
// added up, the output concatenated (test verdict lines count the same),
// and what each part left in tracefs. It returns nil if a part is missing.
func mergeParts(base string, parts []*guest.Result) *guest.Result {
	if len(parts) == 0 || slices.Contains(parts, nil) {
		return nil
	}
	m := &guest.Result{Name: base, Argv: parts[0].Argv, Tracefs: &guest.TracefsState{}}
	var errs, tfErrs []string
	var stdout, stderr strings.Builder
	for _, p := range parts {
		if m.ExitCode == 0 && m.Signaled == "" {
			m.ExitCode, m.Signaled = p.ExitCode, p.Signaled
		}
		m.TimedOut = m.TimedOut || p.TimedOut
		m.Truncated = m.Truncated || p.Truncated
		if p.Err != "" {
			errs = append(errs, p.Name+": "+p.Err)
		}
		m.Duration += p.Duration
		stdout.WriteString(p.Stdout)
		stderr.WriteString(p.Stderr)
		if p.Tracefs == nil {
			m.Tracefs = nil
		} else if m.Tracefs != nil {
			m.Tracefs.KprobeEvents += p.Tracefs.KprobeEvents
			m.Tracefs.StillMounted = append(m.Tracefs.StillMounted, p.Tracefs.StillMounted...)
			if p.Tracefs.Err != "" {
				tfErrs = append(tfErrs, p.Name+": "+p.Tracefs.Err)
			}
		}
	}
	m.Err = strings.Join(errs, "; ")
	m.Stdout, m.Stderr = stdout.String(), stderr.String()
	if m.Tracefs != nil {
		m.Tracefs.Err = strings.Join(tfErrs, "; ")
	}
	return m
}

// guestShard is one guest of a kernel: what it was asked to run and what
// came back.
type guestShard struct {
	Index, Of int
	Units     []unit
	Manifest  guest.Manifest
	Boot      *bootResult
}

func (s *guestShard) label() string { return fmt.Sprintf("guest %d/%d", s.Index, s.Of) }

// overhead is the guest's time outside its commands.
func (s *guestShard) overhead() time.Duration {
	d := s.Boot.Elapsed
	for _, r := range s.Boot.Results {
		d -= r.Duration
	}
	return d
}

func (s *guestShard) line() string {
	var names []string
	for _, c := range s.Manifest.Commands {
		names = append(names, c.Name)
	}
	state := ""
	if s.Boot.TimedOut {
		state = ", TIMED OUT"
	}
	return fmt.Sprintf("%s: %.1f s (%.1f s outside commands%s): %s", s.label(), s.Boot.Elapsed.Seconds(), s.overhead().Seconds(), state, strings.Join(names, ", "))
}

// newShardedRun merges the guests of one kernel into one guestRun, the
// view the checks have: every result under its manifest name, a split
// command's parts merged under its own name and kept in parts.
func newShardedRun(m guest.Manifest, shards []*guestShard) *guestRun {
	b := &bootResult{Done: true}
	var errs []error
	var console strings.Builder
	for _, s := range shards {
		sb := s.Boot
		if b.Info == nil {
			b.Info = sb.Info
		}
		b.Results = append(b.Results, sb.Results...)
		b.Done = b.Done && sb.Done
		b.Sent += sb.Sent
		fmt.Fprintf(&console, "==== %s\n%s", s.label(), sb.Console)
		b.Elapsed = max(b.Elapsed, sb.Elapsed)
		b.TimedOut = b.TimedOut || sb.TimedOut
		if sb.QemuErr != nil {
			errs = append(errs, fmt.Errorf("%s: %w", s.label(), sb.QemuErr))
		}
		for _, f := range sb.Frames {
			b.Frames = append(b.Frames, s.label()+": "+f)
		}
	}
	b.QemuErr = errors.Join(errs...)
	b.Console = console.String()
	g := newGuestRun(b, m)
	g.Guests = shards
	parts := map[string][]*guest.Result{}
	for _, s := range shards {
		for _, u := range s.Units {
			if u.Parts == 1 {
				continue
			}
			if parts[u.Base] == nil {
				parts[u.Base] = make([]*guest.Result, u.Parts)
			}
			parts[u.Base][u.Part-1] = g.results[u.Cmd.Name]
		}
	}
	g.parts = parts
	for base, ps := range parts {
		if r := mergeParts(base, ps); r != nil {
			g.results[base] = r
		}
	}
	return g
}
