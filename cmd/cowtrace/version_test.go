package main

import (
	"os"
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

// TestMakeInstall: make install puts the binary, the man page and the
// three completions under DESTDIR$(PREFIX), PREFIX /usr/local by default,
// and make uninstall removes them.
func TestMakeInstall(t *testing.T) {
	if testing.Short() {
		t.Skip("builds cowtrace with make")
	}
	root := repoRoot(t)
	tmp := t.TempDir()
	bin, dest := filepath.Join(tmp, "build", "cowtrace"), filepath.Join(tmp, "dest")
	files := []string{"bin/cowtrace", "share/man/man1/cowtrace.1", "share/bash-completion/completions/cowtrace",
		"share/zsh/site-functions/_cowtrace", "share/fish/vendor_completions.d/cowtrace.fish"}
	for _, prefix := range []string{"", "/usr"} {
		args := []string{"-C", root, "BIN=" + bin, "DESTDIR=" + dest}
		under := filepath.Join(dest, "usr/local")
		if prefix != "" {
			args = append(args, "PREFIX="+prefix)
			under = filepath.Join(dest, prefix)
		}
		if out, err := exec.Command("make", append(args, "install")...).CombinedOutput(); err != nil {
			t.Fatalf("make install PREFIX=%q: %v\n%s", prefix, err, out)
		}
		for _, f := range files {
			st, err := os.Stat(filepath.Join(under, f))
			if err != nil {
				t.Errorf("PREFIX=%q: %v", prefix, err)
				continue
			}
			if want := os.FileMode(0o644); f == files[0] {
				if st.Mode().Perm() != 0o755 {
					t.Errorf("%s: mode %v", f, st.Mode())
				}
			} else if st.Mode().Perm() != want || st.Size() == 0 {
				t.Errorf("%s: mode %v, %d bytes", f, st.Mode(), st.Size())
			}
		}
		if page, err := os.ReadFile(filepath.Join(under, files[1])); err != nil || !strings.HasPrefix(string(page), ".TH COWTRACE 1 ") {
			t.Errorf("man page: %v %.40q", err, page)
		}
		if out, err := exec.Command("make", append(args, "uninstall")...).CombinedOutput(); err != nil {
			t.Fatalf("make uninstall: %v\n%s", err, out)
		}
		for _, f := range files {
			if _, err := os.Stat(filepath.Join(under, f)); err == nil {
				t.Errorf("PREFIX=%q: make uninstall left %s", prefix, f)
			}
		}
	}
}
