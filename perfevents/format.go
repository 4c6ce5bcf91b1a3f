package perfevents

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Format is a parsed tracefs event format file (events/GROUP/NAME/format).
type Format struct {
	Name string
	ID   uint64
	// Fields in file order, the common_* fields first. Offsets are offsets
	// into the PERF_SAMPLE_RAW data of a sample of this event, which starts
	// with the common fields.
	Fields []Field
	// PrintFmt is the "print fmt:" line without its prefix: the format
	// string and its arguments as C source.
	PrintFmt string
}

// Field is one field of a trace event record.
type Field struct {
	// Name is the C identifier, without array brackets.
	Name string
	// Type is the C type, array brackets included ("char[16]",
	// "__data_loc char[]").
	Type   string
	Offset int
	Size   int
	Signed bool
}

// ParseFormat parses the text of a tracefs event format file.
func ParseFormat(r io.Reader) (*Format, error) {
	var f Format
	var haveID bool
	sc := bufio.NewScanner(r)
	// print fmt lines of events with large flag tables (kmem's gfp flags)
	// run to several KiB.
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "name:"):
			f.Name = strings.TrimSpace(strings.TrimPrefix(line, "name:"))
		case strings.HasPrefix(line, "ID:"):
			id, err := strconv.ParseUint(strings.TrimSpace(strings.TrimPrefix(line, "ID:")), 10, 64)
			if err != nil {
				return nil, fmt.Errorf("format: bad ID line %q: %w", line, err)
			}
			f.ID, haveID = id, true
		case strings.HasPrefix(line, "field:"):
			fd, err := parseField(line)
			if err != nil {
				return nil, err
			}
			f.Fields = append(f.Fields, fd)
		case strings.HasPrefix(line, "print fmt:"):
			f.PrintFmt = strings.TrimSpace(strings.TrimPrefix(line, "print fmt:"))
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("format: %w", err)
	}
	if f.Name == "" || !haveID {
		return nil, errors.New("format: no name or ID line: not an event format file")
	}
	return &f, nil
}

// parseField parses
//
//	field:unsigned long address;	offset:8;	size:8;	signed:0;
//
// "signed:" is missing on kernels before 2.6.33 and then taken as false.
func parseField(line string) (Field, error) {
	var fd Field
	var haveOffset, haveSize bool
	for part := range strings.SplitSeq(line, ";") {
		key, val, ok := strings.Cut(strings.TrimSpace(part), ":")
		if !ok {
			continue
		}
		val = strings.TrimSpace(val)
		var err error
		switch key {
		case "field":
			fd.Name, fd.Type, err = splitDecl(val)
		case "offset":
			fd.Offset, err = strconv.Atoi(val)
			haveOffset = true
		case "size":
			fd.Size, err = strconv.Atoi(val)
			haveSize = true
		case "signed":
			fd.Signed = val == "1"
		}
		if err != nil {
			return Field{}, fmt.Errorf("format: field line %q: %w", line, err)
		}
	}
	if fd.Name == "" || !haveOffset || !haveSize || fd.Offset < 0 || fd.Size < 0 {
		return Field{}, fmt.Errorf("format: malformed field line %q", line)
	}
	return fd, nil
}

// splitDecl splits a C declaration "unsigned char comm[16]" into its name
// "comm" and type "unsigned char[16]".
func splitDecl(decl string) (name, typ string, err error) {
	i := strings.LastIndexAny(decl, " \t*")
	if i < 0 || i == len(decl)-1 {
		return "", "", fmt.Errorf("no field name in %q", decl)
	}
	name, typ = decl[i+1:], strings.TrimSpace(decl[:i+1])
	if b := strings.IndexByte(name, '['); b >= 0 {
		name, typ = name[:b], typ+name[b:]
	}
	return name, typ, nil
}

// Field returns the field called name.
func (f *Format) Field(name string) (Field, bool) {
	for _, fd := range f.Fields {
		if fd.Name == name {
			return fd, true
		}
	}
	return Field{}, false
}

// Uint decodes the field from raw, the PERF_SAMPLE_RAW data of a sample, as
// a little-endian unsigned integer of the field's size. Signed fields come
// back as their two's complement bits; convert with int64(int32(v)) etc.
func (fd Field) Uint(raw []byte) (uint64, error) {
	if fd.Offset < 0 || fd.Size < 0 || fd.Offset > len(raw) || len(raw)-fd.Offset < fd.Size {
		return 0, fmt.Errorf("field %s: bytes %d..%d out of range of %d-byte record", fd.Name, fd.Offset, fd.Offset+fd.Size, len(raw))
	}
	b := raw[fd.Offset : fd.Offset+fd.Size]
	switch fd.Size {
	case 1:
		return uint64(b[0]), nil
	case 2:
		return uint64(binary.LittleEndian.Uint16(b)), nil
	case 4:
		return uint64(binary.LittleEndian.Uint32(b)), nil
	case 8:
		return binary.LittleEndian.Uint64(b), nil
	}
	return 0, fmt.Errorf("field %s (%s): size %d is not an integer size", fd.Name, fd.Type, fd.Size)
}

// FlagValues evaluates the {VALUE, "NAME"} tables of the __print_flags and
// __print_symbolic calls (and their _u64 variants) in a print fmt, e.g. for
// kmem:mm_page_alloc
//
//	{( unsigned long)(( gfp_t)((((1UL))) << (8))), "__GFP_ZERO"}
//
// The kernel exports these tables only as the C source of the already
// macro-expanded constants, so the values are computed here: integer
// literals, casts, parentheses and the operators | ^ & << >> + - * / % ~ !.
// Entries that need anything else (an unexpanded macro, a symbol, a
// conditional) are skipped. When a name appears twice, the first value wins.
//
// Arithmetic is done in 64 bits, as unsigned long is on the 64-bit kernels
// cowtrace supports; casts to narrower types truncate (and sign-extend for
// signed types), casts to unknown typedefs do nothing.
func FlagValues(printFmt string) map[string]uint64 {
	out := make(map[string]uint64)
	rest := printFmt
	for {
		i := strings.Index(rest, "__print_")
		if i < 0 {
			return out
		}
		rest = rest[i+len("__print_"):]
		j := 0
		for j < len(rest) && isIdentByte(rest[j]) {
			j++
		}
		switch rest[:j] {
		case "flags", "flags_u64", "symbolic", "symbolic_u64":
		default:
			continue
		}
		args := rest[j:]
		args = strings.TrimLeft(args, " \t")
		if !strings.HasPrefix(args, "(") {
			continue
		}
		end := matchClose(args, 0)
		if end < 0 {
			return out
		}
		for _, entry := range braceEntries(args[1:end]) {
			valSrc, nameSrc, ok := splitLastComma(entry)
			if !ok {
				continue
			}
			name, err := strconv.Unquote(strings.TrimSpace(nameSrc))
			if err != nil || !strings.HasPrefix(strings.TrimSpace(nameSrc), `"`) {
				continue // the {0, NULL} terminator, or not a literal
			}
			v, err := evalConst(valSrc)
			if err != nil {
				continue
			}
			if _, dup := out[name]; !dup {
				out[name] = v
			}
		}
		rest = args[end:]
	}
}

func isIdentByte(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// matchClose returns the index of the bracket that closes s[open], skipping
// string and character literals, or -1.
func matchClose(s string, open int) int {
	var closer byte
	switch s[open] {
	case '(':
		closer = ')'
	case '{':
		closer = '}'
	default:
		return -1
	}
	depth := 0
	for i := open; i < len(s); i++ {
		switch c := s[i]; c {
		case '"', '\'':
			i = skipLiteral(s, i)
			if i < 0 {
				return -1
			}
		case s[open]:
			depth++
		case closer:
			depth--
			if depth == 0 {
				return i
			}
		}
	}
	return -1
}

// skipLiteral returns the index of the quote closing the literal that starts
// at s[i], or -1.
func skipLiteral(s string, i int) int {
	q := s[i]
	for j := i + 1; j < len(s); j++ {
		switch s[j] {
		case '\\':
			j++
		case q:
			return j
		}
	}
	return -1
}

// braceEntries returns the insides of the {...} groups in s.
func braceEntries(s string) []string {
	var out []string
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '"', '\'':
			if i = skipLiteral(s, i); i < 0 {
				return out
			}
		case '{':
			end := matchClose(s, i)
			if end < 0 {
				return out
			}
			out = append(out, s[i+1:end])
			i = end
		}
	}
	return out
}

// splitLastComma splits s at its last comma outside parentheses and
// literals.
func splitLastComma(s string) (before, after string, ok bool) {
	depth, last := 0, -1
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '"', '\'':
			if i = skipLiteral(s, i); i < 0 {
				return "", "", false
			}
		case '(':
			depth++
		case ')':
			depth--
		case ',':
			if depth == 0 {
				last = i
			}
		}
	}
	if last < 0 {
		return "", "", false
	}
	return s[:last], s[last+1:], true
}

// evalConst evaluates a C integer constant expression.
func evalConst(src string) (uint64, error) {
	toks, err := lexC(src)
	if err != nil {
		return 0, err
	}
	p := &cParser{toks: toks}
	v, err := p.binary(0)
	if err != nil {
		return 0, err
	}
	if p.pos != len(p.toks) {
		return 0, fmt.Errorf("unexpected %q", p.toks[p.pos].text)
	}
	return v, nil
}

type cTokKind int

const (
	tokNum cTokKind = iota
	tokIdent
	tokPunct
)

type cTok struct {
	kind cTokKind
	text string
	val  uint64
}

func lexC(s string) ([]cTok, error) {
	var toks []cTok
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			i++
		case c >= '0' && c <= '9':
			j := i
			for j < len(s) && isIdentByte(s[j]) {
				j++
			}
			v, err := parseCInt(s[i:j])
			if err != nil {
				return nil, err
			}
			toks = append(toks, cTok{kind: tokNum, text: s[i:j], val: v})
			i = j
		case isIdentByte(c):
			j := i
			for j < len(s) && isIdentByte(s[j]) {
				j++
			}
			toks = append(toks, cTok{kind: tokIdent, text: s[i:j]})
			i = j
		case strings.HasPrefix(s[i:], "<<"), strings.HasPrefix(s[i:], ">>"):
			toks = append(toks, cTok{kind: tokPunct, text: s[i : i+2]})
			i += 2
		case strings.IndexByte("()|^&~+-*/%!", c) >= 0:
			toks = append(toks, cTok{kind: tokPunct, text: s[i : i+1]})
			i++
		default:
			return nil, fmt.Errorf("unsupported character %q", c)
		}
	}
	return toks, nil
}

// parseCInt parses a C integer literal: decimal, 0x hex or 0 octal, with
// any u/l suffix.
func parseCInt(lit string) (uint64, error) {
	s := strings.TrimRight(lit, "uUlL")
	base := 10
	switch {
	case strings.HasPrefix(s, "0x"), strings.HasPrefix(s, "0X"):
		s, base = s[2:], 16
	case len(s) > 1 && s[0] == '0':
		s, base = s[1:], 8
	}
	v, err := strconv.ParseUint(s, base, 64)
	if err != nil {
		return 0, fmt.Errorf("integer literal %q: %w", lit, err)
	}
	return v, nil
}

type cParser struct {
	toks []cTok
	pos  int
}

func (p *cParser) peek() (cTok, bool) {
	if p.pos >= len(p.toks) {
		return cTok{}, false
	}
	return p.toks[p.pos], true
}

// Binary operator precedence, as in C: higher binds tighter.
var cPrec = map[string]int{
	"|": 1, "^": 2, "&": 3,
	"<<": 4, ">>": 4,
	"+": 5, "-": 5,
	"*": 6, "/": 6, "%": 6,
}

// binary parses operators of precedence above min by precedence climbing.
func (p *cParser) binary(min int) (uint64, error) {
	lhs, err := p.unary()
	if err != nil {
		return 0, err
	}
	for {
		t, ok := p.peek()
		if !ok || t.kind != tokPunct {
			return lhs, nil
		}
		prec, isBin := cPrec[t.text]
		if !isBin || prec <= min {
			return lhs, nil
		}
		p.pos++
		rhs, err := p.binary(prec)
		if err != nil {
			return 0, err
		}
		if lhs, err = applyBinary(t.text, lhs, rhs); err != nil {
			return 0, err
		}
	}
}

func applyBinary(op string, a, b uint64) (uint64, error) {
	switch op {
	case "|":
		return a | b, nil
	case "^":
		return a ^ b, nil
	case "&":
		return a & b, nil
	case "<<", ">>":
		if b >= 64 {
			return 0, fmt.Errorf("shift by %d", b)
		}
		if op == "<<" {
			return a << b, nil
		}
		return a >> b, nil
	case "+":
		return a + b, nil
	case "-":
		return a - b, nil
	case "*":
		return a * b, nil
	case "/", "%":
		if b == 0 {
			return 0, errors.New("division by zero")
		}
		if op == "/" {
			return a / b, nil
		}
		return a % b, nil
	}
	return 0, fmt.Errorf("operator %q", op)
}

func (p *cParser) unary() (uint64, error) {
	t, ok := p.peek()
	if !ok {
		return 0, errors.New("unexpected end of expression")
	}
	switch {
	case t.kind == tokNum:
		p.pos++
		return t.val, nil
	case t.kind == tokIdent:
		return 0, fmt.Errorf("identifier %q", t.text)
	case t.text == "-", t.text == "~", t.text == "+", t.text == "!":
		p.pos++
		v, err := p.unary()
		if err != nil {
			return 0, err
		}
		switch t.text {
		case "-":
			return -v, nil
		case "~":
			return ^v, nil
		case "!":
			if v == 0 {
				return 1, nil
			}
			return 0, nil
		}
		return v, nil
	case t.text == "(":
		if conv, n, ok := p.cast(); ok {
			p.pos += n
			v, err := p.unary()
			if err != nil {
				return 0, err
			}
			return conv(v), nil
		}
		p.pos++
		v, err := p.binary(0)
		if err != nil {
			return 0, err
		}
		if t, ok := p.peek(); !ok || t.text != ")" {
			return 0, errors.New("missing )")
		}
		p.pos++
		return v, nil
	}
	return 0, fmt.Errorf("unexpected %q", t.text)
}

// cast recognises "( type words [*...] )" at the current position, followed
// by something that can start an operand, and returns the conversion and the
// number of tokens it spans.
func (p *cParser) cast() (conv func(uint64) uint64, n int, ok bool) {
	var words []string
	pointer := false
	i := p.pos + 1
	for ; i < len(p.toks); i++ {
		t := p.toks[i]
		if t.kind == tokIdent && !pointer {
			words = append(words, t.text)
			continue
		}
		if t.text == "*" {
			pointer = true
			continue
		}
		break
	}
	if len(words) == 0 || i >= len(p.toks) || p.toks[i].text != ")" || i+1 >= len(p.toks) {
		return nil, 0, false
	}
	switch next := p.toks[i+1]; {
	case next.kind == tokNum, next.kind == tokIdent:
	case next.text == "(", next.text == "-", next.text == "~", next.text == "+", next.text == "!":
	default:
		return nil, 0, false
	}
	if pointer {
		return func(v uint64) uint64 { return v }, i + 1 - p.pos, true
	}
	return castConv(words), i + 1 - p.pos, true
}

// castConv converts to the integer type named by words, as on x86-64 (LP64,
// signed char).
func castConv(words []string) func(uint64) uint64 {
	bits, signed, seen := 0, true, false
	for _, w := range words {
		switch w {
		case "const", "volatile", "__force", "__bitwise", "__user", "__iomem", "struct", "enum":
		case "unsigned":
			signed, seen = false, true
		case "signed":
			signed, seen = true, true
		case "char":
			bits, seen = 8, true
		case "short":
			bits, seen = 16, true
		case "int":
			if bits == 0 {
				bits = 32
			}
			seen = true
		case "long":
			bits, seen = 64, true
		case "_Bool", "bool":
			return func(v uint64) uint64 {
				if v != 0 {
					return 1
				}
				return 0
			}
		default:
			if b, s, ok := kernelIntType(w); ok {
				bits, signed, seen = b, s, true
			}
		}
	}
	if !seen {
		// An unknown typedef (gfp_t and its kin): keep the value.
		return func(v uint64) uint64 { return v }
	}
	if bits == 0 {
		bits = 32 // plain "unsigned" or "signed"
	}
	if bits == 64 {
		return func(v uint64) uint64 { return v }
	}
	mask := uint64(1)<<bits - 1
	return func(v uint64) uint64 {
		v &= mask
		if signed && v>>(bits-1) != 0 {
			v |= ^mask
		}
		return v
	}
}

func kernelIntType(w string) (bits int, signed, ok bool) {
	switch strings.TrimPrefix(w, "__") {
	case "u8", "uint8_t":
		return 8, false, true
	case "s8", "int8_t":
		return 8, true, true
	case "u16", "uint16_t", "le16", "be16":
		return 16, false, true
	case "s16", "int16_t":
		return 16, true, true
	case "u32", "uint32_t", "le32", "be32", "gfp_t":
		return 32, false, true
	case "s32", "int32_t", "pid_t":
		return 32, true, true
	case "u64", "uint64_t", "le64", "be64", "size_t", "uintptr_t":
		return 64, false, true
	case "s64", "int64_t", "ssize_t", "loff_t":
		return 64, true, true
	}
	return 0, false, false
}
