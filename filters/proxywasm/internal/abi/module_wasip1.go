//go:build wasip1

package abi

// module is the registry of this wasm module (see State): the exports
// dispatch into it and the imports' return slots live in it.
var module = NewState(wasmHost{})

// Module returns the registry of this wasm module.
func Module() *State { return module }
