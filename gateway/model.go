package gateway

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	wasmfilter "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	resource "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/meshwarden/meshwarden/gateway/wasmhost"
)

// model is one complete, validated configuration: listener → route table →
// virtual hosts → routes → clusters → endpoints, with the filter chain and
// the secrets. It is immutable once published; requests hold a reference
// (refs) so retired plugins are closed only after their last request.
type model struct {
	versions map[string]string
	listener *listenerRT
	clusters map[string]*clusterRT
	secrets  map[string]*secret
	plugins  []*wasmhost.Plugin
	refs     atomic.Int64
	// mirrorSlots bounds the shadow requests in flight (resilience.go).
	mirrorSlots chan struct{}
}

type listenerRT struct {
	name        string
	tls         *downstreamTLSSpec
	routes      *routeTable
	chain       *wasmhost.Chain // nil when there are no filters
	filterNames []string
	// access are the RBAC filters, evaluated in order after the wasm
	// filters' request headers (so the dye lane is settled) and before
	// routing.
	access []*rbacFilterRT
	// blocked names a fail-closed filter that is unavailable (its module did
	// not fetch, verify or start, and no earlier version runs): every request
	// gets a local 503, as Envoy does for a fail-closed plugin.
	blocked string
	// rateLimit and fault say the listener runs the local rate limit and
	// fault filters, so routes' per-filter configuration of them applies.
	rateLimit, fault bool
}

type downstreamTLSSpec struct {
	certSecret    string
	rootsSecret   string
	requireClient bool
	alpn          []string
}

// warmingError lists the resources a complete model still waits for.
type warmingError struct{ missing []string }

func (w *warmingError) Error() string {
	return "waiting for " + strings.Join(w.missing, ", ")
}

// build assembles a model from the store's resources. A missing referenced
// resource yields a *warmingError (not a NACK: it may still arrive).
func (g *Gateway) build(ctx context.Context, res map[string]map[string]proto.Message, versions map[string]string) (*model, error) {
	b := &modelBuilder{g: g, res: res, m: &model{versions: versions, clusters: map[string]*clusterRT{}, secrets: map[string]*secret{}, mirrorSlots: make(chan struct{}, maxMirrorsInFlight)}}
	if err := b.secrets(); err != nil {
		return nil, err
	}
	lrt, h, err := b.listener()
	if err != nil {
		return nil, err
	}
	if err := b.clusters(); err != nil {
		return nil, err
	}
	slots, err := b.filterSlots(lrt, h)
	if err != nil {
		return nil, err
	}
	if len(b.missing) > 0 {
		slices.Sort(b.missing)
		return nil, &warmingError{missing: slices.Compact(b.missing)}
	}
	b.startFilters(ctx, lrt, slots)
	if len(b.missing) > 0 { // a filter version is starting with nothing to run meanwhile
		return nil, &warmingError{missing: b.missing}
	}
	b.m.listener = lrt
	return b.m, nil
}

// modelBuilder holds one build's inputs, the model so far and what it still
// waits for.
type modelBuilder struct {
	g       *Gateway
	res     map[string]map[string]proto.Message
	m       *model
	missing []string
}

// filterSlot is one wasm filter of the listener, in order.
type filterSlot struct {
	name string
	w    *wasmfilter.Wasm
}

func (b *modelBuilder) secrets() error {
	for name, r := range b.res[resource.SecretType] {
		s, err := parseSecret(r.(*tlsv3.Secret))
		if err != nil {
			return fmt.Errorf("secret %q: %w", name, err)
		}
		b.m.secrets[name] = s
	}
	return nil
}

func (b *modelBuilder) needSecret(names ...string) {
	for _, n := range names {
		if n != "" && b.m.secrets[n] == nil {
			b.missing = append(b.missing, "secret "+n)
		}
	}
}

// listener compiles the listener bound to our port (or the only one): its
// downstream TLS and its routes.
func (b *modelBuilder) listener() (*listenerRT, *hcm.HttpConnectionManager, error) {
	l, err := b.g.pickListener(b.res[resource.ListenerType])
	if err != nil {
		return nil, nil, err
	}
	if l == nil {
		return nil, nil, &warmingError{missing: []string{"a listener"}}
	}
	fc := l.GetFilterChains()[0]
	h, err := httpConnManager(fc)
	if err != nil {
		return nil, nil, fmt.Errorf("listener %q: %w", l.GetName(), err)
	}
	lrt := &listenerRT{name: l.GetName()}
	if dtc, _ := downstreamTLS(fc); dtc != nil {
		if lrt.tls, err = b.downstreamTLSSpec(l.GetName(), dtc); err != nil {
			return nil, nil, err
		}
	}
	if rds := h.GetRds(); rds != nil {
		rc, ok := b.res[resource.RouteType][rds.GetRouteConfigName()]
		if !ok {
			b.missing = append(b.missing, "route "+rds.GetRouteConfigName())
		} else if lrt.routes, err = compileRouteConfig(rc.(*route.RouteConfiguration)); err != nil {
			return nil, nil, fmt.Errorf("route %q: %w", rds.GetRouteConfigName(), err)
		}
	} else if lrt.routes, err = compileRouteConfig(h.GetRouteConfig()); err != nil {
		return nil, nil, fmt.Errorf("listener %q route_config: %w", l.GetName(), err)
	}
	return lrt, h, nil
}

func (b *modelBuilder) downstreamTLSSpec(listenerName string, dtc *tlsv3.DownstreamTlsContext) (*downstreamTLSSpec, error) {
	ctc := dtc.GetCommonTlsContext()
	spec := &downstreamTLSSpec{requireClient: dtc.GetRequireClientCertificate().GetValue(), alpn: ctc.GetAlpnProtocols()}
	if c := ctc.GetTlsCertificateSdsSecretConfigs(); len(c) > 0 {
		spec.certSecret = c[0].GetName()
	}
	if v := ctc.GetValidationContextSdsSecretConfig(); v != nil {
		spec.rootsSecret = v.GetName()
	} else if cv := ctc.GetCombinedValidationContext(); cv != nil {
		spec.rootsSecret = cv.GetValidationContextSdsSecretConfig().GetName()
	}
	if spec.certSecret == "" {
		return nil, fmt.Errorf("listener %q: downstream TLS needs tls_certificate_sds_secret_configs", listenerName)
	}
	b.needSecret(spec.certSecret, spec.rootsSecret)
	return spec, nil
}

// clusters compiles every cluster with its endpoints.
func (b *modelBuilder) clusters() error {
	g := b.g
	for name, r := range b.res[resource.ClusterType] {
		c := r.(*cluster.Cluster)
		spec, err := clusterSpecOf(c)
		if err != nil {
			return fmt.Errorf("cluster %q: %w", name, err)
		}
		cla := c.GetLoadAssignment()
		if c.GetType() == cluster.Cluster_EDS {
			e, ok := b.res[resource.EndpointType][edsName(c)]
			if !ok {
				b.missing = append(b.missing, "endpoints "+edsName(c))
				continue
			}
			cla = e.(*endpoint.ClusterLoadAssignment)
		}
		live := g.clusterLive(name)
		eps, healthy, err := endpointsOf(cla, live)
		if err != nil {
			return fmt.Errorf("cluster %q: %w", name, err)
		}
		if spec.tls != nil {
			b.needSecret(spec.tls.certSecret, spec.tls.rootsSecret)
		}
		b.m.clusters[name] = &clusterRT{spec: spec, endpoints: eps, healthyN: healthy, live: live, tr: g.transport(spec)}
	}
	return nil
}

// filterSlots lists the listener's wasm filters in its order (which the
// plane takes from filters/order.txt), their config from ECDS or inline;
// RBAC filters go to lrt.access.
func (b *modelBuilder) filterSlots(lrt *listenerRT, h *hcm.HttpConnectionManager) ([]filterSlot, error) {
	hfs, err := httpFilters(h)
	if err != nil {
		return nil, fmt.Errorf("listener %q: %w", lrt.name, err)
	}
	var slots []filterSlot
	for _, f := range hfs {
		if f.disabled {
			continue
		}
		if f.rbac != nil {
			lrt.access = append(lrt.access, f.rbac)
			continue
		}
		switch f.builtin {
		case localRateLimitFilter:
			lrt.rateLimit = true
			continue
		case faultFilter:
			lrt.fault = true
			continue
		}
		w := f.inline
		if f.ecds {
			if r, ok := b.res[resource.ExtensionConfigType][f.name]; ok {
				if w, err = wasmOf(r.(*core.TypedExtensionConfig).GetTypedConfig()); err != nil {
					return nil, fmt.Errorf("extension config %q: %w", f.name, err)
				}
			} else if f.fallback != nil {
				w = f.fallback
			} else {
				b.missing = append(b.missing, "extension config "+f.name)
				continue
			}
		}
		slots = append(slots, filterSlot{f.name, w})
	}
	return slots, nil
}

// startFilters resolves each slot to a running plugin (or the last known
// good one) and builds the chain; a fail-closed filter with none blocks the
// listener.
func (b *modelBuilder) startFilters(ctx context.Context, lrt *listenerRT, slots []filterSlot) {
	var plugins []*wasmhost.Plugin
	for _, s := range slots {
		r := b.g.plugins.resolve(ctx, s.name, s.w)
		switch {
		case r.p != nil:
			plugins = append(plugins, r.p)
			lrt.filterNames = append(lrt.filterNames, s.name)
		case r.starting != "":
			b.missing = append(b.missing, "wasm filter "+s.name+" ("+r.starting+")")
		case r.failClosed && lrt.blocked == "":
			lrt.blocked = s.name
		}
	}
	if len(plugins) > 0 {
		lrt.chain = wasmhost.NewChain(plugins...)
	}
	b.m.plugins = plugins
}

// pickListener returns the listener whose port is the gateway's, else the
// only listener, else an error naming the choice to make.
func (g *Gateway) pickListener(ls map[string]proto.Message) (*listener.Listener, error) {
	if len(ls) == 0 {
		return nil, nil
	}
	names := slices.Sorted(maps.Keys(ls))
	for _, n := range names {
		l := ls[n].(*listener.Listener)
		if int(l.GetAddress().GetSocketAddress().GetPortValue()) == g.port {
			return l, nil
		}
	}
	if len(names) == 1 {
		return ls[names[0]].(*listener.Listener), nil
	}
	return nil, fmt.Errorf("%d listeners and none on port %d: give the gateway's listener port %d (node metadata listen_port)", len(names), g.port, g.port)
}

func portOf(addr net.Addr) int {
	_, p, _ := net.SplitHostPort(addr.String())
	n, _ := strconv.Atoi(p)
	return n
}

var errNoModel = errors.New("no configuration yet")
