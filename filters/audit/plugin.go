package audit

import (
	"math/rand/v2"
	"strconv"
	"strings"
	"unsafe"

	"github.com/meshwarden/meshwarden/filters/audit/auditconfig"
	"github.com/meshwarden/meshwarden/filters/kit"
	"github.com/meshwarden/meshwarden/filters/proxywasm"
	"github.com/meshwarden/meshwarden/internal/auditevent"
	"github.com/meshwarden/meshwarden/internal/dyeing"
	"github.com/meshwarden/meshwarden/internal/guestfmt"
	"github.com/meshwarden/meshwarden/internal/tracectx"
)

// Metric names the filter defines.
const (
	MetricEnqueued     = "mw_audit_enqueued_total"
	MetricSent         = "mw_audit_sent_total"
	MetricDropped      = "mw_audit_dropped_total"
	MetricSendFailures = "mw_audit_send_failures_total"
	MetricDenied       = "mw_audit_failclosed_denied_total"
	MetricAccessDenied = "mw_audit_access_denied_total"
	MetricStripped     = "mw_audit_subject_stripped_total"
	// MetricPIIDetected counts audited requests in which a PII detector
	// (or the scan limit) fired; MetricPIIBlocked those the filter refused
	// for compliance (PII, scan limit, a body it could not mask).
	MetricPIIDetected = "mw_audit_pii_detected_total"
	MetricPIIBlocked  = "mw_audit_pii_blocked_total"
)

// OpAccessDenied is the op_type of the record the filter writes when the
// proxy's RBAC filter refused a request (Envoy's response code details
// rbac_access_denied_matched_policy[RULE]); its resource is
// "<target service>#<rule>" and its subject the authenticated peer.
const OpAccessDenied = "ACCESS_DENIED"

// accessDeniedPrefix starts Envoy's response code details of an RBAC denial.
const accessDeniedPrefix = "rbac_access_denied_matched_policy["

var propCodeDetails = []string{"response", "code_details"}

// NewVMContext returns the audit filter's VM context; the wasm main package
// passes it to proxywasm.SetVMContext with proxywasm.ModuleVM(); a native
// host calls it with the VM of each instance.
func NewVMContext(vm *proxywasm.VM) proxywasm.VMContext {
	return kit.NewVMContext(vm, NewPluginContext)
}

// NewPluginContext returns a plugin context of this filter, for modules
// that bundle several filters and pick one by root id.
func NewPluginContext(vm *proxywasm.VM) proxywasm.PluginContext {
	p := &pluginContext{vm: vm}
	p.get = p.header // one func value for every request
	p.intern = vm.ArenaString
	return p
}

type pluginContext struct {
	proxywasm.DefaultPluginContext
	vm      *proxywasm.VM // every hostcall goes through it
	engine  *Engine
	cfg     *auditconfig.Config
	source  string
	headers [][2]string // of every collector request
	b       kit.Batcher
	denied  proxywasm.MetricCounter
	// accessDenied counts ACCESS_DENIED records; stripped counts subject
	// headers removed from untrusted peers.
	accessDenied, stripped proxywasm.MetricCounter
	// piiDetected and piiBlocked count compliance outcomes.
	piiDetected, piiBlocked proxywasm.MetricCounter
	// target is the service this proxy fronts (node.cluster).
	target string
	// rnd makes the request nonces: a ChaCha8 stream seeded once from
	// guestcrypto.Read (WASI random_get in the guest), so a request costs no random_get hostcall.
	rnd *rand.ChaCha8
	// pool keeps the contexts of deleted streams for reuse.
	pool kit.ContextPool[httpContext]
	// hs are the request headers of the stream being handled (one at a
	// time: the guest is single-threaded and a callback never yields), in
	// a slice reused from stream to stream; get looks one up.
	hs  [][2]string
	get func(string) string
	// intern is vm.ArenaString and scratch its reused buffer: the
	// resource of a record costs no allocation.
	intern  func([]byte) string
	scratch []byte
}

// loadHeaders reads the current stream's request headers into p.hs.
func (p *pluginContext) loadHeaders() [][2]string {
	clear(p.hs)
	p.hs, _ = p.vm.AppendHttpRequestHeaders(p.hs[:0])
	return p.hs
}

// header returns the first value of request header n in p.hs, or "".
func (p *pluginContext) header(n string) string {
	if i := kit.Lookup(p.hs, n); i >= 0 {
		return p.hs[i][1]
	}
	return ""
}

// OnPluginStart parses and validates the configuration (a bad one refuses
// the plugin with a log line naming the field), registers the shared queue
// and starts the flush tick.
func (p *pluginContext) OnPluginStart(int) proxywasm.OnPluginStartStatus {
	cfg, ok := kit.LoadConfig(p.vm, "audit", auditconfig.ParseConfig)
	if !ok {
		return proxywasm.OnPluginStartStatusFailed
	}
	p.cfg, p.engine = cfg, NewEngine(cfg)
	if p.rnd, ok = kit.NewChaCha8(p.vm, "audit", "request nonces"); !ok {
		return proxywasm.OnPluginStartStatusFailed
	}
	p.source = cfg.Source
	if p.source == "" {
		if v, err := p.vm.GetProperty([]string{"node", "id"}); err == nil {
			p.source = string(v)
		}
	}
	p.headers = [][2]string{
		{":method", "POST"}, {":path", cfg.Collector.Path}, {":authority", cfg.Collector.Authority},
		{"content-type", auditevent.ContentType},
	}
	if cfg.Collector.Token != "" {
		p.headers = append(p.headers, [2]string{auditevent.TokenHeader, cfg.Collector.Token})
	}
	ok = p.b.Start(kit.BatcherConfig{
		VM:     p.vm,
		Filter: "audit", Items: "records",
		QueueName: cfg.Batch.QueueName, Buffer: cfg.Batch.BufferEvents, Batch: cfg.Batch.MaxEvents,
		Cluster: cfg.Collector.Cluster, Headers: p.headers, TimeoutMs: cfg.Collector.TimeoutMs,
		Encode:   func(dst []byte, items [][]byte) []byte { return AppendBatch(dst, p.source, items) },
		Enqueued: MetricEnqueued, Sent: MetricSent, Dropped: MetricDropped, Failures: MetricSendFailures,
	})
	if !ok {
		return proxywasm.OnPluginStartStatusFailed
	}
	p.denied = p.vm.DefineCounterMetric(MetricDenied)
	p.accessDenied = p.vm.DefineCounterMetric(MetricAccessDenied)
	p.stripped = p.vm.DefineCounterMetric(MetricStripped)
	p.piiDetected = p.vm.DefineCounterMetric(MetricPIIDetected)
	p.piiBlocked = p.vm.DefineCounterMetric(MetricPIIBlocked)
	if v, err := p.vm.GetProperty([]string{"node", "cluster"}); err == nil {
		p.target = string(v)
	}
	if !kit.StartTick(p.vm, "audit", "flush", cfg.Batch.FlushIntervalMs) {
		return proxywasm.OnPluginStartStatusFailed
	}
	p.vm.LogInfof("audit: started with %d rules, collector cluster %q", len(cfg.Rules), cfg.Collector.Cluster)
	return proxywasm.OnPluginStartStatusOK
}

// OnTick drains the shared queue (if configured) and sends a batch.
func (p *pluginContext) OnTick() { p.b.Tick() }

// OnQueueReady drains the shared queue once a full batch may be waiting
// (kit.Batcher.QueueReady).
func (p *pluginContext) OnQueueReady(uint32) { p.b.QueueReady() }

func (p *pluginContext) NewHttpContext(uint32) proxywasm.HttpContext {
	if h := p.pool.Get(); h != nil {
		return h
	}
	return &httpContext{p: p}
}

// RecycleHttpContext keeps a deleted stream's context, reset, for a
// later stream.
func (p *pluginContext) RecycleHttpContext(hc proxywasm.HttpContext) {
	if h, ok := hc.(*httpContext); ok {
		*h = httpContext{p: p}
		p.pool.Put(h)
	}
}

type httpContext struct {
	proxywasm.DefaultHttpContext
	p       *pluginContext
	rule    int // -1: not audited
	ev      auditevent.Event
	nonce   [16]byte // hex digits of the request nonce
	startNS int64
	status  int

	bodyDone bool
	waiting  bool // a fail-closed intent awaits its ack
	denied   bool
	// grpc: the request is gRPC, so a local denial is a trailers-only
	// response (:status 200, grpc-status 7) rather than a 403.
	grpc bool
	// mtls is connection.mtls, read once (mtlsRead) by checkCleartext.
	mtls, mtlsRead bool
}

// OnHttpRequestHeaders matches the request against the rules.
func (h *httpContext) OnHttpRequestHeaders(_ int, endOfStream bool) proxywasm.Action {
	h.rule = -1
	hs := h.p.loadHeaders()
	get := h.p.get
	method, path := get(":method"), get(":path")
	h.grpc = strings.HasPrefix(get("content-type"), "application/grpc")
	peer, peerRead := "", false
	if sh := h.p.engine.SubjectHeader(); get(sh) != "" {
		// An identity-bearing header counts only from a trusted peer;
		// anyone else's copy is removed before the upstream sees it.
		peer, _ = h.p.vm.GetPropertyString(kit.PropPeerURISAN)
		peerRead = true
		if !h.p.engine.TrustsPeer(peer) {
			if err := h.p.vm.RemoveHttpRequestHeader(sh); err != nil {
				h.p.vm.LogWarnf("audit: cannot strip %s from an untrusted peer: %v", sh, err)
			}
			h.p.stripped.Increment(1)
			orig := get
			get = func(n string) string {
				if n == sh {
					return ""
				}
				return orig(n)
			}
		}
	}
	i := h.p.engine.Match(method, path)
	if i < 0 {
		return proxywasm.ActionContinue
	}
	h.rule = i
	h.startNS = h.p.vm.GetCurrentTime().UnixNano()
	ri := &RequestInfo{
		Method: method, Path: path,
		Header: get,
		Intern: h.p.intern, Scratch: &h.p.scratch,
	}
	if !peerRead {
		peer, _ = h.p.vm.GetPropertyString(kit.PropPeerURISAN)
	}
	ri.PeerIdentity = peer
	ri.TraceID = traceID(get)
	ri.Dye = get(dyeing.Header)
	ri.Tenant = get(dyeing.TenantHeader)
	h.p.engine.FillEvent(&h.ev, i, ri)
	h.ev.Source = h.p.source
	var n [8]byte
	_, _ = h.p.rnd.Read(n[:])
	guestfmt.AppendHex(h.nonce[:0], n[:])
	if reason := h.p.engine.ScanRequest(i, &h.ev, path, hs); reason != "" {
		h.block(reason, h.p.engine.PIIBlockStatus(i))
		return proxywasm.ActionPause
	}
	if h.checkCleartext() {
		return proxywasm.ActionPause
	}
	h.forwardRewrite(get, endOfStream)
	if endOfStream {
		h.bodyDone = true
		return h.requestComplete()
	}
	if h.p.engine.HoldHeaders(i) {
		// Hold the headers: a fail-closed request must not reach the
		// upstream before its ack; a redacted digest, a rewritten body and
		// a PII block need the whole body first.
		return proxywasm.ActionPause
	}
	return proxywasm.ActionContinue
}

// forwardRewrite applies the rule's forward field actions to the headers
// and query going upstream, and drops content-length when the body will be
// rewritten (its length changes).
func (h *httpContext) forwardRewrite(get func(string) string, endOfStream bool) {
	set, remove, path := h.p.engine.ForwardRewrite(h.rule, get)
	for _, kv := range set {
		if err := h.p.vm.ReplaceHttpRequestHeader(kv[0], kv[1]); err != nil {
			h.p.vm.LogWarnf("audit: cannot rewrite header %s: %v", kv[0], err)
		}
	}
	for _, n := range remove {
		if err := h.p.vm.RemoveHttpRequestHeader(n); err != nil {
			h.p.vm.LogWarnf("audit: cannot remove header %s: %v", n, err)
		}
	}
	if path != "" {
		if err := h.p.vm.ReplaceHttpRequestHeader(":path", path); err != nil {
			h.p.vm.LogWarnf("audit: cannot rewrite the query: %v", err)
		}
	}
	if !endOfStream && h.p.engine.ForwardsBody(h.rule) {
		if err := h.p.vm.RemoveHttpRequestHeader("content-length"); err != nil {
			h.p.vm.LogWarnf("audit: cannot drop content-length before a body rewrite: %v", err)
		}
	}
}

// OnHttpRequestBody buffers the body up to maxBodyBytes, then digests it.
func (h *httpContext) OnHttpRequestBody(bodySize int, endOfStream bool) proxywasm.Action {
	if h.rule < 0 || h.denied {
		return h.held()
	}
	if h.bodyDone {
		return h.held()
	}
	max := h.p.cfg.MaxBodyBytes
	if !endOfStream && bodySize < max {
		return proxywasm.ActionPause // keep buffering
	}
	if h.digest(bodySize, endOfStream) {
		return proxywasm.ActionPause
	}
	return h.requestComplete()
}

// OnHttpRequestTrailers ends a body that had no end-of-stream flag.
func (h *httpContext) OnHttpRequestTrailers(int) proxywasm.Action {
	if h.rule < 0 || h.bodyDone || h.denied {
		return h.held()
	}
	size := h.p.cfg.MaxBodyBytes + 1
	if b, err := h.p.vm.GetHttpRequestBody(0, size); err == nil {
		size = len(b)
	} else {
		size = 0
	}
	if h.digest(size, true) {
		return proxywasm.ActionPause
	}
	return h.requestComplete()
}

func (h *httpContext) held() proxywasm.Action {
	if h.waiting || h.denied {
		return proxywasm.ActionPause
	}
	return proxywasm.ActionContinue
}

// digest scans, transforms and digests the buffered body, rewrites it
// when the policy forwards field actions, and reports whether the request
// was refused.
func (h *httpContext) digest(bodySize int, endOfStream bool) bool {
	h.bodyDone = true
	max := h.p.cfg.MaxBodyBytes
	n := min(bodySize, max)
	var body []byte
	if n > 0 {
		b, err := h.p.vm.GetHttpRequestBody(0, n)
		if err != nil {
			h.p.vm.LogWarnf("audit: cannot read the request body: %v", err)
		}
		body = b
	}
	out := h.p.engine.ProcessBody(h.rule, &h.ev, body, endOfStream && bodySize <= max)
	if out.Block != "" {
		h.block(out.Block, out.Status)
		return true
	}
	if h.checkCleartext() {
		return true
	}
	if out.Forward != nil {
		if err := h.p.vm.ReplaceHttpRequestBody(out.Forward); err != nil {
			// The clear body must not go upstream.
			h.p.vm.LogErrorf("audit: cannot rewrite the request body: %v", err)
			h.block(BlockBodyNotJSON, 500)
			return true
		}
	}
	return false
}

// checkCleartext applies the rule's pii.cleartext setting to what was
// detected so far, reading connection.mtls once per request, and reports
// whether the request was refused.
func (h *httpContext) checkCleartext() bool {
	e := h.p.engine
	if !e.ChecksCleartext(h.rule) {
		return false
	}
	if !h.mtlsRead {
		h.mtls, h.mtlsRead = kit.DownstreamMTLS(h.p.vm), true
	}
	if reason, status := e.CheckCleartext(h.rule, &h.ev, h.mtls); reason != "" {
		h.block(reason, status)
		return true
	}
	return false
}

// block refuses the request for compliance with a local reply; the
// outcome record (status, blocked reason, detections) follows. The reply
// and the log name the reason and the detectors, never a value.
func (h *httpContext) block(reason string, status int) {
	h.denied = true
	h.status = status
	h.ev.Blocked = reason
	h.p.piiBlocked.Increment(1)
	h.p.vm.LogWarnf("audit: blocked %s %s (%s): %s", h.ev.Method, h.ev.Path, h.ev.OpType, reason)
	var msg string
	switch {
	case strings.HasPrefix(reason, "pii:"):
		msg = "the request carries personal data (" + strings.TrimPrefix(reason, "pii:") + ") that this operation does not accept: remove it and retry"
	case strings.HasPrefix(reason, BlockCleartext):
		msg = "the request carries personal data (" + strings.TrimPrefix(reason, BlockCleartext+":") + ") over a connection that is not mTLS: this operation accepts it only over mTLS"
	case reason == BlockScanLimit:
		msg = "the request body is larger than this operation scans for personal data: send a smaller body"
	case reason == BlockBodyTooLarge:
		msg = "the request body is larger than this operation can mask before forwarding: send a smaller body"
	default:
		msg = "the request body must be JSON so that its protected fields can be masked before forwarding"
	}
	b := []byte(`{"error":"compliance_blocked","reason":`)
	b = auditevent.AppendJSONString(b, reason)
	b = append(b, `,"message":`...)
	b = auditevent.AppendJSONString(b, msg)
	b = append(b, `,"op_type":`...)
	b = auditevent.AppendJSONString(b, h.ev.OpType)
	b = append(b, `,"audit_id":`...)
	b = auditevent.AppendJSONString(b, h.id(auditevent.PhaseOutcome))
	b = append(b, '}')
	if err := h.p.vm.SendHttpResponse(uint32(status), [][2]string{{"content-type", "application/json"}}, b, -1); err != nil {
		h.p.vm.LogErrorf("audit: cannot send the %d: %v", status, err)
	}
}

func (h *httpContext) failClosed() bool { return h.p.engine.Rule(h.rule).FailClosed }

// requestComplete runs once the request side is known: a fail-closed
// operation sends its intent and waits; others continue.
func (h *httpContext) requestComplete() proxywasm.Action {
	if !h.failClosed() {
		return proxywasm.ActionContinue
	}
	intent := h.ev
	intent.Phase = auditevent.PhaseIntent
	intent.ID = h.id(auditevent.PhaseIntent)
	intent.Timestamp = h.startNS
	body := AppendBatch(nil, h.p.source, [][]byte{appendCanonical(nil, &intent)})
	_, err := h.p.vm.DispatchHttpCall(h.p.cfg.Collector.Cluster, h.p.headers, body, nil,
		uint32(h.p.cfg.FailClosedTimeoutMs), func(_, _, _ int) {
			h.waiting = false
			if st := kit.CallStatus(h.p.vm); st != 200 {
				h.deny("the audit collector answered " + strconv.Itoa(st))
				return
			}
			if err := h.p.vm.ResumeHttpRequest(); err != nil {
				h.p.vm.LogErrorf("audit: cannot resume the request after the ack: %v", err)
			}
		})
	if err != nil {
		h.deny("the audit collector cluster " + strconv.Quote(h.p.cfg.Collector.Cluster) + " cannot be reached: " + err.Error())
		return proxywasm.ActionPause
	}
	h.waiting = true
	return proxywasm.ActionPause
}

// deny answers 503 with a JSON body; nothing is forwarded.
func (h *httpContext) deny(reason string) {
	h.denied = true
	h.status = 503
	h.p.denied.Increment(1)
	h.p.vm.LogWarnf("audit: refused %s %s (%s): %s", h.ev.Method, h.ev.Path, h.ev.OpType, reason)
	b := []byte(`{"error":"audit_unavailable","message":`)
	b = auditevent.AppendJSONString(b, "this operation requires an acknowledged audit record and the audit collector did not acknowledge it ("+reason+" or no answer in time); the request was not forwarded: retry later")
	b = append(b, `,"op_type":`...)
	b = auditevent.AppendJSONString(b, h.ev.OpType)
	b = append(b, `,"audit_id":`...)
	b = auditevent.AppendJSONString(b, h.id(auditevent.PhaseIntent))
	b = append(b, '}')
	if err := h.p.vm.SendHttpResponse(503, [][2]string{{"content-type", "application/json"}}, b, -1); err != nil {
		h.p.vm.LogErrorf("audit: cannot send the 503: %v", err)
	}
}

// OnHttpResponseHeaders records the status, and an ACCESS_DENIED record
// when the proxy's RBAC filter refused the request.
func (h *httpContext) OnHttpResponseHeaders(int, bool) proxywasm.Action {
	st, _ := h.p.vm.GetHttpResponseHeader(":status")
	if st == "403" {
		h.recordAccessDenied(403)
	} else if st == "451" {
		h.onResidencyRefusal(451)
	} else if h.grpc && st == "200" {
		if gs, _ := h.p.vm.GetHttpResponseHeader("grpc-status"); gs == "7" { // PERMISSION_DENIED
			h.recordAccessDenied(200)
		}
	}
	if h.rule >= 0 && !h.denied {
		h.status, _ = strconv.Atoi(st)
		if h.ev.TraceID == "" {
			// The trace filter, after this one, may have started a trace.
			h.ev.TraceID = traceID(func(n string) string { v, _ := h.p.vm.GetHttpRequestHeader(n); return v })
		}
	}
	return proxywasm.ActionContinue
}

// OnHttpStreamDone queues the outcome record.
func (h *httpContext) OnHttpStreamDone() {
	if h.rule < 0 {
		return
	}
	out := h.ev
	out.Phase = auditevent.PhaseOutcome
	// The id is built on the stack: out is encoded below and dropped, so
	// the string over idb never outlives it (h.id would allocate).
	var idb [96]byte
	id := h.appendID(idb[:0], auditevent.PhaseOutcome)
	out.ID = unsafe.String(unsafe.SliceData(id), len(id))
	now := h.p.vm.GetCurrentTime().UnixNano()
	out.Timestamp = now
	out.Status = h.status
	out.LatencyNS = max(now-h.startNS, 1)
	if len(out.PII) > 0 {
		h.p.piiDetected.Increment(1)
	}
	h.p.b.Add(appendCanonical(h.p.b.ItemBuf(), &out))
}

// recordAccessDenied queues an ACCESS_DENIED record when the 403 (for gRPC:
// grpc-status 7) is the RBAC filter's (response.code_details names the
// matched rule).
func (h *httpContext) recordAccessDenied(status int) {
	details, err := h.p.vm.GetPropertyString(propCodeDetails)
	rule, ok := strings.CutPrefix(details, accessDeniedPrefix)
	if err != nil || !ok {
		return
	}
	rule = strings.TrimSuffix(rule, "]")
	ev := h.refusalEvent(OpAccessDenied, h.p.target+"#"+rule, status)
	h.p.accessDenied.Increment(1)
	h.queueRefusal(&ev)
}

// id is "<trace_id>-<request nonce>-<phase>" (the nonce stands for the
// per-request sequence: unique without coordination between instances).
func (h *httpContext) id(ph auditevent.Phase) string {
	return string(h.appendID(make([]byte, 0, 64), ph))
}

// appendID appends the id (see id) to b.
func (h *httpContext) appendID(b []byte, ph auditevent.Phase) []byte {
	t := h.ev.TraceID
	if t == "" {
		t = "notrace"
	}
	b = append(b, t...)
	b = append(b, '-')
	b = append(b, h.nonce[:]...)
	b = append(b, '-')
	return append(b, ph...)
}

// traceID reads the trace id from the request's traceparent (or B3).
func traceID(get func(string) string) string {
	if v := get(tracectx.TraceparentHeader); v != "" {
		if _, err := tracectx.ParseTraceparent(v); err == nil {
			// A valid traceparent's trace id is its 32 lowercase hex
			// digits after "vv-": sc.TraceID.String(), without a copy.
			return v[3:35]
		}
	}
	if v := get(tracectx.B3Header); v != "" {
		if b, err := tracectx.ParseB3Single(v); err == nil {
			return b.TraceID.String()
		}
	}
	return ""
}

// IgnoresResponseBody: the audit record takes the response status from the headers; the body is never read, so a native host
// passes the response body on untouched (proxywasm.ResponseBodyIgnorer).
func (*httpContext) IgnoresResponseBody() bool { return true }

var (
	_ proxywasm.PluginContext       = (*pluginContext)(nil)
	_ proxywasm.HttpContext         = (*httpContext)(nil)
	_ proxywasm.ResponseBodyIgnorer = (*httpContext)(nil)
	_ proxywasm.HttpContextRecycler = (*pluginContext)(nil)
)
