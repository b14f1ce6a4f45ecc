package translate

import (
	"fmt"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/meshwarden/meshwarden/ir"
)

// bigCatalog has services services of endpoints instances each, half v1 and
// half v2, and a canary route (2 subsets, a lane, 90/10 weights) on every
// tenth service.
func bigCatalog(services, endpoints int) (*ir.Catalog, *ir.PolicySet) {
	cat := &ir.Catalog{Services: make(map[string]*ir.Service, services)}
	ps := &ir.PolicySet{}
	for i := range services {
		name := fmt.Sprintf("svc-%05d", i)
		svc := &ir.Service{Name: name}
		for j := range endpoints {
			v := "v1"
			if j%2 == 1 {
				v = "v2"
			}
			svc.Instances = append(svc.Instances, ir.Instance{
				ID: fmt.Sprintf("%s-%d", name, j), Address: fmt.Sprintf("10.%d.%d.%d", i/65536%256, i/256%256, i%256),
				Port: 8000 + j, Meta: map[string]string{"version": v}, Healthy: j != 4,
			})
		}
		cat.Services[name] = svc
		if i%10 == 0 {
			ps.Routes = append(ps.Routes, ir.Route{
				Service: name,
				Subsets: []ir.Subset{{Name: "v1", Selector: map[string]string{"version": "v1"}}, {Name: "v2", Selector: map[string]string{"version": "v2"}}},
				Lanes:   []ir.LaneRule{{Lane: "canary", Subset: "v2"}},
				Weights: []ir.WeightedSubset{{Subset: "v1", Weight: 90}, {Subset: "v2", Weight: 10}},
			})
		}
	}
	return cat, ps
}

// BenchmarkTranslate measures Build (shared resources) plus one sidecar's
// and one gateway's snapshot, and the snapshot's cache construction and
// consistency check, for 1k and 10k services of 5 endpoints each.
func BenchmarkTranslate(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("services=%d/endpoints=%d", n, n*5), func(b *testing.B) {
			cat, ps := bigCatalog(n, 5)
			opts := Options{ModuleBaseURL: "http://127.0.0.1:18001/modules/"}
			runtime.GC()
			b.ReportAllocs()
			cpu0 := cpuTime()
			b.ResetTimer()
			for b.Loop() {
				shared, err := Build(cat, ps, opts)
				if err != nil {
					b.Fatal(err)
				}
				for _, node := range []Node{{ID: "web-1", Service: "web"}, {ID: "gw-1", Gateway: true}} {
					snap, err := shared.ForNode(node, nil)
					if err != nil {
						b.Fatal(err)
					}
					if err := snap.CacheSnapshotConsistent(); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.StopTimer()
			// CPU time (user+system, all threads incl. GC) per op: on a
			// shared, loaded machine wall time overstates the cost.
			b.ReportMetric(float64((cpuTime()-cpu0).Milliseconds())/float64(b.N), "cpu-ms/op")
			var after runtime.MemStats
			runtime.ReadMemStats(&after)
			b.ReportMetric(float64(after.HeapInuse)/(1<<20), "heap-inuse-MiB")
		})
	}
}

// benchGatewayBuild measures Build of cat and ps plus the gateway's
// snapshot, reporting allocations.
func benchGatewayBuild(b *testing.B, cat *ir.Catalog, ps *ir.PolicySet) {
	b.Helper()
	opts := Options{ModuleBaseURL: "http://127.0.0.1:18001/modules/"}
	b.ReportAllocs()
	for b.Loop() {
		shared, err := Build(cat, ps, opts)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := shared.ForNode(Node{ID: "gw-1", Gateway: true}, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTranslateResidency is BenchmarkTranslate with a residency rule
// on every service (half the endpoints' nodes in eu-west, half in
// us-east): the cost of filtering endpoints by region.
func BenchmarkTranslateResidency(b *testing.B) {
	const n = 10000
	for _, residency := range []bool{false, true} {
		b.Run(fmt.Sprintf("residency=%v/services=%d/endpoints=%d", residency, n, n*5), func(b *testing.B) {
			cat, ps := bigCatalog(n, 5)
			for _, svc := range cat.Services {
				for j := range svc.Instances {
					region := "eu-west"
					if j%2 == 1 {
						region = "us-east"
					}
					svc.Instances[j].Datacenter, svc.Instances[j].NodeMeta = "dc1", map[string]string{"region": region}
				}
				if residency {
					ps.Compliance = append(ps.Compliance, ir.Compliance{Service: svc.Name, Tags: []string{"gdpr"}, Regions: []string{"eu-west"}, RegionKey: "region"})
				}
			}
			cpu0 := cpuTime()
			benchGatewayBuild(b, cat, ps)
			b.ReportMetric(float64((cpuTime()-cpu0).Milliseconds())/float64(b.N), "cpu-ms/op")
		})
	}
}

// BenchmarkValidate measures ValidateAll over one sidecar snapshot of 1k
// services (the plane validates every snapshot before publishing it).
func BenchmarkValidate(b *testing.B) {
	cat, ps := bigCatalog(1000, 5)
	shared, err := Build(cat, ps, Options{ModuleBaseURL: "http://127.0.0.1:18001/modules/"})
	if err != nil {
		b.Fatal(err)
	}
	snap, err := shared.ForNode(Node{ID: "web-1", Service: "web"}, nil)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if err := snap.Validate(); err != nil {
			b.Fatal(err)
		}
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkRebuildOneChange is the plane's work per Consul change at scale:
// one instance's health flips among 10k services / 50k endpoints, then a
// cached Build, Validate, and one sidecar snapshot with Consistent().
func BenchmarkRebuildOneChange(b *testing.B) {
	cat, ps := bigCatalog(10000, 5)
	opts := Options{ModuleBaseURL: "http://127.0.0.1:18001/modules/"}
	c := NewCache()
	if _, err := BuildCached(c, cat, ps, opts); err != nil {
		b.Fatal(err)
	}
	i := 0
	cpu0 := cpuTime()
	for b.Loop() {
		in := &cat.Services[fmt.Sprintf("svc-%05d", i%10000)].Instances[0]
		in.Healthy = !in.Healthy
		i++
		shared, err := BuildCached(c, cat, ps, opts)
		if err != nil {
			b.Fatal(err)
		}
		if err := shared.Validate(); err != nil {
			b.Fatal(err)
		}
		snap, err := shared.ForNode(Node{ID: "web-1", Service: "web"}, nil)
		if err != nil {
			b.Fatal(err)
		}
		if err := snap.CacheSnapshotConsistent(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/1000/float64(b.N), "cpu-ms/op")
}
