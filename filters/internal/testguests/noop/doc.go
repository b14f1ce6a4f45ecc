// Package noop holds the tests of the no-op filter, whose module main package
// is filters/internal/testguests/noop/wasm: the smallest proxy-wasm filter built on package
// proxywasm, every callback continues. The host's benchmarks use it to
// measure the cost of the ABI itself; its tests build it (and the headers
// example) with the standard toolchain and check the module's exports.
package noop
