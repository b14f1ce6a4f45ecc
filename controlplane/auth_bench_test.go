package controlplane_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/hashicorp/consul/api"
	"github.com/meshwarden/meshwarden/controlplane/planetest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// BenchmarkXDSConnect measures a proxy joining the plane: dial, open the
// ADS stream, first CDS response. Side by side on one Consul with ACLs:
// plaintext and anonymous (--insecure-dev, the old default); TLS with a
// token whose decision is cached (a reconnect within --auth-ttl); TLS with
// a cold decision (Consul asked twice: token/self and acl/authorize).
func BenchmarkXDSConnect(b *testing.B) {
	for _, v := range []struct {
		name string
		o    planeOpts
	}{
		{"plaintext-anonymous", planeOpts{insecure: true, ttl: time.Minute}},
		{"tls-token-cached", planeOpts{ttl: time.Hour}},
		{"tls-token-cold", planeOpts{ttl: time.Nanosecond}},
	} {
		b.Run(v.name, func(b *testing.B) {
			p := startPlaneOpts(b, v.o)
			dial := p.tlsDial(b)
			token := p.tokens["payments"]
			if v.o.insecure {
				dial, token = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, ""
			}
			i := 0
			b.ResetTimer()
			for b.Loop() {
				i++
				st := p.stream(b, dial, token, &corev3.Node{Id: fmt.Sprintf("pay-%d", i), Cluster: "payments"}, resource.ClusterType)
				if _, err := st.Recv(); err != nil {
					b.Fatal(err)
				}
				_ = st.CloseSend()
			}
		})
	}
}

// BenchmarkChangeFanout measures a Consul change reaching 50 connected
// sidecars (p50/p99 of the last of them), with and without
// authentication: authentication costs nothing on this path (streams are
// authorised once; re-checks run beside them), and this shows it.
func BenchmarkChangeFanout(b *testing.B) {
	for _, v := range []struct {
		name string
		o    planeOpts
	}{
		{"plaintext-anonymous", planeOpts{insecure: true, ttl: time.Minute}},
		{"tls-token", planeOpts{ttl: 300 * time.Millisecond}},
	} {
		b.Run(v.name, func(b *testing.B) { benchFanout(b, v.o, 50) })
	}
}

func benchFanout(b *testing.B, o planeOpts, n int) {
	p := startPlaneOpts(b, o)
	check := &api.AgentServiceRegistration{ID: "echo-1", Name: "echo", Address: "127.0.0.1", Port: 9100,
		Check: &api.AgentServiceCheck{CheckID: "check:echo-1", TTL: "10m", Status: api.HealthPassing}}
	if err := p.mgmt.Agent().ServiceRegister(check); err != nil {
		b.Fatal(err)
	}
	dial := p.tlsDial(b)
	token := p.tokens["payments"]
	if o.insecure {
		dial, token = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, ""
	}
	// Each sidecar watches EDS for echo, ACKs, and reports each response.
	type update struct{}
	chans := make([]chan update, n)
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	defer func() { cancel(); wg.Wait() }()
	for i := range n {
		chans[i] = make(chan update, 64)
		st := p.stream(b, dial, token, &corev3.Node{Id: fmt.Sprintf("pay-%d", i), Cluster: "payments"}, resource.EndpointType)
		wg.Add(1)
		go func(st discovery.AggregatedDiscoveryService_StreamAggregatedResourcesClient, ch chan update) {
			defer wg.Done()
			for ctx.Err() == nil {
				r, err := st.Recv()
				if err != nil {
					return
				}
				_ = st.Send(&discovery.DiscoveryRequest{TypeUrl: resource.EndpointType, VersionInfo: r.GetVersionInfo(), ResponseNonce: r.GetNonce()})
				select {
				case ch <- update{}:
				default:
				}
			}
		}(st, chans[i])
	}
	drain := func() {
		for _, ch := range chans {
			for len(ch) > 0 {
				<-ch
			}
		}
	}
	for _, ch := range chans { // every sidecar has its first response
		select {
		case <-ch:
		case <-time.After(30 * time.Second):
			b.Fatal("a sidecar got no first response within 30s")
		}
	}
	drain()
	planetest.FlipHealth(b, p.mgmt.Agent(), "check:echo-1", func(bool) {
		for _, ch := range chans {
			select {
			case <-ch:
			case <-time.After(10 * time.Second):
				b.Fatal("a sidecar did not get the change within 10s")
			}
		}
		drain()
	})
}
