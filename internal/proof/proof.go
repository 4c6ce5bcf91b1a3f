// Package proof gives direct evidence of copy-on-write: it reads which
// physical frame backs each page of a process's memory from
// /proc/PID/pagemap, so that a parent's and a child's pages can be seen to
// share frames right after fork and to part at the child's writes.
//
// Frame numbers are shown only to a reader with CAP_SYS_ADMIN; without it
// the kernel reports them as zero, which Read refuses rather than report
// every page as shared.
package proof

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/cowtrace/cowtrace/report"
)

// pagemap entry bits (Documentation/admin-guide/mm/pagemap.rst).
const (
	entryPresent = 1 << 63
	entrySwapped = 1 << 62
	pfnMask      = 1<<55 - 1
)

// ErrNoFrameNumbers means pagemap hid the frame numbers (no CAP_SYS_ADMIN).
var ErrNoFrameNumbers = errors.New("pagemap shows no frame numbers (needs CAP_SYS_ADMIN)")

// Frames is the pagemap entry of each page of a range, in order.
type Frames []uint64

// Read returns the pagemap entries of the pages of [start, start+length) in
// process pid. start must be page-aligned.
func Read(pid int, start, length uint64) (Frames, error) {
	page := uint64(os.Getpagesize())
	if start%page != 0 {
		return nil, fmt.Errorf("pagemap: start %#x is not page-aligned", start)
	}
	n := (length + page - 1) / page
	f, err := os.Open(fmt.Sprintf("/proc/%d/pagemap", pid))
	if err != nil {
		return nil, fmt.Errorf("pagemap: %w", err)
	}
	defer f.Close()
	buf := make([]byte, n*8)
	if _, err := f.ReadAt(buf, int64(start/page*8)); err != nil {
		return nil, fmt.Errorf("pagemap of %d: %w", pid, err)
	}
	frames := make(Frames, n)
	visible := false
	for i := range frames {
		e := binary.LittleEndian.Uint64(buf[i*8:])
		frames[i] = e
		if e&entryPresent != 0 && e&entrySwapped == 0 && e&pfnMask != 0 {
			visible = true
		}
	}
	for _, e := range frames {
		if e&entryPresent != 0 && !visible {
			return nil, ErrNoFrameNumbers
		}
	}
	return frames, nil
}

// Check says whether this process is shown frame numbers in pagemap: nil,
// or ErrNoFrameNumbers. The kernel decides by the capabilities of the
// process that opens the file, whichever process it reads, so one page of
// this process's own tells before a run that needs the proof starts.
func Check() error {
	page := os.Getpagesize()
	mem, err := unix.Mmap(-1, 0, page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return fmt.Errorf("pagemap check: %w", err)
	}
	defer unix.Munmap(mem)
	mem[0] = 1 // present: an absent page has no frame to hide
	_, err = Read(os.Getpid(), uint64(uintptr(unsafe.Pointer(&mem[0]))), uint64(page))
	return err
}

// frame is the physical frame of a present, resident page, or 0.
func frame(e uint64) uint64 {
	if e&entryPresent == 0 || e&entrySwapped != 0 {
		return 0
	}
	return e & pfnMask
}

// Compare counts the pages of child by whether they share the parent's
// frame. The two must cover the same range.
func Compare(parent, child Frames) report.FrameSharing {
	s := report.FrameSharing{Pages: uint64(len(parent))}
	seen := map[uint64]int{}
	for _, e := range child {
		if f := frame(e); f != 0 {
			seen[f]++
		}
	}
	for _, e := range child {
		if f := frame(e); f != 0 && seen[f] > 1 {
			s.ZeroPage++
		}
	}
	for i := range parent {
		if i >= len(child) {
			break
		}
		p, c := frame(parent[i]), frame(child[i])
		switch {
		case p != 0 && c != 0 && p == c:
			s.Shared++
		case p != 0 && c != 0:
			s.Private++
		case p != 0:
			s.ParentOnly++
		case c != 0:
			s.ChildOnly++
		default:
			s.Neither++
		}
	}
	return s
}

// HugeKiB returns how much of the mapping that contains addr in process
// pid is backed by transparent huge pages (AnonHugePages in smaps, KiB), and
// the mapping's size in KiB.
func HugeKiB(pid int, addr uint64) (huge, size uint64, err error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		return 0, 0, err
	}
	in := false
	for _, line := range strings.Split(string(data), "\n") {
		var lo, hi uint64
		if n, _ := fmt.Sscanf(line, "%x-%x ", &lo, &hi); n == 2 {
			in = addr >= lo && addr < hi
			size = (hi - lo) / 1024
			continue
		}
		if in && strings.HasPrefix(line, "AnonHugePages:") {
			var kib uint64
			if _, err := fmt.Sscanf(strings.TrimPrefix(line, "AnonHugePages:"), "%d kB", &kib); err != nil {
				return 0, 0, fmt.Errorf("smaps: %q: %w", line, err)
			}
			return kib, size, nil
		}
	}
	return 0, 0, fmt.Errorf("smaps of %d: no mapping at %#x with AnonHugePages", pid, addr)
}
