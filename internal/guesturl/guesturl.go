// Package guesturl escapes and unescapes URL query components as net/url's
// QueryEscape and QueryUnescape do, without importing net/url, which
// imports fmt (and so os: golang/go#78513, docs/RATIONALE-filters.md).
// Its results are tested against net/url on the host.
package guesturl

import (
	"errors"
	"strconv"
	"strings"
)

// ErrEscape is what QueryUnescape's errors are (errors.Is).
var ErrEscape = errors.New("invalid URL escape")

type escapeError struct{ s string }

func (e *escapeError) Error() string { return "invalid URL escape " + strconv.Quote(e.s) }
func (e *escapeError) Unwrap() error { return ErrEscape }

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// QueryUnescape decodes a query component: "+" is a space and %XX a byte.
// A malformed %-escape is an error that names it, as net/url's.
func QueryUnescape(s string) (string, error) {
	if strings.IndexByte(s, '%') < 0 && strings.IndexByte(s, '+') < 0 {
		return s, nil
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '%':
			if i+2 >= len(s) {
				return "", &escapeError{s[i:]}
			}
			hi, ok1 := unhex(s[i+1])
			lo, ok2 := unhex(s[i+2])
			if !ok1 || !ok2 {
				e := s[i:min(len(s), i+3)]
				return "", &escapeError{e}
			}
			b = append(b, hi<<4|lo)
			i += 2
		case '+':
			b = append(b, ' ')
		default:
			b = append(b, c)
		}
	}
	return string(b), nil
}

// QueryEscape escapes s for a query component: letters, digits and
// "-_.~" stay, a space becomes "+", every other byte %XX.
func QueryEscape(s string) string {
	const upperhex = "0123456789ABCDEF"
	var b []byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~':
			if b != nil {
				b = append(b, c)
			}
			continue
		}
		if b == nil {
			b = make([]byte, i, len(s)+16)
			copy(b, s[:i])
		}
		if c == ' ' {
			b = append(b, '+')
		} else {
			b = append(b, '%', upperhex[c>>4], upperhex[c&15])
		}
	}
	if b == nil {
		return s
	}
	return string(b)
}
