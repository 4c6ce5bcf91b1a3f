package perfevents

import (
	"strings"
	"testing"
)

// Every parser of what the kernel writes is fuzzed: a kernel of another
// version, or a corrupt ring, must give an error, never a panic.

func FuzzParseFormat(f *testing.F) {
	f.Add("name: x\nID: 1\nformat:\n\tfield:unsigned long address;\toffset:8;\tsize:8;\tsigned:0;\n\nprint fmt: \"%lx\", REC->address\n")
	f.Add("print fmt: \"%s\", __print_flags(REC->gfp_flags, \"|\", {(unsigned long)((( gfp_t)0x100u)), \"__GFP_ZERO\"})\n")
	f.Fuzz(func(t *testing.T, s string) {
		fm, err := ParseFormat(strings.NewReader(s))
		if err != nil {
			return
		}
		for _, fd := range fm.Fields {
			_, _ = fd.Uint(make([]byte, 64))
		}
		_ = FlagValues(fm.PrintFmt)
	})
}

func FuzzParseKallsyms(f *testing.F) {
	f.Add("ffffffff81000000 T copy_page\nffffffff81000100 t copy_page.cold [mod]\n")
	f.Add("0000000000000000 T do_wp_page\n")
	f.Fuzz(func(t *testing.T, s string) {
		syms, err := ParseKallsyms(strings.NewReader(s), "copy_page", "do_wp_page")
		if err != nil {
			return
		}
		syms.Lookup("copy_page")
		syms.Variants("copy_page")
	})
}

func FuzzMountinfo(f *testing.F) {
	f.Add("36 35 0:12 / /sys/kernel/tracing rw,nosuid - tracefs nodev rw\n")
	f.Add("1 0 0:1 / /with\\040space rw - tracefs tracefs rw\n")
	f.Fuzz(func(t *testing.T, s string) {
		_ = tracefsFromMountinfo(strings.NewReader(s))
	})
}

func FuzzDecodeRecords(f *testing.F) {
	f.Add(make([]byte, 48))
	f.Add([]byte{1, 0, 0, 0, 2, 0, 0, 0, 'a', 'b', 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _, _, _, _, _ = DecodeFork(data)
		_, _, _, _ = DecodeComm(data)
		_, _, _ = DecodeLost(data)
		_, _, _, _ = DecodeThrottle(data)
		_, _ = DecodeMmap2(data)
	})
}
