package tracectx

import "strings"

// B3 is a parsed B3 context. Debug implies Sampled.
type B3 struct {
	SpanContext
	// SamplingKnown is false when the sender deferred the decision.
	SamplingKnown bool
	Debug         bool
	ParentSpanID  SpanID
}

// ParseB3Single parses the "b3" header:
// {traceid}-{spanid}[-{sampling}[-{parentspanid}]], or a lone sampling
// state ("0", "1" or "d"), which carries no ids and is returned with
// ErrZeroID. A 16-digit trace id is left-padded to 128 bits.
func ParseB3Single(s string) (B3, error) {
	var b B3
	s = strings.TrimSpace(s)
	if len(s) == 1 {
		if !b.setSampling(s) {
			return b, ErrMalformed
		}
		return b, ErrZeroID
	}
	tid, rest, ok := strings.Cut(s, "-")
	if !ok || !b.setTraceID(tid) {
		return b, ErrMalformed
	}
	sid, rest, more := strings.Cut(rest, "-")
	if !decodeHex(b.SpanID[:], sid) {
		return b, ErrMalformed
	}
	if more {
		smp, pid, hasParent := strings.Cut(rest, "-")
		if !b.setSampling(smp) {
			return b, ErrMalformed
		}
		if hasParent && !decodeHex(b.ParentSpanID[:], pid) {
			return b, ErrMalformed
		}
	}
	if !b.IsValid() {
		return b, ErrZeroID
	}
	return b, nil
}

// ParseB3Multi parses the X-B3-* headers. get returns a header's value or "".
// X-B3-Sampled accepts "1"/"0" and, as older tracers send, "true"/"false";
// X-B3-Flags "1" means debug.
func ParseB3Multi(get func(name string) string) (B3, error) {
	var b B3
	tid, sid := get(B3TraceIDHeader), get(B3SpanIDHeader)
	if smp := get(B3SampledHeader); smp != "" {
		switch smp {
		case "true":
			smp = "1"
		case "false":
			smp = "0"
		}
		if !b.setSampling(smp) {
			return b, ErrMalformed
		}
	}
	if get(B3FlagsHeader) == "1" {
		b.setSampling("d")
	}
	if tid == "" && sid == "" {
		return b, ErrZeroID
	}
	if !b.setTraceID(tid) || !decodeHex(b.SpanID[:], sid) {
		return b, ErrMalformed
	}
	if pid := get(B3ParentIDHeader); pid != "" && !decodeHex(b.ParentSpanID[:], pid) {
		return b, ErrMalformed
	}
	if !b.IsValid() {
		return b, ErrZeroID
	}
	return b, nil
}

// AppendB3Single appends the b3 single header for sc (no parent id).
func AppendB3Single(b []byte, sc SpanContext) []byte {
	b = appendHex(b, sc.TraceID[:])
	b = append(b, '-')
	b = appendHex(b, sc.SpanID[:])
	if sc.Sampled() {
		return append(b, '-', '1')
	}
	return append(b, '-', '0')
}

func (b *B3) setTraceID(s string) bool {
	switch len(s) {
	case 32:
		return decodeHex(b.TraceID[:], s)
	case 16:
		b.TraceID = TraceID{}
		return decodeHex(b.TraceID[8:], s)
	}
	return false
}

func (b *B3) setSampling(s string) bool {
	switch s {
	case "0":
		b.Flags &^= FlagSampled
	case "1":
		b.Flags |= FlagSampled
	case "d":
		b.Flags |= FlagSampled
		b.Debug = true
	default:
		return false
	}
	b.SamplingKnown = true
	return true
}
