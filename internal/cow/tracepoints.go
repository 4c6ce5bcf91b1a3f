package cow

import (
	"fmt"

	"github.com/cowtrace/cowtrace/perfevents"
	"github.com/cowtrace/cowtrace/report"
)

// Tracepoint is a fault or allocation tracepoint as this kernel describes
// it: its id and where its fields sit in a raw sample.
type Tracepoint struct {
	Name  string // "exceptions:page_fault_user"
	ID    uint64
	a, b  perfevents.Field // fault: address, error_code; allocation: order, gfp_flags
	ip    perfevents.Field // fault: the faulting instruction
	hasIP bool
}

// IP reads a fault sample's instruction pointer: user code for
// page_fault_user, 0 where the format has none.
func (tp *Tracepoint) IP(raw []byte) uint64 {
	if !tp.hasIP {
		return 0
	}
	v, _ := tp.ip.Uint(raw)
	return v
}

// Fields reads a sample's two fields: address and error code of a fault,
// order and flags of an allocation.
func (tp *Tracepoint) Fields(raw []byte) (uint64, uint64, error) {
	a, err := tp.a.Uint(raw)
	if err != nil {
		return 0, 0, fmt.Errorf("%s sample: %w", tp.Name, err)
	}
	b, err := tp.b.Uint(raw)
	if err != nil {
		return 0, 0, fmt.Errorf("%s sample: %w", tp.Name, err)
	}
	return a, b, nil
}

// Tracepoints are the tracepoints this kernel offers cowtrace; a nil field
// is one it lacks, with the reason in Unavailable.
type Tracepoints struct {
	// Fault is exceptions:page_fault_user (x86 only).
	Fault *Tracepoint
	// KernelFault is exceptions:page_fault_kernel: a system call that
	// writes to user memory (wait4's status, read(2) into a buffer) takes
	// its copy-on-write fault in kernel mode, which page_fault_user never
	// sees. Only offered with Fault.
	KernelFault *Tracepoint
	// Alloc is kmem:mm_page_alloc, with Rule read from its format.
	Alloc       *Tracepoint
	Rule        AllocRule
	Unavailable []report.Unavailable
}

// DetectTracepoints reads the formats of the tracepoints from tfs (nil: no
// tracefs, whose reason is tfsErr).
func DetectTracepoints(tfs *perfevents.Tracefs, tfsErr error) *Tracepoints {
	t := &Tracepoints{Rule: DefaultAllocRule}
	if tfs == nil {
		t.note("tracefs", tfsErr.Error())
		return t
	}
	if f, err := tfs.EventFormat("exceptions", "page_fault_user"); err != nil {
		t.note("tracepoint:exceptions:page_fault_user", fmt.Sprintf("%v (x86 only)", err))
	} else {
		t.Fault = t.fields("exceptions:page_fault_user", f, "address", "error_code")
	}
	if t.Fault != nil {
		if f, err := tfs.EventFormat("exceptions", "page_fault_kernel"); err != nil {
			t.note("tracepoint:exceptions:page_fault_kernel", err.Error())
		} else {
			t.KernelFault = t.fields("exceptions:page_fault_kernel", f, "address", "error_code")
		}
	}
	if f, err := tfs.EventFormat("kmem", "mm_page_alloc"); err != nil {
		t.note("tracepoint:kmem:mm_page_alloc", err.Error())
	} else if t.Alloc = t.fields("kmem:mm_page_alloc", f, "order", "gfp_flags"); t.Alloc != nil {
		t.Rule = AllocRuleOf(f)
	}
	return t
}

func (t *Tracepoints) fields(name string, f *perfevents.Format, a, b string) *Tracepoint {
	tp, err := NewTracepoint(name, f, a, b)
	if err != nil {
		t.note("tracepoint:"+name, err.Error())
	}
	return tp
}

// NewTracepoint describes tracepoint name from its format, with fields a
// and b read by Fields.
func NewTracepoint(name string, f *perfevents.Format, a, b string) (*Tracepoint, error) {
	fa, ok1 := f.Field(a)
	fb, ok2 := f.Field(b)
	if !ok1 || !ok2 {
		return nil, fmt.Errorf("format lacks %s or %s", a, b)
	}
	tp := &Tracepoint{Name: name, ID: f.ID, a: fa, b: fb}
	tp.ip, tp.hasIP = f.Field("ip")
	return tp, nil
}

// AllocRuleOf reads the flag values of the copy rule from
// kmem:mm_page_alloc's print format, which names them; DefaultAllocRule's
// stand in for those it does not.
func AllocRuleOf(f *perfevents.Format) AllocRule {
	r := DefaultAllocRule
	flags := perfevents.FlagValues(f.PrintFmt)
	if v, ok := flags["GFP_HIGHUSER_MOVABLE"]; ok {
		r.HighuserMovable = v
	}
	if v, ok := flags["__GFP_ZERO"]; ok {
		r.Zero = v
	}
	r.Comp = flags["__GFP_COMP"]
	return r
}

func (t *Tracepoints) note(what, why string) {
	t.Unavailable = append(t.Unavailable, report.Unavailable{What: what, Why: why})
}
