package tracectx

import "strings"

// Baggage limits from W3C Baggage.
const (
	MaxBaggageMembers = 180
	MaxBaggageBytes   = 8192
)

// BaggageMember is one list member. Raw is the member as received (key,
// value and properties), so members this process does not touch are
// forwarded byte for byte.
type BaggageMember struct {
	Key string
	Raw string
}

// Baggage is an ordered W3C baggage list. The zero value is empty.
type Baggage struct {
	Members []BaggageMember
	// Dropped counts members removed while parsing: invalid ones and those
	// past the limits.
	Dropped int
}

// ParseBaggage parses one or more baggage header values. Invalid members are
// dropped one by one (the rest survive); members past 180 or past 8192 bytes
// in total are dropped from the end. A later duplicate of a key is dropped.
func ParseBaggage(values ...string) Baggage {
	var bg Baggage
	size := 0
	for m := range members(values) {
		k, ok := parseBaggageMember(m)
		if !ok || bg.has(k) {
			bg.Dropped++
			continue
		}
		add := len(m)
		if len(bg.Members) > 0 {
			add++
		}
		if len(bg.Members) == MaxBaggageMembers || size+add > MaxBaggageBytes {
			bg.Dropped++
			continue
		}
		size += add
		bg.Members = append(bg.Members, BaggageMember{Key: k, Raw: m})
	}
	return bg
}

func (bg *Baggage) has(k string) bool {
	for _, m := range bg.Members {
		if m.Key == k {
			return true
		}
	}
	return false
}

// Get returns the percent-decoded value of key.
func (bg *Baggage) Get(key string) (string, bool) {
	for _, m := range bg.Members {
		if m.Key == key {
			_, rest, _ := cutByte(m.Raw, '=')
			val, _, _ := cutByte(rest, ';')
			return percentDecode(trimOWS(val)), true
		}
	}
	return "", false
}

// Set puts key=value (value percent-encoded) first in the list, replacing
// any member with that key, then drops members from the end until the
// limits hold. It reports false, changing nothing, if key is not a token or
// the member alone would exceed 8192 bytes.
func (bg *Baggage) Set(key, value string) bool {
	if !isToken(key) {
		return false
	}
	raw := key + "=" + percentEncode(value)
	if len(raw) > MaxBaggageBytes {
		return false
	}
	out := make([]BaggageMember, 0, len(bg.Members)+1)
	out = append(out, BaggageMember{Key: key, Raw: raw})
	size := len(raw)
	for _, m := range bg.Members {
		if m.Key == key {
			continue
		}
		if len(out) == MaxBaggageMembers || size+1+len(m.Raw) > MaxBaggageBytes {
			bg.Dropped++
			continue
		}
		size += 1 + len(m.Raw)
		out = append(out, m)
	}
	bg.Members = out
	return true
}

// Delete removes key and reports whether it was present.
func (bg *Baggage) Delete(key string) bool {
	for i, m := range bg.Members {
		if m.Key == key {
			bg.Members = append(bg.Members[:i:i], bg.Members[i+1:]...)
			return true
		}
	}
	return false
}

// Len returns the number of members.
func (bg *Baggage) Len() int { return len(bg.Members) }

// Append appends the header value to b.
func (bg *Baggage) Append(b []byte) []byte {
	for i, m := range bg.Members {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, m.Raw...)
	}
	return b
}

// String returns the header value.
func (bg *Baggage) String() string { return string(bg.Append(nil)) }

// BaggageValue returns the percent-decoded value of key in a baggage header
// value without building a list: the fast path for filters that read one
// member.
func BaggageValue(header, key string) (string, bool) {
	for header != "" {
		var m string
		m, header, _ = cutByte(header, ',')
		m = trimOWS(m)
		k, rest, ok := cutByte(m, '=')
		if !ok || trimOWS(k) != key {
			continue
		}
		val, _, _ := cutByte(rest, ';')
		val = trimOWS(val)
		if !validBaggageValue(val) {
			return "", false
		}
		return percentDecode(val), true
	}
	return "", false
}

// parseBaggageMember validates one member and returns its key.
func parseBaggageMember(m string) (string, bool) {
	kv, props, hasProps := cutByte(m, ';')
	k, v, ok := cutByte(kv, '=')
	if !ok {
		return "", false
	}
	k, v = trimOWS(k), trimOWS(v)
	if !isToken(k) || !validBaggageValue(v) {
		return "", false
	}
	for hasProps {
		var p string
		p, props, hasProps = cutByte(props, ';')
		pk, pv, hasVal := cutByte(p, '=')
		if !isToken(trimOWS(pk)) || hasVal && !validBaggageValue(trimOWS(pv)) {
			return "", false
		}
	}
	return k, true
}

// isToken reports whether s is an RFC 7230 token.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !tokenByte(s[i]) {
			return false
		}
	}
	return true
}

// tokenLo and tokenHi are the set of RFC 7230 tchar bytes (visible ASCII
// but "(),/:;<=>?@[\]{} and the double quote) as a bitmap over bytes 0–63
// and 64–127: a table lookup instead of a search per byte.
const (
	tokenLo = 0x3ff6cfa00000000
	tokenHi = 0x57ffffffc7fffffe
)

// tokenByte reports whether c is a tchar.
func tokenByte(c byte) bool {
	if c < 64 {
		return tokenLo>>c&1 != 0
	}
	return c < 128 && tokenHi>>(c-64)&1 != 0
}

// validBaggageValue checks baggage-octet* with well-formed percent escapes.
func validBaggageValue(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c > 0x7e || c == '"' || c == ',' || c == ';' || c == '\\' {
			return false
		}
		if c == '%' {
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return false
			}
		}
	}
	return true
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

func percentDecode(s string) string {
	if strings.IndexByte(s, '%') < 0 {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			b = append(b, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
			continue
		}
		b = append(b, s[i])
	}
	return string(b)
}

// percentEncode encodes everything outside baggage-octet, and '%' itself.
func percentEncode(s string) string {
	if percentEncodedLen(s) == len(s) {
		return s
	}
	return string(appendPercentEncoded(make([]byte, 0, len(s)+8), s))
}

func needsEscape(c byte) bool {
	return c < 0x21 || c > 0x7e || c == '"' || c == ',' || c == ';' || c == '\\' || c == '%'
}

// BaggageIsClean reports whether ParseBaggage(v) would drop nothing (its
// Dropped would be 0), without building the list: a proxy that only
// forwards baggage rewrites the header only when it is not clean.
func BaggageIsClean(v string) bool {
	n, size := 0, 0
	// The keys seen so far, for the duplicate check: the first few in a
	// fixed array, beyond that the list before the member is parsed again.
	var keys [8]string
	for rest := v; rest != ""; {
		start := len(v) - len(rest)
		var m string
		m, rest, _ = cutByte(rest, ',')
		m = trimOWS(m)
		if m == "" {
			continue
		}
		k, ok := parseBaggageMember(m)
		if !ok {
			return false
		}
		if n <= len(keys) {
			for _, seen := range keys[:n] {
				if seen == k {
					return false
				}
			}
		} else if baggageHasKey(v[:start], k) {
			return false
		}
		if n < len(keys) {
			keys[n] = k
		}
		add := len(m)
		if n > 0 {
			add++
		}
		if n == MaxBaggageMembers || size+add > MaxBaggageBytes {
			return false
		}
		size += add
		n++
	}
	return true
}

// baggageHasKey reports whether a valid member of list has key k.
func baggageHasKey(list, k string) bool {
	for list != "" {
		var m string
		m, list = nextMember(list)
		if m == "" {
			continue
		}
		if key, ok := parseBaggageMember(m); ok && key == k {
			return true
		}
	}
	return false
}

// BaggageValue2 is BaggageValue for two keys in one pass over the header:
// v1, ok1 are BaggageValue(header, k1) and v2, ok2 BaggageValue(header, k2).
func BaggageValue2(header, k1, k2 string) (v1 string, ok1 bool, v2 string, ok2 bool) {
	done1, done2 := false, false
	for header != "" && !(done1 && done2) {
		var m string
		m, header, _ = cutByte(header, ',')
		m = trimOWS(m)
		k, rest, ok := cutByte(m, '=')
		if !ok {
			continue
		}
		k = trimOWS(k)
		first := !done1 && k == k1
		second := !done2 && k == k2
		if !first && !second {
			continue
		}
		val, _, _ := cutByte(rest, ';')
		val = trimOWS(val)
		valid := validBaggageValue(val)
		if valid {
			val = percentDecode(val)
		} else {
			val = ""
		}
		if first {
			done1, v1, ok1 = true, val, valid
		}
		if second {
			done2, v2, ok2 = true, val, valid
		}
	}
	return v1, ok1, v2, ok2
}

// BaggageEdit is one change AppendEditedBaggage makes: Set puts
// Key=Value (as Baggage.Set), otherwise Key is deleted (Baggage.Delete).
type BaggageEdit struct {
	Key, Value string
	Set        bool
}

// AppendEditedBaggage appends to b the header value that ParseBaggage(header)
// followed by the edits, in order, then Baggage.Append would give, in one
// pass without building the list, and reports true. It reports false, b
// unchanged, when the list's semantics could matter: header is not clean
// (BaggageIsClean), two edits name one key, a Set key is not a token, or
// the edited list could pass the limits (Set would drop members); the
// caller then edits a Baggage. An empty result is a list to remove.
func AppendEditedBaggage(b []byte, header string, edits ...BaggageEdit) ([]byte, bool) {
	sets, extra := 0, 0
	for i := range edits {
		e := &edits[i]
		for j := range i {
			if edits[j].Key == e.Key {
				return b, false
			}
		}
		if e.Set {
			if !isToken(e.Key) {
				return b, false
			}
			sets++
			extra += len(e.Key) + 2 + percentEncodedLen(e.Value) // "k=v" and a comma
		}
	}
	// The header's members and separators take at most len(header) bytes,
	// and it has at most one member more than it has commas: within the
	// limits with the Sets added, no step of the edit drops a member.
	if len(header)+extra > MaxBaggageBytes || strings.Count(header, ",")+1+sets > MaxBaggageMembers ||
		!BaggageIsClean(header) {
		return b, false
	}
	n := 0
	for i := len(edits) - 1; i >= 0; i-- { // a later Set goes in front of an earlier one
		if e := &edits[i]; e.Set {
			if n > 0 {
				b = append(b, ',')
			}
			b = append(b, e.Key...)
			b = append(b, '=')
			b = appendPercentEncoded(b, e.Value)
			n++
		}
	}
	for rest := header; rest != ""; {
		var m string
		m, rest = nextMember(rest)
		if m == "" {
			continue
		}
		k, _, _ := cutByte(m, '=') // clean: every member is key=value
		if edited(edits, trimOWS(k)) {
			continue
		}
		if n > 0 {
			b = append(b, ',')
		}
		b = append(b, m...)
		n++
	}
	return b, true
}

func edited(edits []BaggageEdit, k string) bool {
	for i := range edits {
		if edits[i].Key == k {
			return true
		}
	}
	return false
}

// percentEncodedLen is len(percentEncode(s)).
func percentEncodedLen(s string) int {
	n := len(s)
	for i := 0; i < len(s); i++ {
		if needsEscape(s[i]) {
			n += 2
		}
	}
	return n
}

// appendPercentEncoded appends percentEncode(s) to b.
func appendPercentEncoded(b []byte, s string) []byte {
	const hexUp = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		if needsEscape(c) {
			b = append(b, '%', hexUp[c>>4], hexUp[c&0xf])
			continue
		}
		b = append(b, c)
	}
	return b
}

// cutByte is strings.Cut with a one-byte separator, without
// strings.Index's dispatch on the separator's length (calls cost in the
// wasm guest, and the baggage loops cut every member).
func cutByte(s string, sep byte) (before, after string, found bool) {
	if i := strings.IndexByte(s, sep); i >= 0 {
		return s[:i], s[i+1:], true
	}
	return s, "", false
}
