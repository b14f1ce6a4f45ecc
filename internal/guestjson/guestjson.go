// Package guestjson is the JSON the proxy-wasm guests need — a strict
// decoder of filter configurations into Go structs, a walker that finds
// values by key path with their byte offsets, and string unquoting —
// without importing fmt (and so os).
//
// encoding/json imports fmt; a wasip1 module that links fmt links os, and a
// module that links os arms the Go runtime's netpoll, whose GC-time
// poll_oneoff older Envoy hosts answer with ENOSYS (golang/go#78513). No
// well-kept JSON library we can use avoids fmt: github.com/valyala/fastjson
// imports fmt, github.com/tidwall/gjson has neither struct decoding nor value
// offsets. This package is small and written for the shapes the filters use
// (structs with json tags, strings, bools, integers, floats, pointers,
// slices, string-keyed maps, any); its results are tested against
// encoding/json on the host (docs/RATIONALE-filters.md).
package guestjson

import (
	"errors"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
)

// maxDepth is the deepest nesting accepted, as encoding/json's.
const maxDepth = 10000

// Error is a decoding error: a syntax error at Offset, or a value that does
// not fit the Go type at Path (e.g. rules[0].lane).
type Error struct {
	// Offset is the byte offset in the input where the error was found.
	Offset int
	// Path is the JSON path of the value at fault, empty at the top.
	Path string
	// Msg says what is wrong.
	Msg string
	// Syntax is true when data is not valid JSON at Offset.
	Syntax bool
}

func (e *Error) Error() string {
	if e.Path != "" {
		return "json: " + e.Path + ": " + e.Msg
	}
	return "json: " + e.Msg + " (at byte " + strconv.Itoa(e.Offset) + ")"
}

// ErrSyntax is what every syntax error is (errors.Is).
var ErrSyntax = errors.New("invalid JSON")

// Unwrap returns ErrSyntax for a syntax error.
func (e *Error) Unwrap() error {
	if e.Syntax {
		return ErrSyntax
	}
	return nil
}

type parser struct {
	data  []byte
	pos   int
	depth int
}

func (p *parser) syntax(msg string) error {
	return &Error{Offset: p.pos, Msg: msg, Syntax: true}
}

func (p *parser) ws() {
	for p.pos < len(p.data) {
		switch p.data[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

func describe(c byte) string {
	switch {
	case c == '\'':
		return `character '\''`
	case c == '"':
		return `character '"'`
	case c >= 0x20 && c < 0x7f:
		return "character '" + string(rune(c)) + "'"
	default:
		return "byte 0x" + strconv.FormatUint(uint64(c), 16)
	}
}

// unexpected is the syntax error for the byte at p.pos (or the end).
func (p *parser) unexpected(what string) error {
	if p.pos >= len(p.data) {
		return p.syntax("unexpected end of input " + what)
	}
	return p.syntax("invalid " + describe(p.data[p.pos]) + " " + what)
}

// literal consumes word (true, false or null).
func (p *parser) literal(word string) error {
	if !strings.HasPrefix(string(p.data[p.pos:min(len(p.data), p.pos+len(word))]), word) {
		for i := 0; i < len(word); i++ {
			if p.pos >= len(p.data) || p.data[p.pos] != word[i] {
				return p.unexpected("in literal " + word)
			}
			p.pos++
		}
	}
	p.pos += len(word)
	return nil
}

// number consumes a number as RFC 8259 writes them and returns its text.
func (p *parser) number() (string, error) {
	start := p.pos
	d := p.data
	if p.pos < len(d) && d[p.pos] == '-' {
		p.pos++
	}
	switch {
	case p.pos < len(d) && d[p.pos] == '0':
		p.pos++
	case p.pos < len(d) && d[p.pos] >= '1' && d[p.pos] <= '9':
		for p.pos < len(d) && d[p.pos] >= '0' && d[p.pos] <= '9' {
			p.pos++
		}
	default:
		return "", p.unexpected("in numeric literal")
	}
	if p.pos < len(d) && d[p.pos] == '.' {
		p.pos++
		if p.pos >= len(d) || d[p.pos] < '0' || d[p.pos] > '9' {
			return "", p.unexpected("after decimal point in numeric literal")
		}
		for p.pos < len(d) && d[p.pos] >= '0' && d[p.pos] <= '9' {
			p.pos++
		}
	}
	if p.pos < len(d) && (d[p.pos] == 'e' || d[p.pos] == 'E') {
		p.pos++
		if p.pos < len(d) && (d[p.pos] == '+' || d[p.pos] == '-') {
			p.pos++
		}
		if p.pos >= len(d) || d[p.pos] < '0' || d[p.pos] > '9' {
			return "", p.unexpected("in exponent of numeric literal")
		}
		for p.pos < len(d) && d[p.pos] >= '0' && d[p.pos] <= '9' {
			p.pos++
		}
	}
	return string(d[start:p.pos]), nil
}

// str consumes a string literal and returns its contents, decoded as
// encoding/json decodes them (invalid UTF-8 and lone surrogates become
// U+FFFD).
func (p *parser) str() (string, error) { return p.string(false) }

// view is str for a string only looked at while the parser's input is
// unchanged: one without escapes points into the input instead of being
// copied (Walk's keys and skipped values).
func (p *parser) view() (string, error) { return p.string(true) }

func (p *parser) string(view bool) (string, error) {
	d := p.data
	if p.pos >= len(d) || d[p.pos] != '"' {
		return "", p.unexpected("looking for beginning of string")
	}
	p.pos++
	start := p.pos
	// Fast path: no escapes, valid UTF-8.
	for p.pos < len(d) {
		c := d[p.pos]
		if c == '"' {
			s := d[start:p.pos]
			if utf8.Valid(s) {
				p.pos++
				if view {
					return unsafe.String(unsafe.SliceData(s), len(s)), nil
				}
				return string(s), nil
			}
			break
		}
		if c == '\\' || c < 0x20 {
			break
		}
		p.pos++
	}
	b := appendValid(make([]byte, 0, p.pos-start+8), d[start:p.pos])
	for {
		if p.pos >= len(d) {
			return "", p.syntax("unexpected end of input in string literal")
		}
		c := d[p.pos]
		switch {
		case c == '"':
			p.pos++
			return string(b), nil
		case c < 0x20:
			return "", p.syntax("invalid " + describe(c) + " in string literal")
		case c == '\\':
			p.pos++
			if p.pos >= len(d) {
				return "", p.syntax("unexpected end of input in string escape code")
			}
			e := d[p.pos]
			p.pos++
			switch e {
			case '"', '\\', '/':
				b = append(b, e)
			case 'b':
				b = append(b, '\b')
			case 'f':
				b = append(b, '\f')
			case 'n':
				b = append(b, '\n')
			case 'r':
				b = append(b, '\r')
			case 't':
				b = append(b, '\t')
			case 'u':
				r, ok := p.hex4()
				if !ok {
					return "", p.syntax("invalid \\u escape in string literal")
				}
				if utf16.IsSurrogate(r) {
					// A high surrogate followed by \u and a low one is one rune.
					if p.pos+6 <= len(d) && d[p.pos] == '\\' && d[p.pos+1] == 'u' {
						save := p.pos
						p.pos += 2
						r2, ok := p.hex4()
						if !ok {
							return "", p.syntax("invalid \\u escape in string literal")
						}
						if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
							b = utf8.AppendRune(b, dec)
							continue
						}
						p.pos = save
					}
					r = utf8.RuneError
				}
				b = utf8.AppendRune(b, r)
			default:
				p.pos--
				return "", p.syntax("invalid " + describe(e) + " in string escape code")
			}
		case c < utf8.RuneSelf:
			b = append(b, c)
			p.pos++
		default:
			r, size := utf8.DecodeRune(d[p.pos:])
			if r == utf8.RuneError && size == 1 {
				b = append(b, "\uFFFD"...)
			} else {
				b = append(b, d[p.pos:p.pos+size]...)
			}
			p.pos += size
		}
	}
}

// appendValid appends s with every invalid UTF-8 byte replaced by U+FFFD.
func appendValid(b, s []byte) []byte {
	for len(s) > 0 {
		r, size := utf8.DecodeRune(s)
		if r == utf8.RuneError && size == 1 {
			b = append(b, "\uFFFD"...)
		} else {
			b = append(b, s[:size]...)
		}
		s = s[size:]
	}
	return b
}

func (p *parser) hex4() (rune, bool) {
	if p.pos+4 > len(p.data) {
		p.pos = len(p.data)
		return 0, false
	}
	var r rune
	for _, c := range p.data[p.pos : p.pos+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	p.pos += 4
	return r, true
}

func (p *parser) enter() error {
	p.depth++
	if p.depth > maxDepth {
		return p.syntax("exceeded max depth")
	}
	return nil
}

// Unquote decodes a JSON string literal (with its quotes) as
// encoding/json does; ok is false if raw is not exactly one.
func Unquote(raw []byte) (s string, ok bool) {
	p := parser{data: raw}
	s, err := p.str()
	if err != nil || p.pos != len(raw) {
		return "", false
	}
	return s, true
}

// Valid reports whether data is one JSON value, with only whitespace
// around it, as encoding/json.Valid does.
func Valid(data []byte) bool {
	p := parser{data: data}
	p.ws()
	if err := p.walk(nil, nil, nil); err != nil {
		return false
	}
	p.ws()
	return p.pos == len(data)
}

// Walk visits every value of data, a stream of JSON values separated by
// optional whitespace (as encoding/json.Decoder reads them). For each value
// it calls match with the keys of the objects enclosing it (array elements
// add no key); when match returns true, the value is not looked into and
// found is called with its keys and the span [start, end) of its text. The
// keys may point into data: they are valid during the call only (copy one
// to keep it). Walk
// returns false, having called found for a prefix only, when data is not
// valid JSON; callers that transform must then change nothing.
func Walk(data []byte, match func(keys []string) bool, found func(keys []string, start, end int)) bool {
	p := parser{data: data}
	var keys []string
	for {
		p.ws()
		if p.pos >= len(data) {
			return true
		}
		if err := p.walk(keys, match, found); err != nil {
			return false
		}
	}
}

func (p *parser) walk(keys []string, match func([]string) bool, found func([]string, int, int)) error {
	start := p.pos
	if match != nil && match(keys) {
		if err := p.walk(keys, nil, nil); err != nil {
			return err
		}
		found(keys, start, p.pos)
		return nil
	}
	if p.pos >= len(p.data) {
		return p.unexpected("looking for beginning of value")
	}
	switch c := p.data[p.pos]; {
	case c == '{':
		// One slot for this object's keys, reused by every member (nested
		// values append past it).
		keys = append(keys, "")
		return p.members(true, func(k string, _ int) error {
			keys[len(keys)-1] = k
			return p.walk(keys, match, found)
		})
	case c == '[':
		return p.array(func() error { return p.walk(keys, match, found) })
	case c == '"':
		_, err := p.view()
		return err
	case c == 't':
		return p.literal("true")
	case c == 'f':
		return p.literal("false")
	case c == 'n':
		return p.literal("null")
	case c == '-' || c >= '0' && c <= '9':
		_, err := p.number()
		return err
	default:
		return p.unexpected("looking for beginning of value")
	}
}
