package perfevents

import (
	"bufio"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// KernelRelease is `uname -r`.
func KernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}

// KernelConfig reads the kernel's build configuration from /proc/config.gz
// (CONFIG_IKCONFIG_PROC) and returns name's value: "y", "m", a string, or
// "" when the option is "not set". ok is false when the configuration is
// not available, so callers can only guess why a facility is missing.
func KernelConfig(name string) (value string, ok bool) {
	f, err := os.Open("/proc/config.gz")
	if err != nil {
		return "", false
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return "", false
	}
	v, err := parseKernelConfig(zr, name)
	return v, err == nil
}

func parseKernelConfig(r io.Reader, name string) (string, error) {
	sc := bufio.NewScanner(r)
	set := name + "="
	unset := "# " + name + " is not set"
	for sc.Scan() {
		line := sc.Text()
		if v, found := strings.CutPrefix(line, set); found {
			return strings.Trim(v, `"`), nil
		}
		if line == unset {
			return "", nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	// Options that depend on a disabled one are absent altogether.
	return "", nil
}

// KprobesUnavailableReason explains, in a few words, why this kernel offers
// neither the kprobe PMU nor tracefs kprobe_events.
func KprobesUnavailableReason() string {
	v, ok := KernelConfig("CONFIG_KPROBES")
	switch {
	case !ok:
		return "no kprobe PMU and no kprobe_events (kernel configuration unreadable)"
	case v == "":
		return "kernel built without CONFIG_KPROBES"
	}
	if v, _ := KernelConfig("CONFIG_KPROBE_EVENTS"); v == "" {
		return "kernel built without CONFIG_KPROBE_EVENTS"
	}
	return fmt.Sprintf("CONFIG_KPROBES=%s but neither the kprobe PMU nor kprobe_events answered", v)
}
