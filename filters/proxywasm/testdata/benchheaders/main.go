// Command benchheaders does, with package proxywasm, exactly the work of the
// host's raw "headers" test guest (gateway/wasmhost/testdata/guests/headers):
// read x-mw-dye, add x-mw-lane, replace x-mw-seen, add x-mw-filtered to the
// response. BenchmarkABIOverhead compares the two to price the ABI layer.
package main

import "github.com/meshwarden/meshwarden/filters/proxywasm"

func main() {}

func init() { proxywasm.SetVMContext(&vm{}) }

type vm struct{ proxywasm.DefaultVMContext }

func (*vm) NewPluginContext(uint32) proxywasm.PluginContext { return &plugin{} }

type plugin struct{ proxywasm.DefaultPluginContext }

func (*plugin) NewHttpContext(uint32) proxywasm.HttpContext { return &stream{} }

type stream struct{ proxywasm.DefaultHttpContext }

func (*stream) OnHttpRequestHeaders(int, bool) proxywasm.Action {
	lane, err := proxywasm.GetHttpRequestHeader("x-mw-dye")
	if err != nil {
		lane = "stable"
	}
	_ = proxywasm.AddHttpRequestHeader("x-mw-lane", lane)
	_ = proxywasm.ReplaceHttpRequestHeader("x-mw-seen", "1")
	return proxywasm.ActionContinue
}

func (*stream) OnHttpResponseHeaders(int, bool) proxywasm.Action {
	_ = proxywasm.AddHttpResponseHeader("x-mw-filtered", "1")
	return proxywasm.ActionContinue
}
