package controlplane

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshwarden/meshwarden/internal/testenv/metricdoc"
)

// TestDocumentedSeriesFromStart: a plane that has served no proxy yet
// already exports every series controlplane/README.md documents (the
// per-type NACK counter at zero for every xDS type, auth decisions for
// every surface and result), so alerts see the first event.
func TestDocumentedSeriesFromStart(t *testing.T) {
	reg := prometheus.NewRegistry()
	startPlane(t, func(c *Config) { c.Registry = reg })
	perConfig := map[string]string{
		"meshwarden_controlplane_rollout_decisions_total": "per Rollout policy, action and result",
		"meshwarden_controlplane_subset_health_score":     "per scored service subset (with --health-scrape)",
	}
	metricdoc.Check(t, "plane", reg, "README.md", 12, perConfig)
}
