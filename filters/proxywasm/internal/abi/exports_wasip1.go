//go:build wasip1

package abi

import (
	"unsafe"

	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/types"
)

// The callbacks of ABI 0.2.1, exported to the host. Every module that links
// package proxywasm exports all of them; callbacks for features a filter does
// not use fall through to the Default* contexts.

//go:wasmexport proxy_abi_version_0_2_1
func proxyABIVersion021() {}

//go:wasmexport proxy_on_memory_allocate
func proxyOnMemoryAllocate(size uint32) uint32 {
	b := module.Allocate(size)
	return uint32(uintptr(unsafe.Pointer(unsafe.SliceData(b))))
}

//go:wasmexport proxy_on_context_create
func proxyOnContextCreate(contextID, parentID uint32) { module.OnContextCreate(contextID, parentID) }

//go:wasmexport proxy_on_vm_start
func proxyOnVMStart(rootID, vmConfigSize uint32) uint32 {
	return b2u(module.OnVMStart(rootID, int(vmConfigSize)))
}

//go:wasmexport proxy_on_configure
func proxyOnConfigure(rootID, pluginConfigSize uint32) uint32 {
	return b2u(module.OnConfigure(rootID, int(pluginConfigSize)))
}

//go:wasmexport proxy_on_tick
func proxyOnTick(rootID uint32) { module.OnTick(rootID) }

//go:wasmexport proxy_on_queue_ready
func proxyOnQueueReady(rootID, queueID uint32) { module.OnQueueReady(rootID, queueID) }

//go:wasmexport proxy_on_done
func proxyOnDone(contextID uint32) uint32 { return b2u(module.OnDone(contextID)) }

//go:wasmexport proxy_on_log
func proxyOnLog(contextID uint32) { module.OnLog(contextID) }

//go:wasmexport proxy_on_delete
func proxyOnDelete(contextID uint32) { module.OnDelete(contextID) }

//go:wasmexport proxy_on_request_headers
func proxyOnRequestHeaders(contextID, numHeaders, endOfStream uint32) uint32 {
	return uint32(module.OnRequestHeaders(contextID, int(numHeaders), endOfStream != 0))
}

//go:wasmexport proxy_on_request_body
func proxyOnRequestBody(contextID, bodySize, endOfStream uint32) uint32 {
	return uint32(module.OnRequestBody(contextID, int(bodySize), endOfStream != 0))
}

//go:wasmexport proxy_on_request_trailers
func proxyOnRequestTrailers(contextID, numTrailers uint32) uint32 {
	return uint32(module.OnRequestTrailers(contextID, int(numTrailers)))
}

//go:wasmexport proxy_on_response_headers
func proxyOnResponseHeaders(contextID, numHeaders, endOfStream uint32) uint32 {
	return uint32(module.OnResponseHeaders(contextID, int(numHeaders), endOfStream != 0))
}

//go:wasmexport proxy_on_response_body
func proxyOnResponseBody(contextID, bodySize, endOfStream uint32) uint32 {
	return uint32(module.OnResponseBody(contextID, int(bodySize), endOfStream != 0))
}

//go:wasmexport proxy_on_response_trailers
func proxyOnResponseTrailers(contextID, numTrailers uint32) uint32 {
	return uint32(module.OnResponseTrailers(contextID, int(numTrailers)))
}

//go:wasmexport proxy_on_http_call_response
func proxyOnHTTPCallResponse(rootID, token, numHeaders, bodySize, numTrailers uint32) {
	module.OnHTTPCallResponse(rootID, token, int(numHeaders), int(bodySize), int(numTrailers))
}

//go:wasmexport proxy_on_new_connection
func proxyOnNewConnection(contextID uint32) uint32 { return uint32(module.OnNewConnection(contextID)) }

//go:wasmexport proxy_on_downstream_data
func proxyOnDownstreamData(contextID, size, endOfStream uint32) uint32 {
	return uint32(module.OnDownstreamData(contextID, int(size), endOfStream != 0))
}

//go:wasmexport proxy_on_downstream_connection_close
func proxyOnDownstreamConnectionClose(contextID, peer uint32) {
	module.OnDownstreamConnectionClose(contextID, types.PeerType(peer))
}

//go:wasmexport proxy_on_upstream_data
func proxyOnUpstreamData(contextID, size, endOfStream uint32) uint32 {
	return uint32(module.OnUpstreamData(contextID, int(size), endOfStream != 0))
}

//go:wasmexport proxy_on_upstream_connection_close
func proxyOnUpstreamConnectionClose(contextID, peer uint32) {
	module.OnUpstreamConnectionClose(contextID, types.PeerType(peer))
}

func b2u(b bool) uint32 {
	if b {
		return 1
	}
	return 0
}
