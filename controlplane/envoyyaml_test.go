package controlplane

import (
	"os"
	"strings"
	"testing"

	"github.com/meshwarden/meshwarden/internal/meshnames"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3" // HttpProtocolOptions in envoy.yaml
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"

	"github.com/meshwarden/meshwarden/controlplane/translate"
)

// parseBootstrap decodes YAML strictly (unknown fields are errors) into
// Envoy's Bootstrap and runs its proto validation.
func parseBootstrap(y []byte) (*bootstrapv3.Bootstrap, error) {
	j, err := yaml.YAMLToJSON(y)
	if err != nil {
		return nil, err
	}
	var b bootstrapv3.Bootstrap
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(j, &b); err != nil {
		return nil, err
	}
	if err := b.ValidateAll(); err != nil {
		return nil, err
	}
	return &b, nil
}

func TestEnvoyYAML(t *testing.T) {
	raw, err := os.ReadFile("../envoy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	b, err := parseBootstrap(raw)
	if err != nil {
		t.Fatalf("envoy.yaml: %v", err)
	}
	t.Run("node is a sidecar the plane understands", func(t *testing.T) {
		info := nodeInfo(b.GetNode())
		n, err := translate.NodeFromMetadata(info.ID, info.Cluster, info.Metadata)
		if err != nil || n.Gateway || n.Service != "web" {
			t.Fatalf("node %+v: %v", n, err)
		}
	})
	t.Run("ADS over gRPC to the plane, admin on loopback", func(t *testing.T) {
		ads := b.GetDynamicResources().GetAdsConfig()
		if ads.GetApiType().String() != "DELTA_GRPC" || ads.GetGrpcServices()[0].GetEnvoyGrpc().GetClusterName() != "meshwarden-xds" {
			t.Fatalf("ads_config = %v", ads)
		}
		if b.GetDynamicResources().GetCdsConfig().GetAds() == nil || b.GetDynamicResources().GetLdsConfig().GetAds() == nil {
			t.Fatal("cds/lds are not from ADS")
		}
		if a := b.GetAdmin().GetAddress().GetSocketAddress().GetAddress(); a != "127.0.0.1" {
			t.Fatalf("admin on %q, want loopback", a)
		}
		if b.GetNode().GetCluster() == meshnames.GatewayNodeCluster {
			t.Fatal("envoy.yaml is the sidecar bootstrap")
		}
	})
	t.Run("ADS over TLS to the plane's SPIFFE id, with a Consul token", func(t *testing.T) {
		var xds *clusterv3.Cluster
		for _, c := range b.GetStaticResources().GetClusters() {
			if c.GetName() == "meshwarden-xds" {
				xds = c
			}
		}
		var tlsCtx tlsv3.UpstreamTlsContext
		if err := xds.GetTransportSocket().GetTypedConfig().UnmarshalTo(&tlsCtx); err != nil {
			t.Fatalf("meshwarden-xds has no TLS transport socket: %v", err)
		}
		vc := tlsCtx.GetCommonTlsContext().GetValidationContext()
		if vc.GetTrustedCa().GetFilename() == "" || len(vc.GetMatchTypedSubjectAltNames()) != 1 ||
			vc.GetMatchTypedSubjectAltNames()[0].GetMatcher().GetSuffix() != "/svc/"+meshnames.PlaneServiceName {
			t.Fatalf("validation context %v: want the mesh CA and the plane's SPIFFE id", vc)
		}
		md := b.GetDynamicResources().GetAdsConfig().GetGrpcServices()[0].GetInitialMetadata()
		if len(md) != 1 || md[0].GetKey() != TokenMetadata {
			t.Fatalf("initial_metadata %v: want the %s token", md, TokenMetadata)
		}
	})
	t.Run("strictness: unknown fields and invalid values are refused", func(t *testing.T) {
		for name, bad := range map[string]string{
			"unknown field": strings.Replace(string(raw), "connect_timeout: 1s", "connect_timeout: 1s\n      not_a_field: 1", 1),
			"invalid value": strings.Replace(string(raw), "port_value: 18000", "port_value: 70000", 1),
		} {
			if _, err := parseBootstrap([]byte(bad)); err == nil {
				t.Errorf("%s: accepted", name)
			}
		}
	})
}
