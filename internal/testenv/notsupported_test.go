package testenv

import (
	"errors"
	"fmt"
	"runtime"
	"testing"
)

// outcome runs skipIfNotSupported as a test would and says how it ended:
// "fail", "skip" or "" (the test went on).
func outcome(err error, minKernel, release string) string {
	r := &recorder{TB: new(testing.T)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		skipIfNotSupported(r, err, minKernel, release)
	}()
	<-done
	return r.ended
}

// recorder stands for a test: Fatalf and Skipf end its goroutine, as
// testing's do, and say which one it was.
type recorder struct {
	testing.TB
	ended string
}

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(string, ...any) {
	r.ended = "fail"
	runtime.Goexit()
}
func (r *recorder) Skipf(string, ...any) {
	r.ended = "skip"
	runtime.Goexit()
}

func TestSkipIfNotSupported(t *testing.T) {
	notSupported := fmt.Errorf("open x: %w (%v)", errors.New(notSupportedText), "EOPNOTSUPP")
	for _, c := range []struct {
		err                error
		minKernel, release string
		want               string
	}{
		{nil, "6.12", "6.1.0-37-amd64", ""},
		{errors.New("permission denied"), "6.12", "6.1.0", ""},
		{notSupported, "6.12", "6.1.0-37-amd64", "skip"},
		{notSupported, "6.12", "6.11.9", "skip"},
		{notSupported, "6.12", "6.12.0-rc1", "fail"},
		{notSupported, "6.12", "6.18.44-fc-v1300", "fail"},
		{notSupported, "6.12", "7.0", "fail"},
		{notSupported, "", "6.18.44", "skip"},
		{notSupported, "6.12", "unknown", "fail"}, // an unreadable release is no reason to skip
		{errors.Join(errors.New("a"), notSupported), "5.8", "5.4.0", "skip"},
		{errors.New("x: " + notSupportedText), "", "6.1", ""}, // the text alone, not the sentinel
	} {
		if got := outcome(c.err, c.minKernel, c.release); got != c.want {
			t.Errorf("SkipIfNotSupported(%v, %q) on %s: %q, want %q", c.err, c.minKernel, c.release, got, c.want)
		}
	}
}
