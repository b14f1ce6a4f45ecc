//go:build !wasip1

package proxywasm

// A native build has no module VM and no package-level hostcalls: no
// process-global state. A host that links a filter natively (package nullvm,
// or proxytest in unit tests) creates one VM per instance and hands it to
// the filter's VM context constructor.

// ModuleVM exists natively only so that a filter's wasm main package
// compiles in a native build (go vet ./...). It panics: natively a filter
// runs in a host, which hands its VM to the filter's constructor.
func ModuleVM() *VM {
	panic("proxywasm: ModuleVM is the VM of a wasm module; natively a host creates one VM per instance (package nullvm, proxytest)")
}

// SetVMContext exists natively only so that a filter's wasm main package
// compiles in a native build. It panics, as ModuleVM does.
func SetVMContext(VMContext) {
	panic("proxywasm: SetVMContext installs the context of a wasm module; natively a host creates one VM per instance (package nullvm, proxytest)")
}
