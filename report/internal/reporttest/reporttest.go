// Package reporttest builds the runs that the tests of report and of its
// renderers and judges share, so that each package's tests read the same
// experiment and the same process tree.
package reporttest

import "github.com/cowtrace/cowtrace/report"

// Experiment is the seed's experiment at 1000 blocks as a kprobe kernel
// reports it: the writer copied every block, the reader none.
func Experiment() *report.Run {
	return &report.Run{SchemaVersion: report.SchemaVersion, Kernel: "6.1.0-test", Scenario: "touched", Blocks: 1000, BlockSize: 102400,
		Methods: map[string]string{"copies": "kprobe:copy_mc_to_kernel", "in_region": "tracepoint:exceptions:page_fault_user"},
		Processes: []report.Process{
			{Role: "parent", PageFaults: report.U64(13), Copies: report.U64(11), InRegion: &report.FaultClasses{}},
			{Role: "reader", PageFaults: report.U64(0), Copies: report.U64(0), InRegion: &report.FaultClasses{}},
			{Role: "writer", PageFaults: report.U64(1000), Copies: report.U64(1000), WPFaults: report.U64(1000),
				InRegion: &report.FaultClasses{WP: 1000}, Probes: map[string]uint64{"do_wp_page": 1000}},
		}}
}

// Proc is a row of a traced run; copies doubles as page and wp faults.
type Proc struct {
	Pid, Ppid, Depth int
	Comm             string
	Start            float64
	Copies           uint64
}

// Tree is a run as cowtrace run writes it, rows in tree order.
func Tree(label string, procs ...Proc) *report.Run {
	exit := 0
	r := &report.Run{
		SchemaVersion: report.SchemaVersion, Kernel: "6.18.0-test", Scenario: "traced", Label: label,
		Methods: map[string]string{
			"page_faults": "sampled:page-faults", "wp_faults": "tracepoint:exceptions:page_fault_user",
			"copies": "inferred:x", "inferred_copies": "inferred:x",
		},
		Trace: &report.Trace{Command: []string{"sh", "-c", "..."}, DurationMs: 12, EndedBy: "exit", ExitCode: &exit},
	}
	for _, p := range procs {
		role := "child"
		if p.Depth == 0 {
			role = "command"
		}
		r.Processes = append(r.Processes, report.Process{
			Role: role, Pid: p.Pid,
			Lineage:    &report.Lineage{Ppid: p.Ppid, Comm: p.Comm, Depth: p.Depth, StartMs: p.Start, Exited: true, Threads: 1},
			PageFaults: report.U64(p.Copies * 3), WPFaults: report.U64(p.Copies + 1), Copies: report.U64(p.Copies), InferredCopies: report.U64(p.Copies),
		})
	}
	return r
}

// SixProcesses is the tree of sh -c 'sh -c "true & wait" & sh -c "true &
// wait" & cat; wait', its pids from base on, the second sh with
// secondShCopies copies: 10 17 11 secondShCopies 16 6 in tree order.
func SixProcesses(label string, base int, secondShCopies uint64) *report.Run {
	return Tree(label,
		Proc{base, 1, 0, "sh", 0, 10},
		Proc{base + 1, base, 1, "sh", 1, 17},
		Proc{base + 5, base + 1, 2, "true", 3, 11},
		Proc{base + 3, base, 1, "sh", 2, secondShCopies},
		Proc{base + 4, base + 3, 2, "true", 4, 16},
		Proc{base + 2, base, 1, "cat", 2.5, 6},
	)
}
