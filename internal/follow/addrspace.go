package follow

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
)

// mapping is one range of a process's address space, as a PERF_RECORD_MMAP2
// or /proc/PID/maps told it.
type mapping struct {
	start, end uint64
	pgoff      uint64 // the file offset of start, for a file
	name       string // a file's path, "//anon", or the kernel's "[heap]", "[stack]", ...
}

// anonName is the kernel's name for an anonymous mapping in MMAP2 records
// (perf_event_mmap_event).
const anonName = "//anon"

func (m mapping) file() bool { return strings.HasPrefix(m.name, "/") && m.name != anonName }

// brkRandom bounds how far above the executable's end the brk heap starts:
// x86-64 randomises it within 1 GiB (arch_randomize_brk), while the mmap
// area starts near the top of the address space, terabytes away.
const brkRandom = 1 << 30

// addrSpace is a process's mappings at one moment: sorted, not overlapping.
// A record over a range replaces what was there, as mmap does; no record
// says when a range is unmapped, so a range stays until something else is
// mapped over it or the process execs.
type addrSpace struct {
	maps []mapping
	// exe is the executable's path: the first file mapped after an exec
	// (the kernel maps it before the interpreter), or the lowest file
	// mapping of /proc/PID/maps.
	exe string

	layout bool   // exeEnd and mmapLow are up to date
	exeEnd uint64 // the end of the executable's mappings
	// mmapLow is the lowest mapping of the mmap area: the lowest one that
	// starts more than brkRandom above exeEnd.
	mmapLow uint64
	top     uint64 // the end of the highest mapping
}

func (a *addrSpace) clone() *addrSpace {
	return &addrSpace{maps: append([]mapping{}, a.maps...), exe: a.exe}
}

// insert maps m over whatever was in its range.
func (a *addrSpace) insert(m mapping) {
	if m.end <= m.start {
		return
	}
	if a.exe == "" && m.file() {
		a.exe = m.name
	}
	a.layout = false
	out := make([]mapping, 0, len(a.maps)+2)
	for _, o := range a.maps {
		if o.end <= m.start || o.start >= m.end {
			out = append(out, o)
			continue
		}
		if o.start < m.start {
			left := o
			left.end = m.start
			out = append(out, left)
		}
		if o.end > m.end {
			right := o
			right.pgoff += m.end - o.start
			right.start = m.end
			out = append(out, right)
		}
	}
	out = append(out, m)
	sort.Slice(out, func(i, j int) bool { return out[i].start < out[j].start })
	a.maps = out
}

// find returns the mapping that holds addr.
func (a *addrSpace) find(addr uint64) (mapping, bool) {
	i := sort.Search(len(a.maps), func(i int) bool { return a.maps[i].end > addr })
	if i < len(a.maps) && a.maps[i].start <= addr {
		return a.maps[i], true
	}
	return mapping{}, false
}

func (a *addrSpace) settle() {
	if a.layout {
		return
	}
	a.layout = true
	a.exeEnd, a.mmapLow, a.top = 0, ^uint64(0), 0
	for _, m := range a.maps {
		if m.name == a.exe && m.end > a.exeEnd {
			a.exeEnd = m.end
		}
		if m.name != "[vsyscall]" && m.end > a.top {
			a.top = m.end
		}
	}
	for _, m := range a.maps {
		if m.start >= a.exeEnd+brkRandom && m.start < a.mmapLow {
			a.mmapLow = m.start
		}
	}
}

// Names of the places that have no record of their own.
const (
	heapName    = "[heap]"
	stackName   = "[stack]"
	anonShare   = "[anon]"
	unknownName = "[unknown]"
	// unrecordedName is anonymous by its place, the mmap area, in a
	// range no record maps: mremap moves a mapping (glibc's realloc of a
	// large block does) and the kernel writes no record of the move.
	unrecordedName = "[anon, unrecorded]"
)

// name says where addr lies: a file's path, the kernel's name of a special
// mapping, or for anonymous memory "[heap]" and "[stack]" by the layout
// rule (the brk heap lies between the executable's end and the mmap area,
// the main stack above every mapping), else "[anon]"; in the mmap area
// outside every recorded mapping, unrecordedName.
func (a *addrSpace) name(addr uint64) string {
	m, ok := a.find(addr)
	if ok && m.name != anonName {
		return m.name
	}
	a.settle()
	switch {
	case a.exe != "" && addr >= a.exeEnd && addr < a.mmapLow:
		return heapName
	case ok:
		return anonShare
	case addr >= a.top && a.top != 0:
		return stackName
	case addr >= a.mmapLow:
		return unrecordedName
	}
	return unknownName
}

// readMaps reads /proc/PID/maps: the mappings of a process that was running
// before the trace, which no record will tell.
func readMaps(pid int) (*addrSpace, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseMaps(f)
}

// parseMaps parses the lines of /proc/PID/maps:
// "start-end perms offset dev inode [path]".
func parseMaps(r io.Reader) (*addrSpace, error) {
	a := &addrSpace{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		lo, hi, ok := strings.Cut(fields[0], "-")
		if !ok {
			return nil, fmt.Errorf("maps line %q: no range", sc.Text())
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		off, err3 := strconv.ParseUint(fields[2], 16, 64)
		if err1 != nil || err2 != nil || err3 != nil {
			return nil, fmt.Errorf("maps line %q: bad number", sc.Text())
		}
		name := anonName
		if len(fields) >= 6 {
			// A path may hold spaces: the rest of the line is the name.
			name = strings.Join(fields[5:], " ")
		}
		a.insert(mapping{start: start, end: end, pgoff: off, name: name})
	}
	return a, sc.Err()
}
