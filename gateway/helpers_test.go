package gateway

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	wasmfilter "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	wasmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/wasm/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resource "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshwarden/meshwarden/internal/meshnames"
	"github.com/meshwarden/meshwarden/internal/testenv/probe"
)

// planeServer is an in-test go-control-plane ADS server with a snapshot
// cache. It can be stopped and restarted on the same port (plane outage).
type planeServer struct {
	t       *testing.T
	cache   cachev3.SnapshotCache
	addr    string
	mu      sync.Mutex
	gs      *grpc.Server
	version atomic.Int64
	nacks   chan *discoverygrpc.DiscoveryRequest
	node    atomic.Pointer[core.Node]
}

func startPlane(t *testing.T) *planeServer {
	t.Helper()
	p := &planeServer{t: t, cache: cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil),
		nacks: make(chan *discoverygrpc.DiscoveryRequest, 16)}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = lis.Addr().String()
	p.serve(lis)
	t.Cleanup(p.stop)
	return p
}

func (p *planeServer) serve(lis net.Listener) {
	cb := serverv3.CallbackFuncs{StreamRequestFunc: func(_ int64, r *discoverygrpc.DiscoveryRequest) error {
		if r.GetNode() != nil {
			p.node.Store(r.GetNode())
		}
		if r.GetErrorDetail() != nil {
			select {
			case p.nacks <- r:
			default:
			}
		}
		return nil
	}}
	srv := serverv3.NewServer(context.Background(), p.cache, cb)
	gs := grpc.NewServer()
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(gs, srv)
	p.mu.Lock()
	p.gs = gs
	p.mu.Unlock()
	go func() { _ = gs.Serve(lis) }()
}

func (p *planeServer) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gs != nil {
		p.gs.Stop()
		p.gs = nil
	}
}

// restart serves again on the same address (bounded retries while the port
// is released).
func (p *planeServer) restart() {
	p.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		lis, err := net.Listen("tcp", p.addr)
		if err == nil {
			p.serve(lis)
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("rebind plane on %s: %v", p.addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// set publishes resources for node id.
func (p *planeServer) set(node string, rs ...types.Resource) {
	p.t.Helper()
	byType := map[resource.Type][]types.Resource{}
	for _, r := range rs {
		a, err := anypb.New(r.(proto.Message))
		if err != nil {
			p.t.Fatal(err)
		}
		byType[a.GetTypeUrl()] = append(byType[a.GetTypeUrl()], r)
	}
	snap, err := cachev3.NewSnapshot(strconv.FormatInt(p.version.Add(1), 10), byType)
	if err != nil {
		p.t.Fatal(err)
	}
	if err := p.cache.SetSnapshot(context.Background(), node, snap); err != nil {
		p.t.Fatal(err)
	}
}

// --- resource builders ---

func mustAny(t testing.TB, m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func ads() *core.ConfigSource {
	return &core.ConfigSource{ResourceApiVersion: core.ApiVersion_V3,
		ConfigSourceSpecifier: &core.ConfigSource_Ads{Ads: &core.AggregatedConfigSource{}}}
}

// httpListener builds a listener on port with RDS routeName and ECDS filters.
func httpListener(t testing.TB, port int, routeName string, ecds ...string) *listener.Listener {
	var filters []*hcm.HttpFilter
	for _, f := range ecds {
		filters = append(filters, &hcm.HttpFilter{Name: f, ConfigType: &hcm.HttpFilter_ConfigDiscovery{
			ConfigDiscovery: &core.ExtensionConfigSource{ConfigSource: ads(),
				TypeUrls: []string{"type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"}}}})
	}
	filters = append(filters, &hcm.HttpFilter{Name: "envoy.filters.http.router",
		ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: mustAny(t, &routerv3.Router{})}})
	h := &hcm.HttpConnectionManager{StatPrefix: "gw", CodecType: hcm.HttpConnectionManager_AUTO,
		RouteSpecifier: &hcm.HttpConnectionManager_Rds{Rds: &hcm.Rds{ConfigSource: ads(), RouteConfigName: routeName}},
		HttpFilters:    filters}
	return &listener.Listener{Name: "gw-" + strconv.Itoa(port),
		Address: &core.Address{Address: &core.Address_SocketAddress{SocketAddress: &core.SocketAddress{
			Address: "127.0.0.1", PortSpecifier: &core.SocketAddress_PortValue{PortValue: uint32(port)}}}},
		FilterChains: []*listener.FilterChain{{Filters: []*listener.Filter{{Name: "envoy.filters.network.http_connection_manager",
			ConfigType: &listener.Filter_TypedConfig{TypedConfig: mustAny(t, h)}}}}}}
}

// routeConfig is route configuration "r": one virtual host, all domains,
// the given routes in order.
func routeConfig(routes ...*route.Route) *route.RouteConfiguration {
	return &route.RouteConfiguration{Name: "r", VirtualHosts: []*route.VirtualHost{{Name: "all", Domains: []string{"*"}, Routes: routes}}}
}

func routeTo(cluster string) *route.Route_Route {
	return &route.Route_Route{Route: &route.RouteAction{ClusterSpecifier: &route.RouteAction_Cluster{Cluster: cluster}}}
}

func prefixMatch(p string, headers ...*route.HeaderMatcher) *route.RouteMatch {
	return &route.RouteMatch{PathSpecifier: &route.RouteMatch_Prefix{Prefix: p}, Headers: headers}
}

func edsCluster(name string, mod func(*cluster.Cluster)) *cluster.Cluster {
	c := &cluster.Cluster{Name: name, ConnectTimeout: durationpb.New(time.Second),
		ClusterDiscoveryType: &cluster.Cluster_Type{Type: cluster.Cluster_EDS},
		EdsClusterConfig:     &cluster.Cluster_EdsClusterConfig{EdsConfig: ads()}}
	if mod != nil {
		mod(c)
	}
	return c
}

func lbEndpoint(addr string, health core.HealthStatus) *endpoint.LbEndpoint {
	host, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	return &endpoint.LbEndpoint{HealthStatus: health, HostIdentifier: &endpoint.LbEndpoint_Endpoint{Endpoint: &endpoint.Endpoint{
		Address: &core.Address{Address: &core.Address_SocketAddress{SocketAddress: &core.SocketAddress{
			Address: host, PortSpecifier: &core.SocketAddress_PortValue{PortValue: uint32(p)}}}}}}}
}

func cla(name string, eps ...*endpoint.LbEndpoint) *endpoint.ClusterLoadAssignment {
	return &endpoint.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpoint.LocalityLbEndpoints{{LbEndpoints: eps}}}
}

// auditedApp is what a gateway test with the audit filter (ext) gives the
// plane besides the listener: route "r" sending everything to cluster "app"
// at appAddr, and the audit collector's cluster at collectorAddr.
func auditedApp(ext types.Resource, appAddr, collectorAddr string) []types.Resource {
	return []types.Resource{
		routeConfig(&route.Route{Name: "app", Match: prefixMatch("/"), Action: routeTo("app")}), ext,
		edsCluster("app", nil), edsCluster(meshnames.AuditClusterName, nil),
		cla("app", lbEndpoint(appAddr, 0)), cla(meshnames.AuditClusterName, lbEndpoint(collectorAddr, 0)),
	}
}

func wasmExt(t testing.TB, name, uri, sha string, failOpen bool) *core.TypedExtensionConfig {
	pol := wasmv3.FailurePolicy_FAIL_CLOSED
	if failOpen {
		pol = wasmv3.FailurePolicy_FAIL_OPEN
	}
	return wasmFilterExt(t, name, name, uri, sha, pol, "{}")
}

// wasmFilterExt is the ECDS resource of a wasm filter as the plane sends it:
// name (also its vm_id), root id, the module's URI and sha256 on the module
// server, the fail policy and the plugin configuration.
func wasmFilterExt(t testing.TB, name, rootID, uri, sha string, pol wasmv3.FailurePolicy, conf string) *core.TypedExtensionConfig {
	w := &wasmfilter.Wasm{Config: &wasmv3.PluginConfig{Name: name, RootId: rootID, FailurePolicy: pol,
		Configuration: mustAny(t, wrapperspb.String(conf)),
		Vm: &wasmv3.PluginConfig_VmConfig{VmConfig: &wasmv3.VmConfig{VmId: name, Runtime: "envoy.wasm.runtime.v8",
			Code: &core.AsyncDataSource{Specifier: &core.AsyncDataSource_Remote{Remote: &core.RemoteDataSource{
				HttpUri: &core.HttpUri{Uri: uri, HttpUpstreamType: &core.HttpUri_Cluster{Cluster: "mw-modules"},
					Timeout: durationpb.New(5 * time.Second)},
				Sha256: sha}}}}}}}
	return &core.TypedExtensionConfig{Name: name, TypedConfig: mustAny(t, w)}
}

// --- upstreams ---

// namedUpstream answers with its name and records the last request headers.
type namedUpstream struct {
	*httptest.Server
	name string
	hits atomic.Int64
	last atomic.Pointer[http.Header]
	code atomic.Int64
}

func startUpstream(t *testing.T, name string) *namedUpstream {
	u := &namedUpstream{name: name}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.hits.Add(1)
		h := r.Header.Clone()
		u.last.Store(&h)
		_, _ = io.Copy(io.Discard, r.Body)
		if c := u.code.Load(); c != 0 {
			w.WriteHeader(int(c))
		}
		fmt.Fprint(w, name)
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *namedUpstream) addr() string { return u.Listener.Addr().String() }

// --- gateway ---

type runningGateway struct {
	g      *Gateway
	url    string
	admin  string
	cancel context.CancelFunc
	done   chan error
}

func startGateway(t *testing.T, plane *planeServer, node string, mod func(*Config)) *runningGateway {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	alis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	level := slog.LevelWarn
	if os.Getenv("GATEWAY_TEST_DEBUG") != "" {
		level = slog.LevelDebug
	}
	cfg := Config{XDSAddress: plane.addr, XDSInsecure: true, NodeID: node, Listener: lis, AdminListener: alis,
		CacheDir: t.TempDir(), XDSMinBackoff: 20 * time.Millisecond, XDSMaxBackoff: 200 * time.Millisecond,
		DrainTimeout: 5 * time.Second,
		Logger:       slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))}
	if mod != nil {
		mod(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	g, err := New(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	rg := &runningGateway{g: g, url: "http://" + lis.Addr().String(), admin: "http://" + alis.Addr().String(),
		cancel: cancel, done: make(chan error, 1)}
	go func() { rg.done <- g.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-rg.done:
		case <-time.After(15 * time.Second):
			t.Error("gateway did not stop within 15s")
		}
	})
	return rg
}

func (rg *runningGateway) port() int { return portOf(rg.g.Addr()) }

// eventually polls cond until it holds or d passes ([probe.Until], with
// the arguments in the order this package's tests give them).
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	probe.Until(t, what, d, cond)
}

// get sends a GET with headers and returns status and body.
// asyncGet is the answer to a GET made by getAsync; on a transport error
// code is 0 and body is the error.
type asyncGet struct {
	code         int
	status, body string
}

// getAsync makes a GET in the background (a request held in flight) and
// delivers its answer on the channel.
func getAsync(url string) <-chan asyncGet {
	done := make(chan asyncGet, 1)
	go func() {
		resp, err := http.Get(url)
		if err != nil {
			done <- asyncGet{body: err.Error()}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		done <- asyncGet{code: resp.StatusCode, status: resp.Status, body: string(b)}
	}()
	return done
}

func get(t testing.TB, c *http.Client, url string, hdr ...string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "Host" {
			req.Host = hdr[i+1]
			continue
		}
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err.Error(), nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}
