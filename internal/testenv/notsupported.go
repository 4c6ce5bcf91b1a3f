package testenv

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// notSupportedText is perfevents.ErrNotSupported's message. testenv cannot
// import perfevents, whose own tests import testenv, so it knows the
// sentinel by its text; TestNotSupportedIsPerfevents keeps the two in step.
const notSupportedText = "not supported by this kernel"

// IsNotSupported says whether err wraps perfevents.ErrNotSupported: the
// kernel lacks the facility, as opposed to refusing it or failing.
func IsNotSupported(err error) bool {
	for err != nil {
		switch u := err.(type) {
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				if IsNotSupported(e) {
					return true
				}
			}
			return false
		case interface{ Unwrap() error }:
			err = u.Unwrap()
		default:
			// The sentinel is a leaf: a wrapping error that merely
			// repeats its text is not it.
			return err.Error() == notSupportedText
		}
	}
	return false
}

// SkipIfNotSupported skips the test when err says that the kernel lacks the
// facility (perfevents.ErrNotSupported), and does nothing otherwise: the
// test goes on to check err itself. When every kernel from minKernel on
// ("6.12") has the facility, a kernel that new failing with ErrNotSupported
// fails the test instead: that is a bug in cowtrace, not a missing feature.
// minKernel "" is for facilities that a kernel's build decides (kprobes,
// the x86 fault tracepoints), which no version guarantees.
func SkipIfNotSupported(t testing.TB, err error, minKernel string) {
	t.Helper()
	skipIfNotSupported(t, err, minKernel, kernelRelease())
}

func skipIfNotSupported(t testing.TB, err error, minKernel, release string) {
	t.Helper()
	if !IsNotSupported(err) {
		return
	}
	if minKernel != "" {
		newer, cerr := atLeast(release, minKernel)
		if cerr != nil {
			t.Fatalf("SkipIfNotSupported: %v", cerr)
		}
		if newer {
			t.Fatalf("Linux %s, at least %s, should support this: %v", release, minKernel, err)
		}
		t.Skipf("needs Linux %s or later (this is %s): %v", minKernel, release, err)
	}
	t.Skipf("not supported by this kernel's build: %v", err)
}

func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}

// atLeast compares a kernel release ("6.18.44-fc-v1300", "6.1.0-37-amd64")
// with a version ("6.12") by their leading numbers.
func atLeast(release, version string) (bool, error) {
	r, err := versionNumbers(release)
	if err != nil {
		return false, fmt.Errorf("kernel release %q: %w", release, err)
	}
	v, err := versionNumbers(version)
	if err != nil {
		return false, fmt.Errorf("minimum version %q: %w", version, err)
	}
	for i := range v {
		switch {
		case i >= len(r) || r[i] < v[i]:
			return false, nil
		case r[i] > v[i]:
			return true, nil
		}
	}
	return true, nil
}

// versionNumbers reads "MAJOR.MINOR[.PATCH]" from the start of s, up to the
// first character that is neither a digit nor a dot.
func versionNumbers(s string) ([]int, error) {
	end := strings.IndexFunc(s, func(r rune) bool { return r != '.' && (r < '0' || r > '9') })
	if end >= 0 {
		s = s[:end]
	}
	parts := strings.Split(s, ".")
	if len(parts) < 2 {
		return nil, errors.New("not MAJOR.MINOR")
	}
	var out []int
	for _, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil {
			return nil, errors.New("not MAJOR.MINOR")
		}
		out = append(out, n)
	}
	return out, nil
}
