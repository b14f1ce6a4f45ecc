package gateway

import (
	"encoding/json"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshwarden/meshwarden/internal/meshnames"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcher "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshwarden/meshwarden/internal/dyeing"
)

// laneRoutes routes lane "canary" (header x-mw-dye) to canary and splits
// the rest 80/20 between v1 and v2.
func laneRoutes(name string) *route.RouteConfiguration {
	return &route.RouteConfiguration{Name: name, VirtualHosts: []*route.VirtualHost{{
		Name: "shop", Domains: []string{"shop.example", "*.shop.example"},
		Routes: []*route.Route{
			{Name: "lane-canary", Match: prefixMatch("/", &route.HeaderMatcher{Name: dyeing.Header,
				HeaderMatchSpecifier: &route.HeaderMatcher_StringMatch{StringMatch: &matcher.StringMatcher{
					MatchPattern: &matcher.StringMatcher_Exact{Exact: "canary"}}}}), Action: routeTo("canary")},
			{Name: "split", Match: prefixMatch("/"), Action: &route.Route_Route{Route: &route.RouteAction{
				ClusterSpecifier: &route.RouteAction_WeightedClusters{WeightedClusters: &route.WeightedCluster{
					Clusters: []*route.WeightedCluster_ClusterWeight{
						{Name: "v1", Weight: wrapperspb.UInt32(80)}, {Name: "v2", Weight: wrapperspb.UInt32(20)}}}}}}},
		}}}}
}

func TestRoutingByLaneAndWeight(t *testing.T) {
	plane := startPlane(t)
	v1, v2, canary := startUpstream(t, "v1"), startUpstream(t, "v2"), startUpstream(t, "canary")
	gw := startGateway(t, plane, "gw-lane", nil)
	plane.set("gw-lane",
		httpListener(t, gw.port(), "routes"), laneRoutes("routes"),
		edsCluster("v1", nil), edsCluster("v2", nil), edsCluster("canary", nil),
		cla("v1", lbEndpoint(v1.addr(), core.HealthStatus_HEALTHY)),
		cla("v2", lbEndpoint(v2.addr(), core.HealthStatus_HEALTHY)),
		cla("canary", lbEndpoint(canary.addr(), core.HealthStatus_UNKNOWN)))
	eventually(t, 10*time.Second, "readiness", gw.g.Ready)

	// The node announced itself as a gateway with its listen port.
	n := plane.node.Load()
	if n.GetCluster() != meshnames.GatewayNodeCluster || n.GetMetadata().GetFields()["listen_port"].GetStringValue() == "" {
		t.Fatalf("node = %v, want cluster %s and listen_port metadata", n, meshnames.GatewayNodeCluster)
	}
	c := &http.Client{}
	t.Run("lane header steers to canary", func(t *testing.T) {
		for range 20 {
			code, body, _ := get(t, c, gw.url+"/cart", "Host", "shop.example", dyeing.Header, "canary")
			if code != 200 || body != "canary" {
				t.Fatalf("got %d %q, want 200 canary", code, body)
			}
		}
	})
	t.Run("weights split 80/20", func(t *testing.T) {
		counts := map[string]int{}
		const n = 1000
		for range n {
			_, body, _ := get(t, c, gw.url+"/cart", "Host", "shop.example:8080") // port stripped
			counts[body]++
		}
		if counts["v1"]+counts["v2"] != n {
			t.Fatalf("counts = %v, want only v1/v2", counts)
		}
		// 80% of 1000: binomial sd ≈ 12.6; ±60 is > 4.5 sd.
		if counts["v1"] < 740 || counts["v1"] > 860 {
			t.Fatalf("v1 got %d of %d, want ≈ 800", counts["v1"], n)
		}
	})
	t.Run("wildcard domain and unknown host", func(t *testing.T) {
		if code, body, _ := get(t, c, gw.url+"/", "Host", "eu.shop.example", dyeing.Header, "canary"); code != 200 || body != "canary" {
			t.Fatalf("wildcard domain: %d %q", code, body)
		}
		if code, _, _ := get(t, c, gw.url+"/", "Host", "other.example"); code != http.StatusNotFound {
			t.Fatalf("unknown host: %d, want 404", code)
		}
	})
}

func TestNackKeepsLastGood(t *testing.T) {
	plane := startPlane(t)
	up := startUpstream(t, "up")
	gw := startGateway(t, plane, "gw-nack", nil)
	good := []types.Resource{httpListener(t, gw.port(), "routes"), laneRoutes("routes"),
		edsCluster("v1", nil), edsCluster("v2", nil), edsCluster("canary", nil),
		cla("v1", lbEndpoint(up.addr(), 0)), cla("v2", lbEndpoint(up.addr(), 0)), cla("canary", lbEndpoint(up.addr(), 0))}
	plane.set("gw-nack", good...)
	eventually(t, 10*time.Second, "readiness", gw.g.Ready)

	bad := laneRoutes("routes")
	bad.VirtualHosts[0].Routes[0].Match = &route.RouteMatch{PathSpecifier: &route.RouteMatch_SafeRegex{
		SafeRegex: &matcher.RegexMatcher{Regex: "/(unclosed"}}}
	plane.set("gw-nack", append(good[:1:1], append([]types.Resource{bad}, good[2:]...)...)...)
	select {
	case r := <-plane.nacks:
		if !strings.Contains(r.GetErrorDetail().GetMessage(), "regex") {
			t.Fatalf("NACK detail %q does not name the bad regex", r.GetErrorDetail().GetMessage())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no NACK for an invalid regex")
	}
	if code, body, _ := get(t, &http.Client{}, gw.url+"/", "Host", "shop.example"); code != 200 || body != "up" {
		t.Fatalf("after NACK: %d %q, want the last good config serving", code, body)
	}
	var dump ConfigDump
	resp, err := http.Get(gw.admin + "/config_dump")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&dump); err != nil {
		t.Fatal(err)
	}
	if dump.LastNack == nil || !strings.Contains(dump.LastNack.Error, "regex") {
		t.Fatalf("config_dump last_nack = %+v, want the regex error", dump.LastNack)
	}
}

func TestPlaneOutageSurvived(t *testing.T) {
	plane := startPlane(t)
	a, b := startUpstream(t, "a"), startUpstream(t, "b")
	gw := startGateway(t, plane, "gw-out", nil)
	rc := func(cl string) *route.RouteConfiguration {
		return routeConfig(&route.Route{Match: prefixMatch("/"), Action: routeTo(cl)})
	}
	base := []types.Resource{httpListener(t, gw.port(), "r"), edsCluster("a", nil), edsCluster("b", nil),
		cla("a", lbEndpoint(a.addr(), 0)), cla("b", lbEndpoint(b.addr(), 0))}
	plane.set("gw-out", append(base, rc("a"))...)
	eventually(t, 10*time.Second, "readiness", gw.g.Ready)
	c := &http.Client{}
	plane.stop()
	eventually(t, 5*time.Second, "disconnect", func() bool { return !gw.g.xds.Connected() })
	for range 50 {
		if code, body, _ := get(t, c, gw.url+"/"); code != 200 || body != "a" {
			t.Fatalf("during outage: %d %q", code, body)
		}
	}
	// The plane comes back with new config: the gateway reconnects and applies it.
	plane.set("gw-out", append(base, rc("b"))...)
	plane.restart()
	eventually(t, 10*time.Second, "new config after reconnect", func() bool {
		_, body, _ := get(t, c, gw.url+"/")
		return body == "b"
	})
}

func TestHealthOutlierAndRetries(t *testing.T) {
	plane := startPlane(t)
	good, sick, down := startUpstream(t, "good"), startUpstream(t, "sick"), startUpstream(t, "down")
	sick.code.Store(503)
	gw := startGateway(t, plane, "gw-health", nil)
	rc := routeConfig(
		&route.Route{Match: prefixMatch("/"), Action: &route.Route_Route{Route: &route.RouteAction{
			ClusterSpecifier: &route.RouteAction_Cluster{Cluster: "svc"},
			RetryPolicy:      &route.RetryPolicy{RetryOn: "5xx", NumRetries: wrapperspb.UInt32(2)}}}},
	)
	cl := edsCluster("svc", func(c *cluster.Cluster) {
		c.OutlierDetection = &cluster.OutlierDetection{Consecutive_5Xx: wrapperspb.UInt32(3),
			BaseEjectionTime: durationpb.New(time.Minute), MaxEjectionPercent: wrapperspb.UInt32(50)}
	})
	plane.set("gw-health", httpListener(t, gw.port(), "r"), rc, cl,
		cla("svc", lbEndpoint(good.addr(), core.HealthStatus_HEALTHY), lbEndpoint(sick.addr(), core.HealthStatus_HEALTHY),
			lbEndpoint(down.addr(), core.HealthStatus_UNHEALTHY)))
	eventually(t, 10*time.Second, "readiness", gw.g.Ready)
	c := &http.Client{}
	for i := range 30 {
		if code, body, _ := get(t, c, gw.url+"/"); code != 200 || body != "good" {
			t.Fatalf("request %d: %d %q: retries should hide the sick endpoint", i, code, body)
		}
	}
	if down.hits.Load() != 0 {
		t.Fatalf("an UNHEALTHY endpoint got %d requests", down.hits.Load())
	}
	if h := sick.hits.Load(); h == 0 || h > 3 {
		t.Fatalf("sick endpoint got %d requests, want 1..3 before its ejection", h)
	}
}

func TestConfigLifecycle(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	for _, tc := range []struct {
		name string
		cfg  Config
		want string // substring of the error, "" for none
	}{
		{"no listener", Config{}, "no listener"},
		{"service is the gateway's own cluster", Config{Listener: lis, Service: meshnames.GatewayNodeCluster}, "edge gateway's own cluster"},
		{"edge gateway", Config{Listener: lis}, ""},
		{"plane without credentials", Config{Listener: lis, XDSAddress: "127.0.0.1:1"}, "no xDS credentials"},
		{"development plane, said so", Config{Listener: lis, XDSAddress: "127.0.0.1:1", XDSInsecure: true}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if (err == nil) != (tc.want == "") || err != nil && !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want %q", err, tc.want)
			}
		})
	}
	d := Config{Listener: lis}.withDefaults()
	if d.DrainTimeout != 10*time.Second || d.MaxBufferBytes != 1<<20 || d.Logger == nil || d.Registry == nil ||
		d.NodeID != "gateway-"+strconv.Itoa(portOf(lis.Addr())) || d.TracerProvider != nil {
		t.Fatalf("withDefaults() = %+v", d)
	}
	g, err := New(t.Context(), Config{Listener: lis, XDSAddress: "127.0.0.1:1", XDSInsecure: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := g.Start(t.Context()); err == nil {
		t.Fatal("a second Start succeeded")
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if g.Ready() {
		t.Fatal("ready after Close")
	}
}
