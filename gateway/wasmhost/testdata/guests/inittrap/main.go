//go:build wasip1

// Command inittrap is a proxy-wasm 0.2.1 guest whose package initialisation
// panics: _initialize traps before any proxy-wasm callback.
package main

import g "github.com/meshwarden/meshwarden/gateway/wasmhost/testdata/guests/guestabi"

func main() {}

var table map[string]int

func init() {
	table["boom"] = 1 // nil map write: a Go panic in _initialize
}

//go:wasmexport proxy_abi_version_0_2_1
func abiVersion() {}

//go:wasmexport proxy_on_memory_allocate
func onMemoryAllocate(size uint32) uint32 { return g.Alloc(size) }

//go:wasmexport proxy_on_context_create
func onContextCreate(id, parent uint32) { g.Unpin() }
