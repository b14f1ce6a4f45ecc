// Package tracectx parses and formats trace context headers: W3C Trace
// Context (traceparent, tracestate), W3C Baggage, and B3 (single and multi
// header). The trace filter, the dye filter's baggage handling and the gateway
// share it.
//
// # Notes
//
// The package is compiled into the .wasm filters: it uses the standard
// library only, no reflection, no goroutines and no global mutable state, and
// its parsers work on strings without allocating where they can (a parsed
// [SpanContext] is a value of fixed-size arrays).
package tracectx

import (
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
)

// Header names (lowercase, as HTTP/2 and proxy-wasm carry them).
const (
	TraceparentHeader = "traceparent"
	TracestateHeader  = "tracestate"
	BaggageHeader     = "baggage"
	B3Header          = "b3"
	B3TraceIDHeader   = "x-b3-traceid"
	B3SpanIDHeader    = "x-b3-spanid"
	B3ParentIDHeader  = "x-b3-parentspanid"
	B3SampledHeader   = "x-b3-sampled"
	B3FlagsHeader     = "x-b3-flags"
)

// TraceID is a 16-byte W3C trace id.
type TraceID [16]byte

// SpanID is an 8-byte W3C parent/span id.
type SpanID [8]byte

// FlagSampled is the sampled bit of trace-flags.
const FlagSampled byte = 0x01

// IsValid reports whether t is not all zeros.
func (t TraceID) IsValid() bool { return t != TraceID{} }

// IsValid reports whether s is not all zeros.
func (s SpanID) IsValid() bool { return s != SpanID{} }

// String returns the 32 lowercase hex digits.
func (t TraceID) String() string { return string(appendHex(make([]byte, 0, 32), t[:])) }

// String returns the 16 lowercase hex digits.
func (s SpanID) String() string { return string(appendHex(make([]byte, 0, 16), s[:])) }

// SpanContext is what a traceparent carries.
type SpanContext struct {
	TraceID TraceID
	SpanID  SpanID // the parent-id field: the caller's span
	Flags   byte
}

// Sampled reports the sampled flag.
func (sc SpanContext) Sampled() bool { return sc.Flags&FlagSampled != 0 }

// IsValid reports whether both ids are non-zero.
func (sc SpanContext) IsValid() bool { return sc.TraceID.IsValid() && sc.SpanID.IsValid() }

// Errors returned by the parsers. Per the W3C spec an invalid traceparent
// means the receiver starts a new trace.
var (
	ErrMalformed = errors.New("tracectx: malformed value")
	ErrVersion   = errors.New("tracectx: unsupported traceparent version")
	ErrZeroID    = errors.New("tracectx: all-zero trace or parent id")
)

// traceparentLen is the length of a version-00 traceparent.
const traceparentLen = 55

// ParseTraceparent parses a traceparent header value per W3C Trace Context
// level 1: "version-traceid-parentid-flags", lowercase hex.
//
// Version 00 must be exactly 55 characters. A higher version (not ff) is
// parsed by its version-00 prefix: it must be at least 55 characters, and if
// longer the 56th must be '-' (fields a later version appends are ignored).
// Version ff, upper-case hex, and all-zero trace or parent ids are invalid.
// For a future version only the sampled bit of the flags is kept.
func ParseTraceparent(s string) (SpanContext, error) {
	var sc SpanContext
	if len(s) < traceparentLen {
		return sc, ErrMalformed
	}
	v, ok := hexByte(s[0], s[1])
	if !ok || s[2] != '-' {
		return sc, ErrMalformed
	}
	if v == 0xff {
		return sc, ErrVersion
	}
	if v == 0 && len(s) != traceparentLen {
		return sc, ErrMalformed
	}
	if v > 0 && len(s) > traceparentLen && s[traceparentLen] != '-' {
		return sc, ErrMalformed
	}
	if !decodeHex(sc.TraceID[:], s[3:35]) || s[35] != '-' {
		return sc, ErrMalformed
	}
	if !decodeHex(sc.SpanID[:], s[36:52]) || s[52] != '-' {
		return sc, ErrMalformed
	}
	f, ok := hexByte(s[53], s[54])
	if !ok {
		return sc, ErrMalformed
	}
	if v > 0 {
		f &= FlagSampled
	}
	sc.Flags = f
	if !sc.TraceID.IsValid() || !sc.SpanID.IsValid() {
		return sc, ErrZeroID
	}
	return sc, nil
}

// AppendTraceparent appends the version-00 traceparent of sc to b.
func AppendTraceparent(b []byte, sc SpanContext) []byte {
	b = append(b, '0', '0', '-')
	b = appendHex(b, sc.TraceID[:])
	b = append(b, '-')
	b = appendHex(b, sc.SpanID[:])
	b = append(b, '-')
	return appendHex(b, []byte{sc.Flags})
}

// FormatTraceparent returns the version-00 traceparent of sc.
func FormatTraceparent(sc SpanContext) string {
	return string(AppendTraceparent(make([]byte, 0, traceparentLen), sc))
}

// NewTraceID reads a random, non-zero trace id from r (crypto/rand.Reader,
// which WASI backs with the host's randomness).
func NewTraceID(r io.Reader) (TraceID, error) {
	var t TraceID
	for !t.IsValid() {
		if err := readRandom(r, t[:]); err != nil {
			return t, err
		}
	}
	return t, nil
}

// NewSpanID reads a random, non-zero span id from r.
func NewSpanID(r io.Reader) (SpanID, error) {
	var s SpanID
	for !s.IsValid() {
		if err := readRandom(r, s[:]); err != nil {
			return s, err
		}
	}
	return s, nil
}

// readRandom fills dst (8 or 16 bytes) from r. A *rand.ChaCha8 is read
// word by word, as its Read does for whole words, without passing dst
// through an interface (which would move the caller's id to the heap).
func readRandom(r io.Reader, dst []byte) error {
	if c, ok := r.(*rand.ChaCha8); ok && len(dst)%8 == 0 {
		for i := 0; i < len(dst); i += 8 {
			binary.LittleEndian.PutUint64(dst[i:], c.Uint64())
		}
		return nil
	}
	var buf [16]byte
	b := buf[:len(dst)]
	if _, err := io.ReadFull(r, b); err != nil {
		return err
	}
	copy(dst, b)
	return nil
}

const hexDigits = "0123456789abcdef"

func appendHex(b, src []byte) []byte {
	for _, c := range src {
		b = append(b, hexDigits[c>>4], hexDigits[c&0xf])
	}
	return b
}

// lowerHex returns the value of a lowercase hex digit.
func lowerHex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

func hexByte(hi, lo byte) (byte, bool) {
	h, ok1 := lowerHex(hi)
	l, ok2 := lowerHex(lo)
	return h<<4 | l, ok1 && ok2
}

// decodeHex decodes len(dst)*2 lowercase hex digits of s into dst. It
// looks each digit up in lowerHexVal (one load, no branch per digit) and
// checks the pair's validity once: in the wasm guest the branches of
// lowerHex per digit cost more than the table.
func decodeHex(dst []byte, s string) bool {
	if len(s) != 2*len(dst) {
		return false
	}
	var bad byte
	for i := range dst {
		h, l := lowerHexVal[s[2*i]], lowerHexVal[s[2*i+1]]
		bad |= h | l
		dst[i] = h<<4 | l&0x0f
	}
	return bad&0x10 == 0
}

// lowerHexVal maps a byte to its value as a lowercase hex digit, or 0x10
// when it is none (a constant: indexing it by a byte needs no bounds check).
const lowerHexVal = "" +
	"\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10" +
	"\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10" +
	"\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10" +
	"\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x10\x10\x10\x10\x10\x10" +
	"\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10" +
	"\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10" +
	"\x10\x0a\x0b\x0c\x0d\x0e\x0f\x10\x10\x10\x10\x10\x10\x10\x10\x10" +
	"\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10" +
	"\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10" +
	"\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10" +
	"\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10" +
	"\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10" +
	"\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10" +
	"\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10" +
	"\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10" +
	"\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10"
