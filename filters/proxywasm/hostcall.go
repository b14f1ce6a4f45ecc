package proxywasm

import (
	"math"
	"time"
	"unsafe"

	"github.com/meshwarden/meshwarden/filters/proxywasm/internal/abi"
	"github.com/meshwarden/meshwarden/internal/guestfmt"
)

// VM is the handle a filter makes every hostcall through: one VM is one
// proxy-wasm VM (a wasm instance, or one native instance in a host that
// links the filter, see package nullvm). The host hands it to the filter's
// VM context constructor; plugin and stream contexts keep it and call its
// methods, which have the names and signatures of the SDK's package
// functions (vm.GetHttpRequestHeader, vm.LogWarnf, vm.DispatchHttpCall, …).
//
// A VM is not safe for concurrent use, and needs none: the host runs one
// callback of a VM at a time. In a wasm module there is exactly one VM
// (ModuleVM); the package-level functions of the wasip1 build call it.
type VM abi.State

func (vm *VM) state() *abi.State { return (*abi.State)(vm) }

func (vm *VM) host() abi.Host { return vm.state().Host() }

// wholeBuffer is the max_size that reads a buffer to its end (hosts clamp it).
const wholeBuffer = math.MaxInt32

// ---- configuration ----

// GetVMConfiguration returns the VM configuration (vm_config.configuration).
// It is available during VMContext.OnVMStart.
func (vm *VM) GetVMConfiguration() ([]byte, error) {
	return vm.getBuffer(abi.BufferVMConfiguration, 0, wholeBuffer)
}

// GetPluginConfiguration returns the plugin configuration (configuration of
// the PluginConfig). It is available during PluginContext.OnPluginStart.
func (vm *VM) GetPluginConfiguration() ([]byte, error) {
	return vm.getBuffer(abi.BufferPluginConfiguration, 0, wholeBuffer)
}

// SetTickPeriodMilliSeconds makes the host call PluginContext.OnTick every
// millSec milliseconds; 0 stops the ticks.
func (vm *VM) SetTickPeriodMilliSeconds(millSec uint32) error {
	return vm.host().SetTickPeriodMilliseconds(millSec).Err()
}

// SetEffectiveContext makes contextID the context of subsequent hostcalls,
// e.g. to resume a paused stream from OnQueueReady or OnTick.
func (vm *VM) SetEffectiveContext(contextID uint32) error {
	return vm.host().SetEffectiveContext(contextID).Err()
}

// PluginDone tells the host that a plugin context whose OnPluginDone returned
// false has finished its work.
func (vm *VM) PluginDone() error { return vm.host().Done().Err() }

// GetCurrentTime returns the host's wall clock
// (proxy_get_current_time_nanoseconds). Hosts may freeze it for the
// duration of a callback. On error it falls back to the WASI clock.
func (vm *VM) GetCurrentTime() time.Time {
	ns, st := vm.host().GetCurrentTimeNanoseconds()
	if st != abi.StatusOK {
		return time.Now()
	}
	return time.Unix(0, int64(ns))
}

// ---- HTTP request headers, body, trailers ----

// GetHttpRequestHeaders returns every request header, in order, as
// (name, value) pairs. Pseudo-headers (":path", ":method", …) are included.
func (vm *VM) GetHttpRequestHeaders() ([][2]string, error) { return vm.getMap(abi.MapRequestHeaders) }

// AppendHttpRequestHeaders appends every request header, in order, to dst
// and returns the extended slice: GetHttpRequestHeaders for a caller that
// reads the headers of every request into one reused slice.
func (vm *VM) AppendHttpRequestHeaders(dst [][2]string) ([][2]string, error) {
	return vm.appendMap(dst, abi.MapRequestHeaders)
}

// ReplaceHttpRequestHeaders replaces all request headers with headers.
func (vm *VM) ReplaceHttpRequestHeaders(headers [][2]string) error {
	return vm.setMap(abi.MapRequestHeaders, headers)
}

// GetHttpRequestHeader returns the value of request header key
// (ErrNotFound when absent).
func (vm *VM) GetHttpRequestHeader(key string) (string, error) {
	return vm.getMapValue(abi.MapRequestHeaders, key)
}

// RemoveHttpRequestHeader removes every request header named key.
func (vm *VM) RemoveHttpRequestHeader(key string) error {
	return vm.host().RemoveHeaderMapValue(abi.MapRequestHeaders, key).Err()
}

// ReplaceHttpRequestHeader sets request header key to value, replacing any
// existing values (adding it when absent).
func (vm *VM) ReplaceHttpRequestHeader(key, value string) error {
	return vm.host().ReplaceHeaderMapValue(abi.MapRequestHeaders, key, value).Err()
}

// AddHttpRequestHeader appends a request header, keeping existing values.
func (vm *VM) AddHttpRequestHeader(key, value string) error {
	return vm.host().AddHeaderMapValue(abi.MapRequestHeaders, key, value).Err()
}

// GetHttpRequestBody returns up to maxSize bytes of the buffered request body
// from start. Available in OnHttpRequestBody.
func (vm *VM) GetHttpRequestBody(start, maxSize int) ([]byte, error) {
	return vm.getBuffer(abi.BufferRequestBody, start, maxSize)
}

// AppendHttpRequestBody appends data to the buffered request body.
func (vm *VM) AppendHttpRequestBody(data []byte) error {
	return vm.host().SetBufferBytes(abi.BufferRequestBody, wholeBuffer, 0, data).Err()
}

// PrependHttpRequestBody inserts data before the buffered request body.
func (vm *VM) PrependHttpRequestBody(data []byte) error {
	return vm.host().SetBufferBytes(abi.BufferRequestBody, 0, 0, data).Err()
}

// ReplaceHttpRequestBody replaces the buffered request body with data.
func (vm *VM) ReplaceHttpRequestBody(data []byte) error {
	return vm.host().SetBufferBytes(abi.BufferRequestBody, 0, wholeBuffer, data).Err()
}

// GetHttpRequestTrailers returns every request trailer.
func (vm *VM) GetHttpRequestTrailers() ([][2]string, error) { return vm.getMap(abi.MapRequestTrailers) }

// ReplaceHttpRequestTrailers replaces all request trailers.
func (vm *VM) ReplaceHttpRequestTrailers(trailers [][2]string) error {
	return vm.setMap(abi.MapRequestTrailers, trailers)
}

// GetHttpRequestTrailer returns the value of request trailer key.
func (vm *VM) GetHttpRequestTrailer(key string) (string, error) {
	return vm.getMapValue(abi.MapRequestTrailers, key)
}

// RemoveHttpRequestTrailer removes request trailer key.
func (vm *VM) RemoveHttpRequestTrailer(key string) error {
	return vm.host().RemoveHeaderMapValue(abi.MapRequestTrailers, key).Err()
}

// ReplaceHttpRequestTrailer sets request trailer key to value.
func (vm *VM) ReplaceHttpRequestTrailer(key, value string) error {
	return vm.host().ReplaceHeaderMapValue(abi.MapRequestTrailers, key, value).Err()
}

// AddHttpRequestTrailer appends a request trailer.
func (vm *VM) AddHttpRequestTrailer(key, value string) error {
	return vm.host().AddHeaderMapValue(abi.MapRequestTrailers, key, value).Err()
}

// ResumeHttpRequest resumes a request paused by ActionPause
// (proxy_continue_stream for the request).
func (vm *VM) ResumeHttpRequest() error { return vm.host().ContinueStream(abi.StreamRequest).Err() }

// CloseHttpRequest closes the request side of the stream
// (proxy_close_stream for the request).
func (vm *VM) CloseHttpRequest() error { return vm.host().CloseStream(abi.StreamRequest).Err() }

// ---- HTTP response headers, body, trailers ----

// GetHttpResponseHeaders returns every response header, in order.
func (vm *VM) GetHttpResponseHeaders() ([][2]string, error) { return vm.getMap(abi.MapResponseHeaders) }

// ReplaceHttpResponseHeaders replaces all response headers with headers.
func (vm *VM) ReplaceHttpResponseHeaders(headers [][2]string) error {
	return vm.setMap(abi.MapResponseHeaders, headers)
}

// GetHttpResponseHeader returns the value of response header key.
func (vm *VM) GetHttpResponseHeader(key string) (string, error) {
	return vm.getMapValue(abi.MapResponseHeaders, key)
}

// RemoveHttpResponseHeader removes every response header named key.
func (vm *VM) RemoveHttpResponseHeader(key string) error {
	return vm.host().RemoveHeaderMapValue(abi.MapResponseHeaders, key).Err()
}

// ReplaceHttpResponseHeader sets response header key to value.
func (vm *VM) ReplaceHttpResponseHeader(key, value string) error {
	return vm.host().ReplaceHeaderMapValue(abi.MapResponseHeaders, key, value).Err()
}

// AddHttpResponseHeader appends a response header.
func (vm *VM) AddHttpResponseHeader(key, value string) error {
	return vm.host().AddHeaderMapValue(abi.MapResponseHeaders, key, value).Err()
}

// GetHttpResponseBody returns up to maxSize bytes of the buffered response
// body from start. Available in OnHttpResponseBody.
func (vm *VM) GetHttpResponseBody(start, maxSize int) ([]byte, error) {
	return vm.getBuffer(abi.BufferResponseBody, start, maxSize)
}

// AppendHttpResponseBody appends data to the buffered response body.
func (vm *VM) AppendHttpResponseBody(data []byte) error {
	return vm.host().SetBufferBytes(abi.BufferResponseBody, wholeBuffer, 0, data).Err()
}

// PrependHttpResponseBody inserts data before the buffered response body.
func (vm *VM) PrependHttpResponseBody(data []byte) error {
	return vm.host().SetBufferBytes(abi.BufferResponseBody, 0, 0, data).Err()
}

// ReplaceHttpResponseBody replaces the buffered response body with data.
func (vm *VM) ReplaceHttpResponseBody(data []byte) error {
	return vm.host().SetBufferBytes(abi.BufferResponseBody, 0, wholeBuffer, data).Err()
}

// GetHttpResponseTrailers returns every response trailer.
func (vm *VM) GetHttpResponseTrailers() ([][2]string, error) {
	return vm.getMap(abi.MapResponseTrailers)
}

// ReplaceHttpResponseTrailers replaces all response trailers.
func (vm *VM) ReplaceHttpResponseTrailers(trailers [][2]string) error {
	return vm.setMap(abi.MapResponseTrailers, trailers)
}

// GetHttpResponseTrailer returns the value of response trailer key.
func (vm *VM) GetHttpResponseTrailer(key string) (string, error) {
	return vm.getMapValue(abi.MapResponseTrailers, key)
}

// RemoveHttpResponseTrailer removes response trailer key.
func (vm *VM) RemoveHttpResponseTrailer(key string) error {
	return vm.host().RemoveHeaderMapValue(abi.MapResponseTrailers, key).Err()
}

// ReplaceHttpResponseTrailer sets response trailer key to value.
func (vm *VM) ReplaceHttpResponseTrailer(key, value string) error {
	return vm.host().ReplaceHeaderMapValue(abi.MapResponseTrailers, key, value).Err()
}

// AddHttpResponseTrailer appends a response trailer.
func (vm *VM) AddHttpResponseTrailer(key, value string) error {
	return vm.host().AddHeaderMapValue(abi.MapResponseTrailers, key, value).Err()
}

// ResumeHttpResponse resumes a response paused by ActionPause.
func (vm *VM) ResumeHttpResponse() error { return vm.host().ContinueStream(abi.StreamResponse).Err() }

// CloseHttpResponse closes the response side of the stream.
func (vm *VM) CloseHttpResponse() error { return vm.host().CloseStream(abi.StreamResponse).Err() }

// SendHttpResponse answers the request locally with statusCode, headers and
// body instead of forwarding it; gRPCStatus is -1 for a non-gRPC response.
// Return ActionPause from the current callback after calling it.
func (vm *VM) SendHttpResponse(statusCode uint32, headers [][2]string, body []byte, gRPCStatus int32) error {
	return vm.host().SendLocalResponse(statusCode, "", body, abi.SerializeMap(headers), gRPCStatus).Err()
}

// ---- HTTP callouts ----

// DispatchHttpCall sends an HTTP request to the upstream cluster and returns
// its token. headers must include ":method", ":path" and ":authority".
// callback runs when the response arrives (or the call fails: numHeaders 0),
// with the dispatching context effective again; read the response inside it
// with GetHttpCallResponseHeaders, GetHttpCallResponseBody and
// GetHttpCallResponseTrailers. A stream context that dispatches a call usually
// returns ActionPause and resumes in the callback.
func (vm *VM) DispatchHttpCall(cluster string, headers [][2]string, body []byte, trailers [][2]string,
	timeoutMillisecond uint32, callBack func(numHeaders, bodySize, numTrailers int),
) (calloutID uint32, err error) {
	return vm.dispatchHTTPCall(false, cluster, headers, body, trailers, timeoutMillisecond, callBack)
}

// DispatchPluginHttpCall is DispatchHttpCall on behalf of the plugin (root)
// context of the callback under way. From an HttpContext callback it makes
// the plugin context effective for the call (proxy_set_effective_context)
// and the stream's context effective again after it: the call belongs to
// the plugin, so the host does not cancel it when the stream ends (Envoy
// cancels a stream's calls with the stream), and callBack runs in the
// plugin context. For work a stream triggers but the plugin owns, such as
// sending a full batch.
func (vm *VM) DispatchPluginHttpCall(cluster string, headers [][2]string, body []byte, trailers [][2]string,
	timeoutMillisecond uint32, callBack func(numHeaders, bodySize, numTrailers int),
) (calloutID uint32, err error) {
	return vm.dispatchHTTPCall(true, cluster, headers, body, trailers, timeoutMillisecond, callBack)
}

func (vm *VM) dispatchHTTPCall(forPlugin bool, cluster string, headers [][2]string, body []byte, trailers [][2]string,
	timeoutMillisecond uint32, callBack func(numHeaders, bodySize, numTrailers int),
) (uint32, error) {
	if callBack == nil {
		return 0, guestfmt.Errorf("dispatch http call to cluster %q: nil callback: %w", cluster, ErrBadArgument)
	}
	s := vm.state()
	if !s.InCallback() {
		return 0, guestfmt.Errorf("dispatch http call to cluster %q outside a callback: call it from OnPluginStart, OnTick, OnQueueReady or an HttpContext callback: %w", cluster, ErrBadArgument)
	}
	if root, active := s.PluginContextID(), s.ActiveContextID(); forPlugin && root != active {
		if err := vm.host().SetEffectiveContext(root).Err(); err != nil {
			return 0, guestfmt.Errorf("dispatch http call to cluster %q for the plugin context: %w", cluster, err)
		}
		defer vm.host().SetEffectiveContext(active)
	}
	token, st := vm.host().HTTPCall(cluster, abi.SerializeMap(headers), body, abi.SerializeMap(trailers), timeoutMillisecond)
	if err := st.Err(); err != nil {
		return 0, guestfmt.Errorf("dispatch http call to cluster %q: %w", cluster, err)
	}
	if forPlugin {
		s.RegisterPluginHTTPCallout(token, callBack)
	} else {
		s.RegisterHTTPCallout(token, callBack)
	}
	return token, nil
}

// GetHttpCallResponseHeaders returns the headers of the response being
// delivered to a DispatchHttpCall callback.
func (vm *VM) GetHttpCallResponseHeaders() ([][2]string, error) {
	return vm.getMap(abi.MapHTTPCallHeaders)
}

// GetHttpCallResponseBody returns up to maxSize bytes of the callout response
// body from start.
func (vm *VM) GetHttpCallResponseBody(start, maxSize int) ([]byte, error) {
	return vm.getBuffer(abi.BufferHTTPCallBody, start, maxSize)
}

// GetHttpCallResponseTrailers returns the callout response trailers.
func (vm *VM) GetHttpCallResponseTrailers() ([][2]string, error) {
	return vm.getMap(abi.MapHTTPCallTrailers)
}

// ---- properties ----

// GetProperty returns the value of the property at path, e.g.
// {"source", "address"}, {"connection", "uri_san_peer_certificate"},
// {"plugin_name"}. Values are the host's encoding (strings as bytes,
// integers little-endian).
func (vm *VM) GetProperty(path []string) ([]byte, error) {
	if len(path) == 0 {
		return nil, guestfmt.Errorf("get property: empty path: %w", ErrBadArgument)
	}
	// The host reads the path during the call only: one scratch buffer
	// serves every call (the guest is single-threaded).
	scratch := vm.state().PathScratch()
	*scratch = abi.AppendPropertyPath((*scratch)[:0], path)
	v, st := vm.host().GetProperty(*scratch)
	return v, st.Err()
}

// GetPropertyString is GetProperty for a property whose value is text (an
// address, an identity, a route name): the value is returned as a string
// without copying it again out of the buffer the host filled.
func (vm *VM) GetPropertyString(path []string) (string, error) {
	v, err := vm.GetProperty(path)
	if err != nil || len(v) == 0 {
		return "", err
	}
	// v is ours alone (Host: returned slices belong to the caller) and is
	// never written again.
	return unsafe.String(unsafe.SliceData(v), len(v)), nil
}

// GetPropertyMap returns a property whose value is a serialized map (such as
// {"request", "headers"}) as pairs.
func (vm *VM) GetPropertyMap(path []string) ([][2]string, error) {
	b, err := vm.GetProperty(path)
	if err != nil {
		return nil, err
	}
	m, err := abi.DeserializeMapOwned(b) // b is ours (Host contract)
	if err != nil {
		return nil, guestfmt.Errorf("get property map %v: %w: %w", path, ErrParseFailure, err)
	}
	return m, nil
}

// SetProperty sets the property at path to data (e.g. filter state for
// later filters in the chain).
func (vm *VM) SetProperty(path []string, data []byte) error {
	if len(path) == 0 {
		return guestfmt.Errorf("set property: empty path: %w", ErrBadArgument)
	}
	return vm.host().SetProperty(abi.SerializePropertyPath(path), data).Err()
}

// ---- shared data ----

// GetSharedData returns the value stored under key in the host's shared
// key-value store and its CAS token (ErrNotFound when absent).
func (vm *VM) GetSharedData(key string) (value []byte, cas uint32, err error) {
	v, c, st := vm.host().GetSharedData(key)
	return v, c, st.Err()
}

// SetSharedData stores data under key. A non-zero cas makes the write
// conditional: it fails with ErrCasMismatch when the value changed since the
// GetSharedData that returned cas. cas 0 writes unconditionally.
func (vm *VM) SetSharedData(key string, data []byte, cas uint32) error {
	return vm.host().SetSharedData(key, data, cas).Err()
}

// ---- shared queues ----

// RegisterSharedQueue creates (or finds) the queue name owned by this VM and
// returns its id. PluginContext.OnQueueReady is called when it gets data.
func (vm *VM) RegisterSharedQueue(name string) (queueID uint32, err error) {
	id, st := vm.host().RegisterSharedQueue(name)
	return id, st.Err()
}

// ResolveSharedQueue returns the id of the queue name registered by VM vmID.
func (vm *VM) ResolveSharedQueue(vmID, queueName string) (queueID uint32, err error) {
	id, st := vm.host().ResolveSharedQueue(vmID, queueName)
	return id, st.Err()
}

// EnqueueSharedQueue appends data to queue queueID.
func (vm *VM) EnqueueSharedQueue(queueID uint32, data []byte) error {
	return vm.host().EnqueueSharedQueue(queueID, data).Err()
}

// DequeueSharedQueue pops the oldest item of queue queueID (ErrEmpty when
// there is none).
func (vm *VM) DequeueSharedQueue(queueID uint32) ([]byte, error) {
	v, st := vm.host().DequeueSharedQueue(queueID)
	return v, st.Err()
}

// ---- foreign functions ----

// CallForeignFunction calls a host-specific function by name.
func (vm *VM) CallForeignFunction(funcName string, param []byte) (ret []byte, err error) {
	v, st := vm.host().CallForeignFunction(funcName, param)
	return v, st.Err()
}

// ---- strings ----

// ArenaString returns a copy of b as a string without a Go allocation when
// b is short: it is carved from the VM's buffer arena (the memory
// proxy_on_memory_allocate hands the host), written once and never reused,
// and lives as long as it is referenced. For a value built per request
// (a header value a filter sets) in the wasm guest, where an allocation
// costs more than the building.
func (vm *VM) ArenaString(b []byte) string { return vm.state().String(b) }

// ---- helpers ----

func (vm *VM) getBuffer(bt abi.BufferType, start, maxSize int) ([]byte, error) {
	if start < 0 || maxSize < 0 {
		return nil, guestfmt.Errorf("read buffer: negative start %d or size %d: %w", start, maxSize, ErrBadArgument)
	}
	b, st := vm.host().GetBufferBytes(bt, start, maxSize)
	return b, st.Err()
}

func (vm *VM) getMap(mt abi.MapType) ([][2]string, error) {
	return vm.appendMap(nil, mt)
}

func (vm *VM) appendMap(dst [][2]string, mt abi.MapType) ([][2]string, error) {
	b, st := vm.host().GetHeaderMapPairs(mt)
	if err := st.Err(); err != nil {
		return dst, err
	}
	m, err := abi.AppendMapOwned(dst, b) // b is ours (Host contract)
	if err != nil {
		return dst, guestfmt.Errorf("%w: %w", ErrParseFailure, err)
	}
	return m, nil
}

func (vm *VM) setMap(mt abi.MapType, pairs [][2]string) error {
	return vm.host().SetHeaderMapPairs(mt, abi.SerializeMap(pairs)).Err()
}

func (vm *VM) getMapValue(mt abi.MapType, key string) (string, error) {
	v, st := vm.host().GetHeaderMapValue(mt, key)
	return v, st.Err()
}
