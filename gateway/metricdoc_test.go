package gateway

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshwarden/meshwarden/internal/testenv/metricdoc"
)

// TestDocumentedSeriesFromStart: a gateway without any configuration yet
// exports every series gateway/README.md documents, except those whose
// labels name things it does not know yet (routes, clusters, filters,
// secrets): those appear, at their first value, with the config naming them.
func TestDocumentedSeriesFromStart(t *testing.T) {
	reg := prometheus.NewRegistry()
	plane := startPlane(t)
	startGateway(t, plane, "gw-fresh", func(c *Config) { c.Registry = reg })
	perConfig := map[string]string{
		"meshwarden_gateway_requests_total":                   "per route and cluster",
		"meshwarden_gateway_request_duration_seconds":         "per route and cluster",
		"meshwarden_gateway_upstream_retries_total":           "per cluster",
		"meshwarden_gateway_outlier_ejections_total":          "per cluster",
		"meshwarden_gateway_filter_callback_duration_seconds": "per loaded filter",
		"meshwarden_gateway_filter_callbacks_total":           "per loaded filter",
		"meshwarden_gateway_filter_failures_total":            "per loaded filter",
		"meshwarden_gateway_filter_traps_total":               "per loaded filter",
		"meshwarden_gateway_filter_module_errors_total":       "per configured filter, from zero",
		"meshwarden_gateway_xds_version_info":                 "the version accepted, per type",
		"meshwarden_gateway_certificate_expiry_seconds":       "per SDS secret",
		"meshwarden_gateway_access_decisions_total":           "per RBAC filter and rule",
		"meshwarden_gateway_resilience_events_total":          "per cluster with a ResiliencePolicy, and event",
		"meshwarden_gateway_upstream_saturation":              "per cluster with circuit breakers",
	}
	metricdoc.Check(t, "gateway", reg, "README.md", 12, perConfig)
}
