// Package guestfmt formats strings and errors as fmt.Sprintf and fmt.Errorf
// do, for the verbs the proxy-wasm guests use (%s %q %d %v %w %x %t, width,
// precision and the '-' and '0' flags), without importing fmt.
//
// A wasip1 module that links fmt links os, and a module that links os
// arms the Go runtime's netpoll, whose GC-time poll_oneoff older Envoy
// hosts answer with ENOSYS (golang/go#78513, docs/RATIONALE-filters.md).
// The guests and the packages they import format through this package
// instead; its output is tested against fmt on the host.
//
// # Notes
//
// Values of kinds fmt prints through reflection (structs, maps, pointers)
// are printed as fmt prints them for the shapes the guests pass (strings,
// numbers, bools, errors, Stringers and slices of them); a struct, map or
// pointer prints its type in fmt's bad-verb form instead of its fields.
package guestfmt

import (
	"errors"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Stringer is fmt.Stringer: a value with a String method prints through it.
type Stringer interface{ String() string }

// Sprintf formats as fmt.Sprintf does for the supported verbs.
func Sprintf(format string, args ...any) string {
	p := printer{}
	p.printf(format, args)
	return string(p.buf)
}

// Errorf formats as fmt.Errorf does: an error whose message is the
// formatted string, wrapping every %w operand that is an error (Unwrap()
// error for one, Unwrap() []error for several).
func Errorf(format string, args ...any) error {
	p := printer{wrap: true}
	p.printf(format, args)
	msg := string(p.buf)
	switch len(p.wrapped) {
	case 0:
		return errors.New(msg)
	case 1:
		return &wrapError{msg: msg, err: p.wrapped[0]}
	default:
		return &wrapErrors{msg: msg, errs: p.wrapped}
	}
}

type wrapError struct {
	msg string
	err error
}

func (e *wrapError) Error() string { return e.msg }
func (e *wrapError) Unwrap() error { return e.err }

type wrapErrors struct {
	msg  string
	errs []error
}

func (e *wrapErrors) Error() string   { return e.msg }
func (e *wrapErrors) Unwrap() []error { return e.errs }

// AppendHex appends the lowercase hexadecimal encoding of b to dst, as
// encoding/hex.AppendEncode does.
func AppendHex(dst, b []byte) []byte {
	const digits = "0123456789abcdef"
	for _, c := range b {
		dst = append(dst, digits[c>>4], digits[c&0x0f])
	}
	return dst
}

// Hex returns the lowercase hexadecimal encoding of b, as
// encoding/hex.EncodeToString does.
func Hex(b []byte) string { return string(AppendHex(make([]byte, 0, 2*len(b)), b)) }

type printer struct {
	buf  []byte
	wrap bool
	// noMethods is fmt's "erroring": a bad-verb operand prints without
	// its Error and String methods.
	noMethods bool
	wrapped   []error
	// the directive being printed
	minus, zero, plus, sharp, space bool
	wid, prec                       int
	hasWid, hasPrec                 bool
}

func (p *printer) printf(format string, args []any) {
	argi := 0
	for i := 0; i < len(format); {
		c := format[i]
		if c != '%' {
			j := i
			for j < len(format) && format[j] != '%' {
				j++
			}
			p.buf = append(p.buf, format[i:j]...)
			i = j
			continue
		}
		i++
		p.minus, p.zero, p.plus, p.sharp, p.space = false, false, false, false, false
		p.wid, p.prec, p.hasWid, p.hasPrec = 0, 0, false, false
	flags:
		for ; i < len(format); i++ {
			switch format[i] {
			case '-':
				p.minus = true
				p.zero = false
			case '0':
				p.zero = !p.minus
			case '+':
				p.plus = true
			case '#':
				p.sharp = true
			case ' ':
				p.space = true
			default:
				break flags
			}
		}
		p.wid, p.hasWid, i = parseNum(format, i)
		if i+1 < len(format) && format[i] == '.' {
			i++
			p.prec, p.hasPrec, i = parseNum(format, i)
			p.hasPrec = true
		}
		if i >= len(format) {
			p.buf = append(p.buf, "%!(NOVERB)"...)
			break
		}
		verb, size := utf8.DecodeRuneInString(format[i:])
		i += size
		if verb == '%' {
			p.buf = append(p.buf, '%')
			continue
		}
		if argi >= len(args) {
			p.buf = append(p.buf, '%', '!')
			p.buf = utf8.AppendRune(p.buf, verb)
			p.buf = append(p.buf, "(MISSING)"...)
			continue
		}
		arg := args[argi]
		argi++
		if verb == 'w' {
			if err, ok := arg.(error); ok && p.wrap {
				p.wrapped = append(p.wrapped, err)
				verb = 'v'
			} else if !p.wrap || arg == nil || !ok {
				p.badVerb(verb, arg)
				continue
			}
		}
		p.printArg(arg, verb)
	}
	if argi < len(args) {
		p.resetFlags()
		p.buf = append(p.buf, "%!(EXTRA "...)
		for k, a := range args[argi:] {
			if k > 0 {
				p.buf = append(p.buf, ", "...)
			}
			if a == nil {
				p.buf = append(p.buf, "<nil>"...)
				continue
			}
			p.buf = append(p.buf, reflect.TypeOf(a).String()...)
			p.buf = append(p.buf, '=')
			p.printArg(a, 'v')
		}
		p.buf = append(p.buf, ')')
	}
}

func parseNum(s string, i int) (int, bool, int) {
	n, ok := 0, false
	for ; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
		if n > 1e6 {
			return 0, false, len(s)
		}
		n = n*10 + int(s[i]-'0')
		ok = true
	}
	return n, ok, i
}

func (p *printer) badVerb(verb rune, arg any) {
	p.buf = append(p.buf, '%', '!')
	p.buf = utf8.AppendRune(p.buf, verb)
	p.buf = append(p.buf, '(')
	if arg == nil {
		p.buf = append(p.buf, "<nil>"...)
	} else {
		p.buf = append(p.buf, reflect.TypeOf(arg).String()...)
		p.buf = append(p.buf, '=')
		p.noMethods = true
		p.printValue(reflect.ValueOf(arg), 'v', 0)
		p.noMethods = false
	}
	p.buf = append(p.buf, ')')
}

func (p *printer) resetFlags() {
	p.minus, p.zero, p.plus, p.sharp, p.space = false, false, false, false, false
	p.wid, p.prec, p.hasWid, p.hasPrec = 0, 0, false, false
}

// pad appends s padded to the width with spaces (or zeros for numbers).
func (p *printer) pad(s string, number bool) {
	n := utf8.RuneCountInString(s)
	if !p.hasWid || n >= p.wid {
		p.buf = append(p.buf, s...)
		return
	}
	fill := p.wid - n
	if p.minus {
		p.buf = append(p.buf, s...)
		for ; fill > 0; fill-- {
			p.buf = append(p.buf, ' ')
		}
		return
	}
	if p.zero && !(number && p.hasPrec) {
		if number && len(s) > 0 && (s[0] == '-' || s[0] == '+' || s[0] == ' ') {
			p.buf = append(p.buf, s[0])
			s = s[1:]
		}
		for ; fill > 0; fill-- {
			p.buf = append(p.buf, '0')
		}
		p.buf = append(p.buf, s...)
		return
	}
	for ; fill > 0; fill-- {
		p.buf = append(p.buf, ' ')
	}
	p.buf = append(p.buf, s...)
}

// truncate cuts s to the precision, in runes.
func (p *printer) truncate(s string) string {
	if !p.hasPrec {
		return s
	}
	n := 0
	for i := range s {
		if n == p.prec {
			return s[:i]
		}
		n++
	}
	return s
}

func (p *printer) printArg(arg any, verb rune) {
	if arg == nil {
		switch verb {
		case 'v':
			p.pad("<nil>", false)
		default:
			p.badVerb(verb, nil)
		}
		return
	}
	// fmt calls Error and String for the verbs that print strings.
	switch verb {
	case 'v', 's', 'q', 'x', 'X':
		switch v := arg.(type) {
		case error:
			p.fmtString(v.Error(), verb)
			return
		case Stringer:
			p.fmtString(v.String(), verb)
			return
		}
	}
	switch v := arg.(type) {
	case string:
		p.fmtString(v, verb)
		return
	case []byte:
		if verb == 's' || verb == 'q' || verb == 'x' || verb == 'X' {
			p.fmtString(string(v), verb)
			return
		}
	case bool:
		if verb == 'v' || verb == 't' {
			p.pad(strconv.FormatBool(v), false)
			return
		}
		p.badVerb(verb, arg)
		return
	}
	p.printValue(reflect.ValueOf(arg), verb, 0)
}

func (p *printer) fmtString(s string, verb rune) {
	switch verb {
	case 'v', 's':
		p.pad(p.truncate(s), false)
	case 'q':
		s = p.truncate(s)
		if p.sharp && strconv.CanBackquote(s) {
			p.pad("`"+s+"`", false)
		} else if p.plus {
			p.pad(strconv.QuoteToASCII(s), false)
		} else {
			p.pad(strconv.Quote(s), false)
		}
	case 'x', 'X':
		b := []byte(s)
		if p.hasPrec && p.prec < len(b) {
			b = b[:p.prec]
		}
		h := Hex(b)
		if verb == 'X' {
			h = upper(h)
		}
		p.pad(h, false)
	default:
		p.badVerb(verb, s)
	}
}

func upper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'a' && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}

func (p *printer) fmtInt(neg bool, u uint64, verb rune) {
	var s string
	switch verb {
	case 'd', 'v':
		s = strconv.FormatUint(u, 10)
	case 'x':
		s = strconv.FormatUint(u, 16)
	case 'X':
		s = upper(strconv.FormatUint(u, 16))
	case 'o':
		s = strconv.FormatUint(u, 8)
	case 'b':
		s = strconv.FormatUint(u, 2)
	}
	if p.hasPrec {
		if len(s) < p.prec {
			s = strings.Repeat("0", p.prec-len(s)) + s
		}
		if p.prec == 0 && u == 0 {
			s = ""
		}
	}
	if p.sharp && (verb == 'x' || verb == 'X') {
		s = "0" + string(verb) + s
	}
	if neg {
		s = "-" + s
	} else if p.plus {
		s = "+" + s
	} else if p.space {
		s = " " + s
	}
	p.pad(s, true)
}

func isIntVerb(verb rune) bool {
	return verb == 'd' || verb == 'v' || verb == 'x' || verb == 'X' || verb == 'o' || verb == 'b'
}

func (p *printer) printValue(v reflect.Value, verb rune, depth int) {
	if depth > 0 && !p.noMethods && v.IsValid() && v.CanInterface() {
		switch verb {
		case 'v', 's', 'q':
			switch x := v.Interface().(type) {
			case error:
				p.fmtString(x.Error(), verb)
				return
			case Stringer:
				p.fmtString(x.String(), verb)
				return
			}
		}
	}
	switch v.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if !isIntVerb(verb) {
			if verb == 'q' {
				p.pad(quoteRune(v.Int()), false)
				return
			}
			p.badVerb(verb, v.Interface())
			return
		}
		n := v.Int()
		if n < 0 {
			p.fmtInt(true, uint64(-n), verb)
		} else {
			p.fmtInt(false, uint64(n), verb)
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		if !isIntVerb(verb) {
			if verb == 'q' {
				p.pad(quoteRune(int64(min(v.Uint(), 1<<32))), false)
				return
			}
			p.badVerb(verb, v.Interface())
			return
		}
		p.fmtInt(false, v.Uint(), verb)
	case reflect.Float32, reflect.Float64:
		bits := 64
		if v.Kind() == reflect.Float32 {
			bits = 32
		}
		switch verb {
		case 'v', 'g':
			s := strconv.FormatFloat(v.Float(), 'g', -1, bits)
			if p.plus && v.Float() >= 0 {
				s = "+" + s
			}
			p.pad(s, true)
		case 'f':
			prec := 6
			if p.hasPrec {
				prec = p.prec
			}
			p.hasPrec = false
			p.pad(strconv.FormatFloat(v.Float(), 'f', prec, bits), true)
		default:
			p.badVerb(verb, v.Interface())
		}
	case reflect.String:
		p.fmtString(v.String(), verb)
	case reflect.Bool:
		if verb == 'v' || verb == 't' {
			p.pad(strconv.FormatBool(v.Bool()), false)
			return
		}
		p.badVerb(verb, v.Interface())
	case reflect.Slice, reflect.Array:
		if v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.Uint8 && (verb == 's' || verb == 'q' || verb == 'x' || verb == 'X') {
			p.fmtString(string(v.Bytes()), verb)
			return
		}
		p.buf = append(p.buf, '[')
		for i := 0; i < v.Len(); i++ {
			if i > 0 {
				p.buf = append(p.buf, ' ')
			}
			p.printValue(v.Index(i), verb, depth+1)
		}
		p.buf = append(p.buf, ']')
	case reflect.Interface:
		if v.IsNil() {
			if verb == 'v' {
				p.buf = append(p.buf, "<nil>"...)
			} else {
				p.badVerb(verb, nil)
			}
			return
		}
		p.printValue(v.Elem(), verb, depth+1)
	case reflect.Struct:
		p.buf = append(p.buf, '{')
		for i := 0; i < v.NumField(); i++ {
			if i > 0 {
				p.buf = append(p.buf, ' ')
			}
			p.printValue(v.Field(i), verb, depth+1)
		}
		p.buf = append(p.buf, '}')
	case reflect.Pointer:
		if depth == 0 && !v.IsNil() && v.Elem().Kind() == reflect.Struct {
			p.buf = append(p.buf, '&')
			p.printValue(v.Elem(), verb, depth+1)
			return
		}
		if v.IsNil() && verb == 'v' {
			p.buf = append(p.buf, "<nil>"...)
			return
		}
		p.buf = append(p.buf, "0x"...)
		p.buf = strconv.AppendUint(p.buf, uint64(v.Pointer()), 16)
	default:
		// Maps, channels, funcs: not printed by the guests.
		p.buf = append(p.buf, "%!"...)
		p.buf = utf8.AppendRune(p.buf, verb)
		p.buf = append(p.buf, '(')
		p.buf = append(p.buf, v.Type().String()...)
		p.buf = append(p.buf, ")"...)
	}
}

// quoteRune is %q of an integer: a single-quoted character, U+FFFD for a
// value that is not one.
func quoteRune(n int64) string {
	if n < 0 || n > utf8.MaxRune {
		n = utf8.RuneError
	}
	return strconv.QuoteRune(rune(n))
}
