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

// VM is the filter's VMContext.
type VM struct{ proxywasm.DefaultVMContext }

// NewPluginContext returns the plugin context.
func (*VM) NewPluginContext(uint32) proxywasm.PluginContext { return &plugin{name: "headers"} }

type plugin struct {
	proxywasm.DefaultPluginContext
	name string
}

// OnPluginStart reads the optional plugin configuration: the value stamped
// into x-mw-filter and x-mw-served-by (default "headers").
func (p *plugin) OnPluginStart(size int) proxywasm.OnPluginStartStatus {
	if size == 0 {
		return proxywasm.OnPluginStartStatusOK
	}
	cfg, err := proxywasm.GetPluginConfiguration()
	if err != nil {
		proxywasm.LogCritical("headers: read plugin configuration: " + err.Error())
		return proxywasm.OnPluginStartStatusFailed
	}
	p.name = string(cfg)
	return proxywasm.OnPluginStartStatusOK
}

func (p *plugin) NewHttpContext(uint32) proxywasm.HttpContext { return &stream{name: p.name} }

type stream struct {
	proxywasm.DefaultHttpContext
	name string
}

func (s *stream) OnHttpRequestHeaders(int, bool) proxywasm.Action {
	_ = proxywasm.ReplaceHttpRequestHeader(HeaderStamp, s.name)
	_ = proxywasm.RemoveHttpRequestHeader(HeaderRemove)
	if path, err := proxywasm.GetHttpRequestHeader(":path"); err == nil {
		_ = proxywasm.ReplaceHttpRequestHeader(HeaderPathLen, strconv.Itoa(len(path)))
	}
	return proxywasm.ActionContinue
}

func (s *stream) OnHttpResponseHeaders(int, bool) proxywasm.Action {
	_ = proxywasm.AddHttpResponseHeader(HeaderServedBy, s.name)
	return proxywasm.ActionContinue
}

// Interface guards.
var (
	_ proxywasm.VMContext     = (*VM)(nil)
	_ proxywasm.PluginContext = (*plugin)(nil)
	_ proxywasm.HttpContext   = (*stream)(nil)
)
