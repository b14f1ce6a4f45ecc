package gateway

import (
	"crypto/x509"
	"strconv"
	"time"

	resource "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshwarden/meshwarden/gateway/wasmhost"
	"github.com/meshwarden/meshwarden/gateway/xdsclient"
)

// metrics are the gateway's Prometheus metrics, registered on the
// gateway's own registry (never the global one).
type metrics struct {
	requests     *prometheus.CounterVec
	latency      *prometheus.HistogramVec
	retries      *prometheus.CounterVec
	ejections    *prometheus.CounterVec
	moduleErrors *prometheus.CounterVec
	xdsAcks      *prometheus.CounterVec
	xdsNacks     *prometheus.CounterVec
	xdsVersion   *prometheus.GaugeVec
	xdsConnected prometheus.Gauge
	swaps        prometheus.Counter
	access       *prometheus.CounterVec
	resilience   *prometheus.CounterVec
}

func newMetrics(g *Gateway, reg *prometheus.Registry) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshwarden_gateway_requests_total",
			Help: "Downstream requests by route, cluster and status code."}, []string{"route", "cluster", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "meshwarden_gateway_request_duration_seconds",
			Help:    "Downstream request duration (until the handler returns) by route and cluster.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}}, []string{"route", "cluster"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshwarden_gateway_upstream_retries_total",
			Help: "Retries sent to upstream clusters."}, []string{"cluster"}),
		ejections: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshwarden_gateway_outlier_ejections_total",
			Help: "Endpoints ejected after consecutive 5xx."}, []string{"cluster"}),
		moduleErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshwarden_gateway_filter_module_errors_total",
			Help: "Filter module versions that failed to fetch, verify or start."}, []string{"filter"}),
		xdsAcks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshwarden_gateway_xds_acks_total",
			Help: "xDS responses accepted, by type URL."}, []string{"type_url"}),
		xdsNacks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshwarden_gateway_xds_nacks_total",
			Help: "xDS responses rejected, by type URL."}, []string{"type_url"}),
		xdsVersion: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "meshwarden_gateway_xds_version_info",
			Help: "1 for the version accepted last, per type URL."}, []string{"type_url", "version"}),
		xdsConnected: prometheus.NewGauge(prometheus.GaugeOpts{Name: "meshwarden_gateway_xds_connected",
			Help: "1 while an ADS stream to the control plane is open."}),
		swaps: prometheus.NewCounter(prometheus.CounterOpts{Name: "meshwarden_gateway_config_swaps_total",
			Help: "Complete configurations published."}),
		access: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshwarden_gateway_access_decisions_total",
			Help: "RBAC decisions by filter, matched rule (\"none\": no rule matched) and decision: allowed, denied (enforced), would_allow, would_deny (shadow rules, dry-run)."},
			[]string{"filter", "rule", "decision"}),
		resilience: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshwarden_gateway_resilience_events_total",
			Help: "Resilience policy actions by cluster and event: overflow (circuit breaker, 503), rate_limited (429), fault_delay, fault_abort, mirror_sent, mirror_dropped."},
			[]string{"cluster", "event"}),
	}
	for _, t := range []string{resource.ListenerType, resource.RouteType, resource.ClusterType,
		resource.EndpointType, resource.SecretType, resource.ExtensionConfigType} {
		m.xdsAcks.WithLabelValues(t) // zero from the start, per type
		m.xdsNacks.WithLabelValues(t)
	}
	reg.MustRegister(m.requests, m.latency, m.retries, m.ejections, m.moduleErrors, m.xdsAcks, m.xdsNacks,
		m.xdsVersion, m.xdsConnected, m.swaps, m.access, m.resilience, &filterCollector{g: g}, &saturationCollector{g: g}, &certCollector{g: g}, &guestCollector{g: g})
	return m
}

func (m *metrics) request(route, cluster string, code int, d time.Duration) {
	m.requests.WithLabelValues(route, cluster, strconv.Itoa(code)).Inc()
	m.latency.WithLabelValues(route, cluster).Observe(d.Seconds())
}

func (m *metrics) xdsEvent(e xdsclient.Event) {
	switch e.Kind {
	case xdsclient.Connected:
		m.xdsConnected.Set(1)
	case xdsclient.Disconnected:
		m.xdsConnected.Set(0)
	case xdsclient.Ack:
		m.xdsAcks.WithLabelValues(e.TypeURL).Inc()
		m.xdsVersion.DeletePartialMatch(prometheus.Labels{"type_url": e.TypeURL})
		m.xdsVersion.WithLabelValues(e.TypeURL, e.Version).Set(1)
	case xdsclient.Nack:
		m.xdsNacks.WithLabelValues(e.TypeURL).Inc()
	}
}

func (m *metrics) accessDecision(filter, rule, decision string) {
	m.access.WithLabelValues(filter, rule, decision).Inc()
}

func (m *metrics) modelSwapped(*model) { m.swaps.Inc() }

// certCollector reports the serving certificates' remaining lifetime at
// scrape time (a gauge set at swap time would go stale).
type certCollector struct{ g *Gateway }

var certExpiryDesc = prometheus.NewDesc("meshwarden_gateway_certificate_expiry_seconds",
	"Seconds until the SDS certificate expires.", []string{"secret"}, nil)

// Describe implements prometheus.Collector.
func (c *certCollector) Describe(ch chan<- *prometheus.Desc) { ch <- certExpiryDesc }

// Collect implements prometheus.Collector.
func (c *certCollector) Collect(ch chan<- prometheus.Metric) {
	md := c.g.model.Load()
	if md == nil {
		return
	}
	for name, s := range md.secrets {
		if s.cert == nil || len(s.cert.Certificate) == 0 {
			continue
		}
		leaf := s.cert.Leaf
		if leaf == nil {
			var err error
			if leaf, err = x509.ParseCertificate(s.cert.Certificate[0]); err != nil {
				continue
			}
		}
		ch <- prometheus.MustNewConstMetric(certExpiryDesc, prometheus.GaugeValue, time.Until(leaf.NotAfter).Seconds(), name)
	}
}

// filterCollector exports the wasm host's per-plugin stats at scrape time.
type filterCollector struct{ g *Gateway }

var (
	filterLatencyDesc = prometheus.NewDesc("meshwarden_gateway_filter_callback_duration_seconds",
		"Duration of callbacks into a wasm filter, from a random sample of them: every start-up callback, then about one in eight (its mean and quantiles estimate all callbacks'; its count is the sample's).", []string{"filter", "sha256"}, nil)
	filterCallsDesc = prometheus.NewDesc("meshwarden_gateway_filter_callbacks_total",
		"Callbacks into a wasm filter (every one, timed or not).", []string{"filter", "sha256"}, nil)
	filterFailDesc = prometheus.NewDesc("meshwarden_gateway_filter_failures_total",
		"Stream callbacks of a wasm filter answered per its fail policy.", []string{"filter", "sha256"}, nil)
	filterTrapDesc = prometheus.NewDesc("meshwarden_gateway_filter_traps_total",
		"Wasm traps and timeouts of a filter (each discards an instance).", []string{"filter", "sha256"}, nil)
)

// Describe implements prometheus.Collector.
func (c *filterCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- filterLatencyDesc
	ch <- filterCallsDesc
	ch <- filterFailDesc
	ch <- filterTrapDesc
}

// Collect implements prometheus.Collector.
func (c *filterCollector) Collect(ch chan<- prometheus.Metric) {
	bounds := wasmhost.LatencyBounds()
	for _, p := range c.g.plugins.all() {
		st := p.Stats()
		cfg := p.Config()
		buckets := make(map[float64]uint64, len(bounds))
		var cum uint64
		for i, b := range bounds {
			cum += st.Latency.Counts[i]
			buckets[b.Seconds()] = cum
		}
		cum += st.Latency.Counts[len(bounds)]
		labels := []string{cfg.Name, cfg.CodeSHA256}
		ch <- prometheus.MustNewConstHistogram(filterLatencyDesc, cum, st.Latency.Sum.Seconds(), buckets, labels...)
		ch <- prometheus.MustNewConstMetric(filterCallsDesc, prometheus.CounterValue, float64(st.Calls), labels...)
		ch <- prometheus.MustNewConstMetric(filterFailDesc, prometheus.CounterValue, float64(st.Failures), labels...)
		ch <- prometheus.MustNewConstMetric(filterTrapDesc, prometheus.CounterValue, float64(st.Traps+st.Timeouts), labels...)
	}
}
