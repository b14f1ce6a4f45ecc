package translate

import (
	"fmt"
	"testing"
	"time"

	"github.com/meshwarden/meshwarden/ir"
)

// BenchmarkTranslateResilience is BenchmarkTranslate's 1k services with a
// ResiliencePolicy (every setting, a v2 override) on each routed service
// (one in ten), against the same set without: the cost of resilience.
func BenchmarkTranslateResilience(b *testing.B) {
	for _, with := range []bool{false, true} {
		b.Run(fmt.Sprintf("resilience=%v", with), func(b *testing.B) {
			cat, ps := bigCatalog(1000, 5)
			if with {
				for _, r := range ps.Routes {
					ps.Resilience = append(ps.Resilience, ir.Resilience{Service: r.Service, Source: "bench",
						ResilienceSettings: ir.ResilienceSettings{Timeout: time.Second,
							Retry:   &ir.Retry{Attempts: 2, On: []string{"5xx"}, BudgetPercent: 20, MinConcurrency: 3},
							Outlier: &ir.Outlier{Consecutive5xx: 5}, Breaker: &ir.Breaker{MaxRequests: 100}},
						Subsets:   []ir.SubsetResilience{{Subset: "v2", ResilienceSettings: ir.ResilienceSettings{Breaker: &ir.Breaker{MaxRequests: 10}}}},
						RateLimit: &ir.RateLimit{Requests: 100, Interval: time.Second},
						Fault:     &ir.Fault{Delay: time.Millisecond, DelayPercent: 1},
						Mirror:    &ir.Mirror{Service: "svc-00001", Percent: 5}})
				}
			}
			benchGatewayBuild(b, cat, ps)
		})
	}
}
