package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const testDeb822 = "Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm\n\nTypes: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n"

func TestDebianMirrors(t *testing.T) {
	if m, s := debianMirrors(testDeb822); m != "http://mirror.example/debian" || s != "http://mirror.example/debian-security" {
		t.Errorf("debianMirrors = %s, %s", m, s)
	}
	if m, s := debianMirrors(""); m != "http://deb.debian.org/debian" || s != "http://deb.debian.org/debian-security" {
		t.Errorf("no sources: %s, %s", m, s)
	}
}

func TestSources(t *testing.T) {
	const opts = "[arch=arm64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg]"
	got := aptLists{arch: "arm64", suite: "bookworm"}.sources(testDeb822)
	want := "deb " + opts + " http://mirror.example/debian bookworm main\n" +
		"deb " + opts + " http://mirror.example/debian-security bookworm-security main\n"
	if got != want {
		t.Errorf("sources:\n%s\nwant\n%s", got, want)
	}
	// The security archive has no backports suites: a line for one would
	// fail every apt-get update.
	got = aptLists{arch: "amd64", suite: "trixie-backports"}.sources("")
	if want := "deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie-backports main\n"; got != want {
		t.Errorf("backports sources:\n%s\nwant\n%s", got, want)
	}
}

// TestAptListsApart: every architecture and suite has lists of its own,
// and apt is told the architecture, whatever the machine's is.
func TestAptListsApart(t *testing.T) {
	f := newFetcher(t.TempDir())
	seen := map[string]bool{}
	for _, arch := range []string{"amd64", "arm64"} {
		for _, suite := range []string{"bookworm", "trixie"} {
			l := aptLists{dir: filepath.Join(f.cache, "apt", arch, suite), arch: arch, suite: suite}
			opts := strings.Join(l.opts(), " ")
			if !strings.Contains(opts, "APT::Architecture="+arch+" ") || !strings.Contains(opts, "Dir::State::Lists="+l.dir+"/lists") {
				t.Errorf("%s %s: opts %s", arch, suite, opts)
			}
			if seen[l.dir] {
				t.Errorf("%s shared", l.dir)
			}
			seen[l.dir] = true
		}
	}
}

func TestFindVmlinuzSkipsPartial(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"vmlinuz-6.1.0-9-amd64", "vmlinuz-7.3.4+deb13-amd64.part"} {
		if err := os.WriteFile(filepath.Join(dir, n), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if vm, err := findVmlinuz(dir); err != nil || filepath.Base(vm) != "vmlinuz-6.1.0-9-amd64" {
		t.Errorf("findVmlinuz = %q, %v", vm, err)
	}
}

func TestInstallFile(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	if err := os.WriteFile(src, []byte("image"), 0o600); err != nil {
		t.Fatal(err)
	}
	dst, err := installFile(src, filepath.Join(dir, "a", "b", "vmlinuz-x"), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(dst); err != nil || string(b) != "image" {
		t.Errorf("installed %q, %v", b, err)
	}
	if _, err := os.Stat(dst + ".part"); !os.IsNotExist(err) {
		t.Errorf("%s.part left: %v", dst, err)
	}
}
