package experiment

import (
	"errors"
	"fmt"

	"github.com/cowtrace/cowtrace/perfevents"
	"github.com/cowtrace/cowtrace/report"
)

// capabilities is what this kernel offers cowtrace, found once per run.
type capabilities struct {
	kernel string
	tfs    *perfevents.Tracefs // nil when tracefs could not be had
	fault  *faultTP            // exceptions:page_fault_user, nil if absent
	// kfault is exceptions:page_fault_kernel: a system call that writes to
	// user memory (wait4's status, read(2) into a buffer) takes its
	// copy-on-write fault in kernel mode, which page_fault_user never sees.
	kfault      *faultTP
	alloc       *allocTP // kmem:mm_page_alloc, nil if absent
	unavailable []report.Unavailable
}

type faultTP struct {
	id                 uint64
	address, errorCode perfevents.Field
}

type allocTP struct {
	id         uint64
	order, gfp perfevents.Field
	rule       copyAlloc
}

// detect opens (or mounts) tracefs and reads the tracepoints' formats. Only a
// lack of privilege is fatal: everything else becomes an "unavailable" line
// and the run goes on with what is left.
func detect() (*capabilities, error) {
	c := &capabilities{kernel: perfevents.KernelRelease()}
	tfs, err := perfevents.OpenTracefs()
	if err != nil {
		if errors.Is(err, perfevents.ErrPermission) {
			return nil, fmt.Errorf("%w: %s", err, perfevents.PermissionHint())
		}
		c.note("tracefs", err.Error())
		return c, nil
	}
	c.tfs = tfs

	if f, err := tfs.EventFormat("exceptions", "page_fault_user"); err != nil {
		c.note("tracepoint:exceptions:page_fault_user", fmt.Sprintf("%v (x86 only)", err))
	} else {
		addr, ok1 := f.Field("address")
		code, ok2 := f.Field("error_code")
		if ok1 && ok2 {
			c.fault = &faultTP{id: f.ID, address: addr, errorCode: code}
		} else {
			c.note("tracepoint:exceptions:page_fault_user", "format lacks address or error_code")
		}
	}

	if c.fault != nil {
		if f, err := tfs.EventFormat("exceptions", "page_fault_kernel"); err != nil {
			c.note("tracepoint:exceptions:page_fault_kernel", err.Error())
		} else if addr, ok1 := f.Field("address"); ok1 {
			if code, ok2 := f.Field("error_code"); ok2 {
				c.kfault = &faultTP{id: f.ID, address: addr, errorCode: code}
			}
		}
	}

	if f, err := tfs.EventFormat("kmem", "mm_page_alloc"); err != nil {
		c.note("tracepoint:kmem:mm_page_alloc", err.Error())
	} else {
		order, ok1 := f.Field("order")
		gfp, ok2 := f.Field("gfp_flags")
		if ok1 && ok2 {
			rule := defaultCopyAlloc
			flags := perfevents.FlagValues(f.PrintFmt)
			if v, ok := flags["GFP_HIGHUSER_MOVABLE"]; ok {
				rule.highuserMovable = v
			}
			if v, ok := flags["__GFP_ZERO"]; ok {
				rule.zero = v
			}
			c.alloc = &allocTP{id: f.ID, order: order, gfp: gfp, rule: rule}
		} else {
			c.note("tracepoint:kmem:mm_page_alloc", "format lacks order or gfp_flags")
		}
	}
	return c, nil
}

func (c *capabilities) note(what, why string) {
	c.unavailable = append(c.unavailable, report.Unavailable{What: what, Why: why})
}

// close unmounts tracefs if cowtrace mounted it.
func (c *capabilities) close() {
	if c.tfs != nil {
		c.tfs.Close()
	}
}
