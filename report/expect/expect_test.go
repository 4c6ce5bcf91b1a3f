package expect

import (
	"strings"
	"testing"

	"github.com/cowtrace/cowtrace/report"
	"github.com/cowtrace/cowtrace/report/internal/reporttest"
)

func TestExpectationsHold(t *testing.T) {
	run := reporttest.Experiment()
	for _, s := range []string{
		"writer.copies == 1000", "reader.copies == 0", "writer.copies == blocks", "blocks == writer.in_region.wp",
		"parent.copies < 100", "parent.copies <= 11", "writer.page_faults > 999", "writer.page_faults >= 1000",
		"reader.copies != 1", "writer.probes.do_wp_page == 1000", "run.blocks == 1000", "lost_records == 0",
		"  writer.copies==1000  ", "writer.copies == 1e3",
	} {
		e, err := Parse(s)
		if err != nil {
			t.Errorf("%q: %v", s, err)
			continue
		}
		if err := e.Check(run); err != nil {
			t.Errorf("%q: %v", s, err)
		}
	}
}

func TestExpectationFailsWithValue(t *testing.T) {
	run := reporttest.Experiment()
	for s, want := range map[string]string{
		"writer.copies == 999":             "expectation failed: writer.copies == 999 (writer.copies is 1000)",
		"reader.copies > 0":                "expectation failed: reader.copies > 0 (reader.copies is 0)",
		"writer.copies < blocks":           "expectation failed: writer.copies < blocks (writer.copies is 1000, blocks is 1000)",
		"writer2.copies == 1":              `no process with role "writer2" (roles: parent, reader, writer)`,
		"reader.wp_faults == 0":            "reader.wp_faults is not measured in this run (null)",
		"writer.pagemap.at_fork.pages > 0": "writer.pagemap.at_fork.pages is not in this run (it needs --proof pagemap)",
		"writer.probes.copy_page == 0":     `writer.probes: no field "copy_page"`,
		"writer.in_region == 0":            "writer.in_region is not a number",
	} {
		e, err := Parse(s)
		if err != nil {
			t.Errorf("%q: %v", s, err)
			continue
		}
		err = e.Check(run)
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: %v, want one line with %q", s, err, want)
		}
	}
	es := []Expectation{}
	for _, s := range []string{"writer.copies == 1", "reader.copies == 0", "parent.copies == 2"} {
		e, _ := Parse(s)
		es = append(es, e)
	}
	if failed := CheckAll(run, es); len(failed) != 2 {
		t.Errorf("CheckAll: %v, want 2 failures", failed)
	}
}

func TestMalformedExpectations(t *testing.T) {
	for _, s := range []string{
		"", "writer.copies", "writer.copies = 1000", "writer.copies === 1000", "writer.copies == ",
		"== 1000", "writer.copies == 1000 == 1", "1 == 1", "writer.copis == 1", "nosuchfield == 1",
		"writer. == 1", "writer..copies == 1", "wr!ter.copies == 1", "writer.copies == NaN", "writer.copies == Inf",
		"writer.copies =< 3",
	} {
		if e, err := Parse(s); err == nil {
			t.Errorf("%q parsed as %+v", s, e)
		}
	}
}

// tracedRun is a cowtrace run tree: sh at the root, children at depths 1
// and 2, and a thread row that selectors and aggregates must not count twice.
func tracedRun() *report.Run {
	row := func(role string, pid, depth int, comm string, copies, wp uint64) report.Process {
		return report.Process{Role: role, Pid: pid, Lineage: &report.Lineage{Ppid: 1, Comm: comm, Depth: depth},
			Copies: report.U64(copies), WPFaults: report.U64(wp), PageFaults: report.U64(wp + 1)}
	}
	thread := row("thread", 102, 1, "worker", 100, 100)
	thread.Tid = 104
	return &report.Run{SchemaVersion: report.SchemaVersion, Kernel: "6.18-test", Scenario: "traced", Trace: &report.Trace{Threads: true},
		Processes: []report.Process{
			row("command", 100, 0, "sh", 3, 5),
			row("child", 101, 1, "sh", 10, 12),
			row("child", 102, 1, "worker", 200, 210),
			thread,
			row("child", 103, 2, "worker", 300, 305),
			row("child", 105, 1, "Web Content", 0, 0),
			row("child", 106, 1, "a-very-long-pro", 0, 0), // the kernel keeps 15 bytes of a name
		}}
}

// TestUnmeasuredClasses: without the fault tracepoints (perf_event_paranoid
// 2 and no privileges) a fault's address is known, not its kind; the
// write-protect faults in the region are then null, not 0, and an
// expectation on them is not decided either way.
func TestUnmeasuredClasses(t *testing.T) {
	run := reporttest.Experiment()
	run.Methods["in_region"] = "sampled:page-faults with address"
	run.Processes[2].InRegion = &report.FaultClasses{Unclassified: 1000}
	for s, want := range map[string]string{
		"writer.in_region.wp == 0":               "writer.in_region.wp is not measured in this run (null)",
		"writer.in_region.unclassified == 1000":  "",
		"writer.in_region.kernel_mode == 0":      "not measured",
		"writer.in_region.inferred_copies == 0":  "not measured",
		"reader.in_region.write_not_present < 1": "not measured",
	} {
		e, err := Parse(s)
		if err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		err = e.Check(run)
		if (want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", s, err, want)
		}
	}
}

func TestTreeExpectationsHold(t *testing.T) {
	run := tracedRun()
	for _, s := range []string{
		"command.copies == 3", "comm(worker).copies >= 200", "comm(worker).wp_faults <= 500", "depth(1).wp_faults >= depth(1).copies",
		"depth(0).copies == command.copies", "depth(2).page_faults == 306", "sum.copies == 513", "max.copies == 300",
		"min.copies == 0", "count == 6", "count(comm=worker) == 2", "count(comm=worker, depth=1) == 1", "count(role=thread) == 1",
		"thread.copies == 100", "sum(comm=worker).copies == 500", "max(depth=1).copies == 200", "child.copies <= child.wp_faults",
		"comm(worker).copies > comm(sh).copies", "count(comm=nosuch) == 0", "sum(comm=nosuch).copies == 0",
		"comm(Web Content).copies == 0", "comm(a-very-long-program-name).copies == 0", "count(depth=1) == 4",
		"comm(worker).depth >= 1", "count > 5", "run.trace.threads == 1",
	} {
		e, err := Parse(s)
		if err != nil {
			t.Errorf("%q: %v", s, err)
			continue
		}
		if err := e.Check(run); err != nil {
			t.Errorf("%q: %v", s, err)
		}
	}
}

func TestTreeExpectationFailures(t *testing.T) {
	run := tracedRun()
	for s, want := range map[string]string{
		"comm(worker).copies <= 250": "expectation failed: comm(worker).copies <= 250 (1 of 2 fail: comm(worker).copies is 300 in pid 103 (worker))",
		"depth(1).copies == 0":       "(2 of 4 fail: depth(1).copies is 10 in pid 101 (sh), 200 in pid 102 (worker))",
		"comm(worker).copies < max(comm=sh).copies": "(2 of 2 fail: comm(worker).copies is 200 in pid 102 (worker), 300 in pid 103 (worker); " +
			"max(comm=sh).copies is 10 in pid 101 (sh))",
		"sum.copies < 500":        "expectation failed: sum.copies < 500 (sum.copies is 513)",
		"max.copies <= 250":       "(max.copies is 300 in pid 103 (worker))",
		"count(comm=worker) == 4": "(count(comm=worker) is 2)",
		"command.wp_faults > 100": "(command.wp_faults is 5 in pid 100 (sh))",
		"child.wp_faults < child.copies": "(5 of 5 fail: child.wp_faults is 12, child.copies is 10 in pid 101 (sh); " +
			"child.wp_faults is 210, child.copies is 200 in pid 102 (worker);",
		"child.copies >= comm(worker).copies":  "(7 of 10 fail: child.copies is 10 in pid 101 (sh), comm(worker).copies is 200 in pid 102 (worker);",
		"comm(nosuch).copies == 0":             `no process with command name "nosuch" (names: sh, worker, Web Content, a-very-long-pro)`,
		"depth(7).copies == 0":                 "no process at depth 7 (depths: 0, 1, 2)",
		"max(comm=nosuch,depth=1).copies == 0": "no process with comm=nosuch,depth=1",
		"writer.copies == 0":                   `no process with role "writer" (roles: command, child, thread)`,
		// The experiment's layout is null in a traced run.
		"blocks == 0":                     "blocks is not measured in this run (null)",
		"child.in_region.wp == 0":         "child.in_region.wp is not measured",
		"child.pagemap.at_fork.pages > 0": "is not in this run (it needs --proof pagemap)",
	} {
		e, err := Parse(s)
		if err != nil {
			t.Errorf("%q: %v", s, err)
			continue
		}
		err = e.Check(run)
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: %v\nwant one line with %q", s, err, want)
		}
	}
	e, _ := Parse("child.copies >= comm(worker).copies")
	if err := e.Check(run); err == nil || !strings.HasSuffix(err.Error(), "; and 2 more)") {
		t.Errorf("seven failed cases: %v, want five shown and \"and 2 more\"", err)
	}
	run.Processes[2].Copies = nil
	e, _ = Parse("sum.copies < 1000")
	if err := e.Check(run); err == nil || !strings.Contains(err.Error(), "sum.copies is not measured in this run (null) in pid 102 (worker)") {
		t.Errorf("a null in a sum: %v", err)
	}
}

func TestMalformedTreeExpectations(t *testing.T) {
	for s, want := range map[string]string{
		"comm().copies == 1":             "needs a command name",
		"comm(worker) == 1":              "which field?",
		"command == 1":                   `no field "command"`,
		"depth(-1).copies == 1":          "is not 0, 1, 2",
		"depth(x).copies == 1":           "is not 0, 1, 2",
		"depth(+1).copies == 1":          "is not 0, 1, 2",
		"sum == 1":                       "sum of which field?",
		"count.copies == 1":              "count takes no field",
		"count() == 1":                   "want comm=NAME",
		"sum(comm=).copies == 1":         "want comm=NAME",
		"sum(comm=a,comm=b).copies == 1": "each at most once",
		"sum(pid=3).copies == 1":         `no key "pid"`,
		"avg(comm=a).copies == 1":        "no selector avg()",
		"comm(worker.copies == 1":        "unbalanced parentheses",
		"comm(worker)copies == 1":        "is not a number, ROLE.FIELD",
		"comm(worker).copiez == 1":       `no field "copiez"`,
		"child.in_region.wpp == 1":       `no field "wpp"`,
		"run.trace.duration == 1":        `no field "duration"`,
		"max.copiez < 3":                 `no field "copiez"`,
		"comm(a) == comm(b)":             "which field?",
	} {
		e, err := Parse(s)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %+v, %v; want an error with %q", s, e, err, want)
		}
	}
	// Inside comm(), operators are part of the name.
	if _, err := Parse("comm(a<b == c).copies == 1"); err != nil {
		t.Errorf("comm with operators in its name: %v", err)
	}
}

func TestExpectationFits(t *testing.T) {
	experiment := Rows{}
	traced := Rows{Roles: []string{"command", "child", "thread"}, Lineage: true}
	for _, c := range []struct {
		expr string
		rows Rows
		want string // "" fits
	}{
		{"writer.copies == 1000", experiment, ""},
		{"sum.copies < 2000", experiment, ""},
		{"comm(worker).copies == 0", experiment, "only cowtrace run and attach"},
		{"sum(depth=1).copies == 0", experiment, "only cowtrace run and attach"},
		{"comm(worker).copies == 0", traced, ""},
		{"command.copies == depth(1).copies", traced, ""},
		{"writer.copies == 0", traced, `no role "writer" in this kind of run (roles: command, child, thread)`},
		{"count(role=writer) == 0", traced, `no role "writer"`},
		{"blocks == 0", traced, ""},
	} {
		e, err := Parse(c.expr)
		if err != nil {
			t.Fatalf("%q: %v", c.expr, err)
		}
		err = e.Fits(c.rows)
		if (c.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%q on %+v: %v, want %q", c.expr, c.rows, err, c.want)
		}
	}
}
