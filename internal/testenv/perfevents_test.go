package testenv_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/cowtrace/cowtrace/internal/testenv"
	"github.com/cowtrace/cowtrace/perfevents"
)

// TestNotSupportedIsPerfevents: testenv knows perfevents.ErrNotSupported by
// its text (importing perfevents would be a cycle for perfevents's own
// tests); a new text must be given to testenv too.
func TestNotSupportedIsPerfevents(t *testing.T) {
	if !testenv.IsNotSupported(fmt.Errorf("open kprobe: %w", perfevents.ErrNotSupported)) {
		t.Errorf("a wrapped perfevents.ErrNotSupported (%q) is not recognised", perfevents.ErrNotSupported)
	}
	for _, err := range []error{perfevents.ErrPermission, perfevents.ErrNotFound, errors.New("other")} {
		if testenv.IsNotSupported(err) {
			t.Errorf("%v taken for ErrNotSupported", err)
		}
	}
}
