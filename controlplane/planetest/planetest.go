// Package planetest serves a control plane inside a test: its ADS on a
// loopback port and its watch loop, both stopped when the test ends; and
// times Consul changes until they arrive, for the change benchmarks. Only
// tests import it.
package planetest

import (
	"context"
	"net"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"google.golang.org/grpc"
)

// Plane is what a test serves: a controlplane.Server. (An interface, so that
// the plane's own tests can use this package without an import cycle.)
type Plane interface {
	Register(*grpc.Server)
	Run(context.Context) error
}

// Serve serves p's ADS (plaintext, no authentication: give the plane
// InsecureNoAuth) on a free loopback port and runs p until tb ends. It returns
// the listener and the gRPC server; stop the server to simulate an outage.
func Serve(tb testing.TB, p Plane) (net.Listener, *grpc.Server) {
	tb.Helper()
	lis, g, _ := ServeStoppable(tb, p)
	return lis, g
}

// ServeStoppable is Serve that also returns stop, which stops the gRPC
// server and p's Run and waits for Run to return: a plane stopped before
// another starts on the same Consul (a restart). Calling stop again, and
// tb's end, do nothing more.
func ServeStoppable(tb testing.TB, p Plane) (_ net.Listener, _ *grpc.Server, stop func()) {
	tb.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	g := grpc.NewServer()
	p.Register(g)
	go func() { _ = g.Serve(lis) }()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = p.Run(ctx) }()
	stop = sync.OnceFunc(func() { g.Stop(); cancel(); <-done })
	tb.Cleanup(stop)
	return lis, g, stop
}

// FlipHealth times b.N flips of a TTL check's health: each one flips it and
// calls seen, which returns once the change arrived where it is awaited.
// It reports the p50, p99 and max in milliseconds.
func FlipHealth(b *testing.B, agent *api.Agent, check string, seen func(healthy bool)) {
	var lat []time.Duration
	healthy := true
	b.ResetTimer()
	for b.Loop() {
		healthy = !healthy
		status := api.HealthCritical
		if healthy {
			status = api.HealthPassing
		}
		start := time.Now()
		if err := agent.UpdateTTL(check, "bench", status); err != nil {
			b.Fatal(err)
		}
		seen(healthy)
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	q := func(f float64) float64 { return float64(lat[int(f*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(q(0.50), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(q(1), "max-ms")
}
