package gateway

// Resilience settings the plane emits from a ResiliencePolicy, obeyed as
// Envoy obeys them: per-route local rate limit and fault injection
// (typed_per_filter_config of envoy.filters.http.local_ratelimit and
// envoy.filters.http.fault, effective only when the listener runs those
// filters), request mirroring (request_mirror_policies) and the cluster
// circuit breakers (max_requests, max_connections, max_pending_requests).
// Timeouts, retries, the retry budget and outlier detection are in
// route.go, cluster.go and upstream.go.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	lrlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/local_ratelimit/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/types/known/anypb"
)

// The HTTP filter names whose per-route configuration the gateway obeys.
const (
	localRateLimitFilter = "envoy.filters.http.local_ratelimit"
	faultFilter          = "envoy.filters.http.fault"
)

// errOverflow is a circuit breaker refusing a request (Envoy's overflow).
var errOverflow = errors.New("upstream overflow: circuit breaker open")

// maxMirrorsInFlight bounds the shadow requests of one model: a copy that
// would exceed it is dropped (and counted), never queued.
const maxMirrorsInFlight = 64

// tokenBucket is a route's local rate limit.
type tokenBucket struct {
	mu       sync.Mutex
	max      float64
	perFill  float64
	interval time.Duration
	tokens   float64
	last     time.Time
}

// take takes one token, refilling whole intervals since the last fill.
func (b *tokenBucket) take(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.last.IsZero() {
		b.last, b.tokens = now, b.max
	}
	if n := now.Sub(b.last) / b.interval; n > 0 {
		b.tokens = min(b.max, b.tokens+float64(n)*b.perFill)
		b.last = b.last.Add(n * b.interval)
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// faultRT is a route's fault injection.
type faultRT struct {
	delay       time.Duration
	delayFrac   float64
	abortStatus int
	abortFrac   float64
}

// mirrorRT is one request mirror policy.
type mirrorRT struct {
	cluster string
	frac    float64
}

// fractionOf turns an Envoy FractionalPercent into a probability.
func fractionOf(p *typev3.FractionalPercent) float64 {
	if p == nil {
		return 1 // Envoy: an absent percentage means 100%
	}
	den := 100.0
	switch p.GetDenominator() {
	case typev3.FractionalPercent_TEN_THOUSAND:
		den = 10000
	case typev3.FractionalPercent_MILLION:
		den = 1e6
	}
	return min(1, float64(p.GetNumerator())/den)
}

// compileRouteResilience reads a route's per-filter configuration and its
// mirror policies.
func compileRouteResilience(cr *compiledRoute, r *route.Route) error {
	for name, a := range r.GetTypedPerFilterConfig() {
		switch {
		case a.MessageIs(&lrlv3.LocalRateLimit{}):
			b, err := compileRateLimit(a)
			if err != nil {
				return fmt.Errorf("typed_per_filter_config %q: %w", name, err)
			}
			cr.rateLimit = b
		case a.MessageIs(&faultv3.HTTPFault{}):
			var f faultv3.HTTPFault
			if err := a.UnmarshalTo(&f); err != nil {
				return fmt.Errorf("typed_per_filter_config %q: %w", name, err)
			}
			fr := &faultRT{}
			if d := f.GetDelay(); d != nil {
				if d.GetFixedDelay() == nil {
					return fmt.Errorf("typed_per_filter_config %q: only fixed_delay is supported by the gateway", name)
				}
				fr.delay, fr.delayFrac = d.GetFixedDelay().AsDuration(), fractionOf(d.GetPercentage())
			}
			if ab := f.GetAbort(); ab != nil {
				if ab.GetHttpStatus() == 0 {
					return fmt.Errorf("typed_per_filter_config %q: only abort.http_status is supported by the gateway", name)
				}
				fr.abortStatus, fr.abortFrac = int(ab.GetHttpStatus()), fractionOf(ab.GetPercentage())
			}
			cr.fault = fr
		}
	}
	if ra := r.GetRoute(); ra != nil {
		for _, m := range ra.GetRequestMirrorPolicies() {
			if m.GetCluster() == "" {
				return errors.New("request_mirror_policies: only cluster is supported by the gateway (not cluster_header)")
			}
			frac := 1.0
			if rf := m.GetRuntimeFraction(); rf != nil {
				frac = fractionOf(rf.GetDefaultValue())
			}
			cr.mirrors = append(cr.mirrors, mirrorRT{cluster: m.GetCluster(), frac: frac})
		}
	}
	return nil
}

func compileRateLimit(a *anypb.Any) (*tokenBucket, error) {
	var l lrlv3.LocalRateLimit
	if err := a.UnmarshalTo(&l); err != nil {
		return nil, err
	}
	tb := l.GetTokenBucket()
	if tb == nil {
		return nil, nil // no bucket: the filter does nothing on this route
	}
	// Envoy enforces only the share in filter_enabled and filter_enforced
	// (absent means 0%: the filter does nothing); the gateway supports
	// all or nothing, and refuses a share in between.
	share := func(p *corev3.RuntimeFractionalPercent) float64 {
		if p == nil {
			return 0
		}
		return fractionOf(p.GetDefaultValue())
	}
	enabled, enforced := share(l.GetFilterEnabled()), share(l.GetFilterEnforced())
	if enabled > 0 && enabled < 1 || enforced > 0 && enforced < 1 {
		return nil, errors.New("filter_enabled / filter_enforced below 100% are not supported by the gateway: use 0% or 100%")
	}
	if enabled == 0 || enforced == 0 {
		return nil, nil
	}
	if tb.GetFillInterval().AsDuration() <= 0 {
		return nil, errors.New("token_bucket.fill_interval must be positive")
	}
	perFill := uint32(1)
	if tb.GetTokensPerFill() != nil {
		perFill = tb.GetTokensPerFill().GetValue()
	}
	return &tokenBucket{max: float64(tb.GetMaxTokens()), perFill: float64(perFill), interval: tb.GetFillInterval().AsDuration()}, nil
}

// chance reports true with probability p.
func chance(p float64) bool { return p >= 1 || p > 0 && rand.Float64() < p }

// applyResilience runs the route's rate limit and fault injection (in the
// filters' order: rate limit, then fault) and starts its mirrors. It
// reports whether the request goes on to the upstream.
func (x *exchange) applyResilience() bool {
	rt, l := x.route, x.m.listener
	if rt.rateLimit != nil && l.rateLimit && !rt.rateLimit.take(time.Now()) {
		x.g.met.resilience.WithLabelValues(x.clusterName, "rate_limited").Inc()
		x.w.Header().Set("X-Ratelimit-Reason", "local_rate_limited")
		x.fail(http.StatusTooManyRequests, "local_rate_limited")
		return false
	}
	if f := rt.fault; f != nil && l.fault {
		if f.delay > 0 && chance(f.delayFrac) {
			x.g.met.resilience.WithLabelValues(x.clusterName, "fault_delay").Inc()
			t := time.NewTimer(f.delay)
			select {
			case <-t.C:
			case <-x.ctx.Done():
				t.Stop()
				x.status = 499
				return false
			}
		}
		if f.abortStatus > 0 && chance(f.abortFrac) {
			x.g.met.resilience.WithLabelValues(x.clusterName, "fault_abort").Inc()
			x.fail(f.abortStatus, "fault filter abort")
			return false
		}
	}
	for _, m := range rt.mirrors {
		if chance(m.frac) {
			x.mirror(m.cluster)
		}
	}
	return true
}

// mirror sends a copy of the request, fire-and-forget, to cluster with
// "-shadow" appended to the host (before any port), as Envoy does. Only
// requests without a body are copied: the body belongs to the filters and
// the upstream; a copy of a request with a body is counted as dropped.
func (x *exchange) mirror(cluster string) {
	g, r := x.g, x.r
	c := x.m.clusters[cluster]
	if c == nil || r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 || isUpgrade(r) {
		g.met.resilience.WithLabelValues(cluster, "mirror_dropped").Inc()
		return
	}
	select {
	case x.m.mirrorSlots <- struct{}{}:
	default:
		g.met.resilience.WithLabelValues(cluster, "mirror_dropped").Inc()
		return
	}
	ep := c.pick(time.Now().UnixNano(), nil)
	if ep == nil {
		<-x.m.mirrorSlots
		g.met.resilience.WithLabelValues(cluster, "mirror_dropped").Inc()
		return
	}
	timeout := x.route.timeout
	if timeout <= 0 {
		timeout = 15 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(x.ctx), timeout)
	out := r.Clone(ctx)
	out.RequestURI = ""
	out.Body = http.NoBody
	out.URL.Scheme, out.URL.Host = c.tr.scheme, ep.addr
	out.Host = shadowHost(r.Host)
	out.Header.Del("X-Forwarded-Client-Cert")
	if p := x.route.prefixRewrite; p != "" && x.route.kind == pathPrefix {
		out.URL.Path = p + strings.TrimPrefix(r.URL.Path, x.route.path)
		out.URL.RawPath = ""
	}
	tr := c.tr.forRequest(out)
	g.met.resilience.WithLabelValues(cluster, "mirror_sent").Inc()
	go func() {
		defer func() { <-x.m.mirrorSlots }()
		defer cancel()
		resp, err := tr.RoundTrip(out)
		if err != nil {
			g.log.Debug("mirror failed", "cluster", cluster, "err", err)
			return
		}
		_, _ = io.CopyN(io.Discard, resp.Body, 1<<20)
		resp.Body.Close()
	}()
}

// shadowHost appends "-shadow" to host, before the port if there is one.
func shadowHost(host string) string {
	if h, p, err := net.SplitHostPort(host); err == nil {
		return net.JoinHostPort(h+"-shadow", p)
	}
	return host + "-shadow"
}

// overflow answers a request refused by a circuit breaker as Envoy does:
// 503 with x-envoy-overloaded: true.
func (x *exchange) overflow(w http.ResponseWriter) {
	x.g.met.resilience.WithLabelValues(x.clusterName, "overflow").Inc()
	x.status = http.StatusServiceUnavailable
	w.Header().Set("X-Envoy-Overloaded", "true")
	http.Error(w, "upstream connect error or disconnect/reset before headers. reset reason: overflow", x.status)
}

// admitRequest takes one of the cluster's max_requests slots; release
// gives it back.
func (c *clusterRT) admitRequest() (release func(), ok bool) {
	n := c.live.requests.Add(1)
	release = func() { c.live.requests.Add(-1) }
	if max := c.spec.maxRequests; max > 0 && n > max {
		release()
		return nil, false
	}
	return release, true
}

// acquireConn takes one of the cluster's max_connections slots (one
// upstream exchange at a time per HTTP/1.1 connection), waiting as a
// pending request while none is free; past max_pending_requests waiters,
// or when ctx ends, it fails with errOverflow or ctx's error.
func (c *clusterRT) acquireConn(ctx context.Context) (release func(), err error) {
	maxConns := c.spec.maxConnections
	l := c.live
	release = func() {
		l.conns.Add(-1)
		select {
		case l.connFreed <- struct{}{}:
		default:
		}
	}
	if maxConns <= 0 {
		l.conns.Add(1)
		return release, nil
	}
	try := func() bool {
		for {
			n := l.conns.Load()
			if n >= maxConns {
				return false
			}
			if l.conns.CompareAndSwap(n, n+1) {
				return true
			}
		}
	}
	if try() {
		return release, nil
	}
	if p := l.pending.Add(1); c.spec.maxPending > 0 && p > c.spec.maxPending {
		l.pending.Add(-1)
		return nil, errOverflow
	}
	defer l.pending.Add(-1)
	tick := time.NewTicker(5 * time.Millisecond) // a missed wake-up costs 5ms at most
	defer tick.Stop()
	for !try() {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-l.connFreed:
		case <-tick.C:
		}
	}
	return release, nil
}

// checkBuiltinFilter refuses listener-wide settings of the rate limit and
// fault filters: the gateway applies them per route only.
func checkBuiltinFilter(a *anypb.Any) error {
	if a.MessageIs(&lrlv3.LocalRateLimit{}) {
		var l lrlv3.LocalRateLimit
		if err := a.UnmarshalTo(&l); err != nil {
			return err
		}
		if l.GetTokenBucket() != nil {
			return errors.New("a listener-wide token_bucket is not supported by the gateway: configure it per route (typed_per_filter_config)")
		}
		return nil
	}
	var f faultv3.HTTPFault
	if err := a.UnmarshalTo(&f); err != nil {
		return err
	}
	if f.GetDelay() != nil || f.GetAbort() != nil {
		return errors.New("a listener-wide delay or abort is not supported by the gateway: configure it per route (typed_per_filter_config)")
	}
	return nil
}

// saturationCollector exports each cluster's pool saturation at scrape
// time: the highest of active requests / max_requests, connections /
// max_connections and pending / max_pending_requests (Envoy's default
// 1024 for a limit that is not set). The plane's health score reads it.
type saturationCollector struct{ g *Gateway }

var saturationDesc = prometheus.NewDesc("meshwarden_gateway_upstream_saturation",
	"Pool saturation per cluster (0-1): the highest of active requests, connections and pending requests over their circuit breaker limits (1024 when unset).",
	[]string{"cluster"}, nil)

// Describe implements prometheus.Collector.
func (c *saturationCollector) Describe(ch chan<- *prometheus.Desc) { ch <- saturationDesc }

// Collect implements prometheus.Collector.
func (c *saturationCollector) Collect(ch chan<- prometheus.Metric) {
	m := c.g.acquire()
	if m == nil {
		return
	}
	defer m.refs.Add(-1)
	for name, cl := range m.clusters {
		ch <- prometheus.MustNewConstMetric(saturationDesc, prometheus.GaugeValue, cl.saturation(), name)
	}
}

func (c *clusterRT) saturation() float64 {
	ratio := func(n, limit int64) float64 {
		if limit <= 0 {
			limit = 1024
		}
		return min(1, float64(n)/float64(limit))
	}
	l, s := c.live, c.spec
	return max(ratio(l.requests.Load(), s.maxRequests), ratio(l.conns.Load(), s.maxConnections), ratio(l.pending.Load(), s.maxPending))
}
