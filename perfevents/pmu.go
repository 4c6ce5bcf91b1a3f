package perfevents

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// SysfsRoot is the directory that stands for "/" when this package reads
// sysfs and procfs files (PMU descriptions, perf_event_paranoid,
// /proc/self/status, /proc/kallsyms). Tests point it at a fake tree under
// testdata/sysfs; set it before use, it is not guarded against concurrent
// change.
var SysfsRoot = "/"

// Capability bits of the CapEff mask in /proc/PID/status.
const (
	capSysAdmin = 21
	capPerfmon  = 38 // Linux 5.8+
)

// PMUType returns the perf_event_attr.type of the PMU called name (software,
// tracepoint, kprobe, uprobe, ...). A PMU the kernel lacks wraps
// ErrNotSupported.
func PMUType(name string) (uint32, error) {
	if !validEventName(name) {
		return 0, fmt.Errorf("PMU %q: invalid name: %w", name, ErrNotSupported)
	}
	path := filepath.Join(SysfsRoot, "sys/bus/event_source/devices", name, "type")
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("PMU %s: kernel has no such PMU: %w", name, ErrNotSupported)
	}
	if err != nil {
		return 0, fmt.Errorf("PMU %s: %w", name, err)
	}
	typ, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 32)
	if err != nil {
		return 0, fmt.Errorf("PMU %s: parse %s: %w", name, path, err)
	}
	return uint32(typ), nil
}

// KprobePMUType returns the type of the kprobe PMU (Linux 4.17+, with
// CONFIG_KPROBE_EVENTS) and the bit of perf_event_attr.config that turns a
// kprobe into a kretprobe. Without the PMU the error wraps ErrNotSupported;
// kprobe_events in tracefs (see KprobeEvents) may still work on older kernels.
func KprobePMUType() (typ uint32, retprobeBit int, err error) {
	typ, err = PMUType("kprobe")
	if err != nil {
		return 0, 0, err
	}
	path := filepath.Join(SysfsRoot, "sys/bus/event_source/devices/kprobe/format/retprobe")
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, fmt.Errorf("kprobe PMU: retprobe format: %w", err)
	}
	bit, err := parseFormatBit(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, 0, fmt.Errorf("kprobe PMU: %s: %w", path, err)
	}
	return typ, bit, nil
}

// parseFormatBit parses a one-bit sysfs PMU format, "config:N".
func parseFormatBit(s string) (int, error) {
	field, bits, ok := strings.Cut(s, ":")
	if !ok || field != "config" {
		return 0, fmt.Errorf("format %q: want config:BIT", s)
	}
	lo, hi, isRange := strings.Cut(bits, "-")
	bit, err := strconv.Atoi(lo)
	if err != nil || bit < 0 || bit > 63 || (isRange && hi != lo) {
		return 0, fmt.Errorf("format %q: want a single config bit", s)
	}
	return bit, nil
}

// ParanoidLevel returns kernel.perf_event_paranoid.
func ParanoidLevel() (int, error) {
	path := filepath.Join(SysfsRoot, "proc/sys/kernel/perf_event_paranoid")
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("%s: %w", path, ErrNotSupported)
	}
	if err != nil {
		return 0, err
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("parse %s: %w", path, err)
	}
	return v, nil
}

// PermissionHint returns one line saying what is missing when
// perf_event_open fails with EACCES or EPERM: root, CAP_PERFMON or
// CAP_SYS_ADMIN in the effective set, and the perf_event_paranoid level
// cowtrace needs. It reads /proc/self/status and the sysctl under SysfsRoot
// and says so when it cannot.
func PermissionHint() string {
	st := readStatus(filepath.Join(SysfsRoot, "proc/self/status"))
	paranoid, perr := ParanoidLevel()
	return permissionHint(st, paranoid, perr)
}

type procStatus struct {
	euid      int
	capEff    uint64
	haveUID   bool
	haveCaps  bool
	statusErr error
}

func readStatus(path string) procStatus {
	var st procStatus
	f, err := os.Open(path)
	if err != nil {
		st.statusErr = err
		return st
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fields := strings.Fields(val)
		switch key {
		case "Uid":
			// real, effective, saved, filesystem
			if len(fields) >= 2 {
				if v, err := strconv.Atoi(fields[1]); err == nil {
					st.euid, st.haveUID = v, true
				}
			}
		case "CapEff":
			if len(fields) == 1 {
				if v, err := strconv.ParseUint(fields[0], 16, 64); err == nil {
					st.capEff, st.haveCaps = v, true
				}
			}
		}
	}
	if err := sc.Err(); err != nil {
		st.statusErr = err
	}
	return st
}

func permissionHint(st procStatus, paranoid int, paranoidErr error) string {
	var missing []string
	if st.haveUID && st.euid != 0 {
		missing = append(missing, fmt.Sprintf("not root (euid %d)", st.euid))
	}
	perfmon := st.capEff&(1<<capPerfmon) != 0
	sysAdmin := st.capEff&(1<<capSysAdmin) != 0
	switch {
	case st.statusErr != nil:
		missing = append(missing, fmt.Sprintf("privileges unknown: cannot read /proc/self/status (%v)", st.statusErr))
	case !st.haveCaps:
		missing = append(missing, "capabilities unknown (no CapEff in /proc/self/status)")
	case !perfmon && !sysAdmin:
		missing = append(missing, "no CAP_PERFMON (bit 38, Linux 5.8+) or CAP_SYS_ADMIN (bit 21) in the effective set")
	}
	privileged := st.haveCaps && (perfmon || sysAdmin)

	var sysctl string
	switch {
	case paranoidErr != nil:
		sysctl = fmt.Sprintf("kernel.perf_event_paranoid unreadable (%v)", paranoidErr)
	case privileged:
		// CAP_PERFMON/CAP_SYS_ADMIN bypass the paranoid checks.
		sysctl = fmt.Sprintf("kernel.perf_event_paranoid=%d (ignored with these capabilities)", paranoid)
	case paranoid > -1:
		// > 1 refuses kernel-side events even on one's own children; > -1
		// refuses PERF_SAMPLE_RAW of tracepoints, which cowtrace samples.
		sysctl = fmt.Sprintf("kernel.perf_event_paranoid=%d, must be -1 without CAP_PERFMON (sysctl -w kernel.perf_event_paranoid=-1; kprobes need CAP_PERFMON at any level)", paranoid)
	default:
		sysctl = fmt.Sprintf("kernel.perf_event_paranoid=%d allows it", paranoid)
	}

	if len(missing) == 0 && privileged {
		return "privileges look sufficient (root with CAP_PERFMON/CAP_SYS_ADMIN), so a security module (SELinux, lockdown) or a seccomp filter is likely refusing perf_event_open; " + sysctl
	}
	return strings.Join(append(missing, sysctl), "; ")
}
