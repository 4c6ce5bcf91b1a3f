package perfevents

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/cowtrace/cowtrace/internal/testenv"
)

// Fake sysfs/procfs roots: this Firecracker guest (no kprobe PMU, root with
// every capability), and a Debian 6.12 kernel as an unprivileged user sees
// it (kprobe PMU type 8, as Debian's kernels have it under vmtest; uid 1000, no
// capabilities, kallsyms addresses hidden).
const (
	fakeRootFirecracker = "testdata/sysfs/firecracker-6.18"
	fakeRootDebian      = "testdata/sysfs/debian-6.12"
)

func withSysfsRoot(t *testing.T, root string) {
	t.Helper()
	old := SysfsRoot
	SysfsRoot = root
	t.Cleanup(func() { SysfsRoot = old })
}

func TestPMUTypeFixture(t *testing.T) {
	withSysfsRoot(t, fakeRootFirecracker)
	for name, want := range map[string]uint32{"software": 1, "tracepoint": 2, "breakpoint": 5, "uprobe": 8} {
		if got, err := PMUType(name); err != nil || got != want {
			t.Errorf("PMUType(%s) = %d, %v; want %d", name, got, err, want)
		}
	}
	for _, name := range []string{"kprobe", "../devices/software", "", "a/b"} {
		if _, err := PMUType(name); !errors.Is(err, ErrNotSupported) {
			t.Errorf("PMUType(%q): %v, want ErrNotSupported", name, err)
		}
	}
	if _, _, err := KprobePMUType(); !errors.Is(err, ErrNotSupported) {
		t.Errorf("KprobePMU without the PMU: %v, want ErrNotSupported", err)
	}

	withSysfsRoot(t, fakeRootDebian)
	typ, bit, err := KprobePMUType()
	if err != nil || typ != 8 || bit != 0 {
		t.Errorf("KprobePMU = %d, %d, %v; want 8, 0", typ, bit, err)
	}
}

func TestPMUTypeMalformed(t *testing.T) {
	root := t.TempDir()
	dev := root + "/sys/bus/event_source/devices"
	for name, content := range map[string]string{"junk": "soft\n", "neg": "-1\n", "kprobe": "6\n"} {
		if err := os.MkdirAll(dev+"/"+name+"/format", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dev+"/"+name+"/type", []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	withSysfsRoot(t, root)
	for _, name := range []string{"junk", "neg"} {
		if _, err := PMUType(name); err == nil || errors.Is(err, ErrNotSupported) {
			t.Errorf("PMUType(%s): %v; want a parse error", name, err)
		}
	}
	// The kprobe PMU without its retprobe format file.
	if _, _, err := KprobePMUType(); err == nil || errors.Is(err, ErrNotSupported) {
		t.Errorf("KprobePMU without format/retprobe: %v; want an error other than ErrNotSupported", err)
	}
}

func TestParseFormatBit(t *testing.T) {
	for in, want := range map[string]int{"config:0": 0, "config:63": 63, "config:9-9": 9} {
		if got, err := parseFormatBit(in); err != nil || got != want {
			t.Errorf("parseFormatBit(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "config", "config:", "config1:0", "config:64", "config:-1", "config:0-63", "config:x"} {
		if got, err := parseFormatBit(in); err == nil {
			t.Errorf("parseFormatBit(%q) = %d, want an error", in, got)
		}
	}
}

func TestParanoidLevelFixture(t *testing.T) {
	withSysfsRoot(t, fakeRootDebian)
	if got, err := ParanoidLevel(); err != nil || got != 2 {
		t.Errorf("ParanoidLevel = %d, %v; want 2", got, err)
	}
	withSysfsRoot(t, t.TempDir())
	if _, err := ParanoidLevel(); !errors.Is(err, ErrNotSupported) {
		t.Errorf("ParanoidLevel without the sysctl: %v, want ErrNotSupported", err)
	}
}

func TestParanoidLevelRealKernel(t *testing.T) {
	testenv.Require(t, testenv.Path("/proc/sys/kernel/perf_event_paranoid"))
	b, err := os.ReadFile("/proc/sys/kernel/perf_event_paranoid")
	if err != nil {
		t.Fatal(err)
	}
	want, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if got, err := ParanoidLevel(); err != nil || got != want {
		t.Errorf("ParanoidLevel = %d, %v; want %d", got, err, want)
	}
}

func TestPermissionHintFixture(t *testing.T) {
	withSysfsRoot(t, fakeRootDebian)
	hint := PermissionHint()
	for _, want := range []string{"not root (euid 1000)", "no CAP_PERFMON", "CAP_SYS_ADMIN", "kernel.perf_event_paranoid=2", "must be -1"} {
		if !strings.Contains(hint, want) {
			t.Errorf("hint %q lacks %q", hint, want)
		}
	}
	if strings.Contains(hint, "\n") {
		t.Errorf("hint is not one line: %q", hint)
	}

	withSysfsRoot(t, fakeRootFirecracker)
	if hint := PermissionHint(); !strings.Contains(hint, "privileges look sufficient") {
		t.Errorf("root with all capabilities: hint %q", hint)
	}

	withSysfsRoot(t, t.TempDir())
	hint = PermissionHint()
	if !strings.Contains(hint, "cannot read /proc/self/status") || !strings.Contains(hint, "perf_event_paranoid unreadable") {
		t.Errorf("nothing readable: hint %q", hint)
	}
}

func TestPermissionHintCases(t *testing.T) {
	const perfmonOnly = 1 << capPerfmon
	for _, tc := range []struct {
		name     string
		st       procStatus
		paranoid int
		want     []string
		notWant  []string
	}{
		{
			name: "user with CAP_PERFMON", st: procStatus{euid: 1000, haveUID: true, capEff: perfmonOnly, haveCaps: true}, paranoid: 2,
			want: []string{"not root", "ignored with these capabilities"}, notWant: []string{"no CAP_PERFMON", "must be"},
		},
		{
			name: "user at paranoid -1", st: procStatus{euid: 1000, haveUID: true, haveCaps: true}, paranoid: -1,
			want: []string{"not root", "no CAP_PERFMON", "perf_event_paranoid=-1 allows it"},
		},
		{
			name: "root without capabilities (user namespace)", st: procStatus{euid: 0, haveUID: true, haveCaps: true}, paranoid: 3,
			want: []string{"no CAP_PERFMON", "perf_event_paranoid=3, must be -1"}, notWant: []string{"not root"},
		},
		{
			name: "no CapEff line", st: procStatus{euid: 0, haveUID: true}, paranoid: 1,
			want: []string{"capabilities unknown"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hint := permissionHint(tc.st, tc.paranoid, nil)
			for _, w := range tc.want {
				if !strings.Contains(hint, w) {
					t.Errorf("hint %q lacks %q", hint, w)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(hint, w) {
					t.Errorf("hint %q has %q", hint, w)
				}
			}
		})
	}
}

func TestPMURealKernel(t *testing.T) {
	testenv.Require(t, testenv.Path("/sys/bus/event_source/devices"))
	if got, err := PMUType("software"); err != nil || got != 1 {
		t.Errorf("PMUType(software) = %d, %v; want 1 (PERF_TYPE_SOFTWARE)", got, err)
	}
	if got, err := PMUType("tracepoint"); err != nil || got != 2 {
		t.Errorf("PMUType(tracepoint) = %d, %v; want 2 (PERF_TYPE_TRACEPOINT)", got, err)
	}

	typ, bit, err := KprobePMUType()
	if _, statErr := os.Stat("/sys/bus/event_source/devices/kprobe"); statErr != nil {
		if !errors.Is(err, ErrNotSupported) {
			t.Errorf("KprobePMU on a kernel without the kprobe PMU: %d, %d, %v; want ErrNotSupported", typ, bit, err)
		}
		return
	}
	if err != nil || typ == 0 || bit != 0 {
		t.Errorf("KprobePMU = %d, %d, %v; want a dynamic type and bit 0", typ, bit, err)
	}
}

func TestPermissionHintRealKernel(t *testing.T) {
	testenv.Require(t)
	hint := PermissionHint()
	if hint == "" || strings.Contains(hint, "\n") {
		t.Errorf("PermissionHint = %q; want one non-empty line", hint)
	}
	t.Logf("PermissionHint here: %s", hint)
}
