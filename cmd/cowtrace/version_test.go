package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCommitNote: the commit is said unless a pseudo-version says it.
func TestCommitNote(t *testing.T) {
	const rev = "550d4b177788c1f2a3e4d5c6b7a8f9e0d1c2b3a4"
	for _, c := range []struct {
		version, rev, when string
		dirty              bool
		want               string
	}{
		{"(devel)", "", "", false, ""},
		{"(devel)", rev, "2026-12-06T23:01:24Z", false, " (commit 550d4b177788, 2026-12-06T23:01:24Z)"},
		{"(devel)", rev, "", true, " (commit 550d4b177788, modified)"},
		{"v0.0.0-20261206230124-550d4b177788", rev, "2026-12-06T23:01:24Z", false, ""},
		{"v1.2.0", rev, "", false, " (commit 550d4b177788)"},
	} {
		if got := commitNote(c.version, c.rev, c.when, c.dirty); got != c.want {
			t.Errorf("commitNote(%q, %q, %q, %v) = %q, want %q", c.version, c.rev, c.when, c.dirty, got, c.want)
		}
	}
}

// TestMakeBuildStamp: the Makefile's build stamps the commit it builds, so
// that `cowtrace version` names it where the go command stamps nothing
// (GOFLAGS=-buildvcs=false, set here whatever the machine has).
func TestMakeBuildStamp(t *testing.T) {
	if testing.Short() {
		t.Skip("builds cowtrace with make")
	}
	root := repoRoot(t)
	head, err := exec.Command("git", "-C", root, "rev-parse", "HEAD").Output()
	if err != nil {
		t.Skipf("not a git checkout: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "cowtrace")
	mk := exec.Command("make", "-C", root, "build", "BIN="+bin)
	mk.Env = append(mk.Environ(), "GOFLAGS=-buildvcs=false")
	if out, err := mk.CombinedOutput(); err != nil {
		t.Fatalf("make build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatalf("%s version: %v", bin, err)
	}
	want := "cowtrace (devel) (commit " + string(head[:12]) + ", "
	if !strings.HasPrefix(string(out), want) {
		t.Errorf("cowtrace version: %q, want it to start with %q", out, want)
	}
}

// repoRoot is the repository's top directory, two up from this package.
func repoRoot(t *testing.T) string {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return root
}
