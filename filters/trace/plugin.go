package trace

import (
	"math/rand/v2"
	"strconv"
	"strings"

	"github.com/meshwarden/meshwarden/filters/kit"
	"github.com/meshwarden/meshwarden/filters/proxywasm"
	"github.com/meshwarden/meshwarden/filters/trace/traceconfig"
	"github.com/meshwarden/meshwarden/internal/dyeing"
)

// Metric names the filter defines.
const (
	MetricSpans        = "mw_trace_spans_total"
	MetricExported     = "mw_trace_exported_total"
	MetricDropped      = "mw_trace_dropped_total"
	MetricSendFailures = "mw_trace_send_failures_total"
)

// NewVMContext returns the trace filter's VM context; the wasm main package
// passes it to proxywasm.SetVMContext with proxywasm.ModuleVM(); a native
// host calls it with the VM of each instance.
func NewVMContext(vm *proxywasm.VM) proxywasm.VMContext {
	return kit.NewVMContext(vm, NewPluginContext)
}

// NewPluginContext returns a plugin context of this filter, for modules
// that bundle several filters and pick one by root id.
func NewPluginContext(vm *proxywasm.VM) proxywasm.PluginContext {
	return &pluginContext{vm: vm, req: kit.HostRequest{Filter: "trace", VM: vm}}
}

type pluginContext struct {
	proxywasm.DefaultPluginContext
	vm     *proxywasm.VM // every hostcall goes through it
	engine *Engine
	cfg    *traceconfig.Config
	b      kit.Batcher
	// rnd makes trace and span ids: a ChaCha8 stream seeded once from
	// guestcrypto.Read (WASI random_get in the guest), so a request costs no random_get hostcall.
	rnd *rand.ChaCha8
	// req is the request view of the stream being handled (one at a time:
	// the guest is single-threaded and a callback never yields).
	req kit.HostRequest
	// pool keeps the contexts of deleted streams for reuse.
	pool kit.ContextPool[httpContext]
}

// propRouteName is the property holding the name of the route chosen.
var propRouteName = []string{"route_name"}

// OnPluginStart parses and validates the configuration (a bad one refuses
// the plugin with a log line naming the field) and starts the export tick.
func (p *pluginContext) OnPluginStart(int) proxywasm.OnPluginStartStatus {
	cfg, ok := kit.LoadConfig(p.vm, "trace", traceconfig.ParseConfig)
	if !ok {
		return proxywasm.OnPluginStartStatusFailed
	}
	p.cfg, p.engine = cfg, NewEngine(cfg)
	if p.rnd, ok = kit.NewChaCha8(p.vm, "trace", "trace ids"); !ok {
		return proxywasm.OnPluginStartStatusFailed
	}
	if cfg.DisableExport {
		p.vm.LogInfof("trace: started, export disabled")
		return proxywasm.OnPluginStartStatusOK
	}
	ok = p.b.Start(kit.BatcherConfig{
		VM:     p.vm,
		Filter: "trace", Items: "spans",
		QueueName: cfg.Batch.QueueName, Buffer: cfg.Batch.BufferSpans, Batch: cfg.Batch.MaxSpans,
		Cluster: cfg.Collector.Cluster, TimeoutMs: cfg.Collector.TimeoutMs,
		Headers: [][2]string{
			{":method", "POST"}, {":path", cfg.Collector.Path}, {":authority", cfg.Collector.Authority},
			{"content-type", "application/json"},
		},
		Encode:   func(dst []byte, items [][]byte) []byte { return p.engine.AppendExport(dst, items) },
		Enqueued: MetricSpans, Sent: MetricExported, Dropped: MetricDropped, Failures: MetricSendFailures,
	})
	if !ok || !kit.StartTick(p.vm, "trace", "export", cfg.Batch.FlushIntervalMs) {
		return proxywasm.OnPluginStartStatusFailed
	}
	p.vm.LogInfof("trace: started, exporting to cluster %q path %s", cfg.Collector.Cluster, cfg.Collector.Path)
	return proxywasm.OnPluginStartStatusOK
}

// OnTick drains the span queue and exports a batch.
func (p *pluginContext) OnTick() {
	if !p.cfg.DisableExport {
		p.b.Tick()
	}
}

// OnQueueReady drains the span queue once a full batch may be waiting
// (kit.Batcher.QueueReady).
func (p *pluginContext) OnQueueReady(uint32) {
	if !p.cfg.DisableExport {
		p.b.QueueReady()
	}
}

func (p *pluginContext) NewHttpContext(uint32) proxywasm.HttpContext {
	if h := p.pool.Get(); h != nil {
		return h
	}
	return &httpContext{p: p}
}

type httpContext struct {
	proxywasm.DefaultHttpContext
	p       *pluginContext
	started bool
	hop     Hop
	span    Span
}

// OnHttpRequestHeaders continues or starts the trace and writes this hop's
// traceparent.
func (h *httpContext) OnHttpRequestHeaders(int, bool) proxywasm.Action {
	req := h.p.req.Load()
	hop, err := h.p.engine.Start(req, h.p.rnd)
	if err != nil {
		h.p.vm.LogErrorf("trace: no randomness for new ids: %v", err)
		return proxywasm.ActionContinue
	}
	h.started, h.hop = true, hop
	if !hop.Span.Sampled() || h.p.cfg.DisableExport {
		return proxywasm.ActionContinue
	}
	s := &h.span
	s.TraceID, s.SpanID, s.Parent = hop.Span.TraceID, hop.Span.SpanID, hop.Parent
	s.StartNS = h.p.vm.GetCurrentTime().UnixNano()
	s.Method, _ = req.Header(":method")
	path, _ := req.Header(":path")
	if q := strings.IndexByte(path, '?'); q >= 0 {
		path = path[:q]
	}
	s.Path = path
	s.Lane, _ = req.Header(dyeing.Header)
	s.Peer, _ = h.p.vm.GetPropertyString(kit.PropPeerURISAN)
	s.PeerAddr, _ = h.p.vm.GetPropertyString(kit.PropSourceAddress)
	return proxywasm.ActionContinue
}

// OnHttpResponseHeaders records the status and the route chosen.
func (h *httpContext) OnHttpResponseHeaders(int, bool) proxywasm.Action {
	if h.span.StartNS != 0 {
		if v, err := h.p.vm.GetHttpResponseHeader(":status"); err == nil {
			h.span.Status, _ = strconv.Atoi(v)
		}
		h.span.Route, _ = h.p.vm.GetPropertyString(propRouteName)
	}
	return proxywasm.ActionContinue
}

// RecycleHttpContext keeps a deleted stream's context, reset, for a
// later stream.
func (p *pluginContext) RecycleHttpContext(hc proxywasm.HttpContext) {
	if h, ok := hc.(*httpContext); ok {
		*h = httpContext{p: p}
		p.pool.Put(h)
	}
}

// OnHttpStreamDone ends the span and queues it for export.
func (h *httpContext) OnHttpStreamDone() {
	if h.span.StartNS == 0 {
		return
	}
	s := &h.span
	s.EndNS = max(h.p.vm.GetCurrentTime().UnixNano(), s.StartNS)
	s.Name = s.Method
	if s.Route != "" {
		// "<method> <route>", carved from the VM's arena: no Go
		// allocation per span (a host that names its routes, as Envoy
		// does, has one on every request).
		var nb [128]byte
		s.Name = h.p.vm.ArenaString(append(append(append(nb[:0], s.Method...), ' '), s.Route...))
	}
	h.p.b.Add(h.p.engine.AppendSpanJSON(h.p.b.ItemBuf(), s))
}

// IgnoresResponseBody: the span takes the status from the response headers, so a native host
// passes the response body on untouched (proxywasm.ResponseBodyIgnorer).
func (*httpContext) IgnoresResponseBody() bool { return true }

var (
	_ proxywasm.PluginContext       = (*pluginContext)(nil)
	_ proxywasm.HttpContext         = (*httpContext)(nil)
	_ proxywasm.ResponseBodyIgnorer = (*httpContext)(nil)
	_ proxywasm.HttpContextRecycler = (*pluginContext)(nil)
	_ Request                       = (*kit.HostRequest)(nil)
)
