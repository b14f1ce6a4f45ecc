package wasmhost

import (
	"encoding/binary"
	"net/http"
	"strings"
)

// Headers is an ordered header (or trailer) map as proxy-wasm sees it: keys
// are lowercase (HTTP/2 style, pseudo-headers such as ":path" included) and a
// key may repeat. The gateway passes a *Headers to a stream callback and reads
// the guest's changes from it afterwards.
type Headers struct {
	Pairs [][2]string
}

// NewHeaders returns Headers holding pairs (key, value, key, value, ...).
func NewHeaders(kv ...string) *Headers {
	h := &Headers{Pairs: make([][2]string, 0, len(kv)/2)}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Pairs = append(h.Pairs, [2]string{strings.ToLower(kv[i]), kv[i+1]})
	}
	return h
}

// Get returns the first value of key.
func (h *Headers) Get(key string) (string, bool) {
	if h == nil {
		return "", false
	}
	for _, p := range h.Pairs {
		if strings.EqualFold(p[0], key) {
			return p[1], true
		}
	}
	return "", false
}

// Values returns every value of key, in order.
func (h *Headers) Values(key string) []string {
	var out []string
	if h == nil {
		return nil
	}
	for _, p := range h.Pairs {
		if strings.EqualFold(p[0], key) {
			out = append(out, p[1])
		}
	}
	return out
}

// Add appends a pair.
func (h *Headers) Add(key, value string) {
	h.Pairs = append(h.Pairs, [2]string{strings.ToLower(key), value})
}

// AddHTTP appends every value of a net/http header, its name lowercased as
// proxy-wasm header maps carry names.
func (h *Headers) AddHTTP(hdr http.Header) {
	for k, vs := range hdr {
		lk := strings.ToLower(k)
		for _, v := range vs {
			h.Pairs = append(h.Pairs, [2]string{lk, v})
		}
	}
}

// Set replaces every value of key with value, keeping the position of the
// first one (Envoy's replace semantics); it adds the key if it is absent.
func (h *Headers) Set(key, value string) {
	key = strings.ToLower(key)
	out := h.Pairs[:0]
	set := false
	for _, p := range h.Pairs {
		if strings.EqualFold(p[0], key) {
			if set {
				continue
			}
			p = [2]string{key, value}
			set = true
		}
		out = append(out, p)
	}
	h.Pairs = out
	if !set {
		h.Pairs = append(h.Pairs, [2]string{key, value})
	}
}

// Del removes every value of key.
func (h *Headers) Del(key string) {
	out := h.Pairs[:0]
	for _, p := range h.Pairs {
		if !strings.EqualFold(p[0], key) {
			out = append(out, p)
		}
	}
	clear(h.Pairs[len(out):])
	h.Pairs = out
}

// Len returns the number of pairs.
func (h *Headers) Len() int {
	if h == nil {
		return 0
	}
	return len(h.Pairs)
}

// Clone returns a deep copy.
func (h *Headers) Clone() *Headers {
	if h == nil {
		return nil
	}
	return &Headers{Pairs: append([][2]string(nil), h.Pairs...)}
}

// pairsSize is the size of the proxy-wasm serialization of pairs:
// u32 count, then (u32 key length, u32 value length) per pair, then every
// key and value each followed by a NUL byte.
func pairsSize(pairs [][2]string) int {
	n := 4 + 8*len(pairs)
	for _, p := range pairs {
		n += len(p[0]) + len(p[1]) + 2
	}
	return n
}

func encodePairs(dst []byte, pairs [][2]string) {
	binary.LittleEndian.PutUint32(dst, uint32(len(pairs)))
	o := 4
	for _, p := range pairs {
		binary.LittleEndian.PutUint32(dst[o:], uint32(len(p[0])))
		binary.LittleEndian.PutUint32(dst[o+4:], uint32(len(p[1])))
		o += 8
	}
	for _, p := range pairs {
		o += copy(dst[o:], p[0])
		dst[o] = 0
		o++
		o += copy(dst[o:], p[1])
		dst[o] = 0
		o++
	}
}

// decodePairs parses the serialization written by encodePairs; it returns
// false on malformed input or more than max pairs.
func decodePairs(b []byte, max int) ([][2]string, bool) {
	if len(b) == 0 {
		return nil, true
	}
	if len(b) < 4 {
		return nil, false
	}
	n := int(binary.LittleEndian.Uint32(b))
	if n > max || n > (len(b)-4)/8 {
		return nil, false
	}
	lens := b[4 : 4+8*n]
	data := b[4+8*n:]
	out := make([][2]string, n)
	for i := range n {
		kl := int(binary.LittleEndian.Uint32(lens[8*i:]))
		vl := int(binary.LittleEndian.Uint32(lens[8*i+4:]))
		if kl+vl+2 > len(data) || kl < 0 || vl < 0 {
			return nil, false
		}
		out[i] = [2]string{string(data[:kl]), string(data[kl+1 : kl+1+vl])}
		data = data[kl+vl+2:]
	}
	return out, true
}
