//go:build wasip1

// Command initloop is a proxy-wasm 0.2.1 guest whose package initialisation
// never ends: _initialize (the reactor's Go runtime and init functions)
// loops, before any proxy-wasm callback.
package main

import g "github.com/meshwarden/meshwarden/gateway/wasmhost/testdata/guests/guestabi"

func main() {}

var sink int

func init() {
	n := 1
	for n > 0 {
		n++
		if n == 0x7fffffff {
			n = 1
		}
	}
	sink = n
}

//go:wasmexport proxy_abi_version_0_2_1
func abiVersion() {}

//go:wasmexport proxy_on_memory_allocate
func onMemoryAllocate(size uint32) uint32 { return g.Alloc(size) }

//go:wasmexport proxy_on_context_create
func onContextCreate(id, parent uint32) { g.Unpin() }
