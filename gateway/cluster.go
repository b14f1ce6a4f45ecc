package gateway

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	upstreamhttp "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/proto"

	"github.com/meshwarden/meshwarden/internal/pemcert"
)

type lbKind int

const (
	lbRoundRobin lbKind = iota
	lbLeastRequest
)

type protoMode int

const (
	protoHTTP1 protoMode = iota
	protoHTTP2
	protoDownstream // use the downstream request's protocol
)

// clusterSpec is the part of a cluster that does not change with its
// endpoints; its key decides whether a pooled transport can be reused.
type clusterSpec struct {
	name           string
	lb             lbKind
	proto          protoMode
	connectTimeout time.Duration
	tls            *upstreamTLSSpec
	outlier        *outlierSpec
	budgetPercent  float64
	minRetryConc   int64
	// Circuit breakers (resilience.go); zero means no limit.
	maxRequests, maxConnections, maxPending int64
	key                                     string
}

type upstreamTLSSpec struct {
	certSecret  string // "" for no client certificate
	rootsSecret string
	sni         string
	sans        []func(string) bool // URI SAN matchers (SPIFFE ids); empty = any
	alpn        []string
}

type outlierSpec struct {
	consecutive5xx uint32
	baseEjection   time.Duration
	maxEjection    time.Duration
	maxPercent     uint32
}

func clusterSpecOf(c *cluster.Cluster) (*clusterSpec, error) {
	s := &clusterSpec{name: c.GetName(), connectTimeout: 5 * time.Second, budgetPercent: -1, minRetryConc: 3}
	switch c.GetType() {
	case cluster.Cluster_EDS, cluster.Cluster_STATIC, cluster.Cluster_STRICT_DNS, cluster.Cluster_LOGICAL_DNS:
	default:
		return nil, fmt.Errorf("cluster type %s is not supported by the gateway: use EDS or STATIC", c.GetType())
	}
	switch c.GetLbPolicy() {
	case cluster.Cluster_ROUND_ROBIN:
		s.lb = lbRoundRobin
	case cluster.Cluster_LEAST_REQUEST:
		s.lb = lbLeastRequest
	default:
		return nil, fmt.Errorf("lb_policy %s is not supported by the gateway: use ROUND_ROBIN or LEAST_REQUEST", c.GetLbPolicy())
	}
	if c.GetConnectTimeout() != nil {
		s.connectTimeout = c.GetConnectTimeout().AsDuration()
	}
	//nolint:staticcheck // the deprecated field is still sent by older planes.
	if c.GetHttp2ProtocolOptions() != nil {
		s.proto = protoHTTP2
	}
	if a, ok := c.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]; ok {
		var po upstreamhttp.HttpProtocolOptions
		if err := a.UnmarshalTo(&po); err != nil {
			return nil, fmt.Errorf("typed_extension_protocol_options: %w", err)
		}
		switch {
		case po.GetExplicitHttpConfig().GetHttp2ProtocolOptions() != nil:
			s.proto = protoHTTP2
		case po.GetUseDownstreamProtocolConfig() != nil:
			s.proto = protoDownstream
		}
	}
	if od := c.GetOutlierDetection(); od != nil {
		o := &outlierSpec{consecutive5xx: 5, baseEjection: 30 * time.Second, maxEjection: 300 * time.Second, maxPercent: 10}
		if od.GetConsecutive_5Xx() != nil {
			o.consecutive5xx = od.GetConsecutive_5Xx().GetValue()
		}
		if od.GetBaseEjectionTime() != nil {
			o.baseEjection = od.GetBaseEjectionTime().AsDuration()
		}
		if od.GetMaxEjectionTime() != nil {
			o.maxEjection = od.GetMaxEjectionTime().AsDuration()
		}
		if od.GetMaxEjectionPercent() != nil {
			o.maxPercent = od.GetMaxEjectionPercent().GetValue()
		}
		if o.consecutive5xx > 0 {
			s.outlier = o
		}
	}
	for _, th := range c.GetCircuitBreakers().GetThresholds() {
		if th.GetPriority() != core.RoutingPriority_DEFAULT {
			continue
		}
		if rb := th.GetRetryBudget(); rb != nil {
			s.budgetPercent = 20
			if rb.GetBudgetPercent() != nil {
				s.budgetPercent = rb.GetBudgetPercent().GetValue()
			}
			if rb.GetMinRetryConcurrency() != nil {
				s.minRetryConc = int64(rb.GetMinRetryConcurrency().GetValue())
			}
		} else if th.GetMaxRetries() != nil {
			s.minRetryConc = int64(th.GetMaxRetries().GetValue())
		}
		s.maxRequests = int64(th.GetMaxRequests().GetValue())
		s.maxConnections = int64(th.GetMaxConnections().GetValue())
		s.maxPending = int64(th.GetMaxPendingRequests().GetValue())
	}
	utc, err := upstreamTLS(c)
	if err != nil {
		return nil, err
	}
	if utc != nil {
		ts, err := upstreamTLSSpecOf(utc)
		if err != nil {
			return nil, err
		}
		s.tls = ts
	}
	// The transport key: everything that shapes connections.
	key := []any{s.name, s.proto, s.connectTimeout}
	if utc != nil {
		b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(utc)
		key = append(key, string(b))
	}
	s.key = fmt.Sprint(key...)
	return s, nil
}

func upstreamTLSSpecOf(u *tlsv3.UpstreamTlsContext) (*upstreamTLSSpec, error) {
	ctc := u.GetCommonTlsContext()
	s := &upstreamTLSSpec{sni: u.GetSni(), alpn: ctc.GetAlpnProtocols()}
	if len(ctc.GetTlsCertificates()) > 0 {
		return nil, errors.New("upstream tls_certificates inline are not supported: use tls_certificate_sds_secret_configs")
	}
	if c := ctc.GetTlsCertificateSdsSecretConfigs(); len(c) > 0 {
		s.certSecret = c[0].GetName()
	}
	var vc *tlsv3.CertificateValidationContext
	switch {
	case ctc.GetValidationContextSdsSecretConfig() != nil:
		s.rootsSecret = ctc.GetValidationContextSdsSecretConfig().GetName()
	case ctc.GetCombinedValidationContext() != nil:
		s.rootsSecret = ctc.GetCombinedValidationContext().GetValidationContextSdsSecretConfig().GetName()
		vc = ctc.GetCombinedValidationContext().GetDefaultValidationContext()
	case ctc.GetValidationContext() != nil:
		return nil, errors.New("upstream inline validation_context is not supported: use validation_context_sds_secret_config (the roots secret)")
	}
	for _, m := range vc.GetMatchTypedSubjectAltNames() {
		if m.GetSanType() != tlsv3.SubjectAltNameMatcher_URI {
			return nil, fmt.Errorf("match_typed_subject_alt_names: san_type %s is not supported: use URI (SPIFFE ids)", m.GetSanType())
		}
		f, err := stringMatcher(m.GetMatcher())
		if err != nil {
			return nil, err
		}
		s.sans = append(s.sans, f)
	}
	if s.rootsSecret == "" {
		return nil, errors.New("upstream TLS without a validation context: set validation_context_sds_secret_config to the roots secret; the gateway never skips verification")
	}
	return s, nil
}

// epState is an endpoint's live state; it outlives model swaps so that
// least-request counts and outlier ejections survive a config update.
type epState struct {
	addr         string
	active       atomic.Int64
	consecutive  atomic.Uint32
	ejectedUntil atomic.Int64 // unix nanos
	ejections    atomic.Uint32
}

type endpointRef struct {
	st      *epState
	healthy bool // per EDS health_status
}

// clusterRT is a cluster in one model: its spec, endpoints and transport.
type clusterRT struct {
	spec      *clusterSpec
	endpoints []endpointRef
	healthyN  int
	tr        *upstreamTransport
	live      *clusterLive
}

// clusterLive is a cluster's state that survives model swaps.
type clusterLive struct {
	rr            atomic.Uint64
	active        atomic.Int64
	activeRetries atomic.Int64
	// requests, conns and pending feed the circuit breakers; connFreed
	// wakes a pending request (resilience.go).
	requests, conns, pending atomic.Int64
	connFreed                chan struct{}
	mu                       sync.Mutex
	eps                      map[string]*epState
}

func (l *clusterLive) endpoint(addr string) *epState {
	l.mu.Lock()
	defer l.mu.Unlock()
	return getOrAdd(l.eps, addr, func() *epState { return &epState{addr: addr} })
}

func endpointsOf(cla *endpoint.ClusterLoadAssignment, live *clusterLive) ([]endpointRef, int, error) {
	var out []endpointRef
	healthy := 0
	for _, lep := range cla.GetEndpoints() {
		for _, e := range lep.GetLbEndpoints() {
			sa := e.GetEndpoint().GetAddress().GetSocketAddress()
			if sa == nil {
				return nil, 0, errors.New("endpoint without a socket_address")
			}
			addr := net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue())))
			ok := true
			switch e.GetHealthStatus() {
			case core.HealthStatus_UNHEALTHY, core.HealthStatus_DRAINING, core.HealthStatus_TIMEOUT:
				ok = false
			}
			if ok {
				healthy++
			}
			out = append(out, endpointRef{st: live.endpoint(addr), healthy: ok})
		}
	}
	return out, healthy, nil
}

var errNoHealthy = errors.New("no healthy upstream")

// pick chooses an endpoint among the healthy, non-ejected ones, skipping
// those in tried when another is available.
func (c *clusterRT) pick(now int64, tried []*epState) *epState {
	n := len(c.endpoints)
	if n == 0 || c.healthyN == 0 {
		return nil
	}
	usable := func(e endpointRef) bool {
		return e.healthy && e.st.ejectedUntil.Load() <= now
	}
	if c.spec.lb == lbLeastRequest {
		// Power of two choices among usable endpoints.
		var a, b *epState
		for range 4 {
			e := c.endpoints[rand.IntN(n)]
			if !usable(e) || slices.Contains(tried, e.st) && c.healthyN > len(tried) {
				continue
			}
			if a == nil {
				a = e.st
			} else if e.st != a {
				b = e.st
				break
			}
		}
		if a != nil {
			if b != nil && b.active.Load() < a.active.Load() {
				return b
			}
			return a
		}
	}
	start := int(c.live.rr.Add(1))
	var fallback *epState
	for i := range n {
		e := c.endpoints[(start+i)%n]
		if !usable(e) {
			continue
		}
		if slices.Contains(tried, e.st) {
			if fallback == nil {
				fallback = e.st
			}
			continue
		}
		return e.st
	}
	return fallback
}

// observe feeds outlier detection with one attempt's outcome.
func (c *clusterRT) observe(ep *epState, status int, err error, now time.Time) bool {
	o := c.spec.outlier
	if o == nil {
		return false
	}
	if err == nil && status < 500 {
		ep.consecutive.Store(0)
		return false
	}
	if ep.consecutive.Add(1) < o.consecutive5xx {
		return false
	}
	ep.consecutive.Store(0)
	ejected := 0
	for _, e := range c.endpoints {
		if e.st.ejectedUntil.Load() > now.UnixNano() {
			ejected++
		}
	}
	limit := max(1, len(c.endpoints)*int(o.maxPercent)/100)
	if ejected >= limit {
		return false
	}
	k := ep.ejections.Add(1)
	d := min(o.baseEjection*time.Duration(k), max(o.maxEjection, o.baseEjection))
	ep.ejectedUntil.Store(now.Add(d).UnixNano())
	return true
}

// retryAllowed takes a slot of the cluster's retry budget.
func (c *clusterRT) retryAllowed() bool {
	limit := c.spec.minRetryConc
	if c.spec.budgetPercent >= 0 {
		limit = max(limit, int64(float64(c.live.active.Load())*c.spec.budgetPercent/100))
	}
	if c.live.activeRetries.Add(1) > limit {
		c.live.activeRetries.Add(-1)
		return false
	}
	return true
}

// upstreamTransport is a cluster's pooled connections. It lives across
// model swaps while the cluster's connection settings are unchanged; its TLS
// settings read the certificates through the gateway's secret holder, so a
// rotation needs no new transport.
type upstreamTransport struct {
	key    string
	h1, h2 *http.Transport
	scheme string
}

func newUpstreamTransport(spec *clusterSpec, secrets *secretHolder) *upstreamTransport {
	dialer := &net.Dialer{Timeout: spec.connectTimeout, KeepAlive: 30 * time.Second}
	mk := func(h2 bool) *http.Transport {
		t := &http.Transport{
			DialContext:           dialer.DialContext,
			MaxIdleConns:          1024,
			MaxIdleConnsPerHost:   256,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   spec.connectTimeout,
			ExpectContinueTimeout: time.Second,
			DisableCompression:    true,
			ForceAttemptHTTP2:     h2,
			Protocols:             new(http.Protocols),
		}
		if spec.tls != nil {
			t.TLSClientConfig = upstreamTLSConfig(spec.tls, secrets, h2)
			if h2 {
				t.Protocols.SetHTTP2(true)
			} else {
				t.Protocols.SetHTTP1(true)
			}
		} else if h2 {
			t.Protocols.SetUnencryptedHTTP2(true)
		} else {
			t.Protocols.SetHTTP1(true)
		}
		return t
	}
	u := &upstreamTransport{key: spec.key, scheme: "http"}
	if spec.tls != nil {
		u.scheme = "https"
	}
	switch spec.proto {
	case protoHTTP1:
		u.h1 = mk(false)
	case protoHTTP2:
		u.h2 = mk(true)
	case protoDownstream:
		u.h1, u.h2 = mk(false), mk(true)
	}
	return u
}

// forRequest returns the transport for a downstream request.
func (u *upstreamTransport) forRequest(r *http.Request) *http.Transport {
	switch {
	case u.h1 == nil:
		return u.h2
	case u.h2 == nil:
		return u.h1
	case r.ProtoMajor == 2:
		return u.h2
	}
	return u.h1
}

func (u *upstreamTransport) close() {
	for _, t := range []*http.Transport{u.h1, u.h2} {
		if t != nil {
			t.CloseIdleConnections()
		}
	}
}

// upstreamTLSConfig verifies the upstream's chain against the roots secret
// and its URI SAN (SPIFFE id) against the matchers; Go's hostname check is
// replaced because SPIFFE certificates carry no DNS names.
func upstreamTLSConfig(s *upstreamTLSSpec, secrets *secretHolder, h2 bool) *tls.Config {
	alpn := s.alpn
	if len(alpn) == 0 {
		alpn = []string{"http/1.1"}
		if h2 {
			alpn = []string{"h2"}
		}
	}
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         s.sni,
		NextProtos:         alpn,
		InsecureSkipVerify: true, // replaced by VerifyConnection below
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifySPIFFE(cs, secrets.roots(s.rootsSecret), s.sans)
		},
	}
	if s.certSecret != "" {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if c := secrets.cert(s.certSecret); c != nil {
				return c, nil
			}
			return nil, fmt.Errorf("client certificate secret %q has not arrived", s.certSecret)
		}
	}
	return cfg
}

func verifySPIFFE(cs tls.ConnectionState, roots *x509.CertPool, sans []func(string) bool) error {
	if roots == nil {
		return errors.New("upstream tls: the roots secret has not arrived")
	}
	if len(cs.PeerCertificates) == 0 {
		return errors.New("upstream tls: no peer certificate")
	}
	leaf := cs.PeerCertificates[0]
	if err := pemcert.VerifyChain(cs.PeerCertificates, roots, time.Time{}); err != nil {
		return fmt.Errorf("upstream tls: %w", err)
	}
	if len(sans) == 0 {
		return nil
	}
	for _, u := range leaf.URIs {
		for _, m := range sans {
			if m(u.String()) {
				return nil
			}
		}
	}
	return fmt.Errorf("upstream tls: peer URI SANs %v match no allowed SPIFFE id", leaf.URIs)
}

// secretHolder publishes the current secrets for TLS callbacks.
type secretHolder struct {
	p atomic.Pointer[map[string]*secret]
}

func (h *secretHolder) get(name string) *secret {
	m := h.p.Load()
	if m == nil {
		return nil
	}
	return (*m)[name]
}

func (h *secretHolder) cert(name string) *tls.Certificate {
	if s := h.get(name); s != nil {
		return s.cert
	}
	return nil
}

func (h *secretHolder) roots(name string) *x509.CertPool {
	if s := h.get(name); s != nil {
		return s.roots
	}
	return nil
}

// getOrAdd returns m[k], adding mk() first when it is absent. The caller
// holds m's lock.
func getOrAdd[K comparable, V any](m map[K]*V, k K, mk func() *V) *V {
	v := m[k]
	if v == nil {
		v = mk()
		m[k] = v
	}
	return v
}
