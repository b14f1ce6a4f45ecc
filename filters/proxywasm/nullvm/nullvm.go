// Package nullvm runs a proxy-wasm filter written with package proxywasm as
// native Go code behind the same ABI: Envoy's "null VM" idea. A host (the
// gateway's wasmhost, for the built-in filters whose official build it
// recognises) implements Host, creates one VM per instance with New, and
// drives it through the On* methods exactly as it calls a wasm module's
// proxy_on_* exports; the filter's hostcalls come back to the Host.
//
// Header maps, local-reply headers and callout headers cross Host
// serialized (the ABI's header-map encoding), as they cross the wasm
// boundary, so a host can hand them to the very code that serves wasm
// guests.
//
// # Notes
//
//   - A VM is not safe for concurrent use: like a wasm instance it runs one
//     callback at a time. Distinct VMs share nothing (no package-level
//     state), so a host runs as many concurrently as it likes.
//   - A filter that panics panics the calling goroutine: the host must
//     recover and treat it as a trap (discard the VM, apply the fail policy).
//   - Native code cannot be interrupted: a deadline can only be checked
//     when a callback returns. Run only filters you built and trust.
package nullvm

import (
	"github.com/meshwarden/meshwarden/filters/proxywasm"
	"github.com/meshwarden/meshwarden/filters/proxywasm/internal/abi"
	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/types"
)

// Host is every hostcall of ABI 0.2.1 at the level of Go values. Returned
// byte slices belong to the caller (the filter), so a host returns copies.
type Host = abi.Host

// The ABI's value types, as Host's methods take and return them.
type (
	// Status is a proxy_status_t.
	Status = abi.Status
	// MapType is a proxy_map_type_t.
	MapType = abi.MapType
	// BufferType is a proxy_buffer_type_t.
	BufferType = abi.BufferType
	// StreamType is a proxy_stream_type_t.
	StreamType = abi.StreamType
	// MetricType is a proxy_metric_type_t.
	MetricType = abi.MetricType
	// LogLevel is a proxy_log_level_t.
	LogLevel = abi.LogLevel
	// PeerType is the SDK's peer type of the TCP close callbacks.
	PeerType = types.PeerType
)

// Statuses a Host returns most (the full set is the ABI's; see Status.Err).
const (
	StatusOK              = abi.StatusOK
	StatusNotFound        = abi.StatusNotFound
	StatusBadArgument     = abi.StatusBadArgument
	StatusInternalFailure = abi.StatusInternalFailure
)

// NewVMContext is a filter's VM context constructor, e.g. dye.NewVMContext.
type NewVMContext = func(*proxywasm.VM) proxywasm.VMContext

// VM is one native instance of a filter: its own registry of contexts,
// callouts and scratch state, its hostcalls going to its Host.
type VM struct{ s *abi.State }

// New returns a VM whose hostcalls go to h, with the VM context newVMContext
// builds for it. Then start it as a host starts a module:
// OnContextCreate(root, 0), OnVMStart, OnConfigure.
func New(h Host, newVMContext NewVMContext) *VM {
	s := abi.NewState(h)
	s.SetVMContext(newVMContext((*proxywasm.VM)(s)))
	return &VM{s: s}
}

// Handle returns the filter's handle of this VM: hostcalls made with it go
// to the Host (a test, or a host, may make them outside a callback too).
func (v *VM) Handle() *proxywasm.VM { return (*proxywasm.VM)(v.s) }

// OnContextCreate is proxy_on_context_create.
func (v *VM) OnContextCreate(contextID, parentID uint32) { v.s.OnContextCreate(contextID, parentID) }

// OnVMStart is proxy_on_vm_start.
func (v *VM) OnVMStart(rootID uint32, vmConfigSize int) bool {
	return v.s.OnVMStart(rootID, vmConfigSize)
}

// OnConfigure is proxy_on_configure.
func (v *VM) OnConfigure(rootID uint32, pluginConfigSize int) bool {
	return v.s.OnConfigure(rootID, pluginConfigSize)
}

// OnTick is proxy_on_tick.
func (v *VM) OnTick(rootID uint32) { v.s.OnTick(rootID) }

// OnQueueReady is proxy_on_queue_ready.
func (v *VM) OnQueueReady(rootID, queueID uint32) { v.s.OnQueueReady(rootID, queueID) }

// IgnoresResponseBody reports whether the stream's context is a
// proxywasm.ResponseBodyIgnorer ignoring the response body: the host may
// then skip its response body and trailers callbacks.
func (v *VM) IgnoresResponseBody(contextID uint32) bool { return v.s.IgnoresResponseBody(contextID) }

// OnDone is proxy_on_done. Stream contexts are always done; a plugin context
// answers with OnPluginDone (false: it calls PluginDone later).
func (v *VM) OnDone(contextID uint32) bool { return v.s.OnDone(contextID) }

// OnLog is proxy_on_log: the end of a stream, headers still readable.
func (v *VM) OnLog(contextID uint32) { v.s.OnLog(contextID) }

// OnDelete is proxy_on_delete: the context is forgotten.
func (v *VM) OnDelete(contextID uint32) { v.s.OnDelete(contextID) }

// OnRequestHeaders is proxy_on_request_headers.
func (v *VM) OnRequestHeaders(contextID uint32, numHeaders int, endOfStream bool) proxywasm.Action {
	return v.s.OnRequestHeaders(contextID, numHeaders, endOfStream)
}

// OnRequestBody is proxy_on_request_body.
func (v *VM) OnRequestBody(contextID uint32, bodySize int, endOfStream bool) proxywasm.Action {
	return v.s.OnRequestBody(contextID, bodySize, endOfStream)
}

// OnRequestTrailers is proxy_on_request_trailers.
func (v *VM) OnRequestTrailers(contextID uint32, numTrailers int) proxywasm.Action {
	return v.s.OnRequestTrailers(contextID, numTrailers)
}

// OnResponseHeaders is proxy_on_response_headers.
func (v *VM) OnResponseHeaders(contextID uint32, numHeaders int, endOfStream bool) proxywasm.Action {
	return v.s.OnResponseHeaders(contextID, numHeaders, endOfStream)
}

// OnResponseBody is proxy_on_response_body.
func (v *VM) OnResponseBody(contextID uint32, bodySize int, endOfStream bool) proxywasm.Action {
	return v.s.OnResponseBody(contextID, bodySize, endOfStream)
}

// OnResponseTrailers is proxy_on_response_trailers.
func (v *VM) OnResponseTrailers(contextID uint32, numTrailers int) proxywasm.Action {
	return v.s.OnResponseTrailers(contextID, numTrailers)
}

// OnHTTPCallResponse is proxy_on_http_call_response: it runs the callback
// registered for token with the dispatching context made effective again.
// Envoy passes the plugin (root) context, which owns the call; a stream
// context id is accepted too and mapped to its plugin.
func (v *VM) OnHTTPCallResponse(contextID, token uint32, numHeaders, bodySize, numTrailers int) {
	v.s.OnHTTPCallResponse(contextID, token, numHeaders, bodySize, numTrailers)
}

// OnNewConnection is proxy_on_new_connection.
func (v *VM) OnNewConnection(contextID uint32) proxywasm.Action {
	return v.s.OnNewConnection(contextID)
}

// OnDownstreamData is proxy_on_downstream_data.
func (v *VM) OnDownstreamData(contextID uint32, size int, endOfStream bool) proxywasm.Action {
	return v.s.OnDownstreamData(contextID, size, endOfStream)
}

// OnDownstreamConnectionClose is proxy_on_downstream_connection_close.
func (v *VM) OnDownstreamConnectionClose(contextID uint32, peer PeerType) {
	v.s.OnDownstreamConnectionClose(contextID, peer)
}

// OnUpstreamData is proxy_on_upstream_data.
func (v *VM) OnUpstreamData(contextID uint32, size int, endOfStream bool) proxywasm.Action {
	return v.s.OnUpstreamData(contextID, size, endOfStream)
}

// OnUpstreamConnectionClose is proxy_on_upstream_connection_close.
func (v *VM) OnUpstreamConnectionClose(contextID uint32, peer PeerType) {
	v.s.OnUpstreamConnectionClose(contextID, peer)
}
