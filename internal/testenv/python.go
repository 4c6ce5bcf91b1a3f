package testenv

import (
	"os/exec"
	"strings"
	"testing"
)

// Python returns the python3 interpreter itself, not a wrapper script
// that would fork and exec it (pyenv's shims do); without python3 the
// test skips.
func Python(t testing.TB) string {
	t.Helper()
	Require(t, Program("python3"))
	b, err := exec.Command("python3", "-c", "import sys; print(sys.executable)").Output()
	if err != nil {
		t.Skipf("needs a working python3 (%v)", err)
	}
	return strings.TrimSpace(string(b))
}
