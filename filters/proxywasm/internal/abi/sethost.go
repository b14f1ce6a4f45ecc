package abi

// SetHost installs h as the host of every hostcall and resets the registry
// (contexts, callouts, pinned memory). It is for package proxytest, which
// runs filters natively; a wasm module's host is its imports and nothing in
// a module calls SetHost. The returned function restores an empty registry
// with the build's default host.
//
// SetHost compiles under wasip1 too, so that filter packages whose tests use
// proxytest still vet and build for GOOS=wasip1.
func SetHost(h Host) (reset func()) {
	vm = newState()
	vm.host = h
	return func() { vm = newState() }
}
