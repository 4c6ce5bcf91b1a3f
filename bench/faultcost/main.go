// Command faultcost measures what each of cowtrace's event sets adds to one
// copy-on-write fault, in CPU time of the faulting thread: a figure that the
// machine's load hardly moves, unlike the wall time of a whole run. Run it
// as root: go run ./bench/faultcost.
//
// The faults are real copy-on-write faults without a fork: a MAP_PRIVATE
// mapping of a memfd is read (mapping the file's pages read-only), then
// written, one byte per page, which copies each page (error code 7, then
// kmem:mm_page_alloc of the copy) exactly as in the experiment's writer.
// The events are opened on the faulting thread, as cowtrace opens them on
// the writer, between the reads and the writes.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/cowtrace/cowtrace/bench/internal/stat"
	"github.com/cowtrace/cowtrace/perfevents"
)

func main() {
	pages := flag.Int("pages", 65536, "pages written per measurement")
	rounds := flag.Int("rounds", 15, "interleaved rounds")
	only := flag.String("sets", "", "comma-separated substrings: measure only the sets whose name holds one (\"no events\" always runs)")
	flag.Parse()
	if err := run(*pages, *rounds, *only); err != nil {
		fmt.Fprintf(os.Stderr, "faultcost: %v\n", err)
		os.Exit(1)
	}
}

type tracepoints struct{ fault, kfault, alloc uint64 }

// set is one way of watching the faulting thread.
type set struct {
	name string
	open func(tid int, tp tracepoints, r *perfevents.Reader, region string) ([]*perfevents.Event, error)
	ns   []float64
}

func counters(tid int) ([]*perfevents.Event, error) {
	var evs []*perfevents.Event
	for _, c := range []uint64{perfevents.PageFaults, perfevents.MinorFaults, perfevents.MajorFaults} {
		ev, err := perfevents.Open(perfevents.Attr{Label: "sw", Type: perfevents.Software, Config: c}, tid, perfevents.AnyCPU)
		if err != nil {
			return evs, err
		}
		evs = append(evs, ev)
	}
	return evs, nil
}

func filtered(evs []*perfevents.Event, tid int, id uint64, filter string) ([]*perfevents.Event, error) {
	ev, err := perfevents.Open(perfevents.Attr{Label: "tp", Type: perfevents.Tracepoint, Config: id}, tid, perfevents.AnyCPU)
	if err != nil {
		return evs, err
	}
	evs = append(evs, ev)
	return evs, ev.SetFilter(filter)
}

// sampled opens page_fault_user alone, sampling every hit into a ring of
// pages pages that wakes the reader every watermark bytes.
func sampled(sampleType uint64, watermark uint32, pages int) func(int, tracepoints, *perfevents.Reader, string) ([]*perfevents.Event, error) {
	return func(tid int, tp tracepoints, r *perfevents.Reader, _ string) ([]*perfevents.Event, error) {
		a := perfevents.Attr{Label: "tp", Type: perfevents.Tracepoint, Config: tp.fault, SampleType: sampleType, Watermark: watermark}
		if watermark == 0 {
			a.WakeupEvents = 64
		}
		ev, err := perfevents.Open(a, tid, perfevents.AnyCPU)
		if err != nil {
			return nil, err
		}
		return []*perfevents.Event{ev}, r.Add(ev.FD(), pages, 0)
	}
}

func sets() []*set {
	return []*set{
		{name: "no events", open: func(int, tracepoints, *perfevents.Reader, string) ([]*perfevents.Event, error) { return nil, nil }},
		{name: "1 software counter (perf stat -e page-faults)", open: func(tid int, _ tracepoints, _ *perfevents.Reader, _ string) ([]*perfevents.Event, error) {
			ev, err := perfevents.Open(perfevents.Attr{Label: "sw", Type: perfevents.Software, Config: perfevents.PageFaults}, tid, perfevents.AnyCPU)
			return []*perfevents.Event{ev}, err
		}},
		{name: "3 software counters", open: func(tid int, _ tracepoints, _ *perfevents.Reader, _ string) ([]*perfevents.Event, error) {
			return counters(tid)
		}},
		{name: "count mode: 3 counters + 9 filtered tracepoint counters", open: countMode},
		{name: "1 filtered tracepoint counter (error_code == 7)", open: func(tid int, tp tracepoints, _ *perfevents.Reader, region string) ([]*perfevents.Event, error) {
			return filtered(nil, tid, tp.fault, "error_code == 7")
		}},
		{name: "1 tracepoint counter, no filter", open: func(tid int, tp tracepoints, _ *perfevents.Reader, region string) ([]*perfevents.Event, error) {
			ev, err := perfevents.Open(perfevents.Attr{Label: "tp", Type: perfevents.Tracepoint, Config: tp.fault}, tid, perfevents.AnyCPU)
			return []*perfevents.Event{ev}, err
		}},
		{name: "2 filtered tracepoint counters (wp, wp in region)", open: func(tid int, tp tracepoints, _ *perfevents.Reader, region string) ([]*perfevents.Event, error) {
			return allFiltered(nil, tid, []filter{{tp.fault, "error_code == 7"}, {tp.fault, "error_code == 7" + region}})
		}},
		{name: "5 filtered page_fault_user counters", open: func(tid int, tp tracepoints, _ *perfevents.Reader, region string) ([]*perfevents.Event, error) {
			return allFiltered(nil, tid, userFilters(tp, region))
		}},
		{name: "1 sampled page_fault_user, RAW", open: sampled(unix.PERF_SAMPLE_RAW, 128*4096/4, 128)},
		{name: "1 sampled page_fault_user, IDENTIFIER only", open: sampled(unix.PERF_SAMPLE_IDENTIFIER, 128*4096/4, 128)},
		{name: "1 sampled page_fault_user, RAW, wake-up every 64 records", open: sampled(unix.PERF_SAMPLE_RAW, 0, 128)},
		{name: "1 filtered mm_page_alloc counter", open: func(tid int, tp tracepoints, _ *perfevents.Reader, region string) ([]*perfevents.Event, error) {
			return filtered(nil, tid, tp.alloc, "order == 0 && (gfp_flags == 0x100cca || gfp_flags == 0x140cca)")
		}},
		// What classify mode opens (engine, openTaskSampled).
		{name: "classify mode: 3 counters + 3 sampled tracepoints in one ring", open: classify(128, 128*4096/4)},
		{name: "classify mode, 2 MiB ring woken at 1 MiB", open: classify(512, 512*4096/2)},
	}
}

// filter is a tracepoint counter (by id) and the filter it counts through.
type filter struct {
	id     uint64
	filter string
}

// allFiltered opens a filtered counter per filter after evs, up to the
// first that fails.
func allFiltered(evs []*perfevents.Event, tid int, fs []filter) ([]*perfevents.Event, error) {
	for _, f := range fs {
		var err error
		if evs, err = filtered(evs, tid, f.id, f.filter); err != nil {
			return evs, err
		}
	}
	return evs, nil
}

// userFilters are count mode's filters on page_fault_user: the writer's
// write-protect faults, and each class of fault in the region.
func userFilters(tp tracepoints, region string) []filter {
	return []filter{
		{tp.fault, "error_code == 7"},
		{tp.fault, "error_code == 7" + region},
		{tp.fault, "error_code == 6" + region},
		{tp.fault, "(error_code == 4 || error_code == 5)" + region},
		{tp.fault, "(error_code == 20 || error_code == 21)" + region},
	}
}

// countMode opens the counters and the filters count mode opens
// (cow.CountFilters).
func countMode(tid int, tp tracepoints, _ *perfevents.Reader, region string) ([]*perfevents.Event, error) {
	evs, err := counters(tid)
	if err != nil {
		return evs, err
	}
	return allFiltered(evs, tid, []filter{
		{tp.fault, "error_code == 7"},
		{tp.kfault, "error_code == 3 && address < 0x100000000000000"},
		{tp.fault, "error_code == 7" + region},
		{tp.fault, "error_code == 6" + region},
		{tp.fault, "(error_code == 4 || error_code == 5)" + region},
		{tp.fault, "(error_code == 20 || error_code == 21)" + region},
		{tp.kfault, "error_code == 3" + region},
		{tp.kfault, "error_code == 2" + region},
		{tp.kfault, "(error_code == 0 || error_code == 1)" + region},
		{tp.alloc, "order == 0 && (gfp_flags == 0x100cca || gfp_flags == 0x140cca)"},
	})
}

// classify opens what classify mode opens on a task, with a ring of pages
// pages that wakes the reader every watermark bytes.
func classify(pages int, watermark uint32) func(int, tracepoints, *perfevents.Reader, string) ([]*perfevents.Event, error) {
	return func(tid int, tp tracepoints, r *perfevents.Reader, _ string) ([]*perfevents.Event, error) {
		evs, err := counters(tid)
		if err != nil {
			return evs, err
		}
		s := perfevents.Attr{Label: "tp", Type: perfevents.Tracepoint, SampleType: unix.PERF_SAMPLE_RAW, Watermark: watermark}
		s.Config = tp.fault
		lead, err := perfevents.Open(s, tid, perfevents.AnyCPU)
		if err != nil {
			return evs, err
		}
		evs = append(evs, lead)
		if err := r.Add(lead.FD(), pages, 0); err != nil {
			return evs, err
		}
		for _, id := range []uint64{tp.kfault, tp.alloc} {
			s.Config = id
			ev, err := perfevents.Open(s, tid, perfevents.AnyCPU)
			if err != nil {
				return evs, err
			}
			evs = append(evs, ev)
			if id == tp.alloc {
				_ = ev.SetFilter("order == 0 && !(gfp_flags & 0x100)")
			}
			if err := ev.SetOutput(lead); err != nil {
				return evs, err
			}
		}
		return evs, nil
	}
}

// pick keeps the baseline and the sets whose names hold one of only's
// comma-separated substrings: the spread between rounds is large on a VM,
// and fewer sets buy more rounds in the same time.
func pick(all []*set, only string) []*set {
	if only == "" {
		return all
	}
	out := all[:1]
	for _, s := range all[1:] {
		for _, sub := range strings.Split(only, ",") {
			if sub != "" && strings.Contains(s.name, sub) {
				out = append(out, s)
				break
			}
		}
	}
	return out
}

func run(pages, rounds int, only string) error {
	runtime.LockOSThread()
	tfs, err := perfevents.OpenTracefs()
	if err != nil {
		return err
	}
	defer tfs.Close()
	tp, err := tracepointIDs(tfs)
	if err != nil {
		return err
	}
	size := pages * os.Getpagesize()
	fd, err := filledMemfd(size)
	if err != nil {
		return err
	}
	defer unix.Close(fd)

	all := pick(sets(), only)
	tid := unix.Gettid()
	for r := 0; r < rounds; r++ {
		for i := range all {
			s := all[(i+r)%len(all)]
			ns, err := measure(fd, size, tid, tp, s)
			if err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
			s.ns = append(s.ns, ns)
		}
	}
	writeTable(all, pages, rounds)
	return nil
}

// tracepointIDs looks up the ids of the tracepoints the sets open.
func tracepointIDs(tfs *perfevents.Tracefs) (tracepoints, error) {
	var tp tracepoints
	for _, x := range []struct {
		group, name string
		id          *uint64
	}{{"exceptions", "page_fault_user", &tp.fault}, {"exceptions", "page_fault_kernel", &tp.kfault}, {"kmem", "mm_page_alloc", &tp.alloc}} {
		f, err := tfs.EventFormat(x.group, x.name)
		if err != nil {
			return tp, err
		}
		*x.id = f.ID
	}
	return tp, nil
}

// filledMemfd is a memfd of size bytes, every one of them written: its
// pages are in the page cache before any measurement maps them.
func filledMemfd(size int) (int, error) {
	fd, err := unix.MemfdCreate("faultcost", unix.MFD_CLOEXEC)
	if err != nil {
		return -1, err
	}
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		unix.Close(fd)
		return -1, err
	}
	fill := make([]byte, 1<<20)
	for i := range fill {
		fill[i] = 'x'
	}
	for off := 0; off < size; off += len(fill) {
		if _, err := unix.Pwrite(fd, fill[:min(len(fill), size-off)], int64(off)); err != nil {
			unix.Close(fd)
			return -1, err
		}
	}
	return fd, nil
}

func writeTable(all []*set, pages, rounds int) {
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Printf("CPU time of the faulting thread per copy-on-write fault, %d faults, median of %d interleaved rounds; load %s\n\n",
		pages, rounds, strings.Join(strings.Fields(string(load))[:3], " "))
	fmt.Println("| events on the faulting thread | ns per fault (median) | min-max | added ns |")
	fmt.Println("|---|---:|---:|---:|")
	base := stat.Median(all[0].ns)
	for _, s := range all {
		fmt.Printf("| %s | %.0f | %.0f-%.0f | %+.0f |\n", s.name, stat.Median(s.ns), slices.Min(s.ns), slices.Max(s.ns), stat.Median(s.ns)-base)
	}
}

// measure maps the memfd privately, reads every page, opens the set's events
// on this thread, writes every page and returns the thread's CPU time per
// write.
func measure(fd, size, tid int, tp tracepoints, s *set) (float64, error) {
	mem, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE)
	if err != nil {
		return 0, err
	}
	defer unix.Munmap(mem)
	page := os.Getpagesize()
	var sum byte
	for i := 0; i < size; i += page {
		sum += mem[i]
	}
	r, err := perfevents.NewReader()
	if err != nil {
		return 0, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		var rec perfevents.Record
		for r.ReadInto(&rec) == nil {
		}
	}()
	base := uint64(uintptr(unsafe.Pointer(&mem[0])))
	evs, err := s.open(tid, tp, r, fmt.Sprintf(" && address >= %#x && address < %#x", base, base+uint64(size)))
	defer func() {
		r.Close()
		<-done
		for _, ev := range evs {
			ev.Close()
		}
	}()
	if err != nil {
		return 0, err
	}
	before := threadCPU()
	for i := 0; i < size; i += page {
		mem[i] = sum
	}
	spent := threadCPU() - before
	return float64(spent.Nanoseconds()) / float64(size/page), nil
}

func threadCPU() time.Duration {
	var ru unix.Rusage
	unix.Getrusage(unix.RUSAGE_THREAD, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
