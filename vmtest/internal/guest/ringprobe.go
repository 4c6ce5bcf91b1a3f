package guest

// RingResult is what vmtest/ringprobe prints, a JSON line per cowtrace
// binary, and vmtest -rings reads back from the guest's console.
type RingResult struct {
	Label string `json:"label"`
	CPUs  int    `json:"cpus"`
	// MemUsedKB is MemAvailable before the run less its lowest value
	// while the shell sleeps under cowtrace.
	MemUsedKB int64 `json:"mem_used_kb"`
	// FDs is the most descriptors cowtrace had open meanwhile, PerfFDs
	// the perf events among them.
	FDs       int       `json:"fds"`
	PerfFDs   int       `json:"perf_fds"`
	StartupMs []float64 `json:"startup_ms"`
	Lost      int64     `json:"lost_records"`
	Notes     []string  `json:"notes"`
	Err       string    `json:"err,omitempty"`
}
