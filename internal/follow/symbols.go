package follow

import (
	"debug/elf"
	"fmt"
	"path/filepath"
	"sort"
)

// symbolizer names the user function at a file offset of a mapped ELF file,
// reading each file once.
type symbolizer struct {
	files map[string]*elfFile
}

// elfFile is what symbolizing needs of one ELF file; nil loads when it
// could not be read.
type elfFile struct {
	loads []elf.ProgHeader
	funcs []elfFunc // by address
}

type elfFunc struct {
	addr, size uint64
	name       string
}

func newSymbolizer() *symbolizer { return &symbolizer{files: map[string]*elfFile{}} }

// name is the function of path that holds file offset off: "func (file)",
// or "?+0xADDR (file)" with the ELF address (what addr2line -e FILE takes)
// where no symbol covers it, or the file offset when no segment does.
func (sz *symbolizer) name(path string, off uint64) string {
	f := sz.files[path]
	if f == nil {
		f = loadELF(path)
		sz.files[path] = f
	}
	base := filepath.Base(path)
	addr, ok := f.addr(off)
	if !ok {
		return fmt.Sprintf("?+%#x (%s, file offset)", off, base)
	}
	if fn, ok := f.function(addr); ok {
		return fmt.Sprintf("%s (%s)", fn, base)
	}
	return fmt.Sprintf("?+%#x (%s)", addr, base)
}

// loadELF reads the program headers and function symbols of path: .symtab
// when the file has one, else .dynsym (a stripped library still exports its
// public functions). A file that cannot be read gives an empty elfFile.
func loadELF(path string) *elfFile {
	out := &elfFile{}
	f, err := elf.Open(path)
	if err != nil {
		return out
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD {
			out.loads = append(out.loads, p.ProgHeader)
		}
	}
	syms, err := f.Symbols()
	complete := err == nil && hasFuncs(syms)
	if !complete {
		syms, _ = f.DynamicSymbols()
	}
	for _, s := range syms {
		if elf.ST_TYPE(s.Info) == elf.STT_FUNC && s.Value != 0 {
			out.funcs = append(out.funcs, elfFunc{addr: s.Value, size: s.Size, name: s.Name})
		}
	}
	sort.SliceStable(out.funcs, func(i, j int) bool { return out.funcs[i].addr < out.funcs[j].addr })
	if complete {
		// .symtab lists every function, and those of crt files and
		// hand-written assembly have no size: each runs to the next.
		for i := range out.funcs {
			if out.funcs[i].size == 0 && i+1 < len(out.funcs) {
				out.funcs[i].size = out.funcs[i+1].addr - out.funcs[i].addr
			}
		}
	}
	return out
}

func hasFuncs(syms []elf.Symbol) bool {
	for _, s := range syms {
		if elf.ST_TYPE(s.Info) == elf.STT_FUNC && s.Value != 0 {
			return true
		}
	}
	return false
}

// addr turns a file offset into the ELF's virtual address through the
// loadable segment that holds it.
func (f *elfFile) addr(off uint64) (uint64, bool) {
	for _, p := range f.loads {
		if off >= p.Off && off < p.Off+p.Filesz {
			return off - p.Off + p.Vaddr, true
		}
	}
	return 0, false
}

// function is the symbol whose [addr, addr+size) holds addr. A symbol of
// .dynsym with size 0 holds only its own address: taking the nearest symbol
// below would name a stripped file's static functions after whatever public
// function precedes them.
func (f *elfFile) function(addr uint64) (string, bool) {
	i := sort.Search(len(f.funcs), func(i int) bool { return f.funcs[i].addr > addr })
	for j := i - 1; j >= 0 && j >= i-8; j-- {
		// Aliases share an address; a nested or overlapping symbol may
		// sit just below: look at a few.
		s := f.funcs[j]
		if addr < s.addr+max(s.size, 1) {
			return s.name, true
		}
	}
	return "", false
}
