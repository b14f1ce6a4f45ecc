package translate

import (
	"fmt"

	"github.com/meshwarden/meshwarden/internal/meshnames"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/types/known/anypb"
)

// WasmTypeURL is the type of the ECDS resources the HTTP filters discover.
const WasmTypeURL = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"

// inboundListener accepts traffic for the sidecar's service on 0.0.0.0
// (mTLS with client certificates when configured), runs the filters and
// routes everything to the local app.
func (s *Shared) inboundListener(n Node) (types.Resource, error) {
	rc := &routev3.RouteConfiguration{
		Name: "mw-inbound",
		VirtualHosts: []*routev3.VirtualHost{{
			Name:    "local-app",
			Domains: []string{"*"},
			Routes: []*routev3.Route{{
				Name:  "local-app",
				Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				Action: &routev3.Route_Route{Route: &routev3.RouteAction{
					ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: LocalAppClusterName},
				}},
			}},
		}},
	}
	access, err := s.rbacFilters(n)
	if err != nil {
		return nil, err
	}
	hcm := s.hcm("inbound_"+n.Service, n, func(h *hcmv3.HttpConnectionManager) {
		h.RouteSpecifier = &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: rc}
	}, access...)
	l, err := listener(InboundListenerName, "0.0.0.0", n.port(n.InboundPort, DefaultInboundPort), hcm)
	if err != nil {
		return nil, err
	}
	if s.opts.MTLS {
		down := &tlsv3.DownstreamTlsContext{
			RequireClientCertificate: boolValue(true),
			CommonTlsContext: &tlsv3.CommonTlsContext{
				TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sdsSecret(n.leafSecret())},
				ValidationContextType: &tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig{
					ValidationContextSdsSecretConfig: sdsSecret(meshnames.RootsSecretName),
				},
			},
		}
		l.FilterChains[0].TransportSocket = transportSocket(down)
	}
	return l, nil
}

// outboundListener accepts the app's plain HTTP on loopback and routes it by
// Host over RDS (route configuration "outbound").
func (s *Shared) outboundListener(n Node) (types.Resource, error) {
	hcm := s.hcm("outbound", n, rds(OutboundRouteName))
	return listener(OutboundListenerName, "127.0.0.1", n.port(n.OutboundPort, DefaultOutboundPort), hcm)
}

// gatewayListener is the gateway's edge listener, RDS route "gateway".
func (s *Shared) gatewayListener(n Node) (types.Resource, error) {
	hcm := s.hcm("gateway", n, rds(GatewayRouteName))
	return listener(GatewayListenerName, "0.0.0.0", n.port(n.ListenPort, DefaultListenPort), hcm)
}

func rds(name string) func(*hcmv3.HttpConnectionManager) {
	return func(h *hcmv3.HttpConnectionManager) {
		h.RouteSpecifier = &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{ConfigSource: adsSource(), RouteConfigName: name}}
	}
}

// hcm is an HTTP connection manager running the node's Wasm filters (by
// ECDS, in filters.Order()), then the extra filters (the access filters of
// an inbound listener), then the router.
func (s *Shared) hcm(stat string, n Node, routes func(*hcmv3.HttpConnectionManager), extra ...*hcmv3.HttpFilter) *hcmv3.HttpConnectionManager {
	h := &hcmv3.HttpConnectionManager{
		StatPrefix: stat,
		CodecType:  hcmv3.HttpConnectionManager_AUTO,
	}
	routes(h)
	for _, f := range s.filtersFor(n) {
		h.HttpFilters = append(h.HttpFilters, &hcmv3.HttpFilter{
			Name: WasmFilterPrefix + f.Name,
			ConfigType: &hcmv3.HttpFilter_ConfigDiscovery{ConfigDiscovery: &corev3.ExtensionConfigSource{
				ConfigSource: adsSource(),
				TypeUrls:     []string{WasmTypeURL},
			}},
		})
	}
	h.HttpFilters = append(h.HttpFilters, extra...)
	h.HttpFilters = append(h.HttpFilters, resilienceFilters(s.policy)...)
	router, _ := anypb.New(&routerv3.Router{})
	h.HttpFilters = append(h.HttpFilters, &hcmv3.HttpFilter{
		Name:       wellknown.Router,
		ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: router},
	})
	return h
}

func listener(name, host string, port uint32, hcm *hcmv3.HttpConnectionManager) (*listenerv3.Listener, error) {
	a, err := anypb.New(hcm)
	if err != nil {
		return nil, fmt.Errorf("marshal http connection manager: %w", err)
	}
	return &listenerv3.Listener{
		Name:    name,
		Address: socketAddress(host, port),
		FilterChains: []*listenerv3.FilterChain{{
			Filters: []*listenerv3.Filter{{
				Name:       wellknown.HTTPConnectionManager,
				ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: a},
			}},
		}},
	}, nil
}
