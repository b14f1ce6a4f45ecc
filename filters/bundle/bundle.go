// Package bundle puts the three Meshwarden filters in one proxy-wasm module;
// the plugin's root id ("dye", "audit" or "trace") picks the filter. A host
// then compiles one module for the whole chain, and the three plugins run the
// same machine code, which measured about 3× faster per request than three
// separate modules in the gateway's host (docs/bench/filters.md): the Go
// runtime of each separate module is its own copy of hot code.
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o filters.wasm ./filters/bundle/wasm
package bundle

import (
	"github.com/meshwarden/meshwarden/filters/audit"
	"github.com/meshwarden/meshwarden/filters/dye"
	"github.com/meshwarden/meshwarden/filters/kit"
	"github.com/meshwarden/meshwarden/filters/proxywasm"
	"github.com/meshwarden/meshwarden/filters/trace"
)

// NewVMContext returns the bundle's VM context.
func NewVMContext(vm *proxywasm.VM) proxywasm.VMContext {
	return kit.NewVMContext(vm, func(vm *proxywasm.VM) proxywasm.PluginContext { return &dispatch{vm: vm} })
}

// dispatch becomes the filter its root id names at OnPluginStart and then
// forwards every callback to it.
type dispatch struct {
	proxywasm.PluginContext
	vm *proxywasm.VM
	// recycler is the filter's plugin context as a recycler, or nil.
	recycler proxywasm.HttpContextRecycler
}

// RecycleHttpContext hands a deleted stream's context back to the filter
// when it recycles them.
func (d *dispatch) RecycleHttpContext(h proxywasm.HttpContext) {
	if d.recycler != nil {
		d.recycler.RecycleHttpContext(h)
	}
}

// OnPluginStart picks the filter by the plugin_root_id property.
func (d *dispatch) OnPluginStart(size int) proxywasm.OnPluginStartStatus {
	root, err := d.vm.GetProperty([]string{"plugin_root_id"})
	switch string(root) {
	case "dye":
		d.PluginContext = dye.NewPluginContext(d.vm)
	case "audit":
		d.PluginContext = audit.NewPluginContext(d.vm)
	case "trace":
		d.PluginContext = trace.NewPluginContext(d.vm)
	default:
		d.vm.LogCriticalf("bundle: refusing to start: root_id %q (%v) names no filter: set the plugin's root_id to dye, audit or trace", root, err)
		return proxywasm.OnPluginStartStatusFailed
	}
	d.recycler, _ = d.PluginContext.(proxywasm.HttpContextRecycler)
	return d.PluginContext.OnPluginStart(size)
}

var (
	_ proxywasm.PluginContext       = (*dispatch)(nil)
	_ proxywasm.HttpContextRecycler = (*dispatch)(nil)
)
