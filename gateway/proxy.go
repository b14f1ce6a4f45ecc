package gateway

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
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

// exchange is one downstream request's state, carried in its context.
type exchange struct {
	m       *model
	route   *compiledRoute
	cluster *clusterRT
	fs      *filterStream // nil without filters
	status  int
	err     error
	local   *wasmhost.LocalReply
}

type ctxKey struct{}

func exchangeOf(ctx context.Context) *exchange {
	x, _ := ctx.Value(ctxKey{}).(*exchange)
	return x
}

// filterStream serialises every call into one chain stream: the request
// body is read by the transport's goroutine while the response may already
// arrive, and a wasm instance must never be entered twice at once.
type filterStream struct {
	mu       sync.Mutex
	cs       *wasmhost.ChainStream
	buffered [2]int
	limit    int
	// local is a filter's local reply given from a body callback.
	local *wasmhost.LocalReply
}

func (f *filterStream) do(fn func(cs *wasmhost.ChainStream) wasmhost.Result) wasmhost.Result {
	f.mu.Lock()
	defer f.mu.Unlock()
	return fn(f.cs)
}

// ServeHTTP implements http.Handler: filters on the request headers, then
// the route (so a filter's headers, e.g. the dye lane, steer routing), then
// the upstream through the reverse proxy.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	m := g.acquire()
	if m == nil {
		http.Error(w, "gateway: no configuration yet", http.StatusServiceUnavailable)
		return
	}
	defer m.refs.Add(-1)
	ctx := r.Context()
	span := trace.SpanFromContext(ctx) // no-op unless tracing
	// The server span starts once the filters have seen the request
	// headers, so its parent is the traceparent they leave: the trace
	// filter's span for this hop. The gateway's spans then nest inside it
	// instead of standing beside it. A request answered before or by the
	// filters gets a span from its arrival.
	spanStarted := !g.tracing
	startSpan := func(at time.Time) {
		if spanStarted {
			return
		}
		spanStarted = true
		pctx := g.prop.Extract(ctx, propagation.HeaderCarrier(r.Header))
		ctx, span = g.tracer.Start(pctx, "ingress "+r.Method, trace.WithSpanKind(trace.SpanKindServer), trace.WithTimestamp(at),
			trace.WithAttributes(attribute.String("http.request.method", r.Method), attribute.String("url.path", r.URL.Path)))
	}
	// An identity-bearing header a caller typed is never forwarded: the
	// peer's identity is its certificate (Envoy's default
	// forward_client_cert_details SANITIZE does the same).
	r.Header.Del("X-Forwarded-Client-Cert")
	x := &exchange{m: m}
	l := m.listener
	routeName, clusterName := "", ""
	defer func() {
		startSpan(start) // answered before or by the filters
		defer span.End()
		code := x.status
		if code == 0 {
			code = http.StatusOK
		}
		span.SetAttributes(attribute.Int("http.response.status_code", code))
		if code >= 500 {
			span.SetStatus(codes.Error, http.StatusText(code))
		}
		g.met.request(routeName, clusterName, code, time.Since(start))
	}()
	if l.blocked != "" {
		x.status = http.StatusServiceUnavailable
		http.Error(w, "wasm filter "+l.blocked+" is unavailable", x.status)
		return
	}
	var props map[string][]byte
	if l.chain != nil {
		props = map[string][]byte{}
		info := wasmhost.StreamInfo{SourceAddress: r.RemoteAddr, DestinationAddress: g.Addr().String(), Properties: props}
		if r.TLS != nil {
			info.TLSVersion = tls.VersionName(r.TLS.Version)
			if len(r.TLS.PeerCertificates) > 0 {
				info.MTLS = true
				if u := r.TLS.PeerCertificates[0].URIs; len(u) > 0 {
					info.PeerURISAN, info.PeerPrincipal = u[0].String(), u[0].String()
				}
			}
		}
		cs, err := l.chain.NewStream(ctx, info)
		if err != nil {
			x.status = http.StatusServiceUnavailable
			http.Error(w, "gateway: filters unavailable: "+err.Error(), x.status)
			return
		}
		x.fs = &filterStream{cs: cs, limit: g.cfg.MaxBufferBytes}
		defer func() {
			x.fs.mu.Lock()
			cs.Close()
			x.fs.mu.Unlock()
		}()
		h := requestToHeaders(r)
		noBody := r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0
		res := x.fs.do(func(cs *wasmhost.ChainStream) wasmhost.Result { return cs.OnRequestHeaders(h, noBody) })
		if res.Err != nil {
			g.log.Warn("filter error on request headers", "err", res.Err)
		}
		switch res.Action {
		case wasmhost.Reply:
			x.status = writeLocalReply(w, res.Reply)
			return
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
				if !g.primeRequestBody(w, r, fb, x) {
					return
				}
			} else {
				// Body callbacks may change the length: stream it chunked
				// (HTTP/1.1) or as DATA frames (HTTP/2) instead of with the
				// original Content-Length.
				r.ContentLength = -1
			}
		}
		applyRequestHeaders(r, h)
	}
	if len(l.access) > 0 {
		d := evaluateAccess(l.access, newAccessRequest(r), g.met.accessDecision)
		if d.denied {
			x.status = g.denyAccess(w, r, x, props, d)
			return
		}
	}
	startSpan(time.Now())
	rt := l.routes.match(r.Host, r.URL.RequestURI(), r.Header)
	if rt == nil {
		x.status = http.StatusNotFound
		http.Error(w, "gateway: no route", x.status)
		return
	}
	routeName = rt.name
	x.route = rt
	if rt.direct != nil {
		x.status = rt.direct.status
		w.WriteHeader(rt.direct.status)
		_, _ = w.Write(rt.direct.body)
		return
	}
	clusterName = rt.pickCluster()
	x.cluster = m.clusters[clusterName]
	if x.cluster == nil {
		x.status = http.StatusServiceUnavailable
		http.Error(w, "gateway: cluster "+clusterName+" not found", x.status)
		return
	}
	if rt.timeout > 0 && !isUpgrade(r) {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, rt.timeout)
		defer cancel()
	}
	ctx = context.WithValue(ctx, ctxKey{}, x)
	rec := &statusRecorder{ResponseWriter: w}
	g.rp.ServeHTTP(rec, r.WithContext(ctx))
	if x.status == 0 {
		x.status = rec.status
	}
}

// denyAccess answers an RBAC denial with 403 and a short reason. As in
// Envoy, the local reply runs through the filters' response callbacks and
// response.code_details names the matched rule, so the audit filter records
// an ACCESS_DENIED event.
func (g *Gateway) denyAccess(w http.ResponseWriter, r *http.Request, x *exchange, props map[string][]byte, d accessDecision) int {
	caller := "an unauthenticated caller"
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		caller = certPrincipal(r.TLS.PeerCertificates[0])
	}
	g.log.Info("access denied", "filter", d.filter, "rule", d.rule, "caller", caller, "method", r.Method, "path", r.URL.Path)
	reason := "RBAC: access denied (rule " + d.rule + ")"
	body := []byte(reason + "\n")
	h := &wasmhost.Headers{Pairs: [][2]string{{":status", "403"}, {"content-type", "text/plain; charset=utf-8"}}}
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
		// As Envoy: a gRPC call gets a trailers-only PERMISSION_DENIED.
		body = nil
		h.Pairs = [][2]string{{":status", "200"}, {"content-type", "application/grpc"}, {"grpc-status", "7"}, {"grpc-message", reason}}
	}
	if x.fs != nil {
		res := x.fs.do(func(cs *wasmhost.ChainStream) wasmhost.Result {
			props["response.code_details"] = []byte(accessDeniedDetails + d.rule + "]")
			return cs.OnResponseHeaders(h, false)
		})
		if res.Action == wasmhost.Reply && res.Reply != nil {
			return writeLocalReply(w, res.Reply)
		}
		res = x.fs.do(func(cs *wasmhost.ChainStream) wasmhost.Result { return cs.OnResponseBody(body, true) })
		if res.Body != nil {
			body = res.Body
		}
	}
	status := http.StatusForbidden
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

// primeRequestBody reads the request body through the filters until they
// release it (or answer locally). It reports whether to go on forwarding;
// when it returns false the response has been written.
func (g *Gateway) primeRequestBody(w http.ResponseWriter, r *http.Request, fb *filteredBody, x *exchange) bool {
	var pre []byte
	buf := make([]byte, 32<<10)
	for {
		n, err := fb.Read(buf)
		pre = append(pre, buf[:n]...)
		if err == nil && len(fb.out) == 0 && !fb.eof {
			// The filters released their buffer; the rest streams.
			break
		}
		if errors.Is(err, io.EOF) || (err == nil && fb.eof && len(fb.out) == 0) {
			// Whole body seen and released: its length is now known.
			r.ContentLength = int64(len(pre))
			r.Body = io.NopCloser(bytes.NewReader(pre))
			_ = fb.Close()
			return true
		}
		if err != nil {
			switch {
			case x.fs.local != nil:
				x.status = writeLocalReply(w, x.fs.local)
			case errors.Is(err, errBodyLimit):
				x.status = http.StatusRequestEntityTooLarge
				http.Error(w, err.Error(), x.status)
			default:
				x.status = http.StatusBadRequest
				http.Error(w, "gateway: reading the request body: "+err.Error(), x.status)
			}
			return false
		}
	}
	r.ContentLength = -1
	r.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(pre), fb), fb}
	return true
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

func (g *Gateway) reverseProxy() *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			x := exchangeOf(pr.In.Context())
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
		},
		Transport:      (*upstream)(g),
		FlushInterval:  -1,
		ModifyResponse: g.modifyResponse,
		ErrorHandler:   g.errorHandler,
		ErrorLog:       nil,
	}
}

var (
	errLocalReply = errors.New("local reply from a filter")
	errBodyLimit  = errors.New("body buffered by filters exceeds the limit")
)

func (g *Gateway) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	x := exchangeOf(r.Context())
	switch {
	case x.local != nil:
		x.status = writeLocalReply(w, x.local)
	case x.fs != nil && x.fs.local != nil:
		x.status = writeLocalReply(w, x.fs.local)
	case errors.Is(err, errBodyLimit):
		x.status = http.StatusRequestEntityTooLarge
		http.Error(w, err.Error(), x.status)
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
		g.log.Debug("upstream error", "err", err)
		http.Error(w, "gateway: upstream connect error or reset", x.status)
	}
}

// modifyResponse runs the response header filters and wraps the body so its
// chunks and trailers pass through the filters too.
func (g *Gateway) modifyResponse(resp *http.Response) error {
	x := exchangeOf(resp.Request.Context())
	if x == nil || x.fs == nil || resp.StatusCode == http.StatusSwitchingProtocols {
		return nil
	}
	h := responseToHeaders(resp)
	noBody := resp.Body == nil || resp.Body == http.NoBody || resp.ContentLength == 0 && len(resp.Trailer) == 0
	res := x.fs.do(func(cs *wasmhost.ChainStream) wasmhost.Result { return cs.OnResponseHeaders(h, noBody) })
	switch res.Action {
	case wasmhost.Reply:
		x.local = res.Reply
		return errLocalReply
	case wasmhost.Reset:
		return errors.New("a filter reset the stream")
	}
	applyResponseHeaders(resp, h)
	if !noBody {
		remain := resp.ContentLength
		if len(resp.Trailer) > 0 {
			remain = -1 // trailers follow the body: end of stream comes with them
		}
		resp.Body = &filteredBody{rc: resp.Body, fs: x.fs, dir: 1, trailer: resp, remain: remain}
		resp.ContentLength = -1
		resp.Header.Del("Content-Length")
	}
	return nil
}

// filteredBody passes a body through the filters chunk by chunk. Chunks a
// filter buffers are held (up to the limit) until it lets them go.
type filteredBody struct {
	rc      io.ReadCloser
	fs      *filterStream
	dir     int
	req     bool
	trailer *http.Response
	out     []byte
	eof     bool
	remain  int64 // bytes still expected when the length is known, else -1
	buf     *[]byte
}

// bodyBufs recycles the read buffers of filtered bodies.
var bodyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (b *filteredBody) Read(p []byte) (int, error) {
	for len(b.out) == 0 {
		if b.eof {
			return 0, io.EOF
		}
		if b.buf == nil {
			b.buf = bodyBufs.Get().(*[]byte)
		}
		n, err := b.rc.Read(*b.buf)
		if err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
		eos := errors.Is(err, io.EOF)
		if b.remain >= 0 {
			// A known length ends the stream with its last byte: no extra
			// empty end-of-stream callback into every filter.
			b.remain -= int64(n)
			eos = eos || b.remain <= 0
		}
		chunk := (*b.buf)[:n]
		if n == 0 && !eos {
			continue
		}
		res := b.fs.do(func(cs *wasmhost.ChainStream) wasmhost.Result {
			if b.req {
				return cs.OnRequestBody(chunk, eos)
			}
			return cs.OnResponseBody(chunk, eos)
		})
		switch res.Action {
		case wasmhost.Continue:
			b.out = append(b.out[:0], res.Body...)
			b.fs.buffered[b.dir] = 0
		case wasmhost.Buffer:
			b.fs.buffered[b.dir] += n
			if b.fs.buffered[b.dir] > b.fs.limit {
				return 0, errBodyLimit
			}
		case wasmhost.Reply:
			b.fs.local = res.Reply
			return 0, errLocalReply
		default:
			return 0, fmt.Errorf("a filter stopped the %s body (%s)", map[bool]string{true: "request", false: "response"}[b.req], res.Action)
		}
		if eos {
			b.eof = true
			if b.trailer != nil && len(b.trailer.Trailer) > 0 {
				t := headersFrom(b.trailer.Trailer)
				b.fs.do(func(cs *wasmhost.ChainStream) wasmhost.Result { return cs.OnResponseTrailers(t) })
				for k := range b.trailer.Trailer {
					delete(b.trailer.Trailer, k)
				}
				for _, kv := range t.Pairs {
					b.trailer.Trailer.Add(kv[0], kv[1])
				}
			}
		}
	}
	n := copy(p, b.out)
	b.out = b.out[n:]
	return n, nil
}

func (b *filteredBody) Close() error {
	if b.buf != nil && b.eof {
		bodyBufs.Put(b.buf)
		b.buf = nil
	}
	return b.rc.Close()
}

// upstream is the reverse proxy's transport: endpoint choice, retries
// within the cluster's budget, per-try timeouts, outlier detection and the
// client span.
type upstream Gateway

func (u *upstream) RoundTrip(req *http.Request) (*http.Response, error) {
	g := (*Gateway)(u)
	x := exchangeOf(req.Context())
	c := x.cluster
	c.live.active.Add(1)
	defer c.live.active.Add(-1)
	var tried []*epState
	attempts := 1
	if rp := x.route.retry; rp != nil && (req.Body == nil || req.Body == http.NoBody) {
		attempts += rp.num
	}
	tr := c.tr.forRequest(req)
	held := int64(0) // retry budget slots this request holds
	defer func() { c.live.activeRetries.Add(-held) }()
	for i := 0; ; i++ {
		now := time.Now()
		ep := c.pick(now.UnixNano(), tried)
		if ep == nil {
			return nil, errNoHealthy
		}
		tried = append(tried, ep)
		resp, err := g.attempt(req, tr, c, ep)
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		if c.observe(ep, status, err, now) {
			g.met.ejections.WithLabelValues(c.spec.name).Inc()
		}
		last := i+1 >= attempts || req.Context().Err() != nil
		if !last && x.route.retry.shouldRetry(status, err) && c.retryAllowed() {
			g.met.retries.WithLabelValues(c.spec.name).Inc()
			if resp != nil {
				_, _ = io.CopyN(io.Discard, resp.Body, 64<<10)
				resp.Body.Close()
			}
			held++
			continue
		}
		return resp, err
	}
}

func (g *Gateway) attempt(req *http.Request, tr *http.Transport, c *clusterRT, ep *epState) (*http.Response, error) {
	ctx := req.Context()
	span := trace.SpanFromContext(ctx)
	if g.tracing {
		ctx, span = g.tracer.Start(ctx, "egress "+c.spec.name, trace.WithSpanKind(trace.SpanKindClient),
			trace.WithAttributes(attribute.String("server.address", ep.addr)))
	}
	ctx, cancel := context.WithCancel(ctx)
	var timer *time.Timer
	if rp := exchangeOf(ctx).route.retry; rp != nil && rp.perTry > 0 {
		timer = time.AfterFunc(rp.perTry, cancel)
	}
	// A shallow copy: req is already the reverse proxy's private outbound
	// request, and its body is only replayed when empty.
	out := req.WithContext(ctx)
	u := *req.URL
	u.Host = ep.addr
	out.URL = &u
	if g.tracing {
		g.prop.Inject(ctx, propagation.HeaderCarrier(out.Header))
	}
	ep.active.Add(1)
	resp, err := tr.RoundTrip(out)
	if timer != nil {
		timer.Stop()
	}
	done := func() {
		ep.active.Add(-1)
		cancel()
		if g.tracing {
			span.End()
		}
	}
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		done()
		return nil, err
	}
	span.SetAttributes(attribute.Int("http.response.status_code", resp.StatusCode))
	if resp.StatusCode == http.StatusSwitchingProtocols {
		// The upgraded connection outlives the exchange; the span ends here.
		ep.active.Add(-1)
		if g.tracing {
			span.End()
		}
		return resp, nil
	}
	resp.Body = &doneBody{ReadCloser: resp.Body, done: done}
	return resp, nil
}

type doneBody struct {
	io.ReadCloser
	once sync.Once
	done func()
}

func (d *doneBody) Close() error {
	err := d.ReadCloser.Close()
	d.once.Do(d.done)
	return err
}

// requestToHeaders builds the proxy-wasm header map with Envoy's pseudo
// headers.
func requestToHeaders(r *http.Request) *wasmhost.Headers {
	h := &wasmhost.Headers{Pairs: make([][2]string, 0, len(r.Header)+4)}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	h.Pairs = append(h.Pairs, [2]string{":method", r.Method}, [2]string{":path", r.URL.RequestURI()},
		[2]string{":authority", r.Host}, [2]string{":scheme", scheme})
	for k, vs := range r.Header {
		lk := strings.ToLower(k)
		for _, v := range vs {
			h.Pairs = append(h.Pairs, [2]string{lk, v})
		}
	}
	return h
}

func applyRequestHeaders(r *http.Request, h *wasmhost.Headers) {
	hdr := make(http.Header, len(h.Pairs))
	for _, kv := range h.Pairs {
		switch kv[0] {
		case ":method":
			r.Method = kv[1]
		case ":authority":
			r.Host = kv[1]
		case ":path":
			if u, err := url.ParseRequestURI(kv[1]); err == nil {
				r.URL.Path, r.URL.RawPath, r.URL.RawQuery = u.Path, u.RawPath, u.RawQuery
			}
		case ":scheme":
		default:
			hdr.Add(kv[0], kv[1])
		}
	}
	r.Header = hdr
}

func responseToHeaders(resp *http.Response) *wasmhost.Headers {
	h := &wasmhost.Headers{Pairs: make([][2]string, 0, len(resp.Header)+1)}
	h.Pairs = append(h.Pairs, [2]string{":status", strconv.Itoa(resp.StatusCode)})
	for k, vs := range resp.Header {
		lk := strings.ToLower(k)
		for _, v := range vs {
			h.Pairs = append(h.Pairs, [2]string{lk, v})
		}
	}
	return h
}

func applyResponseHeaders(resp *http.Response, h *wasmhost.Headers) {
	hdr := make(http.Header, len(h.Pairs))
	for _, kv := range h.Pairs {
		if kv[0] == ":status" {
			if n, err := strconv.Atoi(kv[1]); err == nil {
				resp.StatusCode = n
			}
			continue
		}
		hdr.Add(kv[0], kv[1])
	}
	resp.Header = hdr
}

func headersFrom(h http.Header) *wasmhost.Headers {
	out := &wasmhost.Headers{}
	for k, vs := range h {
		for _, v := range vs {
			out.Pairs = append(out.Pairs, [2]string{strings.ToLower(k), v})
		}
	}
	return out
}

// writeLocalReply answers from a filter's proxy_send_local_response.
func writeLocalReply(w http.ResponseWriter, lr *wasmhost.LocalReply) int {
	for _, kv := range lr.Headers {
		w.Header().Add(kv[0], kv[1])
	}
	status := lr.Status
	if lr.GRPCStatus >= 0 {
		w.Header().Set("Content-Type", "application/grpc")
		w.Header().Set("Grpc-Status", strconv.Itoa(int(lr.GRPCStatus)))
		w.Header().Set("Grpc-Message", string(lr.Body))
		status = http.StatusOK
	}
	if status == 0 {
		status = http.StatusForbidden
	}
	w.WriteHeader(status)
	if lr.GRPCStatus < 0 {
		_, _ = w.Write(lr.Body)
	}
	return status
}

// tlsSwitchListener terminates TLS on accepted connections when the current
// listener config has a DownstreamTlsContext; the certificate is read from
// the current model at each handshake, so an SDS rotation applies to the
// next connection without a restart.
type tlsSwitchListener struct {
	net.Listener
	g *Gateway
}

func (l *tlsSwitchListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	m := l.g.model.Load()
	if m == nil || m.listener.tls == nil {
		return c, nil
	}
	return tls.Server(c, &tls.Config{GetConfigForClient: l.g.serverTLS}), nil
}

func (g *Gateway) serverTLS(*tls.ClientHelloInfo) (*tls.Config, error) {
	m := g.model.Load()
	if m == nil || m.listener.tls == nil {
		return nil, errors.New("tls is no longer configured for this listener")
	}
	spec := m.listener.tls
	cert := g.secrets.cert(spec.certSecret)
	if cert == nil {
		return nil, fmt.Errorf("certificate secret %q has not arrived", spec.certSecret)
	}
	alpn := spec.alpn
	if len(alpn) == 0 {
		alpn = []string{"h2", "http/1.1"}
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{*cert}, NextProtos: alpn}
	if spec.rootsSecret != "" {
		cfg.ClientCAs = g.secrets.roots(spec.rootsSecret)
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
		if spec.requireClient {
			cfg.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
	return cfg, nil
}
