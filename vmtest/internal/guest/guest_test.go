package guest

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func decodeAll(t *testing.T, d *Decoder, text string) ([]*Message, []error) {
	t.Helper()
	var ms []*Message
	var errs []error
	for _, line := range strings.Split(text, "\n") {
		m, err := d.Line(line)
		if err != nil {
			errs = append(errs, err)
		}
		if m != nil {
			ms = append(ms, m)
		}
	}
	return ms, errs
}

func TestFrameRoundTrip(t *testing.T) {
	big := strings.Repeat("=== RUN TestX\n--- PASS: TestX (0.00s)\n", 500) // many chunks
	want := []Message{
		{Kind: "info", Info: &Info{Release: "6.1.0-56-amd64", KprobePMUType: 6, Symbols: map[string]bool{"do_wp_page": true}}},
		{Kind: "result", Result: &Result{Name: "x.test", Argv: []string{"/tests/x.test", "-test.v"}, Stdout: big, Duration: 3 * time.Second}},
		{Kind: "done", Sent: 1},
	}
	var buf bytes.Buffer
	for i, m := range want {
		if err := WriteMessage(&buf, i, m); err != nil {
			t.Fatal(err)
		}
	}
	// What the host reads is the serial console: CRLF line ends and kernel
	// lines between the frames.
	console := "[    0.1] Linux version 6.1\r\n" + strings.ReplaceAll(buf.String(), "\n", "\r\n[    1.2] random: crng init done\r\n")
	ms, errs := decodeAll(t, NewDecoder(), console)
	if len(errs) > 0 {
		t.Fatalf("errors: %v", errs)
	}
	if len(ms) != 3 {
		t.Fatalf("got %d messages, want 3", len(ms))
	}
	if ms[0].Info.Release != "6.1.0-56-amd64" || !ms[0].Info.Symbols["do_wp_page"] {
		t.Errorf("info = %+v", ms[0].Info)
	}
	if ms[1].Result.Stdout != big || ms[1].Result.Duration != 3*time.Second {
		t.Errorf("result stdout %d bytes, want %d", len(ms[1].Result.Stdout), len(big))
	}
	if ms[2].Kind != "done" || ms[2].Sent != 1 {
		t.Errorf("done = %+v", ms[2])
	}
}

func TestFramePrefixedByKernelText(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteMessage(&buf, 0, Message{Kind: "done", Sent: 2}); err != nil {
		t.Fatal(err)
	}
	// printk can land on the same line, before the frame.
	line := "[   12.0] reboot: Power down" + strings.TrimLeft(buf.String(), "\n")
	m, err := NewDecoder().Line(line)
	if err != nil || m == nil || m.Sent != 2 {
		t.Fatalf("Line = %+v, %v", m, err)
	}
}

func TestFrameCorruptionDetected(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteMessage(&buf, 7, Message{Kind: "result", Result: &Result{Name: "a", Stdout: strings.Repeat("x", 3000)}}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n\n")
	if len(lines) < 2 {
		t.Fatalf("want several chunks, got %d", len(lines))
	}
	// A kernel message spliced into the middle of a chunk's payload.
	l := lines[1]
	lines[1] = l[:len(l)-10] + "[ 3.1] oops" + l[len(l)-10:]
	d := NewDecoder()
	ms, errs := decodeAll(t, d, strings.Join(lines, "\n"))
	if len(ms) != 0 {
		t.Fatalf("decoded %d messages from a corrupted frame", len(ms))
	}
	if len(errs) == 0 {
		t.Fatal("no error for a corrupted frame")
	}
}

func TestFrameMissingPartIsIncomplete(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteMessage(&buf, 3, Message{Kind: "result", Result: &Result{Name: "a", Stdout: strings.Repeat("y", 5000)}}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n\n")
	d := NewDecoder()
	ms, errs := decodeAll(t, d, strings.Join(lines[1:], "\n"))
	if len(ms) != 0 || len(errs) != 0 {
		t.Fatalf("messages %d, errors %v", len(ms), errs)
	}
	if got := d.Incomplete(); len(got) != 1 || got[0] != 3 {
		t.Fatalf("Incomplete = %v, want [3]", got)
	}
}

func TestFrameMalformed(t *testing.T) {
	for _, line := range []string{
		FramePrefix + "1 2",
		FramePrefix + "x 0 1 00000000 e30=",
		FramePrefix + "1 1 1 00000000 e30=", // part out of range
	} {
		if _, err := NewDecoder().Line(line); err == nil {
			t.Errorf("Line(%q): no error", line)
		}
	}
	if m, err := NewDecoder().Line("plain console text"); m != nil || err != nil {
		t.Errorf("plain line: %v, %v", m, err)
	}
}
