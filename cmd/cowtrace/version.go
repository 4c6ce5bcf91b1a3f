package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// versionLine is what `cowtrace version` prints: the module version and the
// commit the go command stamped into the binary, the Go release and the
// platform; enough to tell two binaries apart in a bug report.
func versionLine() string {
	version, commit := "(devel)", ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		// go test and go run leave Main.Version empty or "(devel)";
		// go build in a git checkout stamps a pseudo-version and vcs.*.
		if bi.Main.Version != "" {
			version = bi.Main.Version
		}
		var rev, when string
		modified := false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.time":
				when = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		// A pseudo-version (v0.0.0-TIME-COMMIT[+dirty]) says it all already.
		if rev != "" && !strings.Contains(version, rev[:min(12, len(rev))]) {
			parts := []string{"commit " + rev[:min(12, len(rev))]}
			if when != "" {
				parts = append(parts, when)
			}
			if modified {
				parts = append(parts, "modified")
			}
			commit = " (" + strings.Join(parts, ", ") + ")"
		}
	}
	return fmt.Sprintf("cowtrace %s%s %s %s/%s", version, commit, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
