package wasmhost

import (
	"bytes"
	"encoding/binary"
	"net"
	"strconv"
	"strings"
	"time"
)

// propertyFuncs are the property hostcalls.
var propertyFuncs = []hostFunc{
	{"proxy_get_property", i32s(4), proxyGetProperty},
	{"proxy_set_property", i32s(4), proxySetProperty},
}

// proxyGetProperty(path, path_size, value_ptr_ptr, value_size_ptr) returns
// a property by its NUL-separated path, or NotFound.
func proxyGetProperty(in *instance, args []uint64) status {
	path, ok := in.readArg(args, 0)
	if !ok {
		return statusInvalidMemoryAccess
	}
	v, found := in.property(path)
	if !found {
		return statusNotFound
	}
	switch {
	case v.n > 0:
		return in.returnBytes(v.num[:v.n], arg(args, 2), arg(args, 3))
	case v.b != nil:
		return in.returnBytes(v.b, arg(args, 2), arg(args, 3))
	}
	return in.returnString(v.s, arg(args, 2), arg(args, 3))
}

// proxySetProperty(path, path_size, value, value_size) sets a property the
// guest reads back for the rest of its stream.
func proxySetProperty(in *instance, args []uint64) status {
	path, ok1 := in.readArg(args, 0)
	val, ok2 := in.readArg(args, 2)
	if !ok1 || !ok2 {
		return statusInvalidMemoryAccess
	}
	st := in.curS
	if st == nil {
		return statusNotFound
	}
	if st.props == nil {
		st.props = map[string][]byte{}
	}
	st.props[propertyKey(path)] = bytes.Clone(val)
	return statusOK
}

// propertyKey turns a proxy-wasm property path (segments separated by NUL)
// into its dotted form.
func propertyKey(path []byte) string {
	var buf [64]byte
	return string(dottedKey(buf[:0], path))
}

// dottedKey appends the dotted form of a property path to dst: trailing
// NULs dropped, the other NULs turned into dots. A lookup with it does not
// allocate for a path that fits dst's capacity.
func dottedKey(dst, path []byte) []byte {
	dst = append(dst, bytes.TrimRight(path, "\x00")...)
	for i, c := range dst {
		if c == 0 {
			dst[i] = '.'
		}
	}
	return dst
}

// propValue is a property's value, as the host holds it: a string (the
// stream's info, a header), bytes (set by the guest, configured, or
// encoded) or a number, so that none is converted on the way to the guest.
type propValue struct {
	s   string
	b   []byte  // used if not nil
	num [8]byte // used if n > 0: a number, little-endian as Envoy encodes it
	n   int
}

// numValue is a u64 property (Envoy encodes integers as 8 little-endian
// bytes).
func numValue(v uint64) propValue {
	pv := propValue{n: 8}
	binary.LittleEndian.PutUint64(pv.num[:], v)
	return pv
}

func strValue(v string) (propValue, bool) { return propValue{s: v}, v != "" }

func bytesValue(b []byte, ok bool) (propValue, bool) {
	if b == nil {
		b = []byte{} // an empty value found is still bytes, not a string
	}
	return propValue{b: b}, ok
}

// property resolves a property as Envoy does, for the paths the gateway
// knows: values set by the guest, the stream's info, request/response
// attributes derived from headers, then plugin-wide properties. The key is
// matched as bytes: a lookup allocates nothing.
func (in *instance) property(path []byte) (propValue, bool) {
	var buf [64]byte
	key := dottedKey(buf[:0], path)
	p := in.p
	switch string(key) {
	case "plugin_name":
		return propValue{s: p.cfg.Name}, true
	case "plugin_root_id":
		return propValue{s: p.cfg.RootID}, true
	case "plugin_vm_id":
		return propValue{s: p.cfg.VMID}, true
	}
	if s := in.curS; s != nil {
		if v, ok := s.props[string(key)]; ok {
			return bytesValue(v, true)
		}
		if v, ok := s.property(key); ok {
			return v, true
		}
	}
	v, ok := p.cfg.Properties[string(key)]
	return bytesValue(v, ok)
}

// property resolves the stream's own properties.
func (s *Stream) property(key []byte) (propValue, bool) {
	hdr := func(h *Headers, k string) (propValue, bool) {
		v, ok := h.Get(k)
		return propValue{s: v}, ok
	}
	i := s.info
	switch string(key) {
	case "source.address":
		return strValue(i.SourceAddress)
	case "source.port":
		return port(i.SourceAddress)
	case "destination.address":
		return strValue(i.DestinationAddress)
	case "destination.port":
		return port(i.DestinationAddress)
	case "connection.subject_peer_certificate":
		return strValue(i.PeerPrincipal)
	case "connection.uri_san_peer_certificate":
		return strValue(i.PeerURISAN)
	case "connection.uri_san_local_certificate":
		return strValue(i.LocalURISAN)
	case "connection.mtls":
		return propValue{num: [8]byte{byte(b2u(i.MTLS))}, n: 1}, true
	case "connection.tls_version":
		return strValue(i.TLSVersion)
	case "route_name":
		return strValue(i.RouteName)
	case "cluster_name":
		return strValue(i.ClusterName)
	case "request.path":
		return hdr(s.reqHeaders, ":path")
	case "request.url_path":
		v, ok := s.reqHeaders.Get(":path")
		if q := strings.IndexByte(v, '?'); q >= 0 {
			v = v[:q]
		}
		return propValue{s: v}, ok
	case "request.method":
		return hdr(s.reqHeaders, ":method")
	case "request.host":
		return hdr(s.reqHeaders, ":authority")
	case "request.scheme":
		return hdr(s.reqHeaders, ":scheme")
	case "request.id":
		return hdr(s.reqHeaders, "x-request-id")
	case "request.referer":
		return hdr(s.reqHeaders, "referer")
	case "request.useragent":
		return hdr(s.reqHeaders, "user-agent")
	case "request.time":
		return numValue(uint64(s.startTime.UnixNano())), true
	case "request.duration":
		return numValue(uint64(time.Since(s.startTime))), true
	case "response.code":
		v, ok := s.respHeaders.Get(":status")
		if !ok {
			return propValue{}, false
		}
		c, err := strconv.Atoi(v)
		return numValue(uint64(c)), err == nil
	case "request.headers", "response.headers":
		h := s.reqHeaders
		if string(key) == "response.headers" {
			h = s.respHeaders
		}
		if h == nil {
			return propValue{}, false
		}
		b := make([]byte, pairsSize(h.Pairs))
		encodePairs(b, h.Pairs)
		return propValue{b: b}, true // a map, serialized as header pairs (Envoy's encoding)
	}
	if h, ok := bytes.CutPrefix(key, []byte("request.headers.")); ok {
		return hdr(s.reqHeaders, string(h))
	}
	if h, ok := bytes.CutPrefix(key, []byte("response.headers.")); ok {
		return hdr(s.respHeaders, string(h))
	}
	v, ok := i.Properties[string(key)]
	return bytesValue(v, ok)
}

func port(addr string) (propValue, bool) {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return propValue{}, false
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		return propValue{}, false
	}
	return numValue(uint64(n)), true
}
