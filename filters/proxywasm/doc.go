// Package proxywasm is Meshwarden's proxy-wasm guest ABI (version 0.2.1) for
// the standard Go toolchain. A filter is a main package that calls
// SetVMContext(newVMContext(ModuleVM())) from an init function and is built
// with
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o filter.wasm ./filters/NAME/wasm
//
// A c-shared (reactor) module runs package initialisation in _initialize but
// never calls main, so SetVMContext belongs in init; main stays empty.
//
// The module then exports every proxy_on_* callback of ABI 0.2.1 (through
// //go:wasmexport) and imports the hostcalls from module "env" (through
// //go:wasmimport env proxy_*). It runs in Meshwarden's gateway
// (gateway/wasmhost) and in Envoy builds whose proxy-wasm-cpp-host supports
// standard-Go guests.
//
// The API mirrors github.com/tetratelabs/proxy-wasm-go-sdk so filter authors
// feel at home: the contexts (VMContext → PluginContext → HttpContext), the
// Default* embeddable no-op contexts, Action, and the hostcall errors are the
// SDK's own types from its proxywasm/types package, re-exported here as
// aliases; the hostcalls are methods of VM with the SDK's function names and
// signatures.
//
// # Why not the SDK's ABI layer
//
// proxy-wasm-go-sdk v0.24.0 (the only version the module proxy serves) declares
// its hostcalls with TinyGo's //export convention and compiles them only under
// the tinygo build tag. With the standard toolchain a plugin built on it links
// without error but exports and imports nothing; TinyGo is not available here.
// Its types package is plain Go, so it is reused; the ABI layer is this
// package (and its internal/abi).
//
// # Rules for filters
//
//   - No goroutines, timers or blocking calls: an instance is single-threaded
//     and the host calls in only for events.
//   - Byte slices and strings returned by hostcalls belong to the caller.
//   - Memory handed to the host (proxy_on_memory_allocate) stays alive at
//     least until the current callback returns; small buffers are carved
//     from a per-VM arena chunk (no Go allocation per value), are written
//     once and never handed out again. Filters need do nothing.
//   - A panic traps the instance; the host discards it and applies the
//     plugin's fail policy.
//
// # Testing
//
// Natively (without GOOS=wasip1) there are no wasm imports: hostcalls go to
// the host of the VM, a fake one in package proxytest, so filter logic is
// unit-tested with plain go test. See proxytest.NewHostEmulator.
//
// # No global state
//
// Every hostcall is a method of *VM, the handle of one VM (see VM). The
// callback registry (VM context, plugin and stream contexts, pending HTTP
// callouts, pinned memory) is one internal/abi.State per VM. A wasm module
// has exactly one, reached by the exported callbacks, which have no
// receiver; a native build has none at package level: hosts create one per
// instance (package nullvm for the gateway's native execution, proxytest for
// unit tests), so native instances run concurrently.
package proxywasm
