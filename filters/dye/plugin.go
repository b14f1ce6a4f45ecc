package dye

import (
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"math/rand/v2"

	"github.com/meshwarden/meshwarden/filters/proxywasm"
)

// Property paths the filter reads.
var (
	propPeerURISAN  = []string{"connection", "uri_san_peer_certificate"}
	propSourcePrinc = []string{"source", "principal"}
	propSourceAddr  = []string{"source", "address"}
)

// NewVMContext returns the dye filter's VM context; the wasm main package
// passes it to proxywasm.SetVMContext.
func NewVMContext() proxywasm.VMContext { return &vmContext{} }

type vmContext struct {
	proxywasm.DefaultVMContext
}

func (*vmContext) NewPluginContext(uint32) proxywasm.PluginContext {
	return &pluginContext{}
}

type pluginContext struct {
	proxywasm.DefaultPluginContext
	engine *Engine
	rnd    *rand.Rand
	// metrics
	dyed, stripped proxywasm.MetricCounter
}

// OnPluginStart parses and validates the configuration; a bad one refuses
// the plugin with a log line naming the field.
func (p *pluginContext) OnPluginStart(int) proxywasm.OnPluginStartStatus {
	data, err := proxywasm.GetPluginConfiguration()
	if err != nil && !errors.Is(err, proxywasm.ErrNotFound) && !errors.Is(err, proxywasm.ErrEmpty) {
		proxywasm.LogCriticalf("dye: cannot read the plugin configuration: %v", err)
		return proxywasm.OnPluginStartStatusFailed
	}
	cfg, err := ParseConfig(data)
	if err != nil {
		proxywasm.LogCriticalf("dye: refusing to start: %v", err)
		return proxywasm.OnPluginStartStatusFailed
	}
	p.engine = NewEngine(cfg)
	var seed [16]byte
	_, _ = crand.Read(seed[:])
	p.rnd = rand.New(rand.NewPCG(binary.LittleEndian.Uint64(seed[:8]), binary.LittleEndian.Uint64(seed[8:])))
	p.dyed = proxywasm.DefineCounterMetric("mw_dye_dyed_total")
	p.stripped = proxywasm.DefineCounterMetric("mw_dye_stripped_total")
	proxywasm.LogInfof("dye: started in %s mode with %d rules", cfg.Mode, len(cfg.Rules))
	return proxywasm.OnPluginStartStatusOK
}

func (p *pluginContext) NewHttpContext(uint32) proxywasm.HttpContext {
	return &httpContext{p: p}
}

type httpContext struct {
	proxywasm.DefaultHttpContext
	p *pluginContext
}

// OnHttpRequestHeaders decides the lane and writes it to the request
// headers before the router runs, so route matching sees it.
func (h *httpContext) OnHttpRequestHeaders(int, bool) proxywasm.Action {
	d := h.p.engine.Apply(hostRequest{}, peerFromHost(), func() uint32 { return h.p.rnd.Uint32N(100) })
	if d.Lane != "" {
		h.p.dyed.Increment(1)
	}
	if d.Stripped {
		h.p.stripped.Increment(1)
	}
	return proxywasm.ActionContinue
}

// peerFromHost reads the peer's identity and address from the stream's
// properties: the URI SAN of the peer certificate (Envoy, the gateway),
// else source.principal (as Istio-style hosts name it).
func peerFromHost() Peer {
	var p Peer
	if v, err := proxywasm.GetProperty(propPeerURISAN); err == nil && len(v) > 0 {
		p.Identity = string(v)
	} else if v, err := proxywasm.GetProperty(propSourcePrinc); err == nil && len(v) > 0 {
		p.Identity = string(v)
	}
	if v, err := proxywasm.GetProperty(propSourceAddr); err == nil {
		p.Address = string(v)
	}
	return p
}

// hostRequest is the Request of the current stream, through hostcalls.
type hostRequest struct{}

func (hostRequest) Header(name string) (string, bool) {
	v, err := proxywasm.GetHttpRequestHeader(name)
	return v, err == nil && v != ""
}

func (hostRequest) SetHeader(name, value string) {
	if err := proxywasm.ReplaceHttpRequestHeader(name, value); err != nil {
		proxywasm.LogErrorf("dye: cannot set header %s: %v", name, err)
	}
}

func (hostRequest) RemoveHeader(name string) { _ = proxywasm.RemoveHttpRequestHeader(name) }

var (
	_ proxywasm.VMContext     = (*vmContext)(nil)
	_ proxywasm.PluginContext = (*pluginContext)(nil)
	_ proxywasm.HttpContext   = (*httpContext)(nil)
	_ Request                 = hostRequest{}
)
