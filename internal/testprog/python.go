package testprog

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/cowtrace/cowtrace/internal/testenv"
)

// Python returns the python3 interpreter itself, not a wrapper script
// that would fork and exec it (pyenv's shims do); without python3 the
// test skips.
func Python(t testing.TB) string {
	t.Helper()
	testenv.Require(t, testenv.Program("python3"))
	b, err := exec.Command("python3", "-c", "import sys; print(sys.executable)").Output()
	if err != nil {
		t.Skipf("needs a working python3 (%v)", err)
	}
	return strings.TrimSpace(string(b))
}
