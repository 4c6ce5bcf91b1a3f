// Package testenv holds what cowtrace's kernel-facing tests of several
// packages share: the one way they skip (Require with the requirements of
// require.go, SkipIfNotSupported), the C programs of testdata/ and a count
// of open descriptors for leak checks. No test looks at its privileges
// itself, so that every skip says in one line what is missing and every
// kernel-facing test skips with -short.
package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// ProgsEnv names a directory of prebuilt (static) testdata programs, for
// machines without a compiler: the vmtest guests.
const ProgsEnv = "COWTRACE_TESTPROGS"

// BuildC returns testdata/NAME.c compiled, from ProgsEnv when it holds it,
// else built with gcc; without either the test skips.
func BuildC(t testing.TB, name string) string {
	t.Helper()
	if dir := os.Getenv(ProgsEnv); dir != "" {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("gcc is not installed (apt-get install gcc libc6-dev)")
	}
	// This file is internal/testenv/testenv.go: testdata/ is two up.
	_, self, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the testdata directory")
	}
	src := filepath.Join(filepath.Dir(self), "..", "..", "testdata", name+".c")
	out := filepath.Join(t.TempDir(), name)
	if b, err := exec.Command(gcc, "-O1", "-Wall", "-o", out, src).CombinedOutput(); err != nil {
		t.Fatalf("gcc %s: %v\n%s", name, err, b)
	}
	return out
}

// OpenFDs counts this process's open descriptors.
func OpenFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
