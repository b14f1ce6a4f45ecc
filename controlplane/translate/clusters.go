package translate

import (
	"fmt"
	"time"

	"github.com/meshwarden/meshwarden/internal/meshnames"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshwarden/meshwarden/ir"
)

const connectTimeout = 5 * time.Second

// adsSource is the config source that says "over the same ADS stream".
func adsSource() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ResourceApiVersion:    corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
	}
}

// buildExtraClusters adds the audit, OTLP and module clusters (the
// per-service EDS clusters come from translateService).
func (s *Shared) buildExtraClusters(cat *ir.Catalog) {
	if s.opts.AuditCollector != "" {
		s.clusters = append(s.clusters, dnsCluster(meshnames.AuditClusterName, s.opts.AuditCollector, false))
		s.meshOf = append(s.meshOf, meshIf(s.opts.MTLS, meshnames.CollectorServiceName))
	} else if svc := cat.Services[meshnames.CollectorServiceName]; svc != nil {
		s.clusters = append(s.clusters, edsCluster(meshnames.AuditClusterName))
		// With mTLS the proxy sends audit batches with its own SDS leaf and
		// checks the collector's SPIFFE id: the collector binds each record
		// to that identity, and no shared token travels in xDS.
		s.meshOf = append(s.meshOf, meshIf(s.opts.MTLS, meshnames.CollectorServiceName))
		s.endpoints = append(s.endpoints, loadAssignment(meshnames.AuditClusterName, svc, nil))
	}
	if s.opts.OTLPEndpoint != "" {
		s.clusters = append(s.clusters, dnsCluster(meshnames.OTLPClusterName, s.opts.OTLPEndpoint, false))
		s.meshOf = append(s.meshOf, "")
	}
	if s.opts.ModuleBaseURL != "" {
		if hp, err := hostPortOfURL(s.opts.ModuleBaseURL); err == nil {
			s.clusters = append(s.clusters, dnsCluster(meshnames.ModulesClusterName, hp, false))
			s.meshOf = append(s.meshOf, "")
		} else {
			s.Warnings = append(s.Warnings, fmt.Sprintf("module base URL: %v: Envoy cannot fetch filters", err))
		}
	}
}

func meshIf(on bool, service string) string {
	if on {
		return service
	}
	return ""
}

func edsCluster(name string) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ConnectTimeout:       durationpb.New(connectTimeout),
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: adsSource()},
		LbPolicy:             clusterv3.Cluster_ROUND_ROBIN,
	}
}

// loadAssignment lists the healthy instances of svc that match sel.
func loadAssignment(cluster string, svc *ir.Service, sel map[string]string) *endpointv3.ClusterLoadAssignment {
	la := &endpointv3.ClusterLoadAssignment{ClusterName: cluster}
	if svc == nil {
		return la
	}
	var lbs []*endpointv3.LbEndpoint
	for _, in := range svc.Instances {
		if !in.Healthy || !in.Matches(sel) || in.Port <= 0 || in.Address == "" {
			continue
		}
		lbs = append(lbs, &endpointv3.LbEndpoint{
			HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
				Address: socketAddress(in.Address, uint32(in.Port)),
			}},
			HealthStatus: corev3.HealthStatus_HEALTHY,
		})
	}
	if len(lbs) > 0 {
		la.Endpoints = []*endpointv3.LocalityLbEndpoints{{LbEndpoints: lbs}}
	}
	return la
}

func socketAddress(host string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address:       host,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

// dnsCluster is a STRICT_DNS cluster to host:port (a bad value yields a
// cluster with no endpoints, and flag validation catches it earlier).
func dnsCluster(name, hostport string, static bool) *clusterv3.Cluster {
	host, port, err := splitHostPort(hostport)
	c := &clusterv3.Cluster{
		Name:                 name,
		ConnectTimeout:       durationpb.New(connectTimeout),
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STRICT_DNS},
		DnsLookupFamily:      clusterv3.Cluster_V4_PREFERRED,
		LoadAssignment:       &endpointv3.ClusterLoadAssignment{ClusterName: name},
	}
	if static {
		c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}
	}
	if err == nil {
		c.LoadAssignment.Endpoints = []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{{
			HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: socketAddress(host, port)}},
		}}}}
	}
	return c
}

func localAppCluster(port uint32) *clusterv3.Cluster {
	return dnsCluster(LocalAppClusterName, fmt.Sprintf("127.0.0.1:%d", port), true)
}

// SPIFFEID returns the SPIFFE id of service in Consul Connect's form.
func SPIFFEID(trustDomain, dc, service string) string {
	return "spiffe://" + trustDomain + "/ns/default/dc/" + dc + "/svc/" + service
}

func sdsSecret(name string) *tlsv3.SdsSecretConfig {
	return &tlsv3.SdsSecretConfig{Name: name, SdsConfig: adsSource()}
}

// mtlsClusters returns the shared clusters with an UpstreamTlsContext that
// presents leaf; clusters are cached per leaf (every sidecar of one service
// shares them). A cluster that fails Envoy's validation with the leaf
// fails the node's snapshot (the caller keeps the node's last good one)
// rather than being sent to be NACKed.
func (s *Shared) mtlsClusters(leaf string) ([]types.Resource, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.byLeaf[leaf]; ok {
		return c, nil
	}
	out := make([]types.Resource, len(s.clusters))
	for i, r := range s.clusters {
		if s.meshOf[i] == "" {
			out[i] = r
			continue
		}
		orig := r.(*clusterv3.Cluster)
		c := edsCluster(orig.GetName())
		if orig.GetType() != clusterv3.Cluster_EDS {
			c = proto.Clone(orig).(*clusterv3.Cluster)
		}
		c.TransportSocket = s.upstreamTLS(leaf, s.meshOf[i])
		if err := c.ValidateAll(); err != nil {
			return nil, fmt.Errorf("cluster %s with leaf %s: %w", c.GetName(), leaf, err)
		}
		out[i] = c
	}
	if s.byLeaf == nil {
		s.byLeaf = map[string][]types.Resource{}
	}
	s.byLeaf[leaf] = out
	return out, nil
}

// upstreamTLS presents the caller's leaf and checks the upstream's SPIFFE id.
func (s *Shared) upstreamTLS(leaf, service string) *corev3.TransportSocket {
	ctx := &tlsv3.UpstreamTlsContext{
		Sni: service,
		CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sdsSecret(leaf)},
			ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{
				CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
					DefaultValidationContext: &tlsv3.CertificateValidationContext{
						MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{
							SanType: tlsv3.SubjectAltNameMatcher_URI,
							Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{
								Exact: SPIFFEID(s.opts.TrustDomain, s.opts.Datacenter, service),
							}},
						}},
					},
					ValidationContextSdsSecretConfig: sdsSecret(meshnames.RootsSecretName),
				},
			},
		},
	}
	return transportSocket(ctx)
}

func transportSocket(m proto.Message) *corev3.TransportSocket {
	a, err := anypb.New(m)
	if err != nil {
		panic(fmt.Sprintf("translate: marshal tls context: %v", err)) // cannot happen for generated types
	}
	return &corev3.TransportSocket{Name: wellknown.TransportSocketTLS, ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: a}}
}

var _ types.Resource = (*clusterv3.Cluster)(nil)

func boolValue(b bool) *wrapperspb.BoolValue { return wrapperspb.Bool(b) }
