package trace

import (
	crand "crypto/rand"
	"errors"
	"math/rand/v2"
	"strconv"
	"strings"

	"github.com/meshwarden/meshwarden/filters/proxywasm"
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
// passes it to proxywasm.SetVMContext.
func NewVMContext() proxywasm.VMContext { return &vmContext{} }

type vmContext struct {
	proxywasm.DefaultVMContext
}

func (*vmContext) NewPluginContext(uint32) proxywasm.PluginContext { return &pluginContext{} }

type pluginContext struct {
	proxywasm.DefaultPluginContext
	engine *Engine
	cfg    *Config
	b      batcher
	// rnd makes trace and span ids: a ChaCha8 stream seeded once from
	// crypto/rand, so a request costs no random_get hostcall.
	rnd *rand.ChaCha8
	// req is the request view of the stream being handled (one at a time:
	// the guest is single-threaded and a callback never yields).
	req hostRequest
}

// Property paths the filter reads.
var (
	propPeerURISAN = []string{"connection", "uri_san_peer_certificate"}
	propSourceAddr = []string{"source", "address"}
	propRouteName  = []string{"route_name"}
)

// OnPluginStart parses and validates the configuration (a bad one refuses
// the plugin with a log line naming the field) and starts the export tick.
func (p *pluginContext) OnPluginStart(int) proxywasm.OnPluginStartStatus {
	data, err := proxywasm.GetPluginConfiguration()
	if err != nil && !errors.Is(err, proxywasm.ErrNotFound) && !errors.Is(err, proxywasm.ErrEmpty) {
		proxywasm.LogCriticalf("trace: cannot read the plugin configuration: %v", err)
		return proxywasm.OnPluginStartStatusFailed
	}
	cfg, err := ParseConfig(data)
	if err != nil {
		proxywasm.LogCriticalf("trace: refusing to start: %v", err)
		return proxywasm.OnPluginStartStatusFailed
	}
	p.cfg, p.engine = cfg, NewEngine(cfg)
	var seed [32]byte
	if _, err := crand.Read(seed[:]); err != nil {
		proxywasm.LogCriticalf("trace: refusing to start: no randomness for trace ids: %v", err)
		return proxywasm.OnPluginStartStatusFailed
	}
	p.rnd = rand.NewChaCha8(seed)
	if cfg.DisableExport {
		proxywasm.LogInfof("trace: started, export disabled")
		return proxywasm.OnPluginStartStatusOK
	}
	var qid uint32
	if cfg.Batch.QueueName != "" {
		if qid, err = proxywasm.RegisterSharedQueue(cfg.Batch.QueueName); err != nil {
			proxywasm.LogCriticalf("trace: refusing to start: cannot register shared queue %q (batch.queueName): %v", cfg.Batch.QueueName, err)
			return proxywasm.OnPluginStartStatusFailed
		}
	}
	p.b = batcher{
		queued: cfg.Batch.QueueName != "", queueID: qid, max: cfg.Batch.BufferSpans, batch: cfg.Batch.MaxSpans,
		cluster: cfg.Collector.Cluster, timeout: uint32(cfg.Collector.TimeoutMs),
		headers: [][2]string{
			{":method", "POST"}, {":path", cfg.Collector.Path}, {":authority", cfg.Collector.Authority},
			{"content-type", "application/json"},
		},
		encode:   func(dst []byte, items [][]byte) []byte { return p.engine.AppendExport(dst, items) },
		enqueued: proxywasm.DefineCounterMetric(MetricSpans),
		sent:     proxywasm.DefineCounterMetric(MetricExported),
		dropped:  proxywasm.DefineCounterMetric(MetricDropped),
		failures: proxywasm.DefineCounterMetric(MetricSendFailures),
	}
	if err := proxywasm.SetTickPeriodMilliSeconds(uint32(cfg.Batch.FlushIntervalMs)); err != nil {
		proxywasm.LogCriticalf("trace: refusing to start: cannot set the export tick: %v", err)
		return proxywasm.OnPluginStartStatusFailed
	}
	proxywasm.LogInfof("trace: started, exporting to cluster %q path %s", cfg.Collector.Cluster, cfg.Collector.Path)
	return proxywasm.OnPluginStartStatusOK
}

// OnTick drains the span queue and exports a batch.
func (p *pluginContext) OnTick() {
	if p.cfg.DisableExport {
		return
	}
	p.b.drain()
	p.b.flush()
}

// OnQueueReady is called by the host after every enqueue. Draining one
// item per notification would add a dequeue (a hostcall and a guest
// allocation) to every request, so the queue is drained here only once a
// full batch may be waiting, and otherwise on the tick.
func (p *pluginContext) OnQueueReady(uint32) {
	if p.cfg.DisableExport {
		return
	}
	p.b.notified++
	if p.b.notified < p.b.batch {
		return
	}
	p.b.drain()
	if len(p.b.buf) >= p.b.batch {
		p.b.flush()
	}
}

func (p *pluginContext) NewHttpContext(uint32) proxywasm.HttpContext { return &httpContext{p: p} }

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
	req := h.p.req.load()
	hop, err := h.p.engine.Start(req, h.p.rnd)
	if err != nil {
		proxywasm.LogErrorf("trace: no randomness for new ids: %v", err)
		return proxywasm.ActionContinue
	}
	h.started, h.hop = true, hop
	if !hop.Span.Sampled() || h.p.cfg.DisableExport {
		return proxywasm.ActionContinue
	}
	s := &h.span
	s.TraceID, s.SpanID, s.Parent = hop.Span.TraceID, hop.Span.SpanID, hop.Parent
	s.StartNS = proxywasm.GetCurrentTime().UnixNano()
	s.Method, _ = req.Header(":method")
	path, _ := req.Header(":path")
	if q := strings.IndexByte(path, '?'); q >= 0 {
		path = path[:q]
	}
	s.Path = path
	s.Lane, _ = req.Header(dyeing.Header)
	s.Peer, _ = proxywasm.GetPropertyString(propPeerURISAN)
	s.PeerAddr, _ = proxywasm.GetPropertyString(propSourceAddr)
	return proxywasm.ActionContinue
}

// OnHttpResponseHeaders records the status and the route chosen.
func (h *httpContext) OnHttpResponseHeaders(int, bool) proxywasm.Action {
	if h.span.StartNS != 0 {
		if v, err := proxywasm.GetHttpResponseHeader(":status"); err == nil {
			h.span.Status, _ = strconv.Atoi(v)
		}
		h.span.Route, _ = proxywasm.GetPropertyString(propRouteName)
	}
	return proxywasm.ActionContinue
}

// OnHttpStreamDone ends the span and queues it for export.
func (h *httpContext) OnHttpStreamDone() {
	if h.span.StartNS == 0 {
		return
	}
	s := &h.span
	s.EndNS = max(proxywasm.GetCurrentTime().UnixNano(), s.StartNS)
	s.Name = s.Method
	if s.Route != "" {
		s.Name += " " + s.Route
	}
	h.p.b.add(h.p.engine.AppendSpanJSON(h.p.b.itemBuf(), s))
}

// hostRequest is the Request of the current stream: the headers are read
// with one hostcall and looked up locally; writes go to the host.
type hostRequest struct{ hs [][2]string }

// load reads the current stream's request headers into r and returns r.
func (r *hostRequest) load() *hostRequest {
	r.hs, _ = proxywasm.GetHttpRequestHeaders()
	return r
}

func (r *hostRequest) Header(name string) (string, bool) {
	for _, h := range r.hs {
		if h[0] == name {
			return h[1], h[1] != ""
		}
	}
	return "", false
}

func (r *hostRequest) Values(name string) []string {
	var out []string
	for _, h := range r.hs {
		if h[0] == name && h[1] != "" {
			out = append(out, h[1])
		}
	}
	return out
}

func (r *hostRequest) SetHeader(name, value string) {
	if err := proxywasm.ReplaceHttpRequestHeader(name, value); err != nil {
		proxywasm.LogErrorf("trace: cannot set header %s: %v", name, err)
		return
	}
	set := false
	for i := range r.hs {
		if r.hs[i][0] == name {
			if set { // the host replaced every line with one
				r.hs[i][1] = ""
				continue
			}
			r.hs[i][1], set = value, true
		}
	}
	if !set {
		r.hs = append(r.hs, [2]string{name, value})
	}
}

func (r *hostRequest) RemoveHeader(name string) {
	if _, ok := r.Header(name); !ok {
		return
	}
	_ = proxywasm.RemoveHttpRequestHeader(name)
	for i := range r.hs {
		if r.hs[i][0] == name {
			r.hs[i][1] = ""
		}
	}
}

var (
	_ proxywasm.VMContext     = (*vmContext)(nil)
	_ proxywasm.PluginContext = (*pluginContext)(nil)
	_ proxywasm.HttpContext   = (*httpContext)(nil)
	_ Request                 = (*hostRequest)(nil)
)

// NewPluginContext returns a plugin context of this filter, for modules
// that bundle several filters and pick one by root id.
func NewPluginContext() proxywasm.PluginContext { return &pluginContext{} }
