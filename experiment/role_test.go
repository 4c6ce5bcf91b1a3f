package experiment

import (
	"testing"

	"github.com/cowtrace/cowtrace/workload"
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
