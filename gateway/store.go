package gateway

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"sync"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	lrlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/local_ratelimit/v3"
	rbacfilter "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	wasmfilter "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	resource "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meshwarden/meshwarden/gateway/wasmhost"
	"github.com/meshwarden/meshwarden/gateway/xdsclient"
	"github.com/meshwarden/meshwarden/internal/pemcert"
)

// The xDS types the gateway subscribes to.
var subscribedTypes = []string{
	resource.ClusterType, resource.EndpointType, resource.ListenerType,
	resource.RouteType, resource.SecretType, resource.ExtensionConfigType,
}

// store holds the last accepted resources of every type (state of the world)
// and implements xdsclient.Handler: each response is decoded and validated on
// its own (a bad one is NACKed and leaves the store untouched), then the
// gateway tries to build a complete model from the whole store.
type store struct {
	g *Gateway

	mu        sync.Mutex
	resources map[string]map[string]proto.Message // type URL → name → resource
	versions  map[string]string
	lastNack  *nackInfo
}

type nackInfo struct {
	TypeURL string `json:"type_url"`
	Version string `json:"version"`
	Error   string `json:"error"`
}

var _ xdsclient.Handler = (*store)(nil)

func newStore(g *Gateway) *store {
	s := &store{g: g, resources: map[string]map[string]proto.Message{}, versions: map[string]string{}}
	for _, t := range subscribedTypes {
		s.resources[t] = map[string]proto.Message{}
	}
	return s
}

// OnResources implements xdsclient.Handler.
func (s *store) OnResources(ctx context.Context, typeURL, version string, anys []*anypb.Any) error {
	decoded, err := decodeAll(typeURL, anys)
	if err != nil {
		s.mu.Lock()
		s.lastNack = &nackInfo{TypeURL: typeURL, Version: version, Error: err.Error()}
		s.mu.Unlock()
		return err
	}
	s.mu.Lock()
	s.resources[typeURL] = decoded
	s.versions[typeURL] = version
	s.mu.Unlock()
	s.g.rebuild(ctx)
	return nil
}

// snapshot copies the store's maps (the resources are immutable once decoded).
func (s *store) snapshot() (map[string]map[string]proto.Message, map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	res := make(map[string]map[string]proto.Message, len(s.resources))
	for t, m := range s.resources {
		c := make(map[string]proto.Message, len(m))
		for k, v := range m {
			c[k] = v
		}
		res[t] = c
	}
	vers := make(map[string]string, len(s.versions))
	for k, v := range s.versions {
		vers[k] = v
	}
	return res, vers
}

// Subscriptions implements xdsclient.Handler: CDS and LDS are wildcards; the
// other types follow the names the accepted listeners and clusters reference.
func (s *store) Subscriptions() map[string][]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	want := map[string][]string{resource.ClusterType: nil, resource.ListenerType: nil}
	add := func(t, name string) {
		if name != "" {
			want[t] = append(want[t], name)
		}
	}
	for _, m := range s.resources[resource.ClusterType] {
		c := m.(*cluster.Cluster)
		if c.GetType() == cluster.Cluster_EDS {
			add(resource.EndpointType, edsName(c))
		}
		if utc, _ := upstreamTLS(c); utc != nil {
			for _, n := range secretNames(utc.GetCommonTlsContext()) {
				add(resource.SecretType, n)
			}
		}
	}
	for _, m := range s.resources[resource.ListenerType] {
		l := m.(*listener.Listener)
		for _, fc := range l.GetFilterChains() {
			if dtc, _ := downstreamTLS(fc); dtc != nil {
				for _, n := range secretNames(dtc.GetCommonTlsContext()) {
					add(resource.SecretType, n)
				}
			}
			h, _ := httpConnManager(fc)
			if h == nil {
				continue
			}
			add(resource.RouteType, h.GetRds().GetRouteConfigName())
			for _, f := range h.GetHttpFilters() {
				if f.GetConfigDiscovery() != nil {
					add(resource.ExtensionConfigType, f.GetName())
				}
			}
		}
	}
	return want
}

func edsName(c *cluster.Cluster) string {
	if n := c.GetEdsClusterConfig().GetServiceName(); n != "" {
		return n
	}
	return c.GetName()
}

// decodeAll decodes and validates every resource of one response. Any error
// rejects the whole response, as Envoy does.
func decodeAll(typeURL string, anys []*anypb.Any) (map[string]proto.Message, error) {
	out := make(map[string]proto.Message, len(anys))
	for _, a := range anys {
		if a.GetTypeUrl() != typeURL {
			return nil, fmt.Errorf("resource of type %s in a %s response", a.GetTypeUrl(), typeURL)
		}
		m, err := a.UnmarshalNew()
		if err != nil {
			return nil, fmt.Errorf("decode %s: %w", typeURL, err)
		}
		name := resourceName(m)
		if name == "" {
			return nil, fmt.Errorf("%s without a name", typeURL)
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("%s %q appears twice", typeURL, name)
		}
		if v, ok := m.(interface{ ValidateAll() error }); ok {
			if err := v.ValidateAll(); err != nil {
				return nil, fmt.Errorf("%s %q: %w", typeURL, name, err)
			}
		}
		if err := validateResource(m); err != nil {
			return nil, fmt.Errorf("%s %q: %w", typeURL, name, err)
		}
		out[name] = m
	}
	return out, nil
}

func resourceName(m proto.Message) string {
	switch r := m.(type) {
	case *endpoint.ClusterLoadAssignment:
		return r.GetClusterName()
	case interface{ GetName() string }:
		return r.GetName()
	}
	return ""
}

// validateResource checks what proto validation cannot: that the gateway
// understands and can use the resource.
func validateResource(m proto.Message) error {
	switch r := m.(type) {
	case *listener.Listener:
		if len(r.GetFilterChains()) == 0 {
			return errors.New("no filter_chains: add one with an http_connection_manager")
		}
		for i, fc := range r.GetFilterChains() {
			h, err := httpConnManager(fc)
			if err != nil {
				return fmt.Errorf("filter_chains[%d]: %w", i, err)
			}
			if _, err := downstreamTLS(fc); err != nil {
				return fmt.Errorf("filter_chains[%d]: %w", i, err)
			}
			if h.GetRds() == nil && h.GetRouteConfig() == nil {
				return fmt.Errorf("filter_chains[%d]: http_connection_manager has neither rds nor route_config", i)
			}
			if rc := h.GetRouteConfig(); rc != nil {
				if _, err := compileRouteConfig(rc); err != nil {
					return fmt.Errorf("filter_chains[%d] route_config: %w", i, err)
				}
			}
			if _, err := httpFilters(h); err != nil {
				return fmt.Errorf("filter_chains[%d]: %w", i, err)
			}
		}
	case *route.RouteConfiguration:
		_, err := compileRouteConfig(r)
		return err
	case *cluster.Cluster:
		_, err := clusterSpecOf(r)
		return err
	case *core.TypedExtensionConfig:
		w, err := wasmOf(r.GetTypedConfig())
		if err != nil {
			return err
		}
		if _, err := wasmhost.PluginConfigFromProto(w.GetConfig()); err != nil {
			return err
		}
		return checkCode(w)
	case *tlsv3.Secret:
		_, err := parseSecret(r)
		return err
	}
	return nil
}

func checkCode(w *wasmfilter.Wasm) error {
	code := w.GetConfig().GetVmConfig().GetCode()
	if r := code.GetRemote(); r != nil {
		if r.GetHttpUri().GetUri() == "" {
			return errors.New("vm_config.code.remote.http_uri.uri is empty")
		}
		if len(r.GetSha256()) != 64 {
			return fmt.Errorf("vm_config.code.remote.sha256 %q is not 64 hex digits: the gateway verifies every remote module", r.GetSha256())
		}
		return nil
	}
	if code.GetLocal() == nil {
		return errors.New("vm_config.code has neither remote nor local")
	}
	return nil
}

func wasmOf(a *anypb.Any) (*wasmfilter.Wasm, error) {
	if a == nil {
		return nil, errors.New("typed_config is empty")
	}
	var w wasmfilter.Wasm
	if err := a.UnmarshalTo(&w); err != nil {
		return nil, fmt.Errorf("typed_config %s is not envoy.extensions.filters.http.wasm.v3.Wasm: the gateway runs only wasm filters", a.GetTypeUrl())
	}
	if w.GetConfig() == nil {
		return nil, errors.New("wasm filter without config")
	}
	return &w, nil
}

func httpConnManager(fc *listener.FilterChain) (*hcm.HttpConnectionManager, error) {
	for _, f := range fc.GetFilters() {
		a := f.GetTypedConfig()
		if a == nil {
			continue
		}
		var h hcm.HttpConnectionManager
		if a.MessageIs(&h) {
			if err := a.UnmarshalTo(&h); err != nil {
				return nil, fmt.Errorf("http_connection_manager: %w", err)
			}
			return &h, nil
		}
	}
	return nil, errors.New("no envoy.filters.network.http_connection_manager filter: the gateway proxies HTTP only")
}

// httpFilter is one entry of an HCM filter list before the router.
type httpFilter struct {
	name     string
	ecds     bool             // config_discovery: resolved from ECDS
	inline   *wasmfilter.Wasm // typed_config inline
	fallback *wasmfilter.Wasm // config_discovery default_config
	optional bool             // is_optional
	disabled bool             // disabled: skipped
	rbac     *rbacFilterRT    // an envoy.filters.http.rbac (typed_config)
	// builtin is localRateLimitFilter or faultFilter: a filter configured
	// per route (resilience.go).
	builtin string
}

func httpFilters(h *hcm.HttpConnectionManager) ([]httpFilter, error) {
	var out []httpFilter
	sawRouter, sawRBAC := false, false
	for i, f := range h.GetHttpFilters() {
		if sawRouter {
			return nil, fmt.Errorf("http_filters[%d] %q comes after the router: the router must be last", i, f.GetName())
		}
		if tc := f.GetTypedConfig(); tc != nil && tc.MessageIs(&routerv3.Router{}) {
			sawRouter = true
			continue
		}
		hf := httpFilter{name: f.GetName(), optional: f.GetIsOptional(), disabled: f.GetDisabled()}
		if tc := f.GetTypedConfig(); tc != nil && tc.MessageIs(&rbacfilter.RBAC{}) {
			var cfg rbacfilter.RBAC
			if err := tc.UnmarshalTo(&cfg); err != nil {
				return nil, fmt.Errorf("http_filters[%d] %q: %w", i, f.GetName(), err)
			}
			rt, err := compileRBACFilter(f.GetName(), &cfg)
			if err != nil {
				// Never optional: an access rule the gateway cannot
				// evaluate must not be skipped.
				return nil, fmt.Errorf("http_filters[%d] %q: %w", i, f.GetName(), err)
			}
			hf.rbac, sawRBAC = rt, true
			out = append(out, hf)
			continue
		}
		if tc := f.GetTypedConfig(); tc != nil && (tc.MessageIs(&lrlv3.LocalRateLimit{}) || tc.MessageIs(&faultv3.HTTPFault{})) {
			// Configured per route only: a listener-wide bucket or fault
			// is not supported, and refusing it beats ignoring it.
			if err := checkBuiltinFilter(tc); err != nil {
				return nil, fmt.Errorf("http_filters[%d] %q: %w", i, f.GetName(), err)
			}
			hf.builtin = localRateLimitFilter
			if tc.MessageIs(&faultv3.HTTPFault{}) {
				hf.builtin = faultFilter
			}
			out = append(out, hf)
			continue
		}
		if sawRBAC {
			return nil, fmt.Errorf("http_filters[%d] %q comes after an rbac filter: the gateway runs rbac filters after every wasm filter, put them last before the router", i, f.GetName())
		}
		switch {
		case f.GetConfigDiscovery() != nil:
			hf.ecds = true
			if d := f.GetConfigDiscovery().GetDefaultConfig(); d != nil {
				w, err := wasmOf(d)
				if err != nil {
					return nil, fmt.Errorf("http_filters[%d] %q default_config: %w", i, f.GetName(), err)
				}
				hf.fallback = w
			}
		case f.GetTypedConfig() != nil:
			w, err := wasmOf(f.GetTypedConfig())
			if err != nil {
				if f.GetIsOptional() {
					continue
				}
				return nil, fmt.Errorf("http_filters[%d] %q: %w (or mark it is_optional)", i, f.GetName(), err)
			}
			hf.inline = w
		default:
			return nil, fmt.Errorf("http_filters[%d] %q has neither typed_config nor config_discovery", i, f.GetName())
		}
		out = append(out, hf)
	}
	if !sawRouter {
		return nil, errors.New("http_filters has no envoy.filters.http.router: add it last")
	}
	return out, nil
}

func downstreamTLS(fc *listener.FilterChain) (*tlsv3.DownstreamTlsContext, error) {
	return transportTLS[tlsv3.DownstreamTlsContext](fc.GetTransportSocket(), "a DownstreamTlsContext")
}

func upstreamTLS(c *cluster.Cluster) (*tlsv3.UpstreamTlsContext, error) {
	return transportTLS[tlsv3.UpstreamTlsContext](c.GetTransportSocket(), "an UpstreamTlsContext")
}

// transportTLS decodes a transport socket's TLS context (nil without a
// transport socket); what names the expected type in the error.
func transportTLS[T any, PT interface {
	*T
	proto.Message
}](ts *core.TransportSocket, what string) (*T, error) {
	if ts == nil {
		return nil, nil
	}
	var v T
	if err := ts.GetTypedConfig().UnmarshalTo(PT(&v)); err != nil {
		return nil, fmt.Errorf("transport_socket is not %s: %w", what, err)
	}
	return &v, nil
}

// secretNames lists the SDS secrets a TLS context references.
func secretNames(c *tlsv3.CommonTlsContext) []string {
	var out []string
	for _, s := range c.GetTlsCertificateSdsSecretConfigs() {
		out = append(out, s.GetName())
	}
	if v := c.GetValidationContextSdsSecretConfig(); v != nil {
		out = append(out, v.GetName())
	}
	if cv := c.GetCombinedValidationContext(); cv != nil {
		out = append(out, cv.GetValidationContextSdsSecretConfig().GetName())
	}
	return slices.DeleteFunc(out, func(s string) bool { return s == "" })
}

// secret is a decoded SDS secret: a certificate with its key, a trust
// bundle, or both.
type secret struct {
	name  string
	cert  *tls.Certificate
	roots *x509.CertPool
	nroot int
}

func dataSource(d *core.DataSource) ([]byte, error) {
	switch s := d.GetSpecifier().(type) {
	case *core.DataSource_InlineBytes:
		return s.InlineBytes, nil
	case *core.DataSource_InlineString:
		return []byte(s.InlineString), nil
	case *core.DataSource_Filename:
		return os.ReadFile(s.Filename)
	case nil:
		return nil, nil
	}
	return nil, fmt.Errorf("data source %T is not supported: use inline_bytes, inline_string or filename", d.GetSpecifier())
}

func parseSecret(s *tlsv3.Secret) (*secret, error) {
	out := &secret{name: s.GetName()}
	if tc := s.GetTlsCertificate(); tc != nil {
		certPEM, err := dataSource(tc.GetCertificateChain())
		if err != nil {
			return nil, fmt.Errorf("certificate_chain: %w", err)
		}
		keyPEM, err := dataSource(tc.GetPrivateKey())
		if err != nil {
			return nil, fmt.Errorf("private_key: %w", err)
		}
		c, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, fmt.Errorf("tls_certificate: %w: check that chain and key are PEM and match", err)
		}
		out.cert = &c
	}
	if vc := s.GetValidationContext(); vc != nil {
		ca, err := dataSource(vc.GetTrustedCa())
		if err != nil {
			return nil, fmt.Errorf("trusted_ca: %w", err)
		}
		certs, err := pemcert.Certificates(ca)
		if err != nil {
			return nil, fmt.Errorf("validation_context.trusted_ca: %w", err)
		}
		pool := x509.NewCertPool()
		for _, c := range certs {
			pool.AddCert(c)
		}
		out.nroot = len(certs)
		out.roots = pool
	}
	if out.cert == nil && out.roots == nil {
		return nil, errors.New("secret is neither a tls_certificate nor a validation_context")
	}
	return out, nil
}

// regexCache is not shared: every compile happens at config time.
func compileRegex(re string) (*regexp.Regexp, error) {
	r, err := regexp.Compile("^(?:" + re + ")$")
	if err != nil {
		return nil, fmt.Errorf("regex %q: %w: Envoy uses RE2 syntax", re, err)
	}
	return r, nil
}
