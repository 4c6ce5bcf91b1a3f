package engine

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/cowtrace/cowtrace/cow"
	"github.com/cowtrace/cowtrace/perfevents"
)

// read consumes records until the deadline set by Stop.
func (s *Session) read() error {
	var rec perfevents.Record
	var smp perfevents.Sample
	for {
		err := s.reader.ReadInto(&rec)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return nil
			}
			return err
		}
		s.mu.Lock()
		ev, ok, err := s.record(&rec, &smp)
		mmaps := s.mmaps
		s.mmaps = nil
		s.mu.Unlock()
		if err != nil {
			return err
		}
		for _, m := range mmaps {
			s.cfg.OnMmap(m.m, m.ns)
		}
		if ok && s.cfg.OnEvent != nil {
			s.cfg.OnEvent(ev)
		}
	}
}

// record applies one record; it returns the event it makes, if any.
func (s *Session) record(rec *perfevents.Record, smp *perfevents.Sample) (Event, bool, error) {
	switch rec.Type {
	case unix.PERF_RECORD_SAMPLE:
		return s.sample(rec, smp)
	case unix.PERF_RECORD_FORK:
		pid, ppid, tid, ptid, tm, err := perfevents.DecodeFork(rec.Data)
		if err != nil {
			return Event{}, false, err
		}
		tk := s.taskLocked(int(pid), int(tid))
		parent := s.taskLocked(int(ppid), int(ptid))
		tk.forked, tk.ParentTid, tk.StartNs = true, int(ptid), tm
		tk.Ppid = int(ppid)
		if pid == ppid {
			tk.Ppid = parent.Ppid // a thread: its process's parent
		}
		if len(tk.Comms) == 0 && len(parent.Comms) > 0 {
			// fork copies the name (a COMM record comes only when it
			// changes); settleNames checks it against the times.
			tk.Comms = []string{parent.Comm()}
		}
	case unix.PERF_RECORD_EXIT:
		pid, _, tid, _, tm, err := perfevents.DecodeFork(rec.Data)
		if err != nil {
			return Event{}, false, err
		}
		tk := s.taskLocked(int(pid), int(tid))
		tk.Exited, tk.EndNs = true, tm
	case unix.PERF_RECORD_COMM:
		pid, tid, comm, err := perfevents.DecodeComm(rec.Data)
		if err != nil {
			return Event{}, false, err
		}
		tk := s.taskLocked(int(pid), int(tid))
		tm, _ := trailerTime(rec.Data)
		if rec.Misc&unix.PERF_RECORD_MISC_COMM_EXEC != 0 && tk.Root && s.cfg.StartAtExec && !tk.execSeen {
			// The command's life starts at its exec, whose time only the
			// sample_id trailer carries.
			tk.execSeen = true
			if tm != 0 {
				tk.StartNs = tm
			}
		}
		if rec.Misc&unix.PERF_RECORD_MISC_COMM_EXEC != 0 {
			tk.Execs = append(tk.Execs, tm)
		}
		tk.setComm(string(comm))
		tk.commAt = append(tk.commAt, commEvent{ns: tm, name: string(comm)})
	case unix.PERF_RECORD_MMAP2:
		m, err := perfevents.DecodeMmap2(rec.Data)
		if err != nil {
			return Event{}, false, err
		}
		tm, _ := trailerTime(rec.Data)
		if s.cfg.OnMmap != nil {
			s.mmaps = append(s.mmaps, timedMmap{m, tm})
		}
	case unix.PERF_RECORD_READ:
		// An inherited task's count at its exit (count mode), under the
		// id of the event it was inherited from.
		pid, tid, v, _, _, id, err := perfevents.DecodeRead(rec.Data, perfevents.ReadFormat)
		if err != nil {
			return Event{}, false, err
		}
		info, ok := s.ids[id]
		if !ok {
			return Event{}, false, nil
		}
		s.readSums[id] += v
		if s.tasks[int(tid)] == nil && v == 0 {
			// A task no other record made known, with nothing counted:
			// one that exited before its events were enabled (a thread
			// of cowtrace's that run's exec never reached).
			return Event{}, false, nil
		}
		tk := s.taskLocked(int(pid), int(tid))
		tk.add(info, v)
		tk.countsRead = true
	case unix.PERF_RECORD_LOST:
		_, n, err := perfevents.DecodeLost(rec.Data)
		if err != nil {
			return Event{}, false, err
		}
		s.ring(rec.Cookie).lost += n
	case unix.PERF_RECORD_THROTTLE:
		s.ring(rec.Cookie).throttled++
	}
	return Event{}, false, nil
}

func (s *Session) ring(cookie int) *ring {
	if cookie >= 0 && cookie < len(s.rings) {
		return &s.rings[cookie]
	}
	// Unreachable for the Reader's own cookies; a stray one is not lost.
	s.rings = append(s.rings, ring{tid: -1})
	return &s.rings[len(s.rings)-1]
}

// sample accounts one PERF_RECORD_SAMPLE to its task.
func (s *Session) sample(rec *perfevents.Record, smp *perfevents.Sample) (Event, bool, error) {
	if len(rec.Data) < 8 {
		return Event{}, false, fmt.Errorf("sample of %d bytes: %w", len(rec.Data), perfevents.ErrTruncated)
	}
	info, ok := s.ids[binary.NativeEndian.Uint64(rec.Data)]
	if !ok {
		return Event{}, false, nil
	}
	if err := perfevents.DecodeSample(rec.Data, info.sampleType(), smp); err != nil {
		return Event{}, false, err
	}
	tk := s.taskLocked(int(smp.Pid), int(smp.Tid))
	switch info.kind {
	case kindCounter:
		tk.counters[info.counter]++
		if info.addr {
			tk.stream(rec.Cookie).FaultByAddress(smp.Addr, smp.IP, s.region)
		}
	case kindFault, kindKernelFault:
		tp := s.tp.Fault
		if info.kind == kindKernelFault {
			tp = s.tp.KernelFault
		}
		addr, code, err := tp.Fields(smp.Raw)
		if err != nil {
			return Event{}, false, err
		}
		var ip uint64
		if info.kind == kindFault {
			ip = tp.IP(smp.Raw)
		}
		class, ok := tk.stream(rec.Cookie).FaultAt(addr, ip, code, s.region, info.kind == kindKernelFault)
		if ok && class == cow.FaultWP {
			return Event{TimeNs: smp.Time, Pid: tk.Pid, Tid: tk.Tid, Name: "wp_fault", Address: addr}, true, nil
		}
	case kindAlloc:
		order, gfp, err := s.tp.Alloc.Fields(smp.Raw)
		if err != nil {
			return Event{}, false, err
		}
		var c cow.Copied
		switch {
		case info.callchain:
			if !s.tp.Rule.Match(order, gfp) || !s.copyPath.Contains(smp) {
				return Event{}, false, nil
			}
			c = tk.stream(rec.Cookie).Copy()
		case tk.streams[rec.Cookie] != nil:
			var ok bool
			if c, ok = tk.streams[rec.Cookie].Alloc(order, gfp, s.tp.Rule); !ok {
				return Event{}, false, nil
			}
		default:
			return Event{}, false, nil
		}
		return Event{TimeNs: smp.Time, Pid: tk.Pid, Tid: tk.Tid, Name: "copy", Address: c.Addr, IP: c.IP, Known: c.Known}, true, nil
	case kindProbe:
		tk.probes[info.probe]++
		return Event{TimeNs: smp.Time, Pid: tk.Pid, Tid: tk.Tid, Name: "kprobe:" + info.probe, Address: smp.IP}, true, nil
	}
	return Event{}, false, nil
}

// trailerTime reads TIME from a record's sample_id trailer, which is
// TID (8 bytes), TIME, IDENTIFIER for every event of a session: the time is
// the 16 bytes before the end's last 8.
func trailerTime(data []byte) (uint64, bool) {
	if len(data) < 24 {
		return 0, false
	}
	return binary.NativeEndian.Uint64(data[len(data)-16:]), true
}

func monotonicNs() uint64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return uint64(ts.Nano())
}
