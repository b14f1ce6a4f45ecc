// Package wasmhost runs proxy-wasm HTTP filters in the Meshwarden gateway:
// a host for the proxy-wasm ABI (0.2.0 and 0.2.1) on wazero in compiler mode,
// following Envoy's semantics so that one module and one
// envoy.extensions.wasm.v3.PluginConfig serve both Envoy and the gateway.
//
// A Runtime compiles modules (once per sha256, with an optional on-disk
// cache) and owns the state Envoy shares between plugins: shared data and
// queues per vm_id, and guest metrics. A Plugin is a module with its
// configuration and a pool of instances; a Stream is one HTTP stream through
// one plugin, holding one instance until Close; a Chain runs several plugins
// in filter order.
//
// # Notes
//
//   - Every callback into a guest has a deadline (PluginConfig.CallTimeout)
//     and every instance a memory limit (RuntimeConfig.MemoryLimitPages). A
//     guest that traps, times out or runs out of memory is discarded and
//     replaced; the request is answered per the plugin's fail policy. The
//     deadline is built into the module: Compile instruments it with a
//     countdown at every loop header that calls the host, which stops an
//     overdue call (wazero's own termination checks, far costlier, are off);
//     modules listed in RuntimeConfig.TrustedSHA256 or run under
//     NoCallDeadline are left as they are and unbounded.
//   - A guest pointer out of bounds fails that hostcall with
//     InvalidMemoryAccess; it never panics the host.
//   - Stream methods must be called from one goroutine at a time, in stream
//     order. Runtime and Plugin are safe for concurrent use.
//
// See README.md for configuration and docs/RATIONALE-wasmhost.md for the
// reasons behind these choices.
package wasmhost
