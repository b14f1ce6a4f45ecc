package proxytest

import (
	"bytes"
	"slices"
	"strings"

	"github.com/meshwarden/meshwarden/filters/proxywasm/internal/abi"
	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/types"
)

// hostcalls is the emulator's side of every hostcall (abi.Host). It is a
// distinct type so that these methods, which speak the internal ABI types,
// stay out of HostEmulator's public API.
type hostcalls HostEmulator

var _ abi.Host = (*hostcalls)(nil)

// Log records msg at level.
func (h *hostcalls) Log(level abi.LogLevel, msg string) abi.Status {
	if level > abi.LogCritical {
		return abi.StatusBadArgument
	}
	h.logs[level] = append(h.logs[level], msg)
	return abi.StatusOK
}

// GetLogLevel returns the option's log level.
func (h *hostcalls) GetLogLevel() (abi.LogLevel, abi.Status) { return h.opt.logLevel, abi.StatusOK }

// GetCurrentTimeNanoseconds returns the option's clock.
func (h *hostcalls) GetCurrentTimeNanoseconds() (uint64, abi.Status) {
	return uint64(h.opt.now().UnixNano()), abi.StatusOK
}

// SetTickPeriodMilliseconds records the tick period.
func (h *hostcalls) SetTickPeriodMilliseconds(ms uint32) abi.Status {
	h.tickPeriod = ms
	return abi.StatusOK
}

// SetEffectiveContext switches the context of later hostcalls.
func (h *hostcalls) SetEffectiveContext(contextID uint32) abi.Status {
	if contextID != RootContextID {
		if s := h.streams[contextID]; s == nil || s.done {
			return abi.StatusBadArgument
		}
	}
	h.effective = contextID
	return abi.StatusOK
}

// Done records that the plugin finished its pending work.
func (h *hostcalls) Done() abi.Status {
	h.pluginDone = true
	return abi.StatusOK
}

// GetProperty returns a property set by the option or the filter.
func (h *hostcalls) GetProperty(path []byte) ([]byte, abi.Status) {
	v, ok := h.properties[string(path)]
	if !ok {
		return nil, abi.StatusNotFound
	}
	return bytes.Clone(v), abi.StatusOK
}

// SetProperty stores a property.
func (h *hostcalls) SetProperty(path, value []byte) abi.Status {
	h.properties[string(path)] = bytes.Clone(value)
	return abi.StatusOK
}

func (h *hostcalls) buffer(bt abi.BufferType) (*[]byte, abi.Status) {
	switch bt {
	case abi.BufferVMConfiguration:
		return &h.opt.vmConfig, abi.StatusOK
	case abi.BufferPluginConfiguration:
		return &h.opt.pluginConfig, abi.StatusOK
	case abi.BufferHTTPCallBody:
		if h.callResp == nil {
			return nil, abi.StatusNotFound
		}
		return &h.callResp.body, abi.StatusOK
	case abi.BufferRequestBody, abi.BufferResponseBody:
		s := h.streams[h.effective]
		if s == nil {
			return nil, abi.StatusNotFound
		}
		if bt == abi.BufferRequestBody {
			return &s.reqBody, abi.StatusOK
		}
		return &s.respBody, abi.StatusOK
	case abi.BufferDownstreamData, abi.BufferUpstreamData, abi.BufferGRPCMessage, abi.BufferForeignArguments:
		return nil, abi.StatusNotFound
	default:
		return nil, abi.StatusBadArgument
	}
}

// GetBufferBytes reads up to maxSize bytes from start.
func (h *hostcalls) GetBufferBytes(bt abi.BufferType, start, maxSize int) ([]byte, abi.Status) {
	buf, st := h.buffer(bt)
	if st != abi.StatusOK {
		return nil, st
	}
	if start < 0 || maxSize < 0 || start > len(*buf) {
		return nil, abi.StatusBadArgument
	}
	end := len(*buf)
	if maxSize < end-start {
		end = start + maxSize
	}
	return bytes.Clone((*buf)[start:end]), abi.StatusOK
}

// GetBufferStatus returns the buffer's size.
func (h *hostcalls) GetBufferStatus(bt abi.BufferType) (int, abi.Status) {
	buf, st := h.buffer(bt)
	if st != abi.StatusOK {
		return 0, st
	}
	return len(*buf), abi.StatusOK
}

// SetBufferBytes edits a body with Envoy's semantics: start 0 replaces the
// first size bytes with value (size 0 prepends), start at or past the end
// appends, anything else is BAD_ARGUMENT.
func (h *hostcalls) SetBufferBytes(bt abi.BufferType, start, size int, value []byte) abi.Status {
	if bt != abi.BufferRequestBody && bt != abi.BufferResponseBody {
		return abi.StatusBadArgument
	}
	buf, st := h.buffer(bt)
	if st != abi.StatusOK {
		return st
	}
	switch {
	case start == 0:
		size = min(max(size, 0), len(*buf))
		nb := make([]byte, 0, len(value)+len(*buf)-size)
		nb = append(nb, value...)
		*buf = append(nb, (*buf)[size:]...)
	case start >= len(*buf):
		*buf = append(*buf, value...)
	default:
		return abi.StatusBadArgument
	}
	return abi.StatusOK
}

func (h *hostcalls) headerMap(mt abi.MapType) (*[][2]string, bool, abi.Status) {
	switch mt {
	case abi.MapHTTPCallHeaders, abi.MapHTTPCallTrailers:
		if h.callResp == nil {
			return nil, false, abi.StatusNotFound
		}
		if mt == abi.MapHTTPCallHeaders {
			return &h.callResp.headers, false, abi.StatusOK
		}
		return &h.callResp.trailers, false, abi.StatusOK
	case abi.MapRequestHeaders, abi.MapRequestTrailers, abi.MapResponseHeaders, abi.MapResponseTrailers:
		s := h.streams[h.effective]
		if s == nil {
			return nil, false, abi.StatusNotFound
		}
		switch mt {
		case abi.MapRequestHeaders:
			return &s.reqHeaders, true, abi.StatusOK
		case abi.MapRequestTrailers:
			return &s.reqTrailers, true, abi.StatusOK
		case abi.MapResponseHeaders:
			return &s.respHeaders, true, abi.StatusOK
		default:
			return &s.respTrailers, true, abi.StatusOK
		}
	case abi.MapGRPCInitialMetadata, abi.MapGRPCTrailingMetadata:
		return nil, false, abi.StatusNotFound
	default:
		return nil, false, abi.StatusBadArgument
	}
}

// GetHeaderMapValue returns the first value of key (case-insensitive).
func (h *hostcalls) GetHeaderMapValue(mt abi.MapType, key string) (string, abi.Status) {
	m, _, st := h.headerMap(mt)
	if st != abi.StatusOK {
		return "", st
	}
	for _, p := range *m {
		if strings.EqualFold(p[0], key) {
			return p[1], abi.StatusOK
		}
	}
	return "", abi.StatusNotFound
}

// GetHeaderMapPairs returns the serialized map.
func (h *hostcalls) GetHeaderMapPairs(mt abi.MapType) ([]byte, abi.Status) {
	m, _, st := h.headerMap(mt)
	if st != abi.StatusOK {
		return nil, st
	}
	return abi.SerializeMap(*m), abi.StatusOK
}

// writableHeaderMap is headerMap for a write: a read-only map (an HTTP call's
// response) is a bad argument.
func (h *hostcalls) writableHeaderMap(mt abi.MapType) (*[][2]string, abi.Status) {
	m, writable, st := h.headerMap(mt)
	if st == abi.StatusOK && !writable {
		return nil, abi.StatusBadArgument
	}
	return m, st
}

// SetHeaderMapPairs replaces the map with a serialized one.
func (h *hostcalls) SetHeaderMapPairs(mt abi.MapType, serialized []byte) abi.Status {
	m, st := h.writableHeaderMap(mt)
	if st != abi.StatusOK {
		return st
	}
	pairs, err := abi.DeserializeMap(serialized)
	if err != nil {
		return abi.StatusParseFailure
	}
	*m = lowerKeys(pairs)
	return abi.StatusOK
}

// AddHeaderMapValue appends a pair.
func (h *hostcalls) AddHeaderMapValue(mt abi.MapType, key, value string) abi.Status {
	m, st := h.writableHeaderMap(mt)
	if st != abi.StatusOK {
		return st
	}
	*m = append(*m, [2]string{strings.ToLower(key), value})
	return abi.StatusOK
}

// ReplaceHeaderMapValue sets key to value: the first pair is replaced, other
// pairs with that name removed; an absent key is added.
func (h *hostcalls) ReplaceHeaderMapValue(mt abi.MapType, key, value string) abi.Status {
	m, st := h.writableHeaderMap(mt)
	if st != abi.StatusOK {
		return st
	}
	key = strings.ToLower(key)
	replaced := false
	out := (*m)[:0]
	for _, p := range *m {
		if strings.EqualFold(p[0], key) {
			if replaced {
				continue
			}
			p = [2]string{key, value}
			replaced = true
		}
		out = append(out, p)
	}
	if !replaced {
		out = append(out, [2]string{key, value})
	}
	*m = out
	return abi.StatusOK
}

// RemoveHeaderMapValue removes every pair named key.
func (h *hostcalls) RemoveHeaderMapValue(mt abi.MapType, key string) abi.Status {
	m, st := h.writableHeaderMap(mt)
	if st != abi.StatusOK {
		return st
	}
	*m = slices.DeleteFunc(*m, func(p [2]string) bool { return strings.EqualFold(p[0], key) })
	return abi.StatusOK
}

// GetHeaderMapSize returns the serialized size of the map.
func (h *hostcalls) GetHeaderMapSize(mt abi.MapType) (int, abi.Status) {
	m, _, st := h.headerMap(mt)
	if st != abi.StatusOK {
		return 0, st
	}
	return len(abi.SerializeMap(*m)), abi.StatusOK
}

// SendLocalResponse records the local response of the effective stream.
func (h *hostcalls) SendLocalResponse(statusCode uint32, details string, body, headers []byte, grpcStatus int32) abi.Status {
	s := h.streams[h.effective]
	if s == nil {
		return abi.StatusNotFound
	}
	if statusCode < 200 || statusCode > 599 {
		return abi.StatusBadArgument
	}
	pairs, err := abi.DeserializeMap(headers)
	if err != nil {
		return abi.StatusParseFailure
	}
	s.local = &LocalHttpResponse{
		StatusCode: statusCode, StatusCodeDetail: details, Data: bytes.Clone(body),
		Headers: lowerKeys(pairs), GRPCStatus: grpcStatus,
	}
	return abi.StatusOK
}

// ContinueStream resumes the effective stream.
func (h *hostcalls) ContinueStream(st abi.StreamType) abi.Status {
	s := h.streams[h.effective]
	if s == nil || st > abi.StreamResponse {
		return abi.StatusBadArgument
	}
	if st == abi.StreamRequest {
		s.resumedReq++
	} else {
		s.resumedResp++
	}
	s.action = types.ActionContinue
	return abi.StatusOK
}

// CloseStream closes a side of the effective stream.
func (h *hostcalls) CloseStream(st abi.StreamType) abi.Status {
	s := h.streams[h.effective]
	if s == nil || st > abi.StreamResponse {
		return abi.StatusBadArgument
	}
	if st == abi.StreamRequest {
		s.closedReq = true
	} else {
		s.closedResp = true
	}
	return abi.StatusOK
}

// HTTPCall records a callout; answer it with CallOnHttpCallResponse.
func (h *hostcalls) HTTPCall(upstream string, headers, body, trailers []byte, timeoutMs uint32) (uint32, abi.Status) {
	hp, err := abi.DeserializeMap(headers)
	if err != nil {
		return 0, abi.StatusBadArgument
	}
	tp, err := abi.DeserializeMap(trailers)
	if err != nil {
		return 0, abi.StatusBadArgument
	}
	if upstream == "" {
		return 0, abi.StatusBadArgument
	}
	for _, k := range []string{":method", ":path", ":authority"} {
		if !slices.ContainsFunc(hp, func(p [2]string) bool { return strings.EqualFold(p[0], k) && p[1] != "" }) {
			return 0, abi.StatusBadArgument
		}
	}
	h.nextCallout++
	h.callouts = append(h.callouts, HttpCalloutAttribute{
		CalloutID: h.nextCallout, ContextID: h.effective, Upstream: upstream,
		Headers: lowerKeys(hp), Trailers: lowerKeys(tp), Body: bytes.Clone(body), TimeoutMillis: timeoutMs,
	})
	return h.nextCallout, abi.StatusOK
}

// GetSharedData returns a shared value and its CAS.
func (h *hostcalls) GetSharedData(key string) ([]byte, uint32, abi.Status) {
	v := h.shared[key]
	if v == nil {
		return nil, 0, abi.StatusNotFound
	}
	return bytes.Clone(v.data), v.cas, abi.StatusOK
}

// SetSharedData stores a shared value; a non-zero stale cas is CAS_MISMATCH.
func (h *hostcalls) SetSharedData(key string, value []byte, cas uint32) abi.Status {
	v := h.shared[key]
	if v == nil {
		v = &sharedValue{}
		h.shared[key] = v
	} else if cas != 0 && cas != v.cas {
		return abi.StatusCasMismatch
	}
	v.data = bytes.Clone(value)
	v.cas++
	return abi.StatusOK
}

// RegisterSharedQueue creates (or finds) this VM's queue name.
func (h *hostcalls) RegisterSharedQueue(name string) (uint32, abi.Status) {
	if id, st := h.ResolveSharedQueue(h.opt.vmID, name); st == abi.StatusOK {
		return id, st
	}
	id := uint32(len(h.queues) + 1)
	h.queues[id] = &queue{vmID: h.opt.vmID, name: name}
	return id, abi.StatusOK
}

// ResolveSharedQueue finds the queue name of VM vmID.
func (h *hostcalls) ResolveSharedQueue(vmID, name string) (uint32, abi.Status) {
	for id, q := range h.queues {
		if q.vmID == vmID && q.name == name {
			return id, abi.StatusOK
		}
	}
	return 0, abi.StatusNotFound
}

// EnqueueSharedQueue appends to a queue.
func (h *hostcalls) EnqueueSharedQueue(queueID uint32, value []byte) abi.Status {
	q := h.queues[queueID]
	if q == nil {
		return abi.StatusNotFound
	}
	q.items = append(q.items, bytes.Clone(value))
	return abi.StatusOK
}

// DequeueSharedQueue pops from a queue.
func (h *hostcalls) DequeueSharedQueue(queueID uint32) ([]byte, abi.Status) {
	q := h.queues[queueID]
	if q == nil {
		return nil, abi.StatusNotFound
	}
	if len(q.items) == 0 {
		return nil, abi.StatusEmpty
	}
	v := q.items[0]
	q.items = q.items[1:]
	return v, abi.StatusOK
}

// DefineMetric defines (or finds) a metric.
func (h *hostcalls) DefineMetric(mt abi.MetricType, name string) (uint32, abi.Status) {
	if mt > abi.MetricHistogram || name == "" {
		return 0, abi.StatusBadArgument
	}
	for id, m := range h.metrics {
		if m.name == name {
			if m.typ != mt {
				return 0, abi.StatusBadArgument
			}
			return id, abi.StatusOK
		}
	}
	id := uint32(len(h.metrics) + 1)
	h.metrics[id] = &metric{name: name, typ: mt}
	return id, abi.StatusOK
}

// IncrementMetric adds delta to a counter (delta ≥ 0) or gauge.
func (h *hostcalls) IncrementMetric(metricID uint32, delta int64) abi.Status {
	m := h.metrics[metricID]
	if m == nil {
		return abi.StatusNotFound
	}
	switch {
	case m.typ == abi.MetricHistogram, m.typ == abi.MetricCounter && delta < 0:
		return abi.StatusBadArgument
	}
	m.value += uint64(delta)
	return abi.StatusOK
}

// RecordMetric sets a gauge or counter, or adds a histogram observation.
func (h *hostcalls) RecordMetric(metricID uint32, value uint64) abi.Status {
	m := h.metrics[metricID]
	if m == nil {
		return abi.StatusNotFound
	}
	if m.typ == abi.MetricHistogram {
		m.values = append(m.values, value)
		return abi.StatusOK
	}
	m.value = value
	return abi.StatusOK
}

// GetMetric returns a counter or gauge value, or a histogram's sum.
func (h *hostcalls) GetMetric(metricID uint32) (uint64, abi.Status) {
	m := h.metrics[metricID]
	if m == nil {
		return 0, abi.StatusNotFound
	}
	if m.typ == abi.MetricHistogram {
		var sum uint64
		for _, v := range m.values {
			sum += v
		}
		return sum, abi.StatusOK
	}
	return m.value, abi.StatusOK
}

// CallForeignFunction calls a function registered with RegisterForeignFunction.
func (h *hostcalls) CallForeignFunction(name string, args []byte) ([]byte, abi.Status) {
	f := h.foreign[name]
	if f == nil {
		return nil, abi.StatusNotFound
	}
	return f(bytes.Clone(args)), abi.StatusOK
}
