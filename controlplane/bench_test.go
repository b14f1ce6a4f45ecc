package controlplane

import (
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/meshwarden/meshwarden/controlplane/planetest"
)

// BenchmarkConsulChangeToSnapshotSent measures, on a real Consul agent, the
// time from a health change in Consul (a TTL check flipped through the
// agent API) to the EDS response reflecting it arriving at an ADS client:
// Consul's blocking query, the watcher, debounce (5ms and the default
// 20ms), translation, validation, SetSnapshot and the gRPC push.
// It reports p50 and p99 in ms.
func BenchmarkConsulChangeToSnapshotSent(b *testing.B) {
	for _, d := range []time.Duration{5 * time.Millisecond, 20 * time.Millisecond} {
		b.Run("debounce="+d.String(), func(b *testing.B) { benchChange(b, d) })
	}
}

func benchChange(b *testing.B, debounce time.Duration) {
	p := startPlane(b, func(c *Config) { c.Debounce = debounce })
	for i := range 50 {
		register(b, p.consul, "filler-"+itoa(uint32(i)), "filler-"+itoa(uint32(i%10)), 9500+i, nil, api.HealthPassing)
	}
	register(b, p.consul, "echo-1", "echo", 9001, nil, api.HealthPassing)
	ads := dialADS(b, p.addr, "web-1", "web", nil)
	ads.waitFor("echo endpoint", func(c *adsClient) bool {
		eps, _ := c.endpoints("echo")
		return len(eps) == 1
	})
	planetest.FlipHealth(b, p.consul.Agent(), "check:echo-1", func(healthy bool) {
		ads.waitFor("endpoint change", func(c *adsClient) bool {
			eps, ok := c.endpoints("echo")
			return ok && slices.Equal(eps, []string{"127.0.0.1:9001"}) == healthy
		})
	})
}
