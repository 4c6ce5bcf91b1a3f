package main

import (
	"encoding/json"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/cowtrace/cowtrace/vmtest/internal/guest"
)

// realGuests are the stdouts of the commands of runchecks.go from a real
// run of the harness on 6.1.0-56 and 6.12.117 (testdata/guest-stdout.json,
// kernel -> command -> stdout), as guests with every result.
func realGuests(t *testing.T) map[string]*guestRun {
	t.Helper()
	b, err := os.ReadFile("testdata/guest-stdout.json")
	if err != nil {
		t.Fatal(err)
	}
	var byKernel map[string]map[string]string
	if err := json.Unmarshal(b, &byKernel); err != nil {
		t.Fatal(err)
	}
	out := map[string]*guestRun{}
	for kernel, cmds := range byKernel {
		var m guest.Manifest
		var results []*guest.Result
		names := make([]string, 0, len(cmds))
		for name := range cmds {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			m.Commands = append(m.Commands, guest.Command{Name: name, InspectTracefs: true})
			results = append(results, &guest.Result{Name: name, Stdout: cmds[name], Tracefs: &guest.TracefsState{}})
		}
		out[kernel] = newGuestRun(&bootResult{
			Info:    &guest.Info{Release: kernel, KprobePMUType: 6, KprobeEvents: true},
			Results: results, Done: true, Sent: len(results),
		}, m)
	}
	if len(out) != 2 {
		t.Fatalf("%d kernels in testdata, want 2", len(out))
	}
	return out
}

func TestFollowChecksPassOnRealGuests(t *testing.T) {
	for kernel, g := range realGuests(t) {
		for _, r := range runChecks(g, checksOn(kprobes, followCmds), nil) {
			if r.Err != "" || r.Skipped != "" {
				t.Errorf("%s: %s: err %q, skipped %q", kernel, r.Name, r.Err, r.Skipped)
			}
		}
		lines := g.matrixLines()
		if len(lines) == 0 || !strings.HasPrefix(lines[0], "matrix: 11 of 11 scenarios held with kprobe copies") {
			t.Errorf("%s: matrix lines %q", kernel, lines)
		}
	}
}

// edit rewrites the JSON of one command's stdout.
func edit(t *testing.T, g *guestRun, name string, fn func(doc map[string]any)) {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal([]byte(g.results[name].Stdout), &doc); err != nil {
		t.Fatal(err)
	}
	fn(doc)
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	g.results[name].Stdout = string(b)
}

func row(doc map[string]any, i int) map[string]any {
	return doc["processes"].([]any)[i].(map[string]any)
}

func TestFollowChecksCatchFailures(t *testing.T) {
	for _, tc := range []struct {
		check string // the check that must fail
		want  string // matches its error
		spoil func(t *testing.T, g *guestRun)
	}{
		{"run seed: parent, reader, writer traced to the end", `2 rows, want 3`, func(t *testing.T, g *guestRun) {
			edit(t, g, "run-seed", func(d map[string]any) { d["processes"] = d["processes"].([]any)[:2] })
		}},
		{"run seed: parent, reader, writer traced to the end", `want exit 0`, func(t *testing.T, g *guestRun) {
			g.results["run-seed"].ExitCode = 2
		}},
		{"run seed: copies by the kernel's best method", `methods.copies = "inferred`, func(t *testing.T, g *guestRun) {
			edit(t, g, "run-seed", func(d map[string]any) { d["methods"].(map[string]any)["copies"] = "inferred:x" })
		}},
		{"run seed: writer 1000 <= copies <= wp faults == 1000 + reader's", `writer copies 999`, func(t *testing.T, g *guestRun) {
			edit(t, g, "run-seed", func(d map[string]any) {
				row(d, 2)["copies"] = 999
				row(d, 2)["probes"].(map[string]any)["copy_mc_to_kernel"] = 999
			})
		}},
		{"run seed: writer 1000 <= copies <= wp faults == 1000 + reader's", `want 1000 \+ the reader's`, func(t *testing.T, g *guestRun) {
			edit(t, g, "run-seed", func(d map[string]any) { row(d, 1)["wp_faults"] = 3 })
		}},
		{"run seed: reader copies <= its libc wp faults (<= 8)", `reader copies 40`, func(t *testing.T, g *guestRun) {
			edit(t, g, "run-seed", func(d map[string]any) { row(d, 1)["copies"] = 40 })
		}},
		{"run seed: kprobe hits attributed per process", `probes has no "do_wp_page"`, func(t *testing.T, g *guestRun) {
			edit(t, g, "run-seed", func(d map[string]any) { delete(row(d, 0)["probes"].(map[string]any), "do_wp_page") })
		}},
		{"run seed: kprobe hits attributed per process", `3 copies by allocation stacks`, func(t *testing.T, g *guestRun) {
			edit(t, g, "run-seed", func(d map[string]any) {
				d["methods"].(map[string]any)["inferred_copies"] = "callchain:x"
				row(d, 2)["inferred_copies"] = 3
			})
		}},
		{"run tree (tracefs): exact per-child attribution", `child 3 \(3 pages\): wp_faults 9`, func(t *testing.T, g *guestRun) {
			edit(t, g, "run-tree-tracefs", func(d map[string]any) { row(d, 3)["wp_faults"] = 9 })
		}},
		{"run tree (tracefs): exact per-child attribution", `kprobe_method = "pmu"`, func(t *testing.T, g *guestRun) {
			edit(t, g, "run-tree-tracefs", func(d map[string]any) { d["kprobe_method"] = "pmu" })
		}},
		{"run tree (tracefs): no kprobe or mount left", `kprobe_events not empty`, func(t *testing.T, g *guestRun) {
			g.results["run-tree-tracefs"].Tracefs.KprobeEvents = "p:cowtrace_1/do_wp_page do_wp_page\n"
		}},
		{"matrix: every scenario's outcome holds with the best copies method", `thp: expected .*did not hold: writer.copies`, func(t *testing.T, g *guestRun) {
			edit(t, g, "matrix", func(d map[string]any) {
				for _, s := range d["scenarios"].([]any) {
					if s := s.(map[string]any); s["name"] == "thp" {
						s["held"] = false
						s["expectations"] = []any{map[string]any{"expect": "x", "held": false, "detail": "writer.copies = 1"}}
					}
				}
			})
		}},
		{"matrix: every scenario's outcome holds with the best copies method", `vfork: methods.copies = ""`, func(t *testing.T, g *guestRun) {
			edit(t, g, "matrix", func(d map[string]any) {
				for _, s := range d["scenarios"].([]any) {
					if s := s.(map[string]any); s["name"] == "vfork" {
						delete(s["run"].(map[string]any)["methods"].(map[string]any), "copies")
					}
				}
			})
		}},
		{"count mode: writer wp faults == classify mode's", `writer wp_faults: count 990, classify 1000`, func(t *testing.T, g *guestRun) {
			edit(t, g, "count", func(d map[string]any) { row(d, 2)["wp_faults"] = 990 })
		}},
	} {
		t.Run(tc.want, func(t *testing.T) {
			for kernel, g := range realGuests(t) {
				tc.spoil(t, g)
				found := false
				for _, r := range runChecks(g, checksOn(kprobes, followCmds), nil) {
					if r.Name != tc.check {
						continue
					}
					found = true
					if !regexp.MustCompile(tc.want).MatchString(r.Err) {
						t.Errorf("%s: %s: err %q, want it to match %q", kernel, r.Name, r.Err, tc.want)
					}
				}
				if !found {
					t.Fatalf("no check named %q", tc.check)
				}
			}
		})
	}
}
