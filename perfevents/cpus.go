package perfevents

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// OnlineCPUs lists the online CPUs (/sys/devices/system/cpu/online).
func OnlineCPUs() ([]int, error) {
	path := filepath.Join(SysfsRoot, "sys/devices/system/cpu/online")
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("list online CPUs: %w", err)
	}
	return ParseCPUList(strings.TrimSpace(string(b)))
}

// ParseCPUList parses the kernel's CPU list format ("0-3,6").
func ParseCPUList(s string) ([]int, error) {
	var cpus []int
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 {
			return nil, fmt.Errorf("CPU list %q: bad CPU %q", s, lo)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return nil, fmt.Errorf("CPU list %q: bad range %q", s, part)
			}
		}
		if b-a > 1<<16 {
			return nil, fmt.Errorf("CPU list %q: range %q too large", s, part)
		}
		for c := a; c <= b; c++ {
			cpus = append(cpus, c)
		}
	}
	if len(cpus) == 0 {
		return nil, fmt.Errorf("CPU list %q is empty", s)
	}
	return cpus, nil
}
