//go:build wasip1

// Command headers is a small header-editing proxy-wasm 0.2.1 filter: it
// reads a request header, adds one, replaces one and adds a response
// header. Benchmarks use it as the "small header filter".
package main

import g "github.com/meshwarden/meshwarden/gateway/wasmhost/testdata/guests/guestabi"

func main() {}

//go:wasmexport proxy_abi_version_0_2_1
func abiVersion() {}

//go:wasmexport proxy_on_memory_allocate
func onMemoryAllocate(size uint32) uint32 { return g.Alloc(size) }

//go:wasmexport proxy_on_context_create
func onContextCreate(id, parent uint32) { g.Unpin() }

//go:wasmexport proxy_on_request_headers
func onRequestHeaders(ctx, n, eos uint32) uint32 {
	g.Unpin()
	lane, st := g.Header(g.RequestHeaders, "x-mw-dye")
	if st != g.OK {
		lane = "stable"
	}
	g.AddHeader(g.RequestHeaders, "x-mw-lane", lane)
	g.ReplaceHeader(g.RequestHeaders, "x-mw-seen", "1")
	return 0
}

//go:wasmexport proxy_on_response_headers
func onResponseHeaders(ctx, n, eos uint32) uint32 {
	g.Unpin()
	g.AddHeader(g.ResponseHeaders, "x-mw-filtered", "1")
	return 0
}

//go:wasmexport proxy_on_done
func onDone(ctx uint32) uint32 { return 1 }

//go:wasmexport proxy_on_log
func onLog(ctx uint32) {}

//go:wasmexport proxy_on_delete
func onDelete(ctx uint32) {}
