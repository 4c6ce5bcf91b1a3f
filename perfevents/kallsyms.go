package perfevents

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Symbol is one line of /proc/kallsyms.
type Symbol struct {
	Name string
	Addr uint64
	// Type is nm's symbol type letter: 't'/'T' text, 'd'/'D' data, ...
	Type byte
	// Module is the module the symbol belongs to, "" for the kernel image.
	Module string
	// Size is the distance to the next symbol of higher address that
	// follows in kallsyms (sorted by address within the kernel image and
	// within each module): the function's extent, padding included. 0 for
	// the last symbol.
	Size uint64
}

// Contains says whether addr lies in the symbol's extent.
func (s Symbol) Contains(addr uint64) bool { return addr >= s.Addr && addr-s.Addr < s.Size }

// IsText reports whether the symbol is in a text (code) section, the only
// kind a kprobe can be placed on.
func (s Symbol) IsText() bool { return s.Type == 't' || s.Type == 'T' }

// Symbols is a set of kernel symbols read from kallsyms.
type Symbols struct {
	byName map[string][]Symbol
	hidden bool
}

// ParseKallsyms reads symbols in /proc/kallsyms format
// ("ffffffff81000000 T _stext", with "\t[module]" after module symbols).
//
// With want given, only those names are kept, together with their compiler
// variants ("name.isra.0", "name.cold", "name.constprop.0"; see Variants);
// the rest of the lines are skipped without allocating, which is what makes
// reading the ~200k lines of a distribution kernel's kallsyms cheap.
//
// Every line is kept, even when a name repeats: static functions of the same
// name in several files each get a line.
func ParseKallsyms(r io.Reader, want ...string) (*Symbols, error) {
	var wanted map[string]bool
	if len(want) > 0 {
		wanted = make(map[string]bool, len(want))
		for _, w := range want {
			wanted[w] = true
		}
	}

	s := &Symbols{byName: make(map[string][]Symbol)}
	sawLine, sawAddr := false, false
	// open are the kept symbols whose size waits for the next address.
	var open []symbolRef
	// A large buffer: /proc/kallsyms is generated a read() at a time, and
	// fewer, larger reads are measurably faster.
	br := bufio.NewReaderSize(r, 256<<10)
	for lineNo := 1; ; lineNo++ {
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			return nil, fmt.Errorf("kallsyms line %d: too long", lineNo)
		}
		if len(line) > 0 {
			line = bytes.TrimRight(line, "\n")
			if len(line) > 0 {
				addr, typ, name, mod, perr := splitKallsymsLine(line)
				if perr != nil {
					return nil, fmt.Errorf("kallsyms line %d %q: %w", lineNo, line, perr)
				}
				sawLine = true
				if !sawAddr && !allZero(addr) {
					sawAddr = true
				}
				keep := wanted == nil || wanted[string(name)] || wantedVariant(wanted, name)
				if keep || len(open) > 0 {
					a, perr := strconv.ParseUint(string(addr), 16, 64)
					if perr != nil {
						return nil, fmt.Errorf("kallsyms line %d %q: %w", lineNo, line, perr)
					}
					open = s.closeSizes(open, a, mod)
					if keep {
						sym := Symbol{Name: string(name), Addr: a, Type: typ, Module: string(mod)}
						s.byName[sym.Name] = append(s.byName[sym.Name], sym)
						open = append(open, symbolRef{sym.Name, len(s.byName[sym.Name]) - 1})
					}
				}
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read kallsyms: %w", err)
		}
	}
	// With kptr_restrict (or without CAP_SYSLOG) the kernel prints every
	// address as zero but still lists the names.
	s.hidden = sawLine && !sawAddr
	return s, nil
}

// symbolRef is a kept symbol: byName[name][i].
type symbolRef struct {
	name string
	i    int
}

// closeSizes sets the size of the open symbols that addr, in the same
// module, ends; it returns those still open.
func (s *Symbols) closeSizes(open []symbolRef, addr uint64, mod []byte) []symbolRef {
	left := open[:0]
	for _, ref := range open {
		o := &s.byName[ref.name][ref.i]
		switch {
		case o.Module != string(mod):
			// Another section of kallsyms: the extent is unknown.
		case addr > o.Addr:
			o.Size = addr - o.Addr
		default:
			left = append(left, ref)
		}
	}
	return left
}

// wantedVariant reports whether name is "BASE.suffix" for a wanted BASE.
func wantedVariant(wanted map[string]bool, name []byte) bool {
	i := bytes.IndexByte(name, '.')
	return i > 0 && wanted[string(name[:i])]
}

func splitKallsymsLine(line []byte) (addr []byte, typ byte, name, mod []byte, err error) {
	sp := bytes.IndexByte(line, ' ')
	if sp <= 0 || len(line) < sp+4 || line[sp+2] != ' ' {
		return nil, 0, nil, nil, fmt.Errorf("not ADDR TYPE NAME")
	}
	addr, typ, name = line[:sp], line[sp+1], line[sp+3:]
	if tab := bytes.IndexByte(name, '\t'); tab >= 0 {
		mod = bytes.Trim(name[tab+1:], "[] \t")
		name = name[:tab]
	}
	if len(name) == 0 {
		return nil, 0, nil, nil, fmt.Errorf("empty name")
	}
	return addr, typ, name, mod, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != '0' {
			return false
		}
	}
	return true
}

// LoadKallsyms reads /proc/kallsyms (under SysfsRoot); see ParseKallsyms.
func LoadKallsyms(want ...string) (*Symbols, error) {
	f, err := os.Open(filepath.Join(SysfsRoot, "proc/kallsyms"))
	if err != nil {
		return nil, fmt.Errorf("kallsyms: %w", err)
	}
	defer f.Close()
	return ParseKallsyms(f, want...)
}

// KallsymsHidden reads /proc/kallsyms up to its first text symbol alone,
// which the kernel writes at once, to tell whether it hides addresses from
// this process (see AddressesHidden); reading the whole file takes tens of
// milliseconds. Symbols before it may be at 0 in any case (the per-CPU
// ones, "A", at the top of x86's on Linux 5.10).
func KallsymsHidden() (bool, error) {
	f, err := os.Open(filepath.Join(SysfsRoot, "proc/kallsyms"))
	if err != nil {
		return false, fmt.Errorf("kallsyms: %w", err)
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 64<<10)
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return false, fmt.Errorf("kallsyms: no text symbol: %w", err)
		}
		addr, typ, _, _, err := splitKallsymsLine(bytes.TrimRight(line, "\n"))
		if err != nil {
			return false, fmt.Errorf("kallsyms line %q: %w", line, err)
		}
		if typ == 't' || typ == 'T' {
			return allZero(addr), nil
		}
	}
}

// Lookup returns the first text symbol called name, or, if none is text, the
// first symbol of that name.
func (s *Symbols) Lookup(name string) (Symbol, bool) {
	all := s.byName[name]
	for _, sym := range all {
		if sym.IsText() {
			return sym, true
		}
	}
	if len(all) > 0 {
		return all[0], true
	}
	return Symbol{}, false
}

// All returns every symbol called exactly name, in kallsyms order.
func (s *Symbols) All(name string) []Symbol {
	return append([]Symbol(nil), s.byName[name]...)
}

// Variants returns the symbols that the compiler derived from function name
// ("name.isra.0", "name.constprop.0", "name.part.0", "name.cold"). When a
// function was specialised or split, kprobing name itself misses the calls
// that went to a variant, or name is gone altogether.
func (s *Symbols) Variants(name string) []Symbol {
	var out []Symbol
	for n, syms := range s.byName {
		if len(n) > len(name)+1 && n[len(name)] == '.' && n[:len(name)] == name {
			out = append(out, syms...)
		}
	}
	// Map order is random; callers print these.
	slices.SortStableFunc(out, func(a, b Symbol) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// AddressesHidden reports whether every address read was zero, as
// kernel.kptr_restrict makes them for readers without CAP_SYSLOG (and for
// everyone at kptr_restrict=2). Names are still valid then; addresses not.
func (s *Symbols) AddressesHidden() bool { return s.hidden }
