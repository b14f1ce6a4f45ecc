package tracectx

import (
	"iter"
	"strings"
)

// Tracestate limits from W3C Trace Context.
const (
	MaxTracestateMembers = 32
	maxSimpleKey         = 256
	maxTenantID          = 241
	maxSystemID          = 14
	maxTracestateValue   = 256
)

// TracestateMember is one key=value entry of tracestate.
type TracestateMember struct {
	Key   string
	Value string
}

// Tracestate is an ordered tracestate list, most recently updated first.
// The zero value is an empty list.
type Tracestate struct {
	Members []TracestateMember
}

// ParseTracestate parses one or more tracestate header values (several
// header lines are one list, joined with ","). Empty list members are
// skipped. A key that appears again is dropped after its first (most
// recent) entry, as the W3C test suite expects the valid part kept. Any
// invalid member or more than 32 members makes the whole value invalid:
// the caller then propagates no tracestate, as the spec requires.
func ParseTracestate(values ...string) (Tracestate, error) {
	var ts Tracestate
	for m := range members(values) {
		k, val, ok := strings.Cut(m, "=")
		if !ok || !ValidTracestateKey(k) || !ValidTracestateValue(val) {
			return Tracestate{}, ErrMalformed
		}
		if _, dup := ts.Get(k); dup {
			continue
		}
		if len(ts.Members) == MaxTracestateMembers {
			return Tracestate{}, ErrMalformed
		}
		ts.Members = append(ts.Members, TracestateMember{Key: k, Value: val})
	}
	return ts, nil
}

// Get returns the value of key.
func (ts Tracestate) Get(key string) (string, bool) {
	for _, m := range ts.Members {
		if m.Key == key {
			return m.Value, true
		}
	}
	return "", false
}

// Put sets key to value and moves it to the front, as a vendor updating its
// entry must; the list is cut to 32 members by dropping from the end.
func (ts *Tracestate) Put(key, value string) error {
	if !ValidTracestateKey(key) || !ValidTracestateValue(value) {
		return ErrMalformed
	}
	out := make([]TracestateMember, 0, len(ts.Members)+1)
	out = append(out, TracestateMember{Key: key, Value: value})
	for _, m := range ts.Members {
		if m.Key != key && len(out) < MaxTracestateMembers {
			out = append(out, m)
		}
	}
	ts.Members = out
	return nil
}

// Append appends the header value of ts to b.
func (ts Tracestate) Append(b []byte) []byte {
	for i, m := range ts.Members {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, m.Key...)
		b = append(b, '=')
		b = append(b, m.Value...)
	}
	return b
}

// String returns the header value of ts.
func (ts Tracestate) String() string { return string(ts.Append(nil)) }

// ValidTracestateKey reports whether k is a simple-key or a
// multi-tenant-key (tenant@system) of the W3C grammar.
func ValidTracestateKey(k string) bool {
	tenant, system, multi := strings.Cut(k, "@")
	if !multi {
		return len(k) >= 1 && len(k) <= maxSimpleKey && isLCAlpha(k[0]) && keyChars(k[1:])
	}
	return len(tenant) >= 1 && len(tenant) <= maxTenantID &&
		(isLCAlpha(tenant[0]) || isDigit(tenant[0])) && keyChars(tenant[1:]) &&
		len(system) >= 1 && len(system) <= maxSystemID && isLCAlpha(system[0]) && keyChars(system[1:])
}

// ValidTracestateValue reports whether v is a W3C tracestate value: 1 to 256
// printable ASCII characters except ',' and '=', not ending in a space.
func ValidTracestateValue(v string) bool {
	if len(v) == 0 || len(v) > maxTracestateValue || v[len(v)-1] == ' ' {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < 0x20 || c > 0x7e || c == ',' || c == '=' {
			return false
		}
	}
	return true
}

func keyChars(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(isLCAlpha(c) || isDigit(c) || c == '_' || c == '-' || c == '*' || c == '/') {
			return false
		}
	}
	return true
}

func isLCAlpha(c byte) bool { return c >= 'a' && c <= 'z' }
func isDigit(c byte) bool   { return c >= '0' && c <= '9' }

// nextMember cuts the first member off a comma-separated list: m is it
// without optional white space ("" for an empty member), rest what follows
// its comma.
func nextMember(list string) (m, rest string) {
	m, rest, _ = strings.Cut(list, ",")
	return trimOWS(m), rest
}

// members yields each non-empty member of the comma-separated lists in
// values (several header lines are one list), without optional white space.
func members(values []string) iter.Seq[string] {
	return func(yield func(string) bool) {
		for _, v := range values {
			for v != "" {
				var m string
				m, v = nextMember(v)
				if m != "" && !yield(m) {
					return
				}
			}
		}
	}
}

// trimOWS trims optional whitespace (SP / HTAB).
func trimOWS(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}
