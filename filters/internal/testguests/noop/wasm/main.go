// Command noop is the smallest Meshwarden proxy-wasm filter: every callback
// continues. The host's benchmarks use it to measure the cost of the ABI
// itself. Build it with
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o noop.wasm ./filters/internal/testguests/noop/wasm
package main

import "github.com/meshwarden/meshwarden/filters/proxywasm"

func main() {}

func init() { proxywasm.SetVMContext(&vmContext{}) }

type vmContext struct{ proxywasm.DefaultVMContext }

func (*vmContext) NewPluginContext(uint32) proxywasm.PluginContext { return &pluginContext{} }

type pluginContext struct{ proxywasm.DefaultPluginContext }

func (*pluginContext) NewHttpContext(uint32) proxywasm.HttpContext {
	return &proxywasm.DefaultHttpContext{}
}

// Interface guards.
var (
	_ proxywasm.VMContext     = (*vmContext)(nil)
	_ proxywasm.PluginContext = (*pluginContext)(nil)
)
