package workload

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cowtrace/cowtrace/internal/testenv"
)

// fakeKernel makes madvise answer hugeErr to MADV_HUGEPAGE and MADV_NOHUGEPAGE
// (other advice goes to the kernel) and points thpDir at a directory that
// exists or not, for the rest of the test.
func fakeKernel(t *testing.T, hugeErr error, thpSysfs bool) {
	t.Helper()
	oldMadvise, oldDir := madvise, thpDir
	t.Cleanup(func() { madvise, thpDir = oldMadvise, oldDir })
	madvise = func(b []byte, advice int) error {
		if advice == unix.MADV_HUGEPAGE || advice == unix.MADV_NOHUGEPAGE {
			return hugeErr
		}
		return unix.Madvise(b, advice)
	}
	thpDir = filepath.Join(t.TempDir(), "transparent_hugepage")
	if thpSysfs {
		if err := os.Mkdir(thpDir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

func TestHugePagesDecision(t *testing.T) {
	for _, tc := range []struct {
		name     string
		err      error // madvise's answer to the THP advice
		thpSysfs bool
		// What the huge and the base-page workloads get: "" for nil,
		// "n/a" for ErrNotApplicable, "err" for another error.
		huge, base string
	}{
		{name: "kernel with THP", err: nil, thpSysfs: true, huge: "", base: ""},
		{name: "kernel without THP", err: unix.EINVAL, thpSysfs: false, huge: "n/a", base: ""},
		// EINVAL where the sysfs directory exists is not a missing THP
		// but a bad call: never hide it.
		{name: "EINVAL with THP in sysfs", err: unix.EINVAL, thpSysfs: true, huge: "err", base: "err"},
		{name: "other errno", err: unix.EPERM, thpSysfs: false, huge: "err", base: "err"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fakeKernel(t, tc.err, tc.thpSysfs)
			kind := func(err error) string {
				switch {
				case err == nil:
					return ""
				case errors.Is(err, ErrNotApplicable):
					return "n/a"
				}
				return "err"
			}

			huge := Seed()
			huge.Huge = true
			if got := kind(HugePages()); got != tc.huge {
				t.Errorf("HugePages: %q, want %q", got, tc.huge)
			}
			if got := kind(huge.Applicable()); got != tc.huge {
				t.Errorf("Applicable of a huge workload: %q, want %q", got, tc.huge)
			}
			if err := Seed().Applicable(); err != nil {
				t.Errorf("Applicable of the seed's workload: %v, want nil on every kernel", err)
			}

			// What the worker does: the seed maps its region with
			// MADV_NOHUGEPAGE, the thp scenario with MADV_HUGEPAGE.
			for _, x := range []struct {
				huge bool
				want string
			}{{false, tc.base}, {true, tc.huge}} {
				region, err := mapRegion(4*hugePage, x.huge)
				if got := kind(err); got != x.want {
					t.Errorf("mapRegion(huge %v): %v; want %q", x.huge, err, x.want)
				}
				if err == nil {
					region[0], region[len(region)-1] = 1, 1
					unix.Munmap(region)
				}
			}
		})
	}
}

func TestNotApplicableMessage(t *testing.T) {
	fakeKernel(t, unix.EINVAL, false)
	cfg := Seed()
	cfg.Huge = true
	_, err := Start(cfg)
	if !errors.Is(err, ErrNotApplicable) {
		t.Fatalf("Start of a huge workload without THP: %v, want ErrNotApplicable", err)
	}
	// The matrix shows this text as it is.
	if want := "not applicable on this kernel: built without transparent huge pages"; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
}

// The real kernel: whatever it is built with, the seed's workload runs and a
// huge one is either possible or not applicable, never an other error.
func TestHugePagesRealKernel(t *testing.T) {
	testenv.Require(t)
	err := HugePages()
	if err != nil && !errors.Is(err, ErrNotApplicable) {
		t.Fatalf("HugePages: %v", err)
	}
	_, statErr := os.Stat(thpDir)
	if (err == nil) != (statErr == nil) {
		t.Errorf("HugePages says %v, but stat %s says %v", err, thpDir, statErr)
	}
}
