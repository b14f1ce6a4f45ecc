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
	return in.returnBytes(v, arg(args, 2), arg(args, 3))
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
	return strings.ReplaceAll(strings.TrimRight(string(path), "\x00"), "\x00", ".")
}

// property resolves a property as Envoy does, for the paths the gateway
// knows: values set by the guest, the stream's info, request/response
// attributes derived from headers, then plugin-wide properties.
func (in *instance) property(path []byte) ([]byte, bool) {
	key := propertyKey(path)
	p := in.p
	switch key {
	case "plugin_name":
		return []byte(p.cfg.Name), true
	case "plugin_root_id":
		return []byte(p.cfg.RootID), true
	case "plugin_vm_id":
		return []byte(p.cfg.VMID), true
	}
	if s := in.curS; s != nil {
		if v, ok := s.props[key]; ok {
			return v, true
		}
		if v, ok := s.property(key); ok {
			return v, true
		}
	}
	v, ok := p.cfg.Properties[key]
	return v, ok
}

func (s *Stream) property(key string) ([]byte, bool) {
	str := func(v string) ([]byte, bool) { return []byte(v), v != "" }
	hdr := func(h *Headers, k string) ([]byte, bool) {
		v, ok := h.Get(k)
		return []byte(v), ok
	}
	i := s.info
	switch key {
	case "source.address":
		return str(i.SourceAddress)
	case "source.port":
		return port(i.SourceAddress)
	case "destination.address":
		return str(i.DestinationAddress)
	case "destination.port":
		return port(i.DestinationAddress)
	case "connection.subject_peer_certificate":
		return str(i.PeerPrincipal)
	case "connection.uri_san_peer_certificate":
		return str(i.PeerURISAN)
	case "connection.uri_san_local_certificate":
		return str(i.LocalURISAN)
	case "connection.mtls":
		return []byte{byte(b2u(i.MTLS))}, true
	case "connection.tls_version":
		return str(i.TLSVersion)
	case "route_name":
		return str(i.RouteName)
	case "cluster_name":
		return str(i.ClusterName)
	case "request.path":
		return hdr(s.reqHeaders, ":path")
	case "request.url_path":
		v, ok := s.reqHeaders.Get(":path")
		if q := strings.IndexByte(v, '?'); q >= 0 {
			v = v[:q]
		}
		return []byte(v), ok
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
		return le64(uint64(s.startTime.UnixNano())), true
	case "request.duration":
		return le64(uint64(time.Since(s.startTime))), true
	case "response.code":
		v, ok := s.respHeaders.Get(":status")
		if !ok {
			return nil, false
		}
		c, err := strconv.Atoi(v)
		return le64(uint64(c)), err == nil
	}
	if key == "request.headers" || key == "response.headers" {
		h := s.reqHeaders
		if key == "response.headers" {
			h = s.respHeaders
		}
		if h == nil {
			return nil, false
		}
		b := make([]byte, pairsSize(h.Pairs))
		encodePairs(b, h.Pairs)
		return b, true // a map, serialized as header pairs (Envoy's encoding)
	}
	if h, ok := strings.CutPrefix(key, "request.headers."); ok {
		return hdr(s.reqHeaders, h)
	}
	if h, ok := strings.CutPrefix(key, "response.headers."); ok {
		return hdr(s.respHeaders, h)
	}
	v, ok := i.Properties[key]
	return v, ok
}

func port(addr string) ([]byte, bool) {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, false
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		return nil, false
	}
	return le64(uint64(n)), true
}

func le64(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }
