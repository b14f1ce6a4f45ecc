package nullvm_test

import (
	"fmt"

	"github.com/meshwarden/meshwarden/filters/proxywasm"
	"github.com/meshwarden/meshwarden/filters/proxywasm/nullvm"
)

// host is a minimal Host: one request header map and a log. The embedded
// nil Host makes every other hostcall panic, which this example never makes.
type host struct {
	nullvm.Host
	headers map[string]string
}

func (h *host) Log(l nullvm.LogLevel, msg string) nullvm.Status {
	fmt.Println(l, msg)
	return nullvm.StatusOK
}

func (h *host) GetHeaderMapValue(_ nullvm.MapType, key string) (string, nullvm.Status) {
	v, ok := h.headers[key]
	if !ok {
		return "", nullvm.StatusNotFound
	}
	return v, nullvm.StatusOK
}

func (h *host) ReplaceHeaderMapValue(_ nullvm.MapType, key, value string) nullvm.Status {
	h.headers[key] = value
	return nullvm.StatusOK
}

// laneFilter copies x-user into x-lane: a filter as any built-in one,
// written against proxywasm.
type laneFilter struct {
	proxywasm.DefaultVMContext
	vm *proxywasm.VM
}

func (f *laneFilter) NewPluginContext(uint32) proxywasm.PluginContext { return &lanePlugin{vm: f.vm} }

type lanePlugin struct {
	proxywasm.DefaultPluginContext
	vm *proxywasm.VM
}

func (p *lanePlugin) OnPluginStart(int) proxywasm.OnPluginStartStatus {
	p.vm.LogInfo("lane filter started")
	return proxywasm.OnPluginStartStatusOK
}

func (p *lanePlugin) NewHttpContext(uint32) proxywasm.HttpContext { return &laneStream{vm: p.vm} }

type laneStream struct {
	proxywasm.DefaultHttpContext
	vm *proxywasm.VM
}

func (s *laneStream) OnHttpRequestHeaders(int, bool) proxywasm.Action {
	u, _ := s.vm.GetHttpRequestHeader("x-user")
	_ = s.vm.ReplaceHttpRequestHeader("x-lane", "lane-of-"+u)
	return proxywasm.ActionContinue
}

// A host drives a native VM as it drives a wasm module's exports. Two VMs
// of one filter share nothing.
func Example() {
	h1 := &host{headers: map[string]string{"x-user": "ana"}}
	h2 := &host{headers: map[string]string{"x-user": "bo"}}
	newCtx := func(vm *proxywasm.VM) proxywasm.VMContext { return &laneFilter{vm: vm} }
	for _, h := range []*host{h1, h2} {
		vm := nullvm.New(h, newCtx)
		vm.OnContextCreate(1, 0) // the plugin (root) context
		vm.OnVMStart(1, 0)
		vm.OnConfigure(1, 0)
		vm.OnContextCreate(2, 1) // a stream
		vm.OnRequestHeaders(2, len(h.headers), true)
		vm.OnDelete(2)
	}
	fmt.Println(h1.headers["x-lane"], h2.headers["x-lane"])
	// Output:
	// info lane filter started
	// info lane filter started
	// lane-of-ana lane-of-bo
}
