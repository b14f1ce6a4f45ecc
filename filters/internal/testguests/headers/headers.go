// Package headers is a small example filter that edits headers: it stamps
// every request with x-mw-filter (and the request's path length in
// x-mw-path-len), removes x-mw-remove, and adds x-mw-served-by to every
// response. The host's benchmarks use it as "a small header filter"; its
// logic is here, in plain Go, so it is unit-tested natively through
// proxytest, and filters/internal/testguests/headers/wasm is the module's main package.
package headers

import (
	"strconv"

	"github.com/meshwarden/meshwarden/filters/proxywasm"
)

// Header names the filter reads and writes.
const (
	HeaderStamp    = "x-mw-filter"
	HeaderPathLen  = "x-mw-path-len"
	HeaderRemove   = "x-mw-remove"
	HeaderServedBy = "x-mw-served-by"
)

// NewVMContext returns the filter's VMContext, whose contexts make their
// hostcalls through vm.
func NewVMContext(vm *proxywasm.VM) proxywasm.VMContext { return &VM{vm: vm} }

// VM is the filter's VMContext.
type VM struct {
	proxywasm.DefaultVMContext
	vm *proxywasm.VM
}

// NewPluginContext returns the plugin context.
func (v *VM) NewPluginContext(uint32) proxywasm.PluginContext {
	return &plugin{vm: v.vm, name: "headers"}
}

type plugin struct {
	proxywasm.DefaultPluginContext
	vm   *proxywasm.VM
	name string
}

// OnPluginStart reads the optional plugin configuration: the value stamped
// into x-mw-filter and x-mw-served-by (default "headers").
func (p *plugin) OnPluginStart(size int) proxywasm.OnPluginStartStatus {
	if size == 0 {
		return proxywasm.OnPluginStartStatusOK
	}
	cfg, err := p.vm.GetPluginConfiguration()
	if err != nil {
		p.vm.LogCritical("headers: read plugin configuration: " + err.Error())
		return proxywasm.OnPluginStartStatusFailed
	}
	p.name = string(cfg)
	return proxywasm.OnPluginStartStatusOK
}

func (p *plugin) NewHttpContext(uint32) proxywasm.HttpContext { return &stream{vm: p.vm, name: p.name} }

type stream struct {
	proxywasm.DefaultHttpContext
	vm   *proxywasm.VM
	name string
}

func (s *stream) OnHttpRequestHeaders(int, bool) proxywasm.Action {
	_ = s.vm.ReplaceHttpRequestHeader(HeaderStamp, s.name)
	_ = s.vm.RemoveHttpRequestHeader(HeaderRemove)
	if path, err := s.vm.GetHttpRequestHeader(":path"); err == nil {
		_ = s.vm.ReplaceHttpRequestHeader(HeaderPathLen, strconv.Itoa(len(path)))
	}
	return proxywasm.ActionContinue
}

func (s *stream) OnHttpResponseHeaders(int, bool) proxywasm.Action {
	_ = s.vm.AddHttpResponseHeader(HeaderServedBy, s.name)
	return proxywasm.ActionContinue
}

// Interface guards.
var (
	_ proxywasm.VMContext     = (*VM)(nil)
	_ proxywasm.PluginContext = (*plugin)(nil)
	_ proxywasm.HttpContext   = (*stream)(nil)
)
