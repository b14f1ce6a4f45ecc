package controlplane

import (
	"fmt"
	"time"

	resource "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
)

// xdsTypes are the type URLs the plane serves: their per-type series exist
// at zero from the start, so alerts and rates see them before an event.
var xdsTypes = []string{resource.ListenerType, resource.RouteType, resource.ClusterType,
	resource.EndpointType, resource.SecretType, resource.ExtensionConfigType}

type metrics struct {
	nacks            *prometheus.CounterVec
	responses        *prometheus.CounterVec
	snapshots        prometheus.Counter
	translateErrors  prometheus.Counter
	policyRejections prometheus.Counter
	translateSeconds prometheus.Histogram
	auth             *prometheus.CounterVec
	revoked          prometheus.Counter
	secretsRefused   prometheus.Counter
}

func newMetrics(reg *prometheus.Registry, s *Server) *metrics {
	m := &metrics{
		nacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshwarden_controlplane_nacks_total",
			Help: "xDS responses proxies rejected (NACK), by type URL.",
		}, []string{"type_url"}),
		responses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshwarden_controlplane_xds_responses_total",
			Help: "xDS responses sent, by type URL.",
		}, []string{"type_url"}),
		snapshots: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshwarden_controlplane_snapshots_published_total",
			Help: "Node snapshots published to the cache (content changed).",
		}),
		translateErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshwarden_controlplane_translate_errors_total",
			Help: "Translations or snapshots refused (invalid or inconsistent); the last good kept serving.",
		}),
		policyRejections: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshwarden_controlplane_policy_rejections_total",
			Help: "Policy sets rejected by validation (apply or policy-dir reload).",
		}),
		translateSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "meshwarden_controlplane_translate_seconds",
			Help:    "Time to translate the catalog and policies into shared resources.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}),
		auth: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshwarden_controlplane_auth_total",
			Help: "Authentication and authorisation decisions, by surface (xds, admin) and result (ok, unauthenticated, denied, unavailable).",
		}, []string{"surface", "result"}),
		revoked: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshwarden_controlplane_xds_streams_revoked_total",
			Help: "xDS streams closed because their credential was revoked, lost its right, or could not be re-verified within the grace period.",
		}),
		secretsRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshwarden_controlplane_secret_requests_refused_total",
			Help: "SDS requests for a secret that is not the requesting proxy's own leaf or the trust bundle.",
		}),
	}
	for _, surface := range []string{"xds", "admin"} {
		for _, result := range []string{"ok", "unauthenticated", "denied", "unavailable"} {
			m.auth.WithLabelValues(surface, result)
		}
	}
	for _, t := range xdsTypes {
		m.nacks.WithLabelValues(t)
		m.responses.WithLabelValues(t)
	}
	reg.MustRegister(m.auth, m.revoked, m.secretsRefused)
	reg.MustRegister(m.nacks, m.responses, m.snapshots, m.translateErrors, m.policyRejections, m.translateSeconds,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "meshwarden_controlplane_consul_staleness_seconds",
			Help: "Seconds since Consul last answered while it is failing; 0 when current.",
		}, func() float64 { return s.watcher.Status().Staleness.Seconds() }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "meshwarden_controlplane_consul_index",
			Help: "Highest Consul raft index the catalog was read at.",
		}, func() float64 { return float64(s.watcher.Status().Index) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "meshwarden_controlplane_nodes",
			Help: "Connected xDS nodes.",
		}, func() float64 {
			s.mu.Lock()
			defer s.mu.Unlock()
			return float64(len(s.nodes))
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "meshwarden_controlplane_intentions_stale",
			Help: "1 while Consul intentions cannot be read (the last good set keeps enforcing); 0 when current or not watched.",
		}, func() float64 {
			if s.cfg.Intentions == nil || !s.cfg.Intentions.Status().Stale {
				return 0
			}
			return 1
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "meshwarden_controlplane_intentions_staleness_seconds",
			Help: "Seconds since Consul intentions were last read successfully, while reads fail; 0 when current.",
		}, func() float64 {
			if s.cfg.Intentions == nil {
				return 0
			}
			st := s.cfg.Intentions.Status()
			if !st.Stale || st.LastSuccess.IsZero() {
				return 0
			}
			return time.Since(st.LastSuccess).Seconds()
		}),
	)
	return m
}

func sprintf(format string, args ...any) string { return fmt.Sprintf(format, args...) }
