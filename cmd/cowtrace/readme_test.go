package main

import (
	"errors"
	"io/fs"
	"os"
	"strings"
	"testing"

	"github.com/cowtrace/cowtrace/internal/testenv"
)

// TestREADMEUsage: the usage the docs show (docs/usage.md, linked from the
// README) is cowtrace help --all, so that a flag added, renamed or reworded
// in the command table shows there too. go test -update rewrites it (make
// readme would too, with every other command the docs show).
func TestREADMEUsage(t *testing.T) {
	const path = "../../docs/usage.md"
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		t.Skipf("%s is not here: the test binary runs outside the source tree (as in vmtest's guests)", path)
	}
	if err != nil {
		t.Fatal(err)
	}
	const begin, end = "<!-- cowtrace-output: help --all -->\n", "<!-- end cowtrace-output -->"
	readme := string(b)
	i := strings.Index(readme, begin)
	if i < 0 {
		t.Fatalf("%s has no %q", path, begin)
	}
	i += len(begin)
	j := strings.Index(readme[i:], end)
	if j < 0 {
		t.Fatalf("%s: no %q after %q", path, end, begin)
	}
	want := "```\n" + allUsage(defaultHelpWidth) + "```\n"
	if *update {
		if err := os.WriteFile(path, []byte(readme[:i]+want+readme[i+j:]), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if got := readme[i : i+j]; got != want {
		t.Errorf("%s's usage is not cowtrace help --all (go test -update rewrites it):\n%s", path, testenv.LineDiff(got, want))
	}
}
