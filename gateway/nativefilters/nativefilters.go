// Package nativefilters links Meshwarden's built-in filters (dye, audit,
// trace) into the gateway, for native execution: the gateway's wasm host
// runs a module natively when its sha256 is the official build of the same
// source (filters/official.sha256, embedded), and in wazero otherwise.
//
// The official hashes come from a reproducible build (make filters:
// -trimpath -buildvcs=false), so the same source and Go toolchain give the
// same bytes on any machine; filters.TestOfficialSHA256 fails while the
// recorded hashes are stale. A module built from other source, by another
// toolchain or with other flags has another sha256 and simply runs as wasm:
// the selection can only ever pick the Go code the module was built from.
package nativefilters

import (
	"fmt"

	"github.com/meshwarden/meshwarden/filters"
	"github.com/meshwarden/meshwarden/filters/audit"
	"github.com/meshwarden/meshwarden/filters/dye"
	"github.com/meshwarden/meshwarden/filters/proxywasm/nullvm"
	"github.com/meshwarden/meshwarden/filters/trace"
	"github.com/meshwarden/meshwarden/gateway/wasmhost"
)

// Constructors returns the VM context constructor of each built-in filter,
// by name.
func Constructors() map[string]nullvm.NewVMContext {
	return map[string]nullvm.NewVMContext{
		"dye":   dye.NewVMContext,
		"audit": audit.NewVMContext,
		"trace": trace.NewVMContext,
	}
}

// Builtin returns the built-in filters with the sha256 of their official
// builds, for wasmhost.RuntimeConfig.Native. Every filter of filters.Order()
// must have a constructor and a recorded hash.
func Builtin() ([]wasmhost.NativeFilter, error) {
	o, err := filters.OfficialBuilds()
	if err != nil {
		return nil, fmt.Errorf("native filters: %w", err)
	}
	ctors := Constructors()
	var out []wasmhost.NativeFilter
	for _, name := range filters.Order() {
		sum, ctor := o.SHA256[name], ctors[name]
		if sum == "" || ctor == nil {
			return nil, fmt.Errorf("native filters: filter %q of filters/order.txt has no official sha256 or no constructor: run make filters-sha256 and add it to gateway/nativefilters", name)
		}
		out = append(out, wasmhost.NativeFilter{Name: name, SHA256: sum, New: ctor})
	}
	return out, nil
}
