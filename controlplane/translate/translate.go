// Package translate turns Meshwarden's IR (a Consul catalog and a policy
// set) into Envoy xDS resources. It is pure: no I/O, no clocks, no global
// state, so its output is a function of its input and golden-testable.
//
// Translation has two steps. [Build] computes what every node shares
// (clusters, endpoints, route configurations, Wasm extension configs) once
// per catalog/policy change; [Shared.ForNode] adds what is per node
// (listeners, the filters that node runs) and returns the resources of one
// snapshot. Names are documented in controlplane/README.md.
package translate

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/meshwarden/meshwarden/internal/meshnames"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/meshwarden/meshwarden/ir"
)

// Defaults for node metadata that is absent.
const (
	DefaultInboundPort  = 21000
	DefaultOutboundPort = 15001
	DefaultLocalAppPort = 8080
	DefaultListenPort   = 10000
	// DefaultTimeout is a route's timeout when the policy gives none.
	DefaultTimeout = 15 * time.Second
)

// Resource names that are not derived from a service.
const (
	// InboundListenerName is a sidecar's listener for traffic to its service.
	InboundListenerName = "mw-inbound"
	// OutboundListenerName is a sidecar's listener for traffic its app sends.
	OutboundListenerName = "mw-outbound"
	// GatewayListenerName is the gateway's listener.
	GatewayListenerName = "mw-gateway"
	// OutboundRouteName is the RDS route configuration of the outbound listener.
	OutboundRouteName = "outbound"
	// GatewayRouteName is the RDS route configuration of the gateway listener.
	GatewayRouteName = "gateway"
	// LocalAppClusterName is a sidecar's cluster to its local application.
	LocalAppClusterName = "mw-local-app"
	// WasmFilterPrefix + filter name is the ECDS resource (and HTTP filter) name.
	WasmFilterPrefix = "mw."
)

// Options are the plane-wide settings of translation.
type Options struct {
	// ModuleBaseURL is where Envoy fetches modules, e.g.
	// http://127.0.0.1:18000/modules/ ; the sha256 is appended.
	ModuleBaseURL string
	// ModuleSHA256 maps a filter name to the sha256 of the module server's
	// current build, used when ir.Filter.SHA256 is empty.
	ModuleSHA256 map[string]string
	// AuditCollector is host:port of the audit collector; empty means the
	// healthy instances of meshnames.CollectorServiceName in Consul, if any.
	AuditCollector string
	// OTLPEndpoint is host:port of the OTLP/HTTP collector; empty means no
	// OTLP cluster.
	OTLPEndpoint string
	// MTLS makes listeners and upstream clusters use SDS secrets
	// (meshnames.LeafSecretName, meshnames.RootsSecretName).
	MTLS bool
	// TrustDomain and Datacenter form the SPIFFE ids matched on upstream
	// certificates: spiffe://<TrustDomain>/ns/default/dc/<Datacenter>/svc/<svc>.
	TrustDomain string
	Datacenter  string
}

// Node is one xDS client as translation sees it.
type Node struct {
	ID      string
	Gateway bool
	// Service is the service a sidecar fronts.
	Service string
	// Ports from node metadata; zero means the default.
	InboundPort, OutboundPort, LocalAppPort, ListenPort uint32
}

// NodeFromMetadata builds a Node from node.id, node.cluster and node
// metadata (inbound_port, outbound_port, local_app_port, listen_port).
func NodeFromMetadata(id, cluster string, meta map[string]string) (Node, error) {
	n := Node{ID: id}
	if cluster == "" {
		return n, errors.New("node.cluster is empty: set it to the service the sidecar fronts, or to " + meshnames.GatewayNodeCluster + " for a gateway")
	}
	if cluster == meshnames.GatewayNodeCluster {
		n.Gateway = true
	} else {
		n.Service = cluster
	}
	for key, dst := range map[string]*uint32{
		"inbound_port": &n.InboundPort, "outbound_port": &n.OutboundPort,
		"local_app_port": &n.LocalAppPort, "listen_port": &n.ListenPort,
	} {
		v, ok := meta[key]
		if !ok || v == "" {
			continue
		}
		p, err := strconv.ParseUint(v, 10, 16)
		if err != nil || p == 0 {
			return n, fmt.Errorf("node metadata %s=%q is not a port: give a number 1-65535", key, v)
		}
		*dst = uint32(p)
	}
	return n, nil
}

// leafSecret is the SDS name of the node's own certificate.
// service is the Consul service whose identity (leaf) the node holds.
func (n Node) service() string {
	if n.Gateway {
		return meshnames.GatewayNodeCluster
	}
	return n.Service
}

func (n Node) leafSecret() string {
	if n.Gateway {
		return meshnames.LeafSecretName(meshnames.GatewayNodeCluster)
	}
	return meshnames.LeafSecretName(n.Service)
}

func (n Node) port(p, def uint32) uint32 {
	if p == 0 {
		return def
	}
	return p
}

// Shared holds the resources every node shares, computed once per input.
type Shared struct {
	opts     Options
	policy   *ir.PolicySet
	clusters []types.Resource
	// meshOf[i] is the upstream service of clusters[i], "" for non-mesh
	// clusters (audit, OTLP, modules), which never get mTLS.
	meshOf    []string
	mu        sync.Mutex
	byLeaf    map[string][]types.Resource
	endpoints []types.Resource
	outbound  *routev3.RouteConfiguration
	gateway   *routev3.RouteConfiguration
	catchAll  *routev3.VirtualHost
	// entries are the per-service results (possibly cached); extra* are
	// the non-service clusters (audit, OTLP, modules) and their endpoints.
	entries        []*serviceEntry
	extraClusters  []types.Resource
	extraEndpoints []types.Resource
	// filters are the policy's filters in filters.Order().
	filters []ir.Filter
	// digest is the content hash of everything above.
	digest []byte
	// serviceTags are each service's compliance tags (residency.go).
	serviceTags map[string][]string
	// Warnings are user-facing notes (e.g. a route for a service Consul
	// does not know); they do not stop translation.
	Warnings []string
}

// Build translates the catalog and policy set into the shared resources.
// ps may be nil (no policies). It fails only on input that cannot produce
// valid Envoy configuration; the error says what to change.
func Build(cat *ir.Catalog, ps *ir.PolicySet, opts Options) (*Shared, error) {
	return BuildCached(nil, cat, ps, opts)
}

// BuildCached is Build reusing (and refreshing) the per-service results in
// cache; a nil cache translates everything.
func BuildCached(cache *Cache, cat *ir.Catalog, ps *ir.PolicySet, opts Options) (*Shared, error) {
	if cat == nil {
		cat = &ir.Catalog{}
	}
	if ps == nil {
		ps = &ir.PolicySet{}
	}
	if err := ps.Validate(); err != nil {
		return nil, fmt.Errorf("policy set is not valid: %w", err)
	}
	if opts.ModuleBaseURL != "" {
		if _, err := url.Parse(opts.ModuleBaseURL); err != nil {
			return nil, fmt.Errorf("module base URL %q: %w", opts.ModuleBaseURL, err)
		}
	}
	s := &Shared{opts: opts, policy: ps}
	routes := map[string]*ir.Route{}
	for i := range ps.Routes {
		routes[ps.Routes[i].Service] = &ps.Routes[i]
	}
	comp := map[string]*ir.Compliance{}
	for i := range ps.Compliance {
		comp[ps.Compliance[i].Service] = &ps.Compliance[i]
	}
	names := upstreamNames(cat)
	known := map[string]bool{}
	for _, n := range names {
		known[n] = true
	}
	for _, r := range ps.Routes {
		if !known[r.Service] {
			s.Warnings = append(s.Warnings, fmt.Sprintf("%s: route for service %q, which Consul does not know (yet): it applies once the service registers", r.Source, r.Service))
		}
	}
	s.Warnings = append(s.Warnings, accessWarnings(ps, known)...)
	s.Warnings = append(s.Warnings, resilienceWarnings(ps, known)...)
	resilience := map[string]*ir.Resilience{}
	for i := range ps.Resilience {
		resilience[ps.Resilience[i].Service] = &ps.Resilience[i]
	}
	s.collectServiceTags(cat, names, comp)
	h := sha256.New()
	vhosts := make([]*routev3.VirtualHost, 0, len(names)+1)
	var byPath []*routev3.Route
	s.entries = make([]*serviceEntry, 0, len(names))
	for _, name := range names {
		c := comp[name]
		svc, refused := s.residency(cat.Services[name], c)
		e, err := cache.entry(name, svc, routes[name], resilience[name])
		if err == nil && refused {
			e, err = s.refusedEntry(e, name, c)
		}
		if err != nil {
			return nil, err
		}
		s.entries = append(s.entries, e)
		s.clusters = append(s.clusters, e.clusters...)
		s.meshOf = append(s.meshOf, e.meshOf...)
		s.endpoints = append(s.endpoints, e.endpoints...)
		vhosts = append(vhosts, e.vhost)
		byPath = append(byPath, e.byPath...)
		h.Write(e.digest[:])
	}
	cache.retain(names)
	nService := len(s.clusters)
	nEndpoints := len(s.endpoints)
	s.buildExtraClusters(cat)
	s.outbound = &routev3.RouteConfiguration{Name: OutboundRouteName, VirtualHosts: vhosts}
	gw := make([]*routev3.VirtualHost, len(vhosts), len(vhosts)+1)
	copy(gw, vhosts)
	s.catchAll = &routev3.VirtualHost{Name: "mw-by-path", Domains: []string{"*"}, Routes: byPath}
	s.gateway = &routev3.RouteConfiguration{Name: GatewayRouteName, VirtualHosts: append(gw, s.catchAll)}
	if err := s.buildFilters(ps); err != nil {
		return nil, err
	}
	if err := hashAll(h, s.clusters[nService:]); err != nil {
		return nil, err
	}
	if err := hashAll(h, s.endpoints[nEndpoints:]); err != nil {
		return nil, err
	}
	s.extraClusters, s.extraEndpoints = s.clusters[nService:], s.endpoints[nEndpoints:]
	s.digest = h.Sum(nil)
	return s, nil
}

// upstreamNames lists the catalog's services that are routable upstreams:
// all but Consul itself and the control plane.
func upstreamNames(cat *ir.Catalog) []string {
	var out []string
	for _, n := range cat.ServiceNames() {
		if n == "consul" || n == meshnames.PlaneServiceName {
			continue
		}
		out = append(out, n)
	}
	return out
}

// Snapshot is the resources of one node's snapshot and its content version.
type Snapshot struct {
	Version   string
	Resources map[resource.Type][]types.Resource
	// own are the resources made for this node (not shared), which
	// ValidateNode checks.
	own []types.Resource
}

// ForNode returns the snapshot resources of node, excluding secrets (the
// caller adds the SecretSource's secrets and their hash via extra).
func (s *Shared) ForNode(n Node, secrets []types.Resource) (*Snapshot, error) {
	res := map[resource.Type][]types.Resource{}
	var listeners, routes, clusters []types.Resource
	clusters = s.clusters
	if s.opts.MTLS {
		var err error
		if clusters, err = s.mtlsClusters(n.leafSecret()); err != nil {
			return nil, err
		}
	}
	if n.Gateway {
		l, err := s.gatewayListener(n)
		if err != nil {
			return nil, err
		}
		listeners = []types.Resource{l}
		routes = []types.Resource{s.gateway}
	} else {
		in, err := s.inboundListener(n)
		if err != nil {
			return nil, err
		}
		out, err := s.outboundListener(n)
		if err != nil {
			return nil, err
		}
		listeners = []types.Resource{in, out}
		routes = []types.Resource{s.outbound}
		shared := clusters
		clusters = make([]types.Resource, 0, len(shared)+1)
		clusters = append(clusters, shared...)
		clusters = append(clusters, localAppCluster(n.port(n.LocalAppPort, DefaultLocalAppPort)))
	}
	exts, err := s.extensionConfigs(n)
	if err != nil {
		return nil, err
	}
	res[resource.ListenerType] = listeners
	res[resource.RouteType] = routes
	res[resource.ClusterType] = clusters
	res[resource.EndpointType] = s.endpoints
	res[resource.ExtensionConfigType] = exts
	res[resource.SecretType] = secrets

	h := sha256.New()
	h.Write(s.digest)
	for _, group := range [][]types.Resource{listeners, exts, secrets} {
		for _, r := range group {
			b, err := proto.MarshalOptions{Deterministic: true}.Marshal(r)
			if err != nil {
				return nil, fmt.Errorf("hash resource: %w", err)
			}
			h.Write(b)
		}
	}
	if !n.Gateway {
		h.Write([]byte("sidecar:" + strconv.Itoa(int(n.port(n.LocalAppPort, DefaultLocalAppPort)))))
	}
	own := append(append(append([]types.Resource(nil), listeners...), exts...), secrets...)
	if !n.Gateway {
		own = append(own, clusters[len(clusters)-1]) // the local app cluster
	}
	return &Snapshot{Version: hex.EncodeToString(h.Sum(nil))[:16], Resources: res, own: own}, nil
}

// ClusterName returns the cluster of a service's subset ("" = all healthy
// instances).
func ClusterName(service, subset string) string {
	if subset == "" {
		return service
	}
	return service + "~" + subset
}

func splitHostPort(hp string) (string, uint32, error) {
	host, p, err := net.SplitHostPort(hp)
	if err != nil {
		return "", 0, fmt.Errorf("%q is not host:port: %w", hp, err)
	}
	port, err := strconv.ParseUint(p, 10, 16)
	if err != nil || port == 0 {
		return "", 0, fmt.Errorf("%q: port must be 1-65535", hp)
	}
	return host, uint32(port), nil
}

// hostPortOfURL returns the host:port of an http(s) URL, defaulting the port.
func hostPortOfURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	if u.Host == "" {
		return "", fmt.Errorf("%q has no host: use e.g. http://127.0.0.1:18000/modules/", raw)
	}
	if u.Port() != "" {
		return u.Host, nil
	}
	if u.Scheme == "https" {
		return net.JoinHostPort(u.Hostname(), "443"), nil
	}
	return net.JoinHostPort(u.Hostname(), "80"), nil
}
