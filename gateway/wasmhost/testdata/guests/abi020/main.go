//go:build wasip1

// Command abi020 is a proxy-wasm 0.2.0 guest with a malloc allocator (no
// proxy_on_memory_allocate), as older SDKs build them, that also imports WASI
// under the old wasi_unstable name.
package main

import (
	"encoding/hex"
	"strconv"
	"unsafe"

	g "github.com/meshwarden/meshwarden/gateway/wasmhost/testdata/guests/guestabi"
)

func main() {}

//go:wasmimport wasi_unstable random_get
func randomGet(p, n uint32) uint32

//go:wasmimport env proxy_continue_request
func continueRequest() uint32

//go:wasmimport env proxy_continue_response
func continueResponse() uint32

var inResponse = map[uint32]bool{}

var callers = map[uint32]uint32{}

//go:wasmexport proxy_abi_version_0_2_0
func abiVersion() {}

//go:wasmexport malloc
func malloc(size uint32) uint32 { return g.Alloc(size) }

//go:wasmexport proxy_on_context_create
func onContextCreate(id, parent uint32) { g.Unpin() }

//go:wasmexport proxy_on_request_headers
func onRequestHeaders(ctx, n, eos uint32) uint32 {
	g.Unpin()
	var buf [8]byte
	st := randomGet(uint32(uintptr(unsafe.Pointer(&buf[0]))), 8)
	g.AddHeader(g.RequestHeaders, "x-random", strconv.Itoa(int(st))+":"+hex.EncodeToString(buf[:]))
	tok, s := g.HTTPCall("upstream", [][2]string{{":method", "GET"}, {":path", "/abi020"}, {":authority", "u"}}, "", 1000)
	if s != g.OK {
		g.AddHeader(g.RequestHeaders, "x-call", "dispatch "+strconv.Itoa(int(s)))
		return 0
	}
	callers[tok] = ctx
	return 1
}

//go:wasmexport proxy_on_http_call_response
func onHTTPCallResponse(root, token, nh, size, nt uint32) {
	g.Unpin()
	ctx := callers[token]
	delete(callers, token)
	st, _ := g.Header(g.CallHeaders, ":status")
	g.SetEffectiveContext(ctx)
	if inResponse[ctx] {
		g.AddHeader(g.ResponseHeaders, "x-call", st)
		continueResponse()
		return
	}
	g.AddHeader(g.RequestHeaders, "x-call", st)
	continueRequest()
}

//go:wasmexport proxy_on_response_headers
func onResponseHeaders(ctx, n, eos uint32) uint32 {
	g.Unpin()
	tok, s := g.HTTPCall("upstream", [][2]string{{":method", "GET"}, {":path", "/abi020-resp"}, {":authority", "u"}}, "", 1000)
	if s != g.OK {
		return 0
	}
	callers[tok] = ctx
	inResponse[ctx] = true
	return 1
}

//go:wasmexport proxy_on_delete
func onDelete(ctx uint32) { delete(inResponse, ctx) }
