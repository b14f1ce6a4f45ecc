package wasmhost

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

const i32, i64 = api.ValueTypeI32, api.ValueTypeI64

// envModule builds the "env" host module with every proxy-wasm 0.2.0/0.2.1
// hostcall. Each hostcall finds its instance in the call's context, checks
// every guest pointer, and answers a bad one with InvalidMemoryAccess.
func (r *Runtime) envModule(rt wazero.Runtime) wazero.HostModuleBuilder {
	b := rt.NewHostModuleBuilder("env")
	def := func(name string, params []api.ValueType, f func(in *instance, s []uint64) status) {
		b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, _ api.Module, s []uint64) {
			in, _ := ctx.Value(instKey{}).(*instance)
			if in == nil {
				s[0] = uint64(statusInternalFailure)
				return
			}
			s[0] = uint64(f(in, s))
		}), params, []api.ValueType{i32}).Export(name)
	}
	n := func(k int) []api.ValueType {
		p := make([]api.ValueType, k)
		for i := range p {
			p[i] = i32
		}
		return p
	}
	u := func(s []uint64, i int) uint32 { return uint32(s[i]) }

	def("proxy_log", n(3), func(in *instance, s []uint64) status {
		msg, ok := in.read(u(s, 1), u(s, 2))
		if !ok {
			return statusInvalidMemoryAccess
		}
		lvl := LogLevel(u(s, 0))
		if lvl < in.p.cfg.LogLevel {
			return statusOK
		}
		in.p.cfg.Logger.Log(context.Background(), slogLevel(lvl), string(msg), "plugin", in.p.cfg.Name, "context", in.cur)
		return statusOK
	})
	def("proxy_get_log_level", n(1), func(in *instance, s []uint64) status {
		return in.putU32(u(s, 0), uint32(in.p.cfg.LogLevel))
	})
	def("proxy_get_current_time_nanoseconds", n(1), func(in *instance, s []uint64) status {
		return in.putU64(u(s, 0), uint64(time.Now().UnixNano()))
	})
	def("proxy_set_tick_period_milliseconds", n(1), func(in *instance, s []uint64) status {
		d := time.Duration(u(s, 0)) * time.Millisecond
		in.tickPeriod.Store(int64(d))
		if d > 0 {
			in.nextTick.Store(int64(time.Since(in.p.epoch) + d))
			in.p.kick()
		}
		return statusOK
	})
	def("proxy_get_property", n(4), func(in *instance, s []uint64) status {
		path, ok := in.read(u(s, 0), u(s, 1))
		if !ok {
			return statusInvalidMemoryAccess
		}
		v, found := in.property(path)
		if !found {
			return statusNotFound
		}
		return in.returnBytes(v, u(s, 2), u(s, 3))
	})
	def("proxy_set_property", n(4), func(in *instance, s []uint64) status {
		path, ok1 := in.read(u(s, 0), u(s, 1))
		val, ok2 := in.read(u(s, 2), u(s, 3))
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
	})

	// Buffers.
	def("proxy_get_buffer_bytes", n(5), func(in *instance, s []uint64) status {
		buf, found := in.buffer(bufferType(u(s, 0)))
		if !found {
			return statusNotFound
		}
		start, size := uint64(u(s, 1)), uint64(u(s, 2))
		if start > uint64(len(*buf)) {
			return statusBadArgument
		}
		end := min(start+size, uint64(len(*buf)))
		if end == start {
			// proxy-wasm-cpp-host (Envoy) answers an empty read with Ok and
			// writes neither pointer nor size: the guest keeps its own
			// initial values. Writing pointer 0 made guests of other SDKs
			// (AssemblyScript's proxy-runtime) trap on an empty configuration.
			return statusOK
		}
		return in.returnBytes((*buf)[start:end], u(s, 3), u(s, 4))
	})
	def("proxy_get_buffer_status", n(3), func(in *instance, s []uint64) status {
		buf, found := in.buffer(bufferType(u(s, 0)))
		if !found {
			return statusNotFound
		}
		if st := in.putU32(u(s, 1), uint32(len(*buf))); st != statusOK {
			return st
		}
		return in.putU32(u(s, 2), 0)
	})
	def("proxy_set_buffer_bytes", n(5), func(in *instance, s []uint64) status {
		bt := bufferType(u(s, 0))
		if bt != bufferRequestBody && bt != bufferResponseBody {
			return statusBadArgument // configuration and call buffers are read-only
		}
		buf, found := in.buffer(bt)
		if !found {
			return statusNotFound
		}
		data, ok := in.read(u(s, 3), u(s, 4))
		if !ok {
			return statusInvalidMemoryAccess
		}
		start, size := int(u(s, 1)), int(u(s, 2))
		// Envoy: start 0 replaces the first size bytes with data (size 0
		// prepends); start at or past the end appends; anything else is
		// unsupported.
		switch {
		case start == 0:
			size = min(size, len(*buf))
			nb := make([]byte, 0, len(data)+len(*buf)-size)
			nb = append(nb, data...)
			*buf = append(nb, (*buf)[size:]...)
		case start >= len(*buf):
			*buf = append(*buf, data...)
		default:
			return statusBadArgument
		}
		return statusOK
	})

	// Header maps.
	def("proxy_get_header_map_pairs", n(3), func(in *instance, s []uint64) status {
		h := in.headerMap(mapType(u(s, 0)))
		if h == nil {
			return statusNotFound
		}
		return in.returnPairs(h.Pairs, u(s, 1), u(s, 2))
	})
	def("proxy_set_header_map_pairs", n(3), func(in *instance, s []uint64) status {
		h := in.headerMap(mapType(u(s, 0)))
		if h == nil || !writableMap(mapType(u(s, 0))) {
			return statusNotFound
		}
		b, ok := in.read(u(s, 1), u(s, 2))
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
	})
	def("proxy_get_header_map_value", n(5), func(in *instance, s []uint64) status {
		h := in.headerMap(mapType(u(s, 0)))
		if h == nil {
			return statusNotFound
		}
		k, ok := in.read(u(s, 1), u(s, 2))
		if !ok {
			return statusInvalidMemoryAccess
		}
		for _, p := range h.Pairs {
			if len(p[0]) == len(k) && strings.EqualFold(p[0], string(k)) {
				return in.returnString(p[1], u(s, 3), u(s, 4))
			}
		}
		return statusNotFound
	})
	def("proxy_get_header_map_size", n(2), func(in *instance, s []uint64) status {
		h := in.headerMap(mapType(u(s, 0)))
		if h == nil {
			return statusNotFound
		}
		return in.putU32(u(s, 1), uint32(pairsSize(h.Pairs)))
	})
	editMap := func(name string, k int, edit func(h *Headers, key, val string)) {
		def(name, n(k), func(in *instance, s []uint64) status {
			mt := mapType(u(s, 0))
			h := in.headerMap(mt)
			if h == nil || !writableMap(mt) {
				return statusNotFound
			}
			key, ok := in.read(u(s, 1), u(s, 2))
			if !ok {
				return statusInvalidMemoryAccess
			}
			var val []byte
			if k == 5 {
				if val, ok = in.read(u(s, 3), u(s, 4)); !ok {
					return statusInvalidMemoryAccess
				}
			}
			if name == "proxy_add_header_map_value" && len(h.Pairs) >= in.p.cfg.MaxHeaders {
				return in.limit(fmt.Sprintf("header map already has MaxHeaders=%d pairs", in.p.cfg.MaxHeaders))
			}
			edit(h, string(key), string(val))
			return statusOK
		})
	}
	editMap("proxy_add_header_map_value", 5, func(h *Headers, k, v string) { h.Add(k, v) })
	editMap("proxy_replace_header_map_value", 5, func(h *Headers, k, v string) { h.Set(k, v) })
	editMap("proxy_remove_header_map_value", 3, func(h *Headers, k, _ string) { h.Del(k) })

	// Stream control.
	def("proxy_send_local_response", n(8), func(in *instance, s []uint64) status {
		st := in.curS
		if st == nil {
			return statusNotFound
		}
		details, ok1 := in.read(u(s, 1), u(s, 2))
		body, ok2 := in.read(u(s, 3), u(s, 4))
		hb, ok3 := in.read(u(s, 5), u(s, 6))
		if !ok1 || !ok2 || !ok3 {
			return statusInvalidMemoryAccess
		}
		code := int(u(s, 0))
		if code < 200 || code > 599 {
			return statusBadArgument
		}
		pairs, ok := decodePairs(hb, in.p.cfg.MaxHeaders)
		if !ok {
			return in.limit(fmt.Sprintf("local response headers are malformed or exceed MaxHeaders=%d", in.p.cfg.MaxHeaders))
		}
		st.localReply = &LocalReply{Status: code, Headers: pairs, Body: bytes.Clone(body), Details: string(details), GRPCStatus: int32(u(s, 7))}
		return statusOK
	})
	cont := func(in *instance, t streamType) status {
		st := in.curS
		if st == nil || t > streamResponse {
			return statusBadArgument
		}
		st.continued[t] = true
		return statusOK
	}
	def("proxy_continue_stream", n(1), func(in *instance, s []uint64) status { return cont(in, streamType(u(s, 0))) })
	def("proxy_continue_request", nil, func(in *instance, _ []uint64) status { return cont(in, streamRequest) })
	def("proxy_continue_response", nil, func(in *instance, _ []uint64) status { return cont(in, streamResponse) })
	def("proxy_close_stream", n(1), func(in *instance, s []uint64) status {
		if in.curS == nil {
			return statusBadArgument
		}
		in.curS.closeStream = true
		return statusOK
	})
	def("proxy_clear_route_cache", nil, func(*instance, []uint64) status { return statusOK })
	def("proxy_set_effective_context", n(1), func(in *instance, s []uint64) status {
		id := u(s, 0)
		if id == in.rootID {
			in.setContext(id, nil)
			return statusOK
		}
		st := in.streams[id]
		if st == nil {
			return statusBadArgument
		}
		in.setContext(id, st)
		return statusOK
	})
	def("proxy_done", nil, func(*instance, []uint64) status { return statusOK })

	// HTTP calls.
	def("proxy_http_call", n(10), func(in *instance, s []uint64) status {
		cluster, ok1 := in.read(u(s, 0), u(s, 1))
		hb, ok2 := in.read(u(s, 2), u(s, 3))
		body, ok3 := in.read(u(s, 4), u(s, 5))
		tb, ok4 := in.read(u(s, 6), u(s, 7))
		if !ok1 || !ok2 || !ok3 || !ok4 {
			return statusInvalidMemoryAccess
		}
		if _, ok := in.read(u(s, 9), 4); !ok {
			return statusInvalidMemoryAccess
		}
		headers, ok := decodePairs(hb, in.p.cfg.MaxHeaders)
		if !ok {
			return statusBadArgument
		}
		trailers, ok := decodePairs(tb, in.p.cfg.MaxHeaders)
		if !ok {
			return statusBadArgument
		}
		hh := &Headers{Pairs: headers}
		for _, k := range []string{":method", ":path", ":authority"} {
			if v, ok := hh.Get(k); !ok || v == "" {
				return statusBadArgument
			}
		}
		caller := in.p.cfg.HTTPCaller
		name := string(cluster)
		if caller == nil || !caller.HasCluster(name) {
			return statusBadArgument
		}
		in.nextToken++
		token := in.nextToken
		timeout := time.Duration(u(s, 8)) * time.Millisecond
		ctx, cancel := context.WithCancel(in.p.ctx)
		in.calls[token] = &pendingCall{ctxID: in.cur, cancel: cancel}
		if in.curS != nil {
			in.curS.pendingCalls++
		}
		req := HTTPCallRequest{Headers: headers, Body: bytes.Clone(body), Trailers: trailers, Timeout: timeout}
		go func() {
			resp, err := caller.Call(ctx, name, req)
			if err != nil {
				resp = HTTPCallResponse{}
			}
			if ctx.Err() != nil {
				return // cancelled with its context
			}
			in.post(event{kind: evHTTP, token: token, resp: resp})
		}()
		return in.putU32(u(s, 9), token)
	})

	// Shared data and queues.
	def("proxy_get_shared_data", n(5), func(in *instance, s []uint64) status {
		key, ok := in.read(u(s, 0), u(s, 1))
		if !ok {
			return statusInvalidMemoryAccess
		}
		if _, ok := in.read(u(s, 4), 4); !ok {
			return statusInvalidMemoryAccess
		}
		v, cas, found := in.p.r.shared.get(in.p.cfg.VMID, string(key))
		if !found {
			return statusNotFound
		}
		if st := in.returnBytes(v, u(s, 2), u(s, 3)); st != statusOK {
			return st
		}
		return in.putU32(u(s, 4), cas)
	})
	def("proxy_set_shared_data", n(5), func(in *instance, s []uint64) status {
		key, ok1 := in.read(u(s, 0), u(s, 1))
		val, ok2 := in.read(u(s, 2), u(s, 3))
		if !ok1 || !ok2 {
			return statusInvalidMemoryAccess
		}
		return in.p.r.shared.set(in.p.cfg.VMID, string(key), bytes.Clone(val), u(s, 4))
	})
	def("proxy_register_shared_queue", n(3), func(in *instance, s []uint64) status {
		name, ok := in.read(u(s, 0), u(s, 1))
		if !ok {
			return statusInvalidMemoryAccess
		}
		if _, ok := in.read(u(s, 2), 4); !ok {
			return statusInvalidMemoryAccess
		}
		return in.putU32(u(s, 2), in.p.r.queues.register(in.p.cfg.VMID, string(name), in))
	})
	def("proxy_resolve_shared_queue", n(5), func(in *instance, s []uint64) status {
		vm, ok1 := in.read(u(s, 0), u(s, 1))
		name, ok2 := in.read(u(s, 2), u(s, 3))
		if !ok1 || !ok2 {
			return statusInvalidMemoryAccess
		}
		id, found := in.p.r.queues.resolve(string(vm), string(name))
		if !found {
			return statusNotFound
		}
		return in.putU32(u(s, 4), id)
	})
	def("proxy_enqueue_shared_queue", n(3), func(in *instance, s []uint64) status {
		val, ok := in.read(u(s, 1), u(s, 2))
		if !ok {
			return statusInvalidMemoryAccess
		}
		sub, st := in.p.r.queues.enqueue(u(s, 0), bytes.Clone(val))
		if sub != nil {
			sub.post(event{kind: evQueue, queue: u(s, 0)})
		}
		return st
	})
	def("proxy_dequeue_shared_queue", n(3), func(in *instance, s []uint64) status {
		if _, ok := in.read(u(s, 1), 4); !ok {
			return statusInvalidMemoryAccess
		}
		v, st := in.p.r.queues.dequeue(u(s, 0))
		if st != statusOK {
			return st
		}
		return in.returnBytes(v, u(s, 1), u(s, 2))
	})

	// Metrics.
	def("proxy_define_metric", n(4), func(in *instance, s []uint64) status {
		name, ok := in.read(u(s, 1), u(s, 2))
		if !ok {
			return statusInvalidMemoryAccess
		}
		if _, ok := in.read(u(s, 3), 4); !ok {
			return statusInvalidMemoryAccess
		}
		id, st := in.p.r.metrics.define(MetricType(u(s, 0)), string(name))
		if st != statusOK {
			return st
		}
		return in.putU32(u(s, 3), id)
	})
	def("proxy_increment_metric", []api.ValueType{i32, i64}, func(in *instance, s []uint64) status {
		return in.p.r.metrics.increment(u(s, 0), int64(s[1]))
	})
	def("proxy_record_metric", []api.ValueType{i32, i64}, func(in *instance, s []uint64) status {
		return in.p.r.metrics.record(u(s, 0), s[1])
	})
	def("proxy_get_metric", n(2), func(in *instance, s []uint64) status {
		if _, ok := in.read(u(s, 1), 8); !ok {
			return statusInvalidMemoryAccess
		}
		v, st := in.p.r.metrics.get(u(s, 0))
		if st != statusOK {
			return st
		}
		return in.putU64(u(s, 1), v)
	})

	// Not supported by the gateway: gRPC calls and foreign functions. They
	// exist so modules importing them still load, as in Envoy builds without
	// those features.
	def("proxy_get_status", n(3), func(in *instance, s []uint64) status {
		if st := in.putU32(u(s, 0), 0); st != statusOK {
			return st
		}
		return in.returnBytes(nil, u(s, 1), u(s, 2))
	})
	def("proxy_call_foreign_function", n(6), func(*instance, []uint64) status { return statusNotFound })
	def("proxy_grpc_call", n(12), func(*instance, []uint64) status { return statusUnimplemented })
	def("proxy_grpc_stream", n(9), func(*instance, []uint64) status { return statusUnimplemented })
	def("proxy_grpc_send", n(4), func(*instance, []uint64) status { return statusUnimplemented })
	def("proxy_grpc_cancel", n(1), func(*instance, []uint64) status { return statusUnimplemented })
	def("proxy_grpc_close", n(1), func(*instance, []uint64) status { return statusUnimplemented })
	return b
}

func slogLevel(l LogLevel) slog.Level {
	switch l {
	case LogTrace, LogDebug:
		return slog.LevelDebug
	case LogInfo:
		return slog.LevelInfo
	case LogWarn:
		return slog.LevelWarn
	}
	return slog.LevelError
}

func writableMap(mt mapType) bool { return mt <= mapResponseTrailers }

// limit records that the guest exceeded a host limit: the hostcall fails
// with BadArgument and the callback fails per the fail policy.
func (in *instance) limit(msg string) status {
	if in.curS != nil && in.curS.limitErr == nil {
		in.curS.limitErr = &GuestError{Plugin: in.p.cfg.Name, Callback: "hostcall", Kind: "limit", Err: errors.New(msg)}
	}
	return statusBadArgument
}

func (in *instance) read(ptr, size uint32) ([]byte, bool) {
	if size == 0 {
		return nil, true
	}
	return in.mod.Memory().Read(ptr, size)
}

func (in *instance) putU32(ptr, v uint32) status {
	if !in.mod.Memory().WriteUint32Le(ptr, v) {
		return statusInvalidMemoryAccess
	}
	return statusOK
}

func (in *instance) putU64(ptr uint32, v uint64) status {
	if !in.mod.Memory().WriteUint64Le(ptr, v) {
		return statusInvalidMemoryAccess
	}
	return statusOK
}

// returnSlot allocates size bytes in the guest and writes their address and
// size to ptrPtr and sizePtr; fill writes the data into the allocation.
// Views of guest memory taken before are stale after the allocator ran.
func (in *instance) returnSlot(size int, ptrPtr, sizePtr uint32, fill func([]byte)) status {
	mem := in.mod.Memory()
	if _, ok := mem.Read(ptrPtr, 4); !ok {
		return statusInvalidMemoryAccess
	}
	if _, ok := mem.Read(sizePtr, 4); !ok {
		return statusInvalidMemoryAccess
	}
	var p uint32
	if size > 0 {
		var ok bool
		if p, ok = in.allocate(size); !ok {
			return statusInternalFailure
		}
		view, ok := in.mod.Memory().Read(p, uint32(size)) // fresh view: memory may have grown
		if !ok {
			return statusInvalidMemoryAccess
		}
		fill(view)
	}
	if st := in.putU32(ptrPtr, p); st != statusOK {
		return st
	}
	return in.putU32(sizePtr, uint32(size))
}

func (in *instance) returnBytes(b []byte, ptrPtr, sizePtr uint32) status {
	return in.returnSlot(len(b), ptrPtr, sizePtr, func(v []byte) { copy(v, b) })
}

func (in *instance) returnString(str string, ptrPtr, sizePtr uint32) status {
	return in.returnSlot(len(str), ptrPtr, sizePtr, func(v []byte) { copy(v, str) })
}

func (in *instance) returnPairs(pairs [][2]string, ptrPtr, sizePtr uint32) status {
	return in.returnSlot(pairsSize(pairs), ptrPtr, sizePtr, func(v []byte) { encodePairs(v, pairs) })
}

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

func (in *instance) buffer(bt bufferType) (*[]byte, bool) {
	switch bt {
	case bufferVMConfiguration:
		b := in.p.cfg.VMConfiguration
		return &b, true
	case bufferPluginConfig:
		b := in.p.cfg.Configuration
		return &b, true
	case bufferHTTPCallResponse:
		if in.httpResp == nil {
			return nil, false
		}
		return &in.httpResp.Body, true
	}
	s := in.curS
	if s == nil {
		return nil, false
	}
	switch bt {
	case bufferRequestBody:
		return &s.reqBody, true
	case bufferResponseBody:
		return &s.respBody, true
	}
	return nil, false
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
