package workload

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestDriveHooks: Drive calls each hook at its moment, and with Hold opens
// the children's gates together only once everyone reached them: Forked
// after every child's first gate, Worked after every child's work and the
// parent's, ParentDone last; the sums are the bytes each process read or
// wrote.
func TestDriveHooks(t *testing.T) {
	for _, hold := range []bool{false, true} {
		t.Run(fmt.Sprintf("hold=%v", hold), func(t *testing.T) {
			cfg := Seed()
			cfg.Blocks = 20
			if hold {
				cfg.ParentWrites, cfg.Hold = ParentWritesDuring, true
			}
			p, err := Start(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			var events []string
			note := func(format string, args ...any) error {
				events = append(events, fmt.Sprintf(format, args...))
				return nil
			}
			h := Hooks{
				Ready:      func(Message) error { return note("ready") },
				AtGate:     func(m Message) error { return note("gate %d", m.Child) },
				ChildDone:  func(m Message) error { return note("done %d", m.Child) },
				ParentDone: func(Message) error { return note("parent done") },
				Hold:       hold,
				Forked:     func() error { return note("forked") },
				Worked:     func() error { return note("worked") },
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			sums, err := Drive(ctx, p, len(cfg.Children), h)
			if err != nil {
				t.Fatalf("Drive: %v after %v", err, events)
			}
			parent := uint64(20 * '0')
			if hold {
				parent = 20 * 'P'
			}
			if want := []uint64{parent, 20 * '0', 20 * 'C'}; !slices.Equal(sums, want) {
				t.Errorf("sums %v, want %v", sums, want)
			}
			at := func(e string) int {
				i := slices.Index(events, e)
				if i < 0 {
					t.Fatalf("no %q in %v", e, events)
				}
				return i
			}
			if at("ready") != 0 || at("parent done") != len(events)-1 {
				t.Errorf("ready first and parent done last: %v", events)
			}
			if !hold {
				if slices.Contains(events, "forked") || slices.Contains(events, "worked") {
					t.Errorf("Hold's hooks without Hold: %v", events)
				}
				return
			}
			for _, c := range []string{"1", "2"} {
				if at("gate "+c) > at("forked") || at("done "+c) < at("forked") || at("done "+c) > at("worked") {
					t.Errorf("child %s: %s", c, strings.Join(events, ", "))
				}
			}
		})
	}
}
