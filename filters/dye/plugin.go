package dye

import (
	"encoding/binary"
	"math/rand/v2"

	"github.com/meshwarden/meshwarden/filters/dye/dyeconfig"
	"github.com/meshwarden/meshwarden/filters/kit"
	"github.com/meshwarden/meshwarden/filters/proxywasm"
	"github.com/meshwarden/meshwarden/internal/guestcrypto"
)

// propSourcePrinc is the peer identity as Istio-style hosts name it.
var propSourcePrinc = []string{"source", "principal"}

// NewVMContext returns the dye filter's VM context; the wasm main package
// passes it to proxywasm.SetVMContext with proxywasm.ModuleVM(); a native
// host calls it with the VM of each instance.
func NewVMContext(vm *proxywasm.VM) proxywasm.VMContext {
	return kit.NewVMContext(vm, NewPluginContext)
}

// NewPluginContext returns a plugin context of this filter, for modules
// that bundle several filters and pick one by root id.
func NewPluginContext(vm *proxywasm.VM) proxywasm.PluginContext {
	p := &pluginContext{vm: vm, req: kit.HostRequest{Filter: "dye", VM: vm}}
	p.http.p = p
	p.loadAddr = p.loadSourceAddress
	return p
}

type pluginContext struct {
	proxywasm.DefaultPluginContext
	vm     *proxywasm.VM // every hostcall goes through it
	engine *Engine
	rnd    *rand.Rand
	draw   func() uint32 // uniform in [0, 100), from rnd
	// metrics
	dyed, stripped proxywasm.MetricCounter
	// req is the request view of the stream being handled (one at a time:
	// the guest is single-threaded and a callback never yields).
	req kit.HostRequest
	// http is the context of every stream: it keeps no per-stream state.
	http httpContext
	// loadAddr is p.loadSourceAddress, one func value for every request.
	loadAddr func() string
}

// OnPluginStart parses and validates the configuration; a bad one refuses
// the plugin with a log line naming the field.
func (p *pluginContext) OnPluginStart(int) proxywasm.OnPluginStartStatus {
	cfg, ok := kit.LoadConfig(p.vm, "dye", dyeconfig.ParseConfig)
	if !ok {
		return proxywasm.OnPluginStartStatusFailed
	}
	p.engine = NewEngine(cfg)
	var seed [16]byte
	_ = guestcrypto.Read(seed[:])
	p.rnd = rand.New(rand.NewPCG(binary.LittleEndian.Uint64(seed[:8]), binary.LittleEndian.Uint64(seed[8:])))
	p.draw = func() uint32 { return p.rnd.Uint32N(100) }
	p.dyed = p.vm.DefineCounterMetric("mw_dye_dyed_total")
	p.stripped = p.vm.DefineCounterMetric("mw_dye_stripped_total")
	p.vm.LogInfof("dye: started in %s mode with %d rules", cfg.Mode, len(cfg.Rules))
	return proxywasm.OnPluginStartStatusOK
}

// NewHttpContext returns the plugin's one HTTP context: it keeps no
// per-stream state, so every stream shares it.
func (p *pluginContext) NewHttpContext(uint32) proxywasm.HttpContext {
	return &p.http
}

type httpContext struct {
	proxywasm.DefaultHttpContext
	p *pluginContext
}

// OnHttpRequestHeaders decides the lane and writes it to the request
// headers before the router runs, so route matching sees it.
func (h *httpContext) OnHttpRequestHeaders(int, bool) proxywasm.Action {
	d := h.p.engine.Apply(h.p.req.Load(), h.p.peer(), h.p.draw)
	if d.Lane != "" {
		h.p.dyed.Increment(1)
	}
	if d.Stripped {
		h.p.stripped.Increment(1)
	}
	return proxywasm.ActionContinue
}

// peer reads the peer's identity and address from the stream's
// properties, only those the configuration uses (each is a hostcall): the
// URI SAN of the peer certificate (Envoy, the gateway), else
// source.principal (as Istio-style hosts name it); source.address, lazily
// (only when the identity does not already make the peer trusted).
func (p *pluginContext) peer() Peer {
	var peer Peer
	needID, needAddr := p.engine.NeedsPeer()
	if needID {
		if v, err := p.vm.GetPropertyString(kit.PropPeerURISAN); err == nil && v != "" {
			peer.Identity = v
		} else if v, err := p.vm.GetPropertyString(propSourcePrinc); err == nil && v != "" {
			peer.Identity = v
		}
	}
	if needAddr {
		peer.LoadAddress = p.loadAddr // read only if the identity is not trusted
	}
	return peer
}

func (p *pluginContext) loadSourceAddress() string {
	v, _ := p.vm.GetPropertyString(kit.PropSourceAddress)
	return v
}

// IgnoresResponseBody: the dye filter works on request headers only, so a native host
// passes the response body on untouched (proxywasm.ResponseBodyIgnorer).
func (*httpContext) IgnoresResponseBody() bool { return true }

var (
	_ proxywasm.PluginContext       = (*pluginContext)(nil)
	_ proxywasm.HttpContext         = (*httpContext)(nil)
	_ proxywasm.ResponseBodyIgnorer = (*httpContext)(nil)
	_ Request                       = (*kit.HostRequest)(nil)
)
