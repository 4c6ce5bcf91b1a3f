package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/cowtrace/cowtrace/internal/testenv"
	"github.com/cowtrace/cowtrace/report"
)

// TestUnprivileged runs cowtrace as user nobody at the kernel's default
// perf_event_paranoid of 2: no tracepoints, no kprobes, but the page faults
// of every process of the tree, counted in user mode, and a note on what is
// missing and why. Exit 0.
func TestUnprivileged(t *testing.T) {
	testenv.Require(t, testenv.Root)
	if b, err := os.ReadFile("/proc/sys/kernel/perf_event_paranoid"); err != nil || strings.TrimSpace(string(b)) != "2" {
		t.Skipf("needs kernel.perf_event_paranoid 2, the default (%q, %v)", b, err)
	}
	// nobody must be able to execute both binaries.
	dir, err := os.MkdirTemp("", "cowtrace-unpriv-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	self, prog := filepath.Join(dir, "cowtrace.test"), filepath.Join(dir, "cow_seed")
	for src, dst := range map[string]string{os.Args[0]: self, testenv.BuildC(t, "cow_seed"): prog} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(self, "run", "--format", "json", "--", prog)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), asMainEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("cowtrace run as nobody: %v\n%s", err, stderr.Bytes())
	}
	var run report.Run
	if err := json.Unmarshal(out[bytes.IndexByte(out, '{'):], &run); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	testenv.ValidateJSON(t, "run", out[bytes.IndexByte(out, '{'):])
	if len(run.Processes) != 3 || run.LostRecords != 0 {
		t.Fatalf("%d processes, %d lost: %+v", len(run.Processes), run.LostRecords, run.Processes)
	}
	if m := run.Methods["page_faults"]; !strings.HasSuffix(m, ":u") {
		t.Errorf("page faults by %q, want user mode's (:u)", m)
	}
	if _, ok := run.Methods["wp_faults"]; ok {
		t.Errorf("wp_faults by %q without privileges", run.Methods["wp_faults"])
	}
	if w := run.Processes[2]; w.PageFaults == nil || *w.PageFaults < 1000 || w.WPFaults != nil || w.Copies != nil {
		t.Errorf("writer %+v: want its 1000+ page faults, and no wp faults or copies", w)
	}
	if !strings.Contains(strings.Join(run.Notes, "\n"), "without privileges") {
		t.Errorf("no note on what is missing: %q", run.Notes)
	}
}

// TestUnprivilegedExperiment: as user nobody at perf_event_paranoid 2 the
// experiment sees each fault's address (the page-fault event) but not its
// kind: the region's write-protect faults are null, not 0, and an
// expectation on them fails as not measured instead of passing.
func TestUnprivilegedExperiment(t *testing.T) {
	testenv.Require(t, testenv.Root)
	if b, err := os.ReadFile("/proc/sys/kernel/perf_event_paranoid"); err != nil || strings.TrimSpace(string(b)) != "2" {
		t.Skipf("needs kernel.perf_event_paranoid 2, the default (%q, %v)", b, err)
	}
	// Not t.TempDir: its parent is closed to nobody.
	dir, err := os.MkdirTemp("", "cowtrace-unpriv-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	self := filepath.Join(dir, "cowtrace.test")
	b, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(self, b, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, "--blocks", "100", "--format", "json", "--expect", "writer.in_region.wp == 0")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), asMainEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if code := cmd.ProcessState.ExitCode(); code != exitFailure || !strings.Contains(stderr.String(), "writer.in_region.wp is not measured") {
		t.Fatalf("exit %d (%v), stderr %q: want %d, the expectation not measured", code, err, stderr.String(), exitFailure)
	}
	testenv.ValidateJSON(t, "run", out)
	var raw struct {
		Processes []struct {
			Role     string                     `json:"role"`
			InRegion map[string]json.RawMessage `json:"in_region"`
		} `json:"processes"`
	}
	if err := json.Unmarshal(out, &raw); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	for _, p := range raw.Processes {
		if p.Role != "writer" {
			continue
		}
		if wp, all := string(p.InRegion["wp"]), string(p.InRegion["unclassified"]); wp != "null" || all != "100" {
			t.Errorf("writer in_region: wp %s, unclassified %s; want null and 100", wp, all)
		}
	}
}
