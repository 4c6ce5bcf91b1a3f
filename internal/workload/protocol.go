package workload

import (
	"encoding/binary"
	"fmt"
)

// The worker and its children talk to the tracer over one pipe with
// fixed-size binary messages. Every message is smaller than PIPE_BUF, so
// writes from the worker parent and from its children never interleave, and a
// forked child can build one on its stack without allocating.
const msgSize = 32

// Kind says what a worker message reports.
type Kind uint32

const (
	// KindReady: the worker parent has mapped (and, unless untouched,
	// written) the region and waits at its gate; the fork comes next.
	KindReady Kind = iota + 1
	// KindAtGate: a forked child is blocked on its gate. It has not
	// touched the region yet, and the stack pages it shares with the parent
	// have already been copied, so from here on it only touches the region.
	KindAtGate
	// KindChildDone: a child has finished touching the region; Value is
	// the sum of the bytes it read (readers) or wrote (writers).
	KindChildDone
	// KindParentDone: the parent has reaped every child and made its final
	// read of the region (Value is the sum of the bytes it read); it waits
	// at its gate once more so that the tracer can close the parent's
	// window before the Go runtime's exit path faults.
	KindParentDone
	// KindForked (Config.Hold only): the parent has forked every child
	// and waits at its gate; the children wait at theirs. Nobody has
	// touched the region since the fork: the moment to look at it shared.
	KindForked
	// KindParentWorked (Config.Hold only): the parent has done what it
	// does while the children live (ParentWritesDuring) and now waits for
	// them; the children stay alive, each at its gate after
	// KindChildDone, until the tracer opens those gates again.
	KindParentWorked
)

// Message flags.
const (
	// FlagRegionMissing (KindChildDone): the region was not mapped in the
	// child (MADV_DONTFORK), so it touched nothing.
	FlagRegionMissing = 1 << iota
)

func (k Kind) String() string {
	switch k {
	case KindReady:
		return "ready"
	case KindAtGate:
		return "at-gate"
	case KindChildDone:
		return "child-done"
	case KindParentDone:
		return "parent-done"
	case KindForked:
		return "forked"
	case KindParentWorked:
		return "parent-worked"
	}
	return fmt.Sprintf("kind(%d)", uint32(k))
}

// Message is one report from the worker or one of its children.
type Message struct {
	Kind Kind
	// Child is 0 for the worker parent, i for Config.Children[i-1].
	Child int
	Pid   int
	Flags uint32 // FlagRegionMissing
	Addr  uint64 // KindReady: start of the region
	Value uint64 // KindReady: length of the region; done messages: byte sum
}

func (m Message) encode(b *[msgSize]byte) {
	binary.LittleEndian.PutUint32(b[0:], uint32(m.Kind))
	binary.LittleEndian.PutUint32(b[4:], uint32(m.Child))
	binary.LittleEndian.PutUint32(b[8:], uint32(m.Pid))
	binary.LittleEndian.PutUint32(b[12:], m.Flags)
	binary.LittleEndian.PutUint64(b[16:], m.Addr)
	binary.LittleEndian.PutUint64(b[24:], m.Value)
}

func decodeMessage(b []byte) (Message, error) {
	if len(b) != msgSize {
		return Message{}, fmt.Errorf("worker message of %d bytes, want %d", len(b), msgSize)
	}
	m := Message{
		Kind:  Kind(binary.LittleEndian.Uint32(b[0:])),
		Child: int(binary.LittleEndian.Uint32(b[4:])),
		Pid:   int(binary.LittleEndian.Uint32(b[8:])),
		Flags: binary.LittleEndian.Uint32(b[12:]),
		Addr:  binary.LittleEndian.Uint64(b[16:]),
		Value: binary.LittleEndian.Uint64(b[24:]),
	}
	if m.Kind < KindReady || m.Kind > KindParentWorked {
		return Message{}, fmt.Errorf("worker message of unknown kind %d", uint32(m.Kind))
	}
	return m, nil
}
