package guestfmt_test

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/meshwarden/meshwarden/internal/guestfmt"
)

type status uint32

type named string

type stringer struct{ s string }

func (s stringer) String() string { return "<" + s.s + ">" }

// TestSprintfMatchesFmt formats the verbs and operand types the guests use
// with both packages and fails on any difference.
func TestSprintfMatchesFmt(t *testing.T) {
	err := errors.New("boom")
	cases := []struct {
		format string
		args   []any
	}{
		{"plain text", nil},
		{"%s: %d rules, cluster %q", []any{"audit", 3, "collector"}},
		{"%v %v %v %v", []any{err, nil, true, 1.5}},
		{"%d %d %d %d %d", []any{int8(-8), uint16(16), int64(-1 << 62), uint64(1<<64 - 1), status(7)}},
		{"%x %X %08d %-5d| %+d %5s|%-5s|", []any{255, -255, 42, 7, 3, "ab", "cd"}},
		{"%.16s… %.3s %.0s", []any{"0123456789abcdef0123", "héllo", "x"}},
		{"%q %q %q %+q %#q", []any{"a\"b\n", []byte("by"), 'x', "é", "back"}},
		{"%v %s %q", []any{stringer{"x"}, stringer{"y"}, stringer{"z"}}},
		{"%v %s", []any{[]string{"a", "b"}, []string{"c"}}},
		{"%v %d", []any{[]int{1, 2}, []uint32{3}}},
		{"%q", []any{[]string{"a", "b c"}}},
		{"%v", []any{[]error{err, io.EOF}}},
		{"%s %v", []any{named("n"), named("m")}},
		{"%x %X", []any{"hi", []byte{0xab, 0x01}}},
		{"100%% sure", nil},
		{"missing %d and %s", []any{1}},
		{"extra", []any{1, "a"}},
		{"bad %d %s %t", []any{"str", 3, "x"}},
		{"%w in sprintf", []any{err}},
		{"%t %v", []any{false, true}},
		{"%s", []any{nil}},
		{"%d", []any{nil}},
		{"trailing %", nil},
		{"%5.1f %g %v", []any{3.14159, 2.5, float32(0.1)}},
		{"%v", []any{uint8(200)}},
		{"%v %v %v %v %v %v", []any{1e20, 123456789.0, 1e-5, 0.0001, 1.5e300, -0.0}},
		{"%v is out of range: use 0 to 1, e.g. 0.1 for 10%%", []any{1.5}},
	}
	for _, c := range cases {
		want := fmt.Sprintf(c.format, c.args...)
		if got := guestfmt.Sprintf(c.format, c.args...); got != want {
			t.Errorf("Sprintf(%q, %v):\n got %q\nwant %q", c.format, c.args, got, want)
		}
	}
}

// TestErrorfWrapsAsFmt checks messages and errors.Is through one and
// several %w operands, and a %w operand that is not an error.
func TestErrorfWrapsAsFmt(t *testing.T) {
	a, b := errors.New("a"), errors.New("b")
	cases := []struct {
		format string
		args   []any
		is     []error
		not    []error
	}{
		{"no wrap %v", []any{a}, nil, []error{a}},
		{"one: %w", []any{a}, []error{a}, []error{b}},
		{"two: %w: %w", []any{a, b}, []error{a, b}, nil},
		{"not an error: %w", []any{"s"}, nil, []error{a}},
		{"nil: %w", []any{nil}, nil, []error{a}},
	}
	for _, c := range cases {
		want := fmt.Errorf(c.format, c.args...)
		got := guestfmt.Errorf(c.format, c.args...)
		if got.Error() != want.Error() {
			t.Errorf("Errorf(%q): got %q, want %q", c.format, got, want)
		}
		for _, e := range c.is {
			if !errors.Is(got, e) || !errors.Is(want, e) {
				t.Errorf("Errorf(%q): errors.Is(%v) = %v, fmt's %v", c.format, e, errors.Is(got, e), errors.Is(want, e))
			}
		}
		for _, e := range c.not {
			if errors.Is(got, e) {
				t.Errorf("Errorf(%q) wraps %v; fmt's does not", c.format, e)
			}
		}
	}
}

func TestHexMatchesEncodingHex(t *testing.T) {
	for _, b := range [][]byte{nil, {0}, {0xff, 0x10, 0x0a}, []byte("meshwarden")} {
		if got, want := guestfmt.Hex(b), hex.EncodeToString(b); got != want {
			t.Errorf("Hex(%x) = %q, want %q", b, got, want)
		}
	}
}

// FuzzSprintf compares guestfmt with fmt for arbitrary formats over a
// string, an int and an error operand.
func FuzzSprintf(f *testing.F) {
	for _, s := range []string{"%s", "%q %d", "%.4s|%-6d|%06d", "%v %v %v", "%x%X", "%%%", "%!", "%5.2q"} {
		f.Add(s, "héllo\x00", int64(-42))
	}
	f.Fuzz(func(t *testing.T, format, s string, n int64) {
		for _, r := range format {
			// Verbs and flags the guests never use (floats, pointers, %T,
			// argument indexes, '*' widths) are out of scope.
			switch r {
			case 'e', 'E', 'f', 'F', 'g', 'G', 'p', 'T', 'c', 'U', 'b', 'o', 'O', '[', '*', '#', ' ', '+', 'x', 'X':
				return
			}
		}
		args := []any{s, n, errors.New(s)}
		if got, want := guestfmt.Sprintf(format, args...), fmt.Sprintf(format, args...); got != want {
			t.Errorf("Sprintf(%q, %q, %d):\n got %q\nwant %q", format, s, n, got, want)
		}
	})
}
