package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/cowtrace/cowtrace/vmtest/internal/guest"
)

// bootOptions is how one guest is started.
type bootOptions struct {
	Qemu    string
	Machine string // qemu -M; "" for the default (x86's pc)
	TTY     string // the kernel's serial console; "" for ttyS0
	Accel   string
	CPU     string
	MemMB   int
	SMP     int // vCPUs; 0 is 1
	Vmlinuz string
	Initrd  string
	Append  string // extra kernel command line
	Timeout time.Duration
	Console io.Writer // a copy of the whole console, e.g. a log file
}

// bootResult is what came back from one guest.
type bootResult struct {
	Info     *guest.Info
	Results  []*guest.Result
	Done     bool
	Sent     int
	Console  string // the whole serial console
	Elapsed  time.Duration
	TimedOut bool
	QemuErr  error
	Frames   []string // framing problems
}

func qemuArgs(o bootOptions) []string {
	var machine []string
	if o.Machine != "" {
		machine = []string{"-M", o.Machine}
	}
	tty := o.TTY
	if tty == "" {
		tty = "ttyS0"
	}
	return append(machine,
		"-accel", o.Accel,
		"-cpu", o.CPU,
		"-m", fmt.Sprint(o.MemMB),
		"-smp", fmt.Sprint(max(o.SMP, 1)),
		// Only the serial port: no VGA, NIC or other default devices,
		// which the guest never uses and which cost boot time under TCG.
		"-nodefaults",
		"-display", "none",
		"-serial", "stdio",
		"-kernel", o.Vmlinuz,
		"-initrd", o.Initrd,
		// panic=-1 reboots at once on a panic (a crashed /init included),
		// and -no-reboot turns that reboot into qemu exiting.
		"-append", strings.TrimSpace("console="+tty+" quiet panic=-1 "+o.Append),
		"-no-reboot",
	)
}

// boot runs one guest to its power-off (or the timeout) and decodes the
// frames on its console.
func boot(ctx context.Context, o bootOptions) *bootResult {
	res := &bootResult{}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, o.Qemu, qemuArgs(o)...)
	// qemu must not inherit a terminal: with -serial stdio it would put it
	// into raw mode and read keystrokes into the guest.
	cmd.Stdin = nil
	pr, pw := io.Pipe()
	cmd.Stdout = pw
	cmd.Stderr = pw
	start := time.Now()
	if err := cmd.Start(); err != nil {
		res.QemuErr = err
		return res
	}
	var console strings.Builder
	dec := guest.NewDecoder()
	scanDone := make(chan struct{})
	go func() {
		defer close(scanDone)
		res.readConsole(pr, dec, &console, o.Console)
	}()
	err := cmd.Wait()
	pw.Close()
	<-scanDone
	res.Elapsed = time.Since(start)
	res.Console = console.String()
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		res.TimedOut = true
	}
	if err != nil && !res.TimedOut {
		res.QemuErr = err
	}
	for _, seq := range dec.Incomplete() {
		res.Frames = append(res.Frames, fmt.Sprintf("message %d incomplete", seq))
	}
	return res
}

// readConsole reads qemu's output to its end: the guest's own lines go to
// console (and to copyTo, if any), the frames to dec and from there into
// res.
func (res *bootResult) readConsole(r io.Reader, dec *guest.Decoder, console *strings.Builder, copyTo io.Writer) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	for sc.Scan() {
		line := sc.Text()
		// Frames start with a newline of their own, so blank lines
		// are the guest's and not worth keeping.
		if strings.TrimSpace(line) != "" && !strings.Contains(line, guest.FramePrefix) {
			console.WriteString(line + "\n")
			if copyTo != nil {
				fmt.Fprintln(copyTo, line)
			}
		}
		m, err := dec.Line(line)
		if err != nil {
			res.Frames = append(res.Frames, err.Error())
			continue
		}
		if m != nil {
			res.take(m)
		}
	}
	// Drain so that qemu never blocks on a full pipe.
	_, _ = io.Copy(io.Discard, r)
}

// take keeps what one message from the guest says.
func (res *bootResult) take(m *guest.Message) {
	switch m.Kind {
	case "info":
		res.Info = m.Info
	case "result":
		res.Results = append(res.Results, m.Result)
	case "done":
		res.Done, res.Sent = true, m.Sent
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "vmtest: "+format+"\n", args...)
}
