package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// The commit the binary was built from, as the Makefile's build stamps it
// with -ldflags -X: with GOFLAGS=-buildvcs=false (as on the project's
// machines) or outside a git checkout, the go command stamps no vcs.*
// settings, and a bug report could not say which code it is about.
var (
	commit     string // full hash
	commitTime string // RFC 3339, the commit's
	modified   string // "true" when the work tree had changes
)

// versionLine is what `cowtrace version` prints: the module version and the
// commit the binary was built from, the Go release and the platform; enough
// to tell two binaries apart in a bug report.
func versionLine() string {
	version := "(devel)"
	rev, when, dirty := commit, commitTime, modified == "true"
	if bi, ok := debug.ReadBuildInfo(); ok {
		// go test and go run leave Main.Version empty or "(devel)"; go
		// install m@v stamps v; go build in a git checkout stamps a
		// pseudo-version and vcs.*, which win over the Makefile's stamp
		// as the go command's own.
		if bi.Main.Version != "" {
			version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.time":
				when = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
	}
	return fmt.Sprintf("cowtrace %s%s %s %s/%s", version, commitNote(version, rev, when, dirty), runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// commitNote is " (commit REV, TIME, modified)", or "" when nothing is
// known or a pseudo-version (v0.0.0-TIME-COMMIT[+dirty]) says it already.
func commitNote(version, rev, when string, dirty bool) string {
	short := rev[:min(12, len(rev))]
	if rev == "" || strings.Contains(version, short) {
		return ""
	}
	parts := []string{"commit " + short}
	if when != "" {
		parts = append(parts, when)
	}
	if dirty {
		parts = append(parts, "modified")
	}
	return " (" + strings.Join(parts, ", ") + ")"
}
