// Package proxytest is a fake proxy-wasm host for native unit tests of
// Meshwarden filters. It implements every hostcall of package proxywasm in
// memory (header maps, bodies, properties, logs, local responses, HTTP
// callouts, shared data, queues, metrics, ticks) and drives the filter's
// callbacks as a host would, so filter logic is tested with plain go test:
//
//	host, reset := proxytest.NewHostEmulator(proxytest.NewEmulatorOption().
//		WithVMContext(myfilter.NewVMContext).
//		WithPluginConfiguration([]byte(`{"lane":"canary"}`)))
//	defer reset()
//	if host.StartVM() != types.OnVMStartStatusOK { ... }
//	if host.StartPlugin() != types.OnPluginStartStatusOK { ... }
//	id := host.InitializeHttpContext()
//	action := host.CallOnRequestHeaders(id, [][2]string{{":path", "/"}}, false)
//	got := host.GetCurrentRequestHeaders(id)
//
// Its semantics follow Meshwarden's gateway host (gateway/wasmhost) and
// Envoy: header names are lower-cased on write and matched case-insensitively;
// a missing header or property is ErrNotFound; proxy_http_call needs
// :method, :path and :authority; SetSharedData with a stale CAS fails with
// ErrCasMismatch.
//
// Every emulator has its own VM (its own guest registry), so emulators are
// independent: tests may run them in parallel.
package proxytest

import (
	"bytes"
	"fmt"
	"slices"
	"strings"

	"github.com/meshwarden/meshwarden/filters/proxywasm"
	"github.com/meshwarden/meshwarden/filters/proxywasm/internal/abi"
	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/types"
)

// LogLevel is a proxy-wasm log level (proxywasm.LogLevelInfo, …).
type LogLevel = abi.LogLevel

// RootContextID is the id of the emulator's plugin (root) context.
const RootContextID uint32 = 1

// LocalHttpResponse is a response a filter sent with SendHttpResponse.
type LocalHttpResponse struct { //nolint:revive // SDK name.
	StatusCode       uint32
	StatusCodeDetail string
	Data             []byte
	Headers          [][2]string
	GRPCStatus       int32
}

// HttpCalloutAttribute describes a DispatchHttpCall the filter made.
type HttpCalloutAttribute struct { //nolint:revive // SDK name.
	CalloutID     uint32
	ContextID     uint32
	Upstream      string
	Headers       [][2]string
	Trailers      [][2]string
	Body          []byte
	TimeoutMillis uint32
}

type httpStream struct {
	reqHeaders, respHeaders     [][2]string
	reqTrailers, respTrailers   [][2]string
	reqBody, respBody           []byte
	reqBuffering, respBuffering bool
	action                      types.Action
	local                       *LocalHttpResponse
	resumedReq, resumedResp     int
	closedReq, closedResp       bool
	done                        bool
}

type metric struct {
	name   string
	typ    abi.MetricType
	value  uint64 // counter, or gauge as two's complement
	values []uint64
}

type sharedValue struct {
	data []byte
	cas  uint32
}

type queue struct {
	vmID, name string
	items      [][]byte
}

type callResponse struct {
	headers, trailers [][2]string
	body              []byte
}

// HostEmulator is the fake host. Create it with NewHostEmulator; it is not
// safe for concurrent use (neither is a wasm instance).
type HostEmulator struct {
	opt *EmulatorOption
	s   *abi.State // the guest's registry: the VM of this emulator

	nextID    uint32
	effective uint32
	streams   map[uint32]*httpStream

	logs        map[LogLevel][]string
	tickPeriod  uint32
	pluginDone  bool
	properties  map[string][]byte
	shared      map[string]*sharedValue
	queues      map[uint32]*queue
	metrics     map[uint32]*metric
	foreign     map[string]func([]byte) []byte
	nextCallout uint32
	callouts    []HttpCalloutAttribute
	callResp    *callResponse
}

// NewHostEmulator returns a fresh host with the filter's registry reset and
// installed. Call reset when done (defer it): it frees the registry for the
// next emulator.
func NewHostEmulator(opt *EmulatorOption) (host *HostEmulator, reset func()) {
	if opt == nil {
		opt = NewEmulatorOption()
	}
	h := &HostEmulator{
		opt:        opt,
		nextID:     RootContextID + 1,
		effective:  RootContextID,
		streams:    map[uint32]*httpStream{},
		logs:       map[LogLevel][]string{},
		properties: map[string][]byte{},
		shared:     map[string]*sharedValue{},
		queues:     map[uint32]*queue{},
		metrics:    map[uint32]*metric{},
		foreign:    map[string]func([]byte) []byte{},
	}
	for k, v := range opt.properties {
		h.properties[k] = bytes.Clone(v)
	}
	h.s = abi.NewState((*hostcalls)(h))
	if opt.newVMContext != nil {
		h.s.SetVMContext(opt.newVMContext(h.VM()))
	}
	return h, func() {
		// The VM is the emulator's own: dropping it frees the contexts.
		h.s = abi.NewState(nil)
	}
}

// VM returns the emulator's VM, the handle the filter's contexts make their
// hostcalls through; a test can make hostcalls with it too.
func (h *HostEmulator) VM() *proxywasm.VM { return (*proxywasm.VM)(h.s) }

// run makes id the effective context for the duration of f, as a host does
// around a callback.
func (h *HostEmulator) run(id uint32, f func()) {
	prev := h.effective
	h.effective = id
	defer func() { h.effective = prev }()
	f()
}

// ---- lifecycle ----

// StartVM creates the plugin context (proxy_on_context_create) and calls
// proxy_on_vm_start with the VM configuration's size.
func (h *HostEmulator) StartVM() types.OnVMStartStatus {
	var ok bool
	h.run(RootContextID, func() {
		h.s.OnContextCreate(RootContextID, 0)
		ok = h.s.OnVMStart(RootContextID, len(h.opt.vmConfig))
	})
	return types.OnVMStartStatus(ok)
}

// StartPlugin calls proxy_on_configure with the plugin configuration's size.
func (h *HostEmulator) StartPlugin() types.OnPluginStartStatus {
	var ok bool
	h.run(RootContextID, func() { ok = h.s.OnConfigure(RootContextID, len(h.opt.pluginConfig)) })
	return types.OnPluginStartStatus(ok)
}

// FinishVM calls proxy_on_done on the plugin context and, when it answers
// true, proxy_on_log and proxy_on_delete. It returns proxy_on_done's answer.
func (h *HostEmulator) FinishVM() bool {
	var done bool
	h.run(RootContextID, func() {
		done = h.s.OnDone(RootContextID)
		if done {
			h.s.OnLog(RootContextID)
			h.s.OnDelete(RootContextID)
		}
	})
	return done
}

// IsPluginDone reports whether the filter called proxywasm.PluginDone.
func (h *HostEmulator) IsPluginDone() bool { return h.pluginDone }

// Tick calls proxy_on_tick, as the host does every tick period.
func (h *HostEmulator) Tick() { h.run(RootContextID, func() { h.s.OnTick(RootContextID) }) }

// GetTickPeriod returns the last period set with SetTickPeriodMilliSeconds.
func (h *HostEmulator) GetTickPeriod() uint32 { return h.tickPeriod }

// ---- HTTP streams ----

// InitializeHttpContext creates a stream context (proxy_on_context_create
// under the plugin context) and returns its id.
func (h *HostEmulator) InitializeHttpContext() (contextID uint32) {
	id := h.nextID
	h.nextID++
	h.streams[id] = &httpStream{}
	h.run(id, func() { h.s.OnContextCreate(id, RootContextID) })
	return id
}

func (h *HostEmulator) stream(id uint32) *httpStream {
	s := h.streams[id]
	if s == nil {
		panic(fmt.Sprintf("proxytest: unknown http context %d: create it with InitializeHttpContext", id))
	}
	return s
}

// CallOnRequestHeaders sets the request headers (names lower-cased) and calls
// proxy_on_request_headers.
func (h *HostEmulator) CallOnRequestHeaders(contextID uint32, headers [][2]string, endOfStream bool) types.Action {
	s := h.stream(contextID)
	s.reqHeaders = lowerKeys(headers)
	h.run(contextID, func() { s.action = h.s.OnRequestHeaders(contextID, len(headers), endOfStream) })
	return s.action
}

// CallOnRequestBody delivers a request body frame and calls
// proxy_on_request_body. As in Envoy, when the previous body callback paused
// (buffering), the frame is appended to the buffered body and the callback
// sees the whole buffer; otherwise the buffer is the frame alone.
func (h *HostEmulator) CallOnRequestBody(contextID uint32, body []byte, endOfStream bool) types.Action {
	s := h.stream(contextID)
	return h.deliverBody(contextID, s, &s.reqBody, &s.reqBuffering, body, func() types.Action {
		return h.s.OnRequestBody(contextID, len(s.reqBody), endOfStream)
	})
}

// deliverBody puts a body frame in buf (appended while the previous body
// callback paused, alone otherwise), runs call and records whether the
// filter now buffers.
func (h *HostEmulator) deliverBody(contextID uint32, s *httpStream, buf *[]byte, buffering *bool, body []byte, call func() types.Action) types.Action {
	if *buffering {
		*buf = append(*buf, body...)
	} else {
		*buf = bytes.Clone(body)
	}
	h.run(contextID, func() { s.action = call() })
	*buffering = s.action == types.ActionPause
	return s.action
}

// CallOnRequestTrailers sets the request trailers and calls
// proxy_on_request_trailers.
func (h *HostEmulator) CallOnRequestTrailers(contextID uint32, trailers [][2]string) types.Action {
	s := h.stream(contextID)
	s.reqTrailers = lowerKeys(trailers)
	h.run(contextID, func() { s.action = h.s.OnRequestTrailers(contextID, len(trailers)) })
	return s.action
}

// CallOnResponseHeaders sets the response headers and calls
// proxy_on_response_headers.
func (h *HostEmulator) CallOnResponseHeaders(contextID uint32, headers [][2]string, endOfStream bool) types.Action {
	s := h.stream(contextID)
	s.respHeaders = lowerKeys(headers)
	h.run(contextID, func() { s.action = h.s.OnResponseHeaders(contextID, len(headers), endOfStream) })
	return s.action
}

// CallOnResponseBody delivers a response body frame; see CallOnRequestBody.
func (h *HostEmulator) CallOnResponseBody(contextID uint32, body []byte, endOfStream bool) types.Action {
	s := h.stream(contextID)
	return h.deliverBody(contextID, s, &s.respBody, &s.respBuffering, body, func() types.Action {
		return h.s.OnResponseBody(contextID, len(s.respBody), endOfStream)
	})
}

// CallOnResponseTrailers sets the response trailers and calls
// proxy_on_response_trailers.
func (h *HostEmulator) CallOnResponseTrailers(contextID uint32, trailers [][2]string) types.Action {
	s := h.stream(contextID)
	s.respTrailers = lowerKeys(trailers)
	h.run(contextID, func() { s.action = h.s.OnResponseTrailers(contextID, len(trailers)) })
	return s.action
}

// CompleteHttpContext ends the stream: proxy_on_done, proxy_on_log (the
// filter's OnHttpStreamDone) and proxy_on_delete. Headers stay readable.
func (h *HostEmulator) CompleteHttpContext(contextID uint32) {
	s := h.stream(contextID)
	h.run(contextID, func() {
		h.s.OnDone(contextID)
		h.s.OnLog(contextID)
		h.s.OnDelete(contextID)
	})
	s.done = true
}

// GetCurrentHttpStreamAction returns the action of the last callback of the
// stream, or ActionContinue after the filter resumed it.
func (h *HostEmulator) GetCurrentHttpStreamAction(contextID uint32) types.Action {
	return h.stream(contextID).action
}

// GetCurrentRequestHeaders returns the request headers as the filter left them.
func (h *HostEmulator) GetCurrentRequestHeaders(contextID uint32) [][2]string {
	return slices.Clone(h.stream(contextID).reqHeaders)
}

// GetCurrentResponseHeaders returns the response headers as the filter left them.
func (h *HostEmulator) GetCurrentResponseHeaders(contextID uint32) [][2]string {
	return slices.Clone(h.stream(contextID).respHeaders)
}

// GetCurrentRequestTrailers returns the request trailers as the filter left them.
func (h *HostEmulator) GetCurrentRequestTrailers(contextID uint32) [][2]string {
	return slices.Clone(h.stream(contextID).reqTrailers)
}

// GetCurrentResponseTrailers returns the response trailers as the filter left them.
func (h *HostEmulator) GetCurrentResponseTrailers(contextID uint32) [][2]string {
	return slices.Clone(h.stream(contextID).respTrailers)
}

// GetCurrentRequestBody returns the request body buffer as the filter left it.
func (h *HostEmulator) GetCurrentRequestBody(contextID uint32) []byte {
	return bytes.Clone(h.stream(contextID).reqBody)
}

// GetCurrentResponseBody returns the response body buffer as the filter left it.
func (h *HostEmulator) GetCurrentResponseBody(contextID uint32) []byte {
	return bytes.Clone(h.stream(contextID).respBody)
}

// GetSentLocalResponse returns the response the filter sent with
// SendHttpResponse, or nil.
func (h *HostEmulator) GetSentLocalResponse(contextID uint32) *LocalHttpResponse {
	return h.stream(contextID).local
}

// GetResumeCount returns how many times the filter resumed the request and
// the response (ResumeHttpRequest, ResumeHttpResponse).
func (h *HostEmulator) GetResumeCount(contextID uint32) (request, response int) {
	s := h.stream(contextID)
	return s.resumedReq, s.resumedResp
}

// IsStreamClosed reports whether the filter closed the request or response
// side (CloseHttpRequest, CloseHttpResponse).
func (h *HostEmulator) IsStreamClosed(contextID uint32) (request, response bool) {
	s := h.stream(contextID)
	return s.closedReq, s.closedResp
}

// ---- logs ----

// GetLogs returns the messages logged at level, oldest first.
func (h *HostEmulator) GetLogs(level LogLevel) []string { return slices.Clone(h.logs[level]) }

// GetTraceLogs returns the messages logged at trace level.
func (h *HostEmulator) GetTraceLogs() []string { return h.GetLogs(abi.LogTrace) }

// GetDebugLogs returns the messages logged at debug level.
func (h *HostEmulator) GetDebugLogs() []string { return h.GetLogs(abi.LogDebug) }

// GetInfoLogs returns the messages logged at info level.
func (h *HostEmulator) GetInfoLogs() []string { return h.GetLogs(abi.LogInfo) }

// GetWarnLogs returns the messages logged at warn level.
func (h *HostEmulator) GetWarnLogs() []string { return h.GetLogs(abi.LogWarn) }

// GetErrorLogs returns the messages logged at error level.
func (h *HostEmulator) GetErrorLogs() []string { return h.GetLogs(abi.LogError) }

// GetCriticalLogs returns the messages logged at critical level.
func (h *HostEmulator) GetCriticalLogs() []string { return h.GetLogs(abi.LogCritical) }

// ---- HTTP callouts ----

// GetCalloutAttributesFromContext returns the calls dispatched from
// contextID that have not been answered yet.
func (h *HostEmulator) GetCalloutAttributesFromContext(contextID uint32) []HttpCalloutAttribute {
	var out []HttpCalloutAttribute
	for _, c := range h.callouts {
		if c.ContextID == contextID {
			out = append(out, c)
		}
	}
	return out
}

// GetCallouts returns every dispatched call not answered yet.
func (h *HostEmulator) GetCallouts() []HttpCalloutAttribute { return slices.Clone(h.callouts) }

// CallOnHttpCallResponse answers callout calloutID: it calls
// proxy_on_http_call_response, during which the filter reads headers, body
// and trailers with GetHttpCallResponse*. Pass nil headers to emulate a
// failed call (reset or timeout), as Envoy does.
func (h *HostEmulator) CallOnHttpCallResponse(calloutID uint32, headers, trailers [][2]string, body []byte) {
	i := slices.IndexFunc(h.callouts, func(c HttpCalloutAttribute) bool { return c.CalloutID == calloutID })
	if i < 0 {
		panic(fmt.Sprintf("proxytest: no pending callout %d", calloutID))
	}
	h.callouts = slices.Delete(h.callouts, i, i+1)
	h.callResp = &callResponse{headers: lowerKeys(headers), trailers: lowerKeys(trailers), body: bytes.Clone(body)}
	defer func() { h.callResp = nil }()
	h.run(RootContextID, func() {
		h.s.OnHTTPCallResponse(RootContextID, calloutID, len(headers), len(body), len(trailers))
	})
}

// ---- properties, shared data, queues, metrics, foreign functions ----

// GetPropertyValue returns the property at path as the filter (or the
// option) left it.
func (h *HostEmulator) GetPropertyValue(path []string) ([]byte, bool) {
	v, ok := h.properties[propertyKey(path)]
	return bytes.Clone(v), ok
}

// GetSharedDataValue returns the shared value under key and its CAS.
func (h *HostEmulator) GetSharedDataValue(key string) (value []byte, cas uint32, ok bool) {
	v := h.shared[key]
	if v == nil {
		return nil, 0, false
	}
	return bytes.Clone(v.data), v.cas, true
}

// PutSharedData stores a shared value as another VM would (bumping the CAS).
func (h *HostEmulator) PutSharedData(key string, value []byte) {
	(*hostcalls)(h).SetSharedData(key, value, 0)
}

// GetQueueSize returns the number of items in queue queueID (-1 if unknown).
func (h *HostEmulator) GetQueueSize(queueID uint32) int {
	q := h.queues[queueID]
	if q == nil {
		return -1
	}
	return len(q.items)
}

// EnqueueToQueue appends data to the queue vmID/name as another VM would and
// returns its id; it does not call OnQueueReady (use CallOnQueueReady).
func (h *HostEmulator) EnqueueToQueue(vmID, name string, data []byte) (uint32, bool) {
	for id, q := range h.queues {
		if q.vmID == vmID && q.name == name {
			q.items = append(q.items, bytes.Clone(data))
			return id, true
		}
	}
	return 0, false
}

// CallOnQueueReady calls proxy_on_queue_ready for queueID, as the host does
// after an enqueue.
func (h *HostEmulator) CallOnQueueReady(queueID uint32) {
	h.run(RootContextID, func() { h.s.OnQueueReady(RootContextID, queueID) })
}

func (h *HostEmulator) metricByName(name string, t abi.MetricType) (*metric, error) {
	for _, m := range h.metrics {
		if m.name == name {
			if m.typ != t {
				return nil, fmt.Errorf("metric %q has type %d, not %d", name, m.typ, t)
			}
			return m, nil
		}
	}
	return nil, fmt.Errorf("metric %q is not defined", name)
}

// GetCounterMetric returns the value of counter name.
func (h *HostEmulator) GetCounterMetric(name string) (uint64, error) {
	m, err := h.metricByName(name, abi.MetricCounter)
	if err != nil {
		return 0, err
	}
	return m.value, nil
}

// GetGaugeMetric returns the value of gauge name.
func (h *HostEmulator) GetGaugeMetric(name string) (int64, error) {
	m, err := h.metricByName(name, abi.MetricGauge)
	if err != nil {
		return 0, err
	}
	return int64(m.value), nil
}

// GetHistogramMetric returns every value recorded in histogram name.
func (h *HostEmulator) GetHistogramMetric(name string) ([]uint64, error) {
	m, err := h.metricByName(name, abi.MetricHistogram)
	if err != nil {
		return nil, err
	}
	return slices.Clone(m.values), nil
}

// RegisterForeignFunction makes f callable with proxywasm.CallForeignFunction.
func (h *HostEmulator) RegisterForeignFunction(name string, f func([]byte) []byte) {
	h.foreign[name] = f
}

// ---- helpers ----

func propertyKey(path []string) string { return strings.Join(path, "\x00") }

func lowerKeys(m [][2]string) [][2]string {
	out := make([][2]string, len(m))
	for i, p := range m {
		out[i] = [2]string{strings.ToLower(p[0]), p[1]}
	}
	return out
}
