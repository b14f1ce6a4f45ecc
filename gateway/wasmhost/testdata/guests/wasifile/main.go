//go:build wasip1

// Command wasifile reads a file with os.ReadFile on every request, so it
// imports wasi_snapshot_preview1.path_open, which Envoy's host does not
// export: it must fail to load under RuntimeConfig.WASI = WASIEnvoy (as in
// Envoy) and load under WASIFull, where the read fails (no preopened
// directory) and the guest adds x-read-error.
package main

import (
	"os"

	g "github.com/meshwarden/meshwarden/gateway/wasmhost/testdata/guests/guestabi"
)

func main() {}

//go:wasmexport proxy_abi_version_0_2_1
func abiVersion() {}

//go:wasmexport proxy_on_memory_allocate
func onMemoryAllocate(size uint32) uint32 { return g.Alloc(size) }

//go:wasmexport proxy_on_context_create
func onContextCreate(id, parent uint32) {}

//go:wasmexport proxy_on_request_headers
func onRequestHeaders(ctx, n, eos uint32) uint32 {
	g.Unpin()
	k, v := "x-read-error", "none"
	if _, err := os.ReadFile("/etc/hostname"); err != nil {
		v = err.Error()
	}
	g.AddHeader(0, k, v)
	return 0
}

//go:wasmexport proxy_on_done
func onDone(ctx uint32) uint32 { return 1 }

//go:wasmexport proxy_on_log
func onLog(ctx uint32) {}

//go:wasmexport proxy_on_delete
func onDelete(ctx uint32) {}
