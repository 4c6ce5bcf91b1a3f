package experiment

import (
	"slices"
	"testing"

	"github.com/cowtrace/cowtrace/internal/workload"
)

func TestRoleName(t *testing.T) {
	r, w := workload.ActionRead, workload.ActionWrite
	for _, tc := range []struct {
		children []workload.Action
		i        int
		want     string
	}{
		{[]workload.Action{r, w}, 1, "reader"},
		{[]workload.Action{r, w}, 2, "writer"},
		{[]workload.Action{r, w, w, w}, 3, "writer2"},
		{[]workload.Action{w, r, w}, 3, "writer2"},
		{[]workload.Action{w, r, w}, 1, "writer1"},
	} {
		if got := roleName(tc.children, tc.i); got != tc.want {
			t.Errorf("roleName(%v, %d) = %q, want %q", tc.children, tc.i, got, tc.want)
		}
	}
}

// TestRoles: the rows of a run, known before it starts.
func TestRoles(t *testing.T) {
	r, w := workload.ActionRead, workload.ActionWrite
	got := Roles(workload.Config{Children: []workload.Action{r, w, w}})
	if want := []string{"parent", "reader", "writer1", "writer2"}; !slices.Equal(got, want) {
		t.Errorf("Roles = %q, want %q", got, want)
	}
}
