package gateway

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"net/http/httputil"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/meshwarden/meshwarden/gateway/wasmhost"
)

// exchange is one downstream request's state. ServeHTTP creates it and runs
// its steps in order; each step that answers the request records the status
// and stops the exchange. Forwarding hands the exchange to a reverse proxy of
// its own whose hooks (rewrite, RoundTrip, modifyResponse, errorHandler) are
// the exchange's methods, so no step looks its state up in a context.
type exchange struct {
	g     *Gateway
	m     *model
	w     http.ResponseWriter
	r     *http.Request
	start time.Time

	// ctx is the request's context, with the server span once it started.
	ctx         context.Context
	span        trace.Span // no-op unless tracing
	spanStarted bool

	route   *compiledRoute
	cluster *clusterRT
	fs      *filterStream // nil without filters
	status  int
	local   *wasmhost.LocalReply

	routeName, clusterName string // metric labels

	proxy httputil.ReverseProxy // forwards to the cluster; hooks are x's methods
}

// ServeHTTP implements http.Handler: filters on the request headers, then
// the access (RBAC) filters, then the route (so a filter's headers, e.g. the
// dye lane, steer routing), then the upstream through the reverse proxy.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	m := g.acquire()
	if m == nil {
		http.Error(w, "gateway: no configuration yet", http.StatusServiceUnavailable)
		return
	}
	defer m.refs.Add(-1)
	x := g.newExchange(w, r, m, start)
	defer x.finish()
	x.serve()
}

func (g *Gateway) newExchange(w http.ResponseWriter, r *http.Request, m *model, start time.Time) *exchange {
	ctx := r.Context()
	return &exchange{g: g, m: m, w: w, r: r, start: start, ctx: ctx,
		span: trace.SpanFromContext(ctx), spanStarted: !g.tracing}
}

// serve runs the exchange's steps until one answers the request.
func (x *exchange) serve() {
	// An identity-bearing header a caller typed is never forwarded: the
	// peer's identity is its certificate (Envoy's default
	// forward_client_cert_details SANITIZE does the same).
	x.r.Header.Del("X-Forwarded-Client-Cert")
	l := x.m.listener
	if l.blocked != "" {
		x.fail(http.StatusServiceUnavailable, "wasm filter "+l.blocked+" is unavailable")
		return
	}
	if l.chain != nil {
		if !x.openFilters() {
			return
		}
		defer x.fs.close()
		if !x.filterRequest() {
			return
		}
	}
	if x.accessDenied() {
		return
	}
	x.startSpan(time.Now())
	if !x.selectRoute() || !x.applyResilience() {
		return
	}
	x.forward()
}

// finish ends the server span and records the request's metrics.
func (x *exchange) finish() {
	x.startSpan(x.start) // answered before or by the filters
	defer x.span.End()
	code := x.status
	if code == 0 {
		code = http.StatusOK
	}
	x.span.SetAttributes(attribute.Int("http.response.status_code", code))
	if code >= 500 {
		x.span.SetStatus(codes.Error, http.StatusText(code))
	}
	x.g.met.request(x.routeName, x.clusterName, code, time.Since(x.start))
}

// startSpan starts the server span once. It starts after the filters have
// seen the request headers, so its parent is the traceparent they leave:
// the trace filter's span for this hop. The gateway's spans then nest inside
// it instead of standing beside it. A request answered before or by the
// filters gets a span from its arrival.
func (x *exchange) startSpan(at time.Time) {
	if x.spanStarted {
		return
	}
	x.spanStarted = true
	g, r := x.g, x.r
	pctx := g.prop.Extract(x.ctx, propagation.HeaderCarrier(r.Header))
	x.ctx, x.span = g.tracer.Start(pctx, "ingress "+r.Method, trace.WithSpanKind(trace.SpanKindServer), trace.WithTimestamp(at),
		trace.WithAttributes(attribute.String("http.request.method", r.Method), attribute.String("url.path", r.URL.Path)))
}

// fail answers the request with a plain-text error.
func (x *exchange) fail(code int, msg string) {
	x.status = code
	http.Error(x.w, msg, code)
}

// streamInfo is what the filters may read of the request beyond its headers.
func (x *exchange) streamInfo(props map[string][]byte) wasmhost.StreamInfo {
	r := x.r
	info := wasmhost.StreamInfo{SourceAddress: r.RemoteAddr, DestinationAddress: x.g.addr, Properties: props}
	if r.TLS != nil {
		info.TLSVersion = envoyTLSVersion(r.TLS.Version)
		if len(r.TLS.PeerCertificates) > 0 {
			info.MTLS = true
			if u := r.TLS.PeerCertificates[0].URIs; len(u) > 0 {
				info.PeerURISAN, info.PeerPrincipal = u[0].String(), u[0].String()
			}
		}
	}
	return info
}

// envoyTLSVersion names a TLS version as Envoy's connection.tls_version
// does (BoringSSL's SSL_get_version: TLSv1, TLSv1.1, TLSv1.2, TLSv1.3), so
// a filter reads the same value behind the gateway and in a sidecar.
func envoyTLSVersion(v uint16) string {
	switch v {
	case tls.VersionTLS10:
		return "TLSv1"
	case tls.VersionTLS11:
		return "TLSv1.1"
	case tls.VersionTLS12:
		return "TLSv1.2"
	case tls.VersionTLS13:
		return "TLSv1.3"
	}
	return tls.VersionName(v)
}

// openFilters starts the request's stream through the listener's filter
// chain. It reports whether to go on; the caller closes x.fs.
func (x *exchange) openFilters() bool {
	props := map[string][]byte{}
	cs, err := x.m.listener.chain.NewStream(x.ctx, x.streamInfo(props))
	if err != nil {
		x.fail(http.StatusServiceUnavailable, "gateway: filters unavailable: "+err.Error())
		return false
	}
	x.fs = &filterStream{cs: cs, limit: x.g.cfg.MaxBufferBytes, props: props, bufs: &x.g.bufs}
	return true
}

// filterRequest runs the filters on the request headers and, when they
// hold the headers for the body, on the body. It reports whether to go on
// forwarding; when it returns false the response has been written.
func (x *exchange) filterRequest() bool {
	r := x.r
	h, path := requestToHeaders(r)
	noBody := r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0
	res := x.fs.requestHeaders(h, noBody)
	if res.Err != nil {
		x.g.log.Warn("filter error on request headers", "err", res.Err)
	}
	switch res.Action {
	case wasmhost.Reply:
		x.status = writeLocalReply(x.w, res.Reply)
		return false
	case wasmhost.Reset:
		x.status = 499
		panic(http.ErrAbortHandler)
	}
	if !noBody {
		fb := &filteredBody{rc: r.Body, fs: x.fs, dir: 0, req: true, remain: r.ContentLength}
		r.Body = fb
		if res.Action == wasmhost.Buffer {
			// A filter holds the headers until it has seen the body (a
			// fail-closed audit waits for the collector's ack): nothing
			// may reach the upstream until it lets go, as in Envoy. Pull
			// the body through the filters first, bounded by the limit.
			if !x.primeRequestBody(fb) {
				return false
			}
		} else {
			// Body callbacks may change the length: stream it chunked
			// (HTTP/1.1) or as DATA frames (HTTP/2) instead of with the
			// original Content-Length.
			r.ContentLength = -1
		}
	}
	applyRequestHeaders(r, h, path)
	return true
}

// accessDenied evaluates the listener's access (RBAC) filters and answers a
// denial. It reports whether the request was denied.
func (x *exchange) accessDenied() bool {
	l := x.m.listener
	if len(l.access) == 0 {
		return false
	}
	d := evaluateAccess(l.access, newAccessRequest(x.r), x.g.met.accessDecision)
	if !d.denied {
		return false
	}
	x.status = x.denyAccess(d)
	return true
}

// selectRoute matches the route and picks its cluster, or answers: no
// route, a direct response, an unknown cluster. It reports whether to
// forward.
func (x *exchange) selectRoute() bool {
	r := x.r
	rt := x.m.listener.routes.match(r.Host, r.URL.RequestURI(), r.Header)
	if rt == nil {
		x.fail(http.StatusNotFound, "gateway: no route")
		return false
	}
	x.routeName = rt.name
	x.route = rt
	if d := rt.direct; d != nil {
		// As Envoy's router: response_headers_to_add, then the filters'
		// response callbacks with response.code_details direct_response.
		h := &wasmhost.Headers{Pairs: append([][2]string{{":status", strconv.Itoa(d.status)}}, d.headers...)}
		x.status = x.localResponse(h, d.body, "direct_response")
		return false
	}
	x.clusterName = rt.pickCluster()
	x.cluster = x.m.clusters[x.clusterName]
	if x.cluster == nil {
		x.fail(http.StatusServiceUnavailable, "gateway: cluster "+x.clusterName+" not found")
		return false
	}
	return true
}

// forward proxies the request to the route's cluster under the route's
// timeout, through the exchange's own reverse proxy.
func (x *exchange) forward() {
	release, ok := x.cluster.admitRequest()
	if !ok {
		x.overflow(x.w)
		return
	}
	defer release()
	ctx := x.ctx
	if x.route.timeout > 0 && !isUpgrade(x.r) {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, x.route.timeout)
		defer cancel()
	}
	x.proxy = httputil.ReverseProxy{
		Rewrite:        x.rewrite,
		Transport:      x,
		FlushInterval:  flushInterval,
		ModifyResponse: x.modifyResponse,
		ErrorHandler:   x.errorHandler,
		ErrorLog:       nil,
		BufferPool:     &x.g.bufs,
	}
	rec := &statusRecorder{ResponseWriter: x.w}
	x.proxy.ServeHTTP(rec, x.r.WithContext(ctx))
	if x.status == 0 {
		x.status = rec.status
	}
}

// flushInterval bounds how long a response of known length waits in the
// connection's write buffer before the gateway flushes it downstream: its
// headers when the body is slow to start, then whatever part of the body has
// arrived. Responses of unknown length (chunked, gRPC) and server-sent events
// are flushed on every write regardless (httputil.ReverseProxy does that for
// them). Flushing every response on every write (-1) cost a timer goroutine
// and a separate write for the headers per request: the unfiltered gateway
// went from 0.91–0.93× to 1.06–1.17× a bare ReverseProxy's req/s without
// it (docs/BENCHMARKS.md).
const flushInterval = 50 * time.Millisecond

// rewrite is the reverse proxy's Rewrite hook: the cluster's scheme, the
// route's prefix and host rewrites, X-Forwarded-*.
func (x *exchange) rewrite(pr *httputil.ProxyRequest) {
	pr.Out.URL.Scheme = x.cluster.tr.scheme
	pr.Out.URL.Host = x.cluster.spec.name // replaced per attempt by an endpoint
	if p := x.route.prefixRewrite; p != "" && x.route.kind == pathPrefix {
		pr.Out.URL.Path = p + strings.TrimPrefix(pr.In.URL.Path, x.route.path)
		pr.Out.URL.RawPath = ""
	}
	pr.Out.Host = pr.In.Host
	if x.route.hostRewrite != "" {
		pr.Out.Host = x.route.hostRewrite
	}
	pr.SetXForwarded()
	pr.Out.Header["X-Forwarded-Host"] = nil
}

// denyAccess answers an RBAC denial with 403 and a short reason. As in
// Envoy, the local reply runs through the filters' response callbacks and
// response.code_details names the matched rule, so the audit filter records
// an ACCESS_DENIED event.
func (x *exchange) denyAccess(d accessDecision) int {
	r := x.r
	caller := "an unauthenticated caller"
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		caller = certPrincipal(r.TLS.PeerCertificates[0])
	}
	x.g.log.Info("access denied", "filter", d.filter, "rule", d.rule, "caller", caller, "method", r.Method, "path", r.URL.Path)
	reason := "RBAC: access denied (rule " + d.rule + ")"
	body := []byte(reason + "\n")
	h := &wasmhost.Headers{Pairs: [][2]string{{":status", "403"}, {"content-type", "text/plain; charset=utf-8"}}}
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
		// As Envoy: a gRPC call gets a trailers-only PERMISSION_DENIED.
		body = nil
		h.Pairs = [][2]string{{":status", "200"}, {"content-type", "application/grpc"}, {"grpc-status", "7"}, {"grpc-message", reason}}
	}
	return x.localResponse(h, body, accessDeniedDetails+d.rule+"]")
}

// localResponse answers with the proxy's own response (h holds :status),
// run as in Envoy through the filters' response callbacks with
// response.code_details set to details. It returns the status written.
func (x *exchange) localResponse(h *wasmhost.Headers, body []byte, details string) int {
	w := x.w
	if x.fs != nil {
		res := x.fs.deniedResponseHeaders(h, []byte(details))
		if res.Action == wasmhost.Reply && res.Reply != nil {
			return writeLocalReply(w, res.Reply)
		}
		res = x.fs.responseBody(body, true)
		if res.Body != nil {
			body = res.Body
		}
	}
	status := http.StatusOK
	for _, kv := range h.Pairs {
		if kv[0] == ":status" {
			if n, err := strconv.Atoi(kv[1]); err == nil {
				status = n
			}
			continue
		}
		w.Header().Add(kv[0], kv[1])
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
	return status
}

var (
	errLocalReply = errors.New("local reply from a filter")
	errBodyLimit  = errors.New("body buffered by filters exceeds the limit")
)

// errorHandler is the reverse proxy's ErrorHandler: a filter's local reply,
// or the status Envoy gives the upstream failure.
func (x *exchange) errorHandler(w http.ResponseWriter, _ *http.Request, err error) {
	switch {
	case x.local != nil:
		x.status = writeLocalReply(w, x.local)
	case x.fs != nil && x.fs.local != nil:
		x.status = writeLocalReply(w, x.fs.local)
	case errors.Is(err, errBodyLimit):
		x.status = http.StatusRequestEntityTooLarge
		http.Error(w, err.Error(), x.status)
	case errors.Is(err, errOverflow):
		x.overflow(w)
	case errors.Is(err, errNoHealthy):
		x.status = http.StatusServiceUnavailable
		http.Error(w, "gateway: no healthy upstream", x.status)
	case errors.Is(err, context.DeadlineExceeded):
		x.status = http.StatusGatewayTimeout
		http.Error(w, "gateway: upstream request timeout", x.status)
	case errors.Is(err, context.Canceled):
		x.status = 499
	default:
		x.status = http.StatusBadGateway
		x.g.log.Debug("upstream error", "err", err)
		http.Error(w, "gateway: upstream connect error or reset", x.status)
	}
}

// modifyResponse is the reverse proxy's ModifyResponse hook: it runs the
// response header filters and wraps the body so its chunks and trailers pass
// through the filters too.
func (x *exchange) modifyResponse(resp *http.Response) error {
	if x.fs == nil || resp.StatusCode == http.StatusSwitchingProtocols {
		return nil
	}
	h := responseToHeaders(resp)
	// What the filters were given, to tell whether they changed anything
	// (on the stack for a usual response's header count).
	var given [16][2]string
	orig := append(given[:0], h.Pairs...)
	noBody := resp.Body == nil || resp.Body == http.NoBody || resp.ContentLength == 0 && len(resp.Trailer) == 0
	res := x.fs.responseHeaders(h, noBody)
	switch res.Action {
	case wasmhost.Reply:
		x.local = res.Reply
		return errLocalReply
	case wasmhost.Reset:
		return errors.New("a filter reset the stream")
	}
	if !slices.Equal(orig, h.Pairs) {
		applyResponseHeaders(resp, h)
	}
	// A body none of the filters reads (native filters that say so) goes
	// downstream as it arrives, its length and flushing untouched.
	if !noBody && !x.fs.ignoresResponseBody() {
		remain := resp.ContentLength
		if len(resp.Trailer) > 0 {
			remain = -1 // trailers follow the body: end of stream comes with them
		}
		fb := &filteredBody{rc: resp.Body, fs: x.fs, dir: 1, trailer: resp, remain: remain}
		if remain >= 0 && remain <= smallResponseBody && remain <= int64(x.fs.limit) {
			return x.filterWholeResponseBody(resp, fb)
		}
		// Body callbacks may change the length: stream it chunked (HTTP/1.1)
		// or as DATA frames (HTTP/2) instead of with the upstream's length.
		resp.Body = fb
		resp.ContentLength = -1
		resp.Header.Del("Content-Length")
	}
	return nil
}

// smallResponseBody is the largest response body (by its Content-Length)
// the gateway reads through the filters whole before it answers, so the
// response goes downstream with the filtered body's Content-Length in one
// write. A longer one, or one of unknown length, streams chunk by chunk
// (chunked on HTTP/1.1), as it arrives.
const smallResponseBody = 64 << 10

// filterWholeResponseBody reads a small response body of known length
// through the filters (every body callback runs as it would streaming, the
// last with end of stream) and answers with what they let through and its
// length. Streaming it instead costs a chunked response flushed once per
// chunk plus its terminator: 2–3 writes where one does, the largest part of
// what the filter chain cost a gateway per request (docs/BENCHMARKS.md).
// An upstream that ends the body short, a local reply from a body callback
// and a reset all go to the error handler before anything is written
// downstream, so the client gets a whole answer (502, the reply) instead of
// a truncated one.
func (x *exchange) filterWholeResponseBody(resp *http.Response, fb *filteredBody) error {
	// Sized by the upstream's Content-Length; a filter may still grow it.
	var buf bytes.Buffer
	buf.Grow(int(fb.remain) + bytes.MinRead)
	_, err := buf.ReadFrom(fb)
	_ = fb.Close()
	if err != nil {
		return err
	}
	body := buf.Bytes()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
	// The whole body is here: nothing to stream, so no flush per write
	// (the reverse proxy reads FlushInterval after this hook).
	x.proxy.FlushInterval = 0
	return nil
}

// copyBuffers lends the reverse proxy its 32 KiB response copy buffers.
// Without a pool httputil.ReverseProxy allocates (and zeroes) one per
// response: at 10 000 req/s that is 320 MB/s of garbage, the largest
// allocation of a proxied request.
type copyBuffers struct{ pool sync.Pool }

// copyBufferSize is httputil.ReverseProxy's own buffer size.
const copyBufferSize = 32 << 10

func (b *copyBuffers) Get() []byte {
	if p, ok := b.pool.Get().(*[]byte); ok {
		return *p
	}
	return make([]byte, copyBufferSize)
}

func (b *copyBuffers) Put(buf []byte) {
	if cap(buf) != copyBufferSize {
		return
	}
	buf = buf[:copyBufferSize]
	b.pool.Put(&buf)
}

func isUpgrade(r *http.Request) bool {
	return r.Header.Get("Upgrade") != "" && strings.Contains(strings.ToLower(r.Header.Get("Connection")), "upgrade")
}

// statusRecorder remembers the status written downstream. It forwards
// Flush, Hijack and the trailers through http.ResponseController.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 && code >= 200 || code == http.StatusSwitchingProtocols {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach Flush and Hijack.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// Flush implements http.Flusher (ReverseProxy flushes streamed responses).
func (s *statusRecorder) Flush() { _ = http.NewResponseController(s.ResponseWriter).Flush() }
