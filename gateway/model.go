package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	wasmfilter "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
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
	m := &model{versions: versions, clusters: map[string]*clusterRT{}, secrets: map[string]*secret{}}
	var missing []string
	for name, r := range res[resource.SecretType] {
		s, err := parseSecret(r.(*tlsv3.Secret))
		if err != nil {
			return nil, fmt.Errorf("secret %q: %w", name, err)
		}
		m.secrets[name] = s
	}
	needSecret := func(names ...string) {
		for _, n := range names {
			if n != "" && m.secrets[n] == nil {
				missing = append(missing, "secret "+n)
			}
		}
	}

	// Listener: the one bound to our port, or the only one.
	l, err := g.pickListener(res[resource.ListenerType])
	if err != nil {
		return nil, err
	}
	if l == nil {
		return nil, &warmingError{missing: []string{"a listener"}}
	}
	fc := l.GetFilterChains()[0]
	h, err := httpConnManager(fc)
	if err != nil {
		return nil, fmt.Errorf("listener %q: %w", l.GetName(), err)
	}
	lrt := &listenerRT{name: l.GetName()}
	if dtc, _ := downstreamTLS(fc); dtc != nil {
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
			return nil, fmt.Errorf("listener %q: downstream TLS needs tls_certificate_sds_secret_configs", l.GetName())
		}
		needSecret(spec.certSecret, spec.rootsSecret)
		lrt.tls = spec
	}
	if rds := h.GetRds(); rds != nil {
		rc, ok := res[resource.RouteType][rds.GetRouteConfigName()]
		if !ok {
			missing = append(missing, "route "+rds.GetRouteConfigName())
		} else if lrt.routes, err = compileRouteConfig(rc.(*route.RouteConfiguration)); err != nil {
			return nil, fmt.Errorf("route %q: %w", rds.GetRouteConfigName(), err)
		}
	} else if lrt.routes, err = compileRouteConfig(h.GetRouteConfig()); err != nil {
		return nil, fmt.Errorf("listener %q route_config: %w", l.GetName(), err)
	}

	// Clusters and their endpoints.
	for name, r := range res[resource.ClusterType] {
		c := r.(*cluster.Cluster)
		spec, err := clusterSpecOf(c)
		if err != nil {
			return nil, fmt.Errorf("cluster %q: %w", name, err)
		}
		cla := c.GetLoadAssignment()
		if c.GetType() == cluster.Cluster_EDS {
			e, ok := res[resource.EndpointType][edsName(c)]
			if !ok {
				missing = append(missing, "endpoints "+edsName(c))
				continue
			}
			cla = e.(*endpoint.ClusterLoadAssignment)
		}
		live := g.clusterLive(name)
		eps, healthy, err := endpointsOf(cla, live)
		if err != nil {
			return nil, fmt.Errorf("cluster %q: %w", name, err)
		}
		if spec.tls != nil {
			needSecret(spec.tls.certSecret, spec.tls.rootsSecret)
		}
		m.clusters[name] = &clusterRT{spec: spec, endpoints: eps, healthyN: healthy, live: live, tr: g.transport(spec)}
	}

	// Filters, in the listener's order (which the plane takes from
	// filters/order.txt).
	hfs, err := httpFilters(h)
	if err != nil {
		return nil, fmt.Errorf("listener %q: %w", l.GetName(), err)
	}
	type slot struct {
		name string
		w    *wasmfilter.Wasm
	}
	var slots []slot
	for _, f := range hfs {
		if f.disabled {
			continue
		}
		if f.rbac != nil {
			lrt.access = append(lrt.access, f.rbac)
			continue
		}
		w := f.inline
		if f.ecds {
			if r, ok := res[resource.ExtensionConfigType][f.name]; ok {
				if w, err = wasmOf(r.(*core.TypedExtensionConfig).GetTypedConfig()); err != nil {
					return nil, fmt.Errorf("extension config %q: %w", f.name, err)
				}
			} else if f.fallback != nil {
				w = f.fallback
			} else {
				missing = append(missing, "extension config "+f.name)
				continue
			}
		}
		slots = append(slots, slot{f.name, w})
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return nil, &warmingError{missing: slices.Compact(missing)}
	}
	var plugins []*wasmhost.Plugin
	for _, s := range slots {
		p, failClosed := g.plugins.resolve(ctx, s.name, s.w)
		switch {
		case p != nil:
			plugins = append(plugins, p)
			lrt.filterNames = append(lrt.filterNames, s.name)
		case failClosed && lrt.blocked == "":
			lrt.blocked = s.name
		}
	}
	if len(plugins) > 0 {
		lrt.chain = wasmhost.NewChain(plugins...)
	}
	m.plugins = plugins
	m.listener = lrt
	return m, nil
}

// pickListener returns the listener whose port is the gateway's, else the
// only listener, else an error naming the choice to make.
func (g *Gateway) pickListener(ls map[string]proto.Message) (*listener.Listener, error) {
	if len(ls) == 0 {
		return nil, nil
	}
	names := make([]string, 0, len(ls))
	for n := range ls {
		names = append(names, n)
	}
	sort.Strings(names)
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
