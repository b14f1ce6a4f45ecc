package wasmhost

import (
	"fmt"
	"strings"
)

// headerMapFuncs are the header map hostcalls: request and response headers
// and trailers (writable) and the HTTP call response's (read-only).
var headerMapFuncs = []hostFunc{
	{"proxy_get_header_map_pairs", i32s(3), enumArg0(maxMapType, proxyGetHeaderMapPairs)},
	{"proxy_set_header_map_pairs", i32s(3), enumArg0(maxMapType, proxySetHeaderMapPairs)},
	{"proxy_get_header_map_value", i32s(5), enumArg0(maxMapType, proxyGetHeaderMapValue)},
	{"proxy_get_header_map_size", i32s(2), enumArg0(maxMapType, proxyGetHeaderMapSize)},
	{"proxy_add_header_map_value", i32s(5), enumArg0(maxMapType, proxyAddHeaderMapValue)},
	{"proxy_replace_header_map_value", i32s(5), enumArg0(maxMapType, proxyReplaceHeaderMapValue)},
	{"proxy_remove_header_map_value", i32s(3), enumArg0(maxMapType, proxyRemoveHeaderMapValue)},
}

// proxyGetHeaderMapPairs(type, ptr_ptr, size_ptr) returns a whole map,
// serialized as header pairs.
func proxyGetHeaderMapPairs(in *instance, args []uint64) status {
	h := in.headerMap(mapType(arg(args, 0)))
	if h == nil {
		return statusNotFound
	}
	return in.returnPairs(h.Pairs, arg(args, 1), arg(args, 2))
}

// proxySetHeaderMapPairs(type, pairs, pairs_size) replaces a whole map; keys
// are lowercased, at most MaxHeaders pairs.
func proxySetHeaderMapPairs(in *instance, args []uint64) status {
	mt := mapType(arg(args, 0))
	h := in.headerMap(mt)
	if h == nil || !writableMap(mt) {
		return statusNotFound
	}
	b, ok := in.readArg(args, 1)
	if !ok {
		return statusInvalidMemoryAccess
	}
	pairs, ok := decodePairs(b, in.p.cfg.MaxHeaders)
	if !ok {
		return in.limit(fmt.Sprintf("a serialized header map of %d bytes is malformed or has more than MaxHeaders=%d pairs", len(b), in.p.cfg.MaxHeaders))
	}
	for i := range pairs {
		pairs[i][0] = strings.ToLower(pairs[i][0])
	}
	h.Pairs = pairs
	return statusOK
}

// proxyGetHeaderMapValue(type, key, key_size, value_ptr_ptr, value_size_ptr)
// returns the first value of a key (case-insensitive).
func proxyGetHeaderMapValue(in *instance, args []uint64) status {
	h := in.headerMap(mapType(arg(args, 0)))
	if h == nil {
		return statusNotFound
	}
	k, ok := in.readArg(args, 1)
	if !ok {
		return statusInvalidMemoryAccess
	}
	for _, p := range h.Pairs {
		if len(p[0]) == len(k) && strings.EqualFold(p[0], string(k)) {
			return in.returnString(p[1], arg(args, 3), arg(args, 4))
		}
	}
	return statusNotFound
}

// proxyGetHeaderMapSize(type, size_ptr) writes the serialized size of a map.
func proxyGetHeaderMapSize(in *instance, args []uint64) status {
	h := in.headerMap(mapType(arg(args, 0)))
	if h == nil {
		return statusNotFound
	}
	return in.putU32(arg(args, 1), uint32(pairsSize(h.Pairs)))
}

// proxyAddHeaderMapValue(type, key, key_size, value, value_size) appends a
// pair, at most MaxHeaders.
func proxyAddHeaderMapValue(in *instance, args []uint64) status {
	return in.editHeaderMap(args, true, func(h *Headers, k, v []byte) status {
		if len(h.Pairs) >= in.p.cfg.MaxHeaders {
			return in.limit(fmt.Sprintf("header map already has MaxHeaders=%d pairs", in.p.cfg.MaxHeaders))
		}
		h.Add(h.keyString(k), string(v))
		return statusOK
	})
}

// proxyReplaceHeaderMapValue(type, key, key_size, value, value_size) sets a
// key to one value.
func proxyReplaceHeaderMapValue(in *instance, args []uint64) status {
	return in.editHeaderMap(args, true, func(h *Headers, k, v []byte) status { h.Set(h.keyString(k), string(v)); return statusOK })
}

// proxyRemoveHeaderMapValue(type, key, key_size) removes every value of a key.
func proxyRemoveHeaderMapValue(in *instance, args []uint64) status {
	return in.editHeaderMap(args, false, func(h *Headers, k, _ []byte) status { h.Del(string(k)); return statusOK })
}

// editHeaderMap reads the map type, the key and, withValue, the value of an
// add/replace/remove hostcall, then applies edit to a writable map.
func (in *instance) editHeaderMap(args []uint64, withValue bool, edit func(h *Headers, key, val []byte) status) status {
	mt := mapType(arg(args, 0))
	h := in.headerMap(mt)
	if h == nil || !writableMap(mt) {
		return statusNotFound
	}
	key, ok := in.readArg(args, 1)
	if !ok {
		return statusInvalidMemoryAccess
	}
	var val []byte
	if withValue {
		if val, ok = in.readArg(args, 3); !ok {
			return statusInvalidMemoryAccess
		}
	}
	return edit(h, key, val)
}

// keyString returns key as a string for a pair: the key of a pair already
// in h if one is exactly key, lowercase (a guest replacing a header it read
// names it as the map does), so that no new string is allocated; else a
// copy of key.
func (h *Headers) keyString(key []byte) string {
	for _, c := range key {
		if c >= 0x80 || 'A' <= c && c <= 'Z' {
			return string(key)
		}
	}
	for _, p := range h.Pairs {
		if p[0] == string(key) {
			return p[0]
		}
	}
	return string(key)
}

func writableMap(mt mapType) bool { return mt <= mapResponseTrailers }

func (in *instance) headerMap(mt mapType) *Headers {
	if mt == mapHTTPCallHeaders || mt == mapHTTPCallTrailers {
		if in.httpResp == nil {
			return nil
		}
		if mt == mapHTTPCallHeaders {
			return &Headers{Pairs: in.httpResp.Headers}
		}
		return &Headers{Pairs: in.httpResp.Trailers}
	}
	s := in.curS
	if s == nil {
		return nil
	}
	switch mt {
	case mapRequestHeaders:
		return s.reqHeaders
	case mapRequestTrailers:
		return s.reqTrailers
	case mapResponseHeaders:
		return s.respHeaders
	case mapResponseTrailers:
		return s.respTrailers
	}
	return nil
}
