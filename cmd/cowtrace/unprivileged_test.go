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

// runAsNobody runs this test binary as cowtrace, as user nobody, from a
// copy nobody can execute, and returns its exit code and output.
func runAsNobody(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	// Not t.TempDir(): its parent is closed to other users.
	dir, err := os.MkdirTemp("", "cowtrace-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	self := filepath.Join(dir, "cowtrace.test")
	b, err := os.ReadFile(os.Args[0])
	if err == nil {
		err = os.WriteFile(self, b, 0o755)
	}
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), asMainEnv+"=1", "GOTRACEBACK=")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); cmd.ProcessState == nil {
		t.Fatalf("cowtrace %s as nobody: %v", strings.Join(args, " "), err)
	}
	return cmd.ProcessState.ExitCode(), out.String(), errb.String()
}

// TestUnprivilegedMatrix: without privileges the matrix's default proof,
// which needs CAP_SYS_ADMIN, is refused before any scenario runs, saying
// --proof none; with it, the fault classes left unchecked say that the
// tracepoints were denied and what grants them, not that there are none.
func TestUnprivilegedMatrix(t *testing.T) {
	testenv.Require(t, testenv.Root)
	if b, err := os.ReadFile("/proc/sys/kernel/perf_event_paranoid"); err != nil || strings.TrimSpace(string(b)) != "2" {
		t.Skipf("needs kernel.perf_event_paranoid 2, the default (%q, %v)", b, err)
	}
	code, stdout, stderr := runAsNobody(t, "matrix", "--blocks", "20")
	if code != exitFailure || stdout != "" || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "add --proof none") {
		t.Errorf("matrix as nobody: exit %d, stdout %q, stderr %q: want 1 and one line suggesting --proof none", code, stdout, stderr)
	}
	code, stdout, stderr = runAsNobody(t, "matrix", "--only", "touched", "--blocks", "20", "--proof", "none", "--format", "json")
	var m report.Matrix
	if err := json.Unmarshal([]byte(stdout), &m); err != nil || len(m.Scenarios) != 1 {
		t.Fatalf("matrix --proof none as nobody: exit %d, %v, stderr %q\n%s", code, err, stderr, stdout)
	}
	var notChecked []string
	for _, r := range m.Scenarios[0].Expectations {
		if r.NotChecked != "" {
			notChecked = append(notChecked, r.NotChecked)
		}
	}
	all := strings.Join(notChecked, "\n")
	if strings.Contains(all, "no x86 fault tracepoints here") || !strings.Contains(all, "the fault tracepoints were denied: tracepoints need root, CAP_PERFMON") {
		t.Errorf("why fault classes were not checked:\n%s", all)
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
	code, out, stderr := runAsNobody(t, "--blocks", "100", "--format", "json", "--expect", "writer.in_region.wp == 0")
	if code != exitFailure || !strings.Contains(stderr, "writer.in_region.wp is not measured") {
		t.Fatalf("exit %d, stderr %q: want %d, the expectation not measured", code, stderr, exitFailure)
	}
	testenv.ValidateJSON(t, "run", []byte(out))
	var raw struct {
		Processes []struct {
			Role     string                     `json:"role"`
			InRegion map[string]json.RawMessage `json:"in_region"`
		} `json:"processes"`
	}
	if err := json.Unmarshal([]byte(out), &raw); err != nil {
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
