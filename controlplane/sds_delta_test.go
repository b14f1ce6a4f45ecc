package controlplane

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/meshwarden/meshwarden/internal/meshnames"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/hashicorp/consul/api"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/meshwarden/meshwarden/controlplane/translate"
	"github.com/meshwarden/meshwarden/controlplane/xdsnode"
)

// rotatingSecrets is a SecretSource whose leaf content changes on rotate.
type rotatingSecrets struct {
	mu      sync.Mutex
	gen     string
	changed chan struct{}
}

func (r *rotatingSecrets) Secrets(n xdsnode.Info) ([]*tlsv3.Secret, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	leaf := &tlsv3.Secret{Name: meshnames.LeafSecretName(n.Cluster), Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
		CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: "chain-" + r.gen}},
		PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: "key-" + r.gen}},
	}}}
	roots := &tlsv3.Secret{Name: meshnames.RootsSecretName, Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
		TrustedCa: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: "roots"}},
	}}}
	return []*tlsv3.Secret{leaf, roots}, nil
}

func (r *rotatingSecrets) Changed() <-chan struct{} { return r.changed }

func (r *rotatingSecrets) rotate(gen string) {
	r.mu.Lock()
	r.gen = gen
	r.mu.Unlock()
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

var _ SecretSource = (*rotatingSecrets)(nil)

// TestSDSAndMTLS checks that a SecretSource's secrets reach the proxy, that
// listeners and clusters reference them, and that a rotation is pushed.
func TestSDSAndMTLS(t *testing.T) {
	src := &rotatingSecrets{gen: "1", changed: make(chan struct{}, 1)}
	p := startPlane(t, func(c *Config) {
		c.Secrets = src
		c.Translate.TrustDomain, c.Translate.Datacenter = "example.consul", "dc1"
	})
	register(t, p.consul, "echo-1", "echo", 9001, nil, api.HealthPassing)
	ads := dialADS(t, p.addr, "web-1", "web", nil)
	leafChain := func(c *adsClient) string {
		for _, a := range c.last[resource.SecretType].GetResources() {
			var s tlsv3.Secret
			if err := a.UnmarshalTo(&s); err != nil {
				t.Fatal(err)
			}
			if s.GetName() == meshnames.LeafSecretName("web") {
				return s.GetTlsCertificate().GetCertificateChain().GetInlineString()
			}
		}
		return ""
	}
	ads.waitFor("leaf secret gen 1", func(c *adsClient) bool { return leafChain(c) == "chain-1" })
	ads.waitFor("echo cluster with mTLS", func(c *adsClient) bool {
		for _, a := range c.last[resource.ClusterType].GetResources() {
			var cl clusterv3.Cluster
			if err := a.UnmarshalTo(&cl); err != nil {
				t.Fatal(err)
			}
			if cl.GetName() != "echo" || cl.GetTransportSocket() == nil {
				continue
			}
			var up tlsv3.UpstreamTlsContext
			if err := cl.GetTransportSocket().GetTypedConfig().UnmarshalTo(&up); err != nil {
				t.Fatal(err)
			}
			cv := up.GetCommonTlsContext().GetCombinedValidationContext()
			san := cv.GetDefaultValidationContext().GetMatchTypedSubjectAltNames()
			return up.GetCommonTlsContext().GetTlsCertificateSdsSecretConfigs()[0].GetName() == meshnames.LeafSecretName("web") &&
				cv.GetValidationContextSdsSecretConfig().GetName() == meshnames.RootsSecretName &&
				len(san) == 1 && san[0].GetMatcher().GetExact() == "spiffe://example.consul/ns/default/dc/dc1/svc/echo"
		}
		return false
	})
	ads.mu.Lock()
	var inbound *listenerv3.Listener
	for _, a := range ads.last[resource.ListenerType].GetResources() {
		l := &listenerv3.Listener{}
		if err := a.UnmarshalTo(l); err != nil {
			t.Fatal(err)
		}
		if l.GetName() == translate.InboundListenerName {
			inbound = l
		}
	}
	ads.mu.Unlock()
	var down tlsv3.DownstreamTlsContext
	if ts := inbound.GetFilterChains()[0].GetTransportSocket(); ts == nil {
		t.Fatal("inbound listener has no TLS")
	} else if err := ts.GetTypedConfig().UnmarshalTo(&down); err != nil {
		t.Fatal(err)
	}
	if !down.GetRequireClientCertificate().GetValue() {
		t.Fatal("inbound listener does not require client certificates")
	}
	src.rotate("2")
	ads.waitFor("rotated leaf", func(c *adsClient) bool { return leafChain(c) == "chain-2" })
}

// openDeltaCDS opens a delta ADS stream to addr for node web-delta (of
// web), bounded by within, and subscribes to its clusters.
func openDeltaCDS(t *testing.T, addr string, within time.Duration) discovery.AggregatedDiscoveryService_DeltaAggregatedResourcesClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), within)
	t.Cleanup(func() { cancel(); _ = conn.Close() })
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&discovery.DeltaDiscoveryRequest{Node: &corev3.Node{Id: "web-delta", Cluster: "web"}, TypeUrl: resource.ClusterType}); err != nil {
		t.Fatal(err)
	}
	return stream
}

// TestDeltaADS checks the incremental protocol on the same server.
func TestDeltaADS(t *testing.T) {
	p := startPlane(t, nil)
	register(t, p.consul, "echo-1", "echo", 9001, nil, api.HealthPassing)
	stream := openDeltaCDS(t, p.addr, 30*time.Second)
	seen := map[string]bool{}
	registered := false
	for !seen["billing"] {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatalf("delta stream: %v (seen %v)", err, seen)
		}
		for _, r := range resp.GetResources() {
			seen[r.GetName()] = true
		}
		if err := stream.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.ClusterType, ResponseNonce: resp.GetNonce()}); err != nil {
			t.Fatal(err)
		}
		if seen["echo"] && !registered {
			registered = true
			register(t, p.consul, "billing-1", "billing", 9100, nil, api.HealthPassing)
		}
	}
	if !seen["echo"] || !seen[translate.LocalAppClusterName] {
		t.Fatalf("delta clusters = %v", seen)
	}
}

// TestSotWAndDeltaStreamsSideBySide: go-control-plane numbers SotW and
// delta streams from 1 each, so a SotW and a delta stream share an id. The
// plane keeps them apart: a delta proxy that connects after a SotW one gets
// its own configuration.
func TestSotWAndDeltaStreamsSideBySide(t *testing.T) {
	p := startPlane(t, nil)
	register(t, p.consul, "echo-1", "echo", 9001, nil, api.HealthPassing)
	sotw := dialADS(t, p.addr, "web-1", "web", map[string]any{"local_app_port": "9300"})
	sotw.waitFor("the SotW proxy's echo endpoint", func(c *adsClient) bool {
		eps, _ := c.endpoints("echo")
		return slices.Equal(eps, []string{"127.0.0.1:9001"})
	})
	resp, err := openDeltaCDS(t, p.addr, 15*time.Second).Recv()
	if err != nil {
		t.Fatalf("the delta proxy got no clusters while a SotW proxy is connected: %v", err)
	}
	names := map[string]bool{}
	for _, r := range resp.GetResources() {
		names[r.GetName()] = true
	}
	if !names["echo"] {
		t.Fatalf("delta clusters = %v, want echo", names)
	}
}
