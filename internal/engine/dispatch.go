package engine

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cowtrace/cowtrace/internal/cow"
	"github.com/cowtrace/cowtrace/perfevents"
)

// read consumes records until the deadline set by Stop, and applies them
// in time order (orderer).
//
// A stream is read on a tick besides: the rings wake the reader only when
// half full, and records are applied only as a later read pass starts, so
// the last records of a quiet trace (a postmaster's after its backend
// exited) would wait for the next burst, or for Stop. Each tick's deadline
// makes the reader drain every ring and return; records stamped orderSlack
// before it are then applied.
func (s *Session) read() error {
	var rec perfevents.Record
	tick := s.tick()
	for {
		err := s.reader.ReadInto(&rec)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			if tick != 0 {
				// The pass that ended in this error started after the
				// tick's deadline.
				if err := s.apply(tick - min(tick, orderSlack)); err != nil {
					return err
				}
				if tick = s.tick(); tick != 0 {
					continue
				}
			}
			return s.apply(^uint64(0))
		}
		if errors.Is(err, perfevents.ErrFlushed) {
			// Every ring was read to its head at the flush's pass.
			if p := s.reader.PassNs(); p > orderSlack {
				if err := s.apply(p - orderSlack); err != nil {
					return err
				}
			}
			continue
		}
		if err != nil {
			return err
		}
		s.mu.Lock()
		s.records++
		ns := recordTime(rec.Type, rec.Data, s.sampleTypeOf)
		prev, newPass := s.order.push(&rec, ns)
		if s.freezeNs != 0 && rec.Type == unix.PERF_RECORD_SAMPLE && len(rec.Data) >= 16 &&
			s.ids[binary.NativeEndian.Uint64(rec.Data)].kind == kindMember {
			s.sampledAt[int(binary.NativeEndian.Uint32(rec.Data[12:]))] = ns
		}
		s.mu.Unlock()
		if newPass && prev > orderSlack {
			if err := s.apply(prev - orderSlack); err != nil {
				return err
			}
		}
	}
}

// streamTick is how often a stream's rings are read when they stay quiet.
const streamTick = 100 * time.Millisecond

// tick sets the reader's deadline to the next tick of a stream and returns
// a time no later (CLOCK_MONOTONIC); 0, and no deadline, when the session
// does not stream or Stop has set its own.
func (s *Session) tick() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.streaming() || s.draining {
		return 0
	}
	ns := monotonicNs()
	s.reader.SetDeadline(time.Now().Add(streamTick))
	return ns + uint64(streamTick)
}

// sampleTypeOf is the sample_type of the event with the id; 0 for one the
// session does not know.
func (s *Session) sampleTypeOf(id uint64) uint64 {
	if info, ok := s.ids[id]; ok {
		return info.sampleType()
	}
	return 0
}

// apply applies the queued records stamped before upTo, then hands what
// they made to OnMmap and OnEvent, outside the session's lock.
func (s *Session) apply(upTo uint64) error {
	var smp perfevents.Sample
	var evs []Event
	var err error
	s.mu.Lock()
	s.order.flush(upTo, func(rec *perfevents.Record) {
		if err != nil {
			return
		}
		ev, ok, rerr := s.record(rec, &smp)
		if rerr != nil {
			err = rerr
		} else if ok && s.cfg.OnEvent != nil {
			evs = append(evs, ev)
		}
	})
	mmaps := s.mmaps
	s.mmaps = nil
	calls := s.calls
	s.calls = nil
	s.mu.Unlock()
	for _, m := range mmaps {
		s.cfg.OnMmap(m.m, m.ns)
	}
	for _, ev := range evs {
		s.cfg.OnEvent(ev)
	}
	for _, f := range calls {
		f()
	}
	return err
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
		parent := s.taskLocked(int(ppid), int(ptid))
		tk := s.taskLocked(int(pid), int(tid))
		tk.forked, tk.ParentTid, tk.StartNs, tk.parent = true, int(ptid), tm, parent
		s.forkSeen(parent, tm)
		s.streamFork(parent, tk, tm)
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
		tk.Exited, tk.EndNs, tk.ownRecord = true, tm, true
		if s.streaming() || s.cfg.Forget {
			s.streamExit(tk, tm)
		}
	case unix.PERF_RECORD_COMM:
		pid, tid, comm, err := perfevents.DecodeComm(rec.Data)
		if err != nil {
			return Event{}, false, err
		}
		tk := s.taskLocked(int(pid), int(tid))
		tk.ownRecord = true
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
		if info, ok = s.foreignSample(rec.Data, smp); !ok {
			return Event{}, false, nil
		}
		s.foreignIDs++
	}
	if err := perfevents.DecodeSample(rec.Data, info.sampleType(), smp); err != nil {
		return Event{}, false, err
	}
	tk := s.taskLocked(int(smp.Pid), int(smp.Tid))
	if info.root != 0 {
		s.heldRoot(tk, info.root)
	}
	if info.group != nil {
		info.group.allocSamples++
	}
	switch info.kind {
	case kindMember:
		s.countSample(tk, info, smp)
		if s.streaming() {
			s.streamSample(tk, s.group.members[info.member].kind, smp.Time)
		}
	case kindCounter:
		tk.counters[info.counter]++
		if info.addr {
			tk.stream(rec.Cookie).FaultByAddress(smp.Addr, smp.IP, s.region)
			if cow.UserAddress(smp.IP) {
				s.userModeSeen(tk, smp.Time)
			}
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
			s.userModeSeen(tk, smp.Time)
		}
		class, ok := tk.stream(rec.Cookie).FaultAt(addr, ip, code, s.region, info.kind == kindKernelFault)
		if ok && class == cow.FaultWP {
			return Event{TimeNs: smp.Time, Pid: tk.Pid, Tid: tk.Tid, Name: "wp_fault", Address: addr}, true, nil
		}
	case kindAlloc:
		var order, gfp uint64
		if !info.shaped {
			var err error
			if order, gfp, err = s.tp.Alloc.Fields(smp.Raw); err != nil {
				return Event{}, false, err
			}
		}
		var c cow.Copied
		switch {
		case info.callchain:
			if !info.shaped && !s.tp.Rule.Match(order, gfp) {
				return Event{}, false, nil
			}
			cause := s.copyPath.Cause(smp)
			if cause == cow.NotACopy {
				return Event{}, false, nil
			}
			tk.copiesBy[cause]++
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

// foreignSample tells which sampled software event of the session wrote a
// sample whose IDENTIFIER is another event's (see idType): the count
// group's, whose one sampled software member is the context-switch one,
// by the group its READ names; a sampled counter's by the sample's size,
// each counter's own.
func (s *Session) foreignSample(data []byte, smp *perfevents.Sample) (eventInfo, bool) {
	if s.group != nil && perfevents.DecodeSample(data, countSampleType, smp) == nil && smp.Read.Len() > 0 {
		if _, leader := smp.Read.Value(0); s.group.byLeader[leader] != nil {
			if i, ok := s.group.index[mSwitch]; ok && i >= 0 {
				return eventInfo{kind: kindMember, member: i}, true
			}
		}
	}
	for i := range faultCounters {
		info := eventInfo{kind: kindCounter, counter: i, addr: i == 0 && s.faultAddr}
		if s.sampledCounter(i) && len(data) == 8*bits.OnesCount64(info.sampleType()) {
			return info, true
		}
	}
	return eventInfo{}, false
}
