//go:build !wasip1

package abi

// SetHost installs h as the host of every hostcall and resets the registry
// (contexts, callouts, pinned memory). It exists only in native builds, for
// package proxytest; in a wasm module the host is the wasm imports. The
// returned function restores an empty registry with no host.
func SetHost(h Host) (reset func()) {
	vm = newState()
	vm.host = h
	return func() { vm = newState() }
}

// defaultHost is the host of a native build until SetHost: every hostcall
// fails with StatusInternalFailure.
func defaultHost() Host { return unsetHost{} }
