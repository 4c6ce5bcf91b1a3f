// Package guest is the contract between the vmtest host harness and the init
// it runs inside each qemu guest: the manifest the host packs into the
// initramfs, the results the guest sends back, and the framing that carries
// them over the serial console.
package guest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"
	"strconv"
	"strings"
	"time"
)

// ManifestPath is where the host puts the manifest in the initramfs.
const ManifestPath = "/manifest.json"

// Manifest lists what the guest runs, in order.
type Manifest struct {
	Commands []Command `json:"commands"`
}

// Command is one program the guest runs and reports on.
type Command struct {
	Name    string        `json:"name"`
	Argv    []string      `json:"argv"`
	Env     []string      `json:"env,omitempty"`
	Dir     string        `json:"dir,omitempty"`
	Timeout time.Duration `json:"timeout"`
	// WaitStderr, when set, makes the guest send Signal once a stderr line
	// equal to it appears: that is how a signal lands mid-run at a known
	// point instead of racing the program's start-up.
	WaitStderr string `json:"wait_stderr,omitempty"`
	Signal     int    `json:"signal,omitempty"`
	// InspectTracefs makes the guest look at kprobe_events and the mount
	// table after the command exits, through a mount of its own so that the
	// program's own mount/unmount of tracefs is left for it to do.
	InspectTracefs bool `json:"inspect_tracefs,omitempty"`
}

// Result is what the guest saw of one Command.
type Result struct {
	Name     string        `json:"name"`
	Argv     []string      `json:"argv"`
	ExitCode int           `json:"exit_code"`
	Signaled string        `json:"signaled,omitempty"` // the signal that killed it, if any
	TimedOut bool          `json:"timed_out,omitempty"`
	Err      string        `json:"err,omitempty"` // could not start, or the guest itself failed
	Duration time.Duration `json:"duration"`
	Stdout   string        `json:"stdout"`
	Stderr   string        `json:"stderr"`
	// Truncated says that stdout or stderr went past the guest's capture limit.
	Truncated bool `json:"truncated,omitempty"`

	WaitLineSeen bool   `json:"wait_line_seen,omitempty"`
	SignalSent   string `json:"signal_sent,omitempty"`

	Tracefs *TracefsState `json:"tracefs,omitempty"`
}

// TracefsState is what is left behind in tracefs after a command.
type TracefsState struct {
	KprobeEvents string `json:"kprobe_events"`
	Err          string `json:"err,omitempty"`
	// StillMounted lists the tracefs mount points of the guest's own mount
	// table other than the guest init's private inspection mount.
	StillMounted []string `json:"still_mounted,omitempty"`
}

// Info describes the guest kernel, gathered by the init before any command.
type Info struct {
	Release string `json:"release"`
	Version string `json:"version"`
	Cmdline string `json:"cmdline"`
	// KprobePMUType is the perf type of the kprobe PMU from sysfs, -1 when
	// the kernel has none (as on kernels built without CONFIG_KPROBES).
	KprobePMUType int    `json:"kprobe_pmu_type"`
	KprobeEvents  bool   `json:"kprobe_events"` // tracefs has kprobe_events
	TracefsErr    string `json:"tracefs_err,omitempty"`
	// Symbols says which functions that cowtrace cares about are in
	// /proc/kallsyms: which of them exist differs between kernels.
	Symbols map[string]bool `json:"symbols"`
	NumCPU  int             `json:"num_cpu"`
	// THP: the kernel has transparent huge pages (sysfs shows them).
	THP bool `json:"thp"`
	// Lockdown is the selected mode of /sys/kernel/security/lockdown
	// ("none", "integrity", "confidentiality"), "" without the lockdown LSM.
	Lockdown string   `json:"lockdown,omitempty"`
	Errors   []string `json:"errors,omitempty"`
}

// Message is one framed unit from the guest. Exactly one of the pointers is
// set, except for the done marker, which has none.
type Message struct {
	Kind   string  `json:"kind"` // "info", "result" or "done"
	Info   *Info   `json:"info,omitempty"`
	Result *Result `json:"result,omitempty"`
	// Done carries the number of results the guest sent, so the host can
	// tell a lost frame from a command that was never run.
	Sent int `json:"sent,omitempty"`
}

// FramePrefix starts every framed line. The console is shared with the
// kernel's own printk output, so a frame can be preceded by, or even split
// by, kernel text; the checksum catches the second case.
const FramePrefix = "COWTRACE-VMTEST "

// chunkSize keeps each framed line short, so that one printk landing in the
// middle spoils one short line rather than a whole test log, and so that no
// line gets near any tty buffer limit.
const chunkSize = 1024

// WriteMessage writes m as one or more framed lines, each with a single
// Write so that concurrent writers to the console cannot split a line.
func WriteMessage(w io.Writer, seq int, m Message) error {
	js, err := json.Marshal(m)
	if err != nil {
		return err
	}
	b64 := base64.StdEncoding.EncodeToString(js)
	sum := crc32.ChecksumIEEE([]byte(b64))
	total := (len(b64) + chunkSize - 1) / chunkSize
	if total == 0 {
		total = 1
	}
	for part := 0; part < total; part++ {
		end := min((part+1)*chunkSize, len(b64))
		line := fmt.Sprintf("\n%s%d %d %d %08x %s\n", FramePrefix, seq, part, total, sum, b64[part*chunkSize:end])
		if _, err := io.WriteString(w, line); err != nil {
			return err
		}
	}
	return nil
}

// Decoder reassembles messages from console lines.
type Decoder struct {
	parts map[int]*partial
	// Bad counts framed lines that could not be used: malformed, or part of
	// a message whose checksum did not match.
	Bad []string
}

type partial struct {
	total  int
	sum    uint32
	chunks map[int]string
}

// NewDecoder returns an empty Decoder.
func NewDecoder() *Decoder { return &Decoder{parts: map[int]*partial{}} }

// Line feeds one console line. It returns a message when the line completed
// one; lines without a frame are ignored.
func (d *Decoder) Line(line string) (*Message, error) {
	i := strings.Index(line, FramePrefix)
	if i < 0 {
		return nil, nil
	}
	f := strings.Fields(strings.TrimRight(line[i+len(FramePrefix):], "\r\n"))
	if len(f) != 5 {
		d.Bad = append(d.Bad, line)
		return nil, fmt.Errorf("malformed frame: %d fields", len(f))
	}
	seq, err1 := strconv.Atoi(f[0])
	part, err2 := strconv.Atoi(f[1])
	total, err3 := strconv.Atoi(f[2])
	sum, err4 := strconv.ParseUint(f[3], 16, 32)
	if err1 != nil || err2 != nil || err3 != nil || err4 != nil || total <= 0 || part < 0 || part >= total {
		d.Bad = append(d.Bad, line)
		return nil, fmt.Errorf("malformed frame header %q", strings.Join(f[:4], " "))
	}
	p := d.parts[seq]
	if p == nil || p.total != total || p.sum != uint32(sum) {
		p = &partial{total: total, sum: uint32(sum), chunks: map[int]string{}}
		d.parts[seq] = p
	}
	p.chunks[part] = f[4]
	if len(p.chunks) < p.total {
		return nil, nil
	}
	delete(d.parts, seq)
	var b strings.Builder
	for k := 0; k < p.total; k++ {
		b.WriteString(p.chunks[k])
	}
	if got := crc32.ChecksumIEEE([]byte(b.String())); got != p.sum {
		d.Bad = append(d.Bad, line)
		return nil, fmt.Errorf("frame %d: checksum %08x, want %08x (console output interleaved?)", seq, got, p.sum)
	}
	js, err := base64.StdEncoding.DecodeString(b.String())
	if err != nil {
		return nil, fmt.Errorf("frame %d: %w", seq, err)
	}
	var m Message
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("frame %d: %w", seq, err)
	}
	return &m, nil
}

// Incomplete reports the sequence numbers of messages that are still
// missing parts.
func (d *Decoder) Incomplete() []int {
	var s []int
	for k := range d.parts {
		s = append(s, k)
	}
	return s
}
