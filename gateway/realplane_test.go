package gateway

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/grpc"

	"github.com/meshwarden/meshwarden/controlplane"
	"github.com/meshwarden/meshwarden/controlplane/consulwatch"
	"github.com/meshwarden/meshwarden/controlplane/moduleserver"
	"github.com/meshwarden/meshwarden/controlplane/planetest"
	"github.com/meshwarden/meshwarden/controlplane/translate"
	"github.com/meshwarden/meshwarden/internal/dyeing"
	"github.com/meshwarden/meshwarden/internal/testenv/consulagent/consultest"
	"github.com/meshwarden/meshwarden/internal/tracectx"
	"github.com/meshwarden/meshwarden/ir"
)

// TestRealPlaneOnRealConsul feeds the gateway from the real control plane
// watching a real Consul agent: lane routing, the weighted split, a health
// change, and a plane outage.
func TestRealPlaneOnRealConsul(t *testing.T) {
	_, consul := consultest.Long(t)
	v1, v2 := startUpstream(t, "v1"), startUpstream(t, "v2")
	reg := func(id string, u *namedUpstream, version, status string) {
		registerShop(t, consul, id, u, version, status)
	}
	reg("shop-1", v1, "v1", api.HealthPassing)
	reg("shop-2", v2, "v2", api.HealthPassing)
	cp, err := controlplane.New(controlplane.Config{Consul: consul, Debounce: 5 * time.Millisecond, InsecureNoAuth: true,
		Watch: consulwatch.Options{WaitTime: 30 * time.Second, BackoffBase: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond},
		Policies: &ir.PolicySet{Routes: []ir.Route{{Service: "shop",
			Subsets: []ir.Subset{{Name: "v1", Selector: map[string]string{"version": "v1"}}, {Name: "v2", Selector: map[string]string{"version": "v2"}}},
			Lanes:   []ir.LaneRule{{Lane: "canary", Subset: "v2"}},
			Weights: []ir.WeightedSubset{{Subset: "v1", Weight: 75}, {Subset: "v2", Weight: 25}},
			Source:  "test"}}}})
	if err != nil {
		t.Fatal(err)
	}
	lis, gs := serveRealPlane(t, cp)

	gw := startGateway(t, &planeServer{t: t, addr: lis.Addr().String()}, "gw-real", nil)
	eventually(t, 30*time.Second, "readiness from the real plane", gw.g.Ready)
	c := &http.Client{}
	eventually(t, 30*time.Second, "shop routable", func() bool {
		code, _, _ := get(t, c, gw.url+"/", "Host", "shop")
		return code == 200
	})
	t.Run("lane canary goes to v2", func(t *testing.T) {
		for range 20 {
			if code, body, _ := get(t, c, gw.url+"/a", "Host", "shop", dyeing.Header, "canary"); code != 200 || body != "v2" {
				t.Fatalf("%d %q, want v2", code, body)
			}
		}
	})
	t.Run("undyed split 75/25", func(t *testing.T) {
		counts := map[string]int{}
		for range 800 {
			_, body, _ := get(t, c, gw.url+"/a", "Host", "shop.service.consul:8080")
			counts[body]++
		}
		// 75% of 800 = 600, sd ≈ 12.2.
		if counts["v1"] < 540 || counts["v1"] > 660 || counts["v1"]+counts["v2"] != 800 {
			t.Fatalf("split %v, want ≈ 600/200", counts)
		}
	})
	t.Run("critical instance leaves the lane", func(t *testing.T) {
		if err := consul.Agent().UpdateTTL("check:shop-2", "down", api.HealthCritical); err != nil {
			t.Fatal(err)
		}
		eventually(t, 20*time.Second, "canary lane without healthy v2", func() bool {
			code, _, _ := get(t, c, gw.url+"/a", "Host", "shop", dyeing.Header, "canary")
			return code == http.StatusServiceUnavailable
		})
		hits := v2.hits.Load()
		for range 50 {
			get(t, c, gw.url+"/a", "Host", "shop")
		}
		if v2.hits.Load() != hits {
			t.Fatal("a critical instance still receives traffic")
		}
	})
	t.Run("plane outage survived", func(t *testing.T) {
		if err := consul.Agent().UpdateTTL("check:shop-2", "up", api.HealthPassing); err != nil {
			t.Fatal(err)
		}
		eventually(t, 20*time.Second, "v2 healthy again", func() bool {
			_, body, _ := get(t, c, gw.url+"/a", "Host", "shop", dyeing.Header, "canary")
			return body == "v2"
		})
		gs.Stop()
		eventually(t, 10*time.Second, "disconnect", func() bool { return !gw.g.xds.Connected() })
		for range 30 {
			if code, body, _ := get(t, c, gw.url+"/a", "Host", "shop", dyeing.Header, "canary"); code != 200 || body != "v2" {
				t.Fatalf("lane during the outage: %d %q", code, body)
			}
			if code, _, _ := get(t, c, gw.url+"/a", "Host", "shop"); code != 200 {
				t.Fatalf("split during the outage: %d", code)
			}
		}
	})
}

// TestRealPlaneDeliversFilters: the real plane serves the dye filter (built
// from filters/dye/wasm) by ECDS and its module server; the gateway fetches
// and verifies it, and the lane the filter sets routes the request.
func TestRealPlaneDeliversFilters(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Consul agent and builds the dye filter")
	}
	dir := t.TempDir()
	wasm, err := guests.Build("filters/dye", "../filters/dye/wasm")
	if err != nil {
		t.Fatalf("build dye filter: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "dye.wasm"), wasm, 0o644); err != nil {
		t.Fatal(err)
	}
	ms := moduleserver.New(dir, nil)
	if _, err := ms.Scan(); err != nil {
		t.Fatal(err)
	}
	modSrv := httptest.NewServer(ms)
	t.Cleanup(modSrv.Close)

	_, consul := consultest.Start(t)
	v1, v2 := startUpstream(t, "v1"), startUpstream(t, "v2")
	for i, u := range []*namedUpstream{v1, v2} {
		version := "v" + strconv.Itoa(i+1)
		registerShop(t, consul, "shop-"+version, u, version, api.HealthPassing)
	}
	dyeConf := `{"mode":"ingress","rules":[{"name":"beta","match":{"headers":[{"name":"x-beta","exact":"1"}]},"lane":"canary"}]}`
	cp, err := controlplane.New(controlplane.Config{Consul: consul, Debounce: 5 * time.Millisecond, InsecureNoAuth: true, Modules: ms,
		Translate: translate.Options{ModuleBaseURL: modSrv.URL + "/modules/"},
		Watch:     consulwatch.Options{WaitTime: 30 * time.Second, BackoffBase: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond},
		Policies: &ir.PolicySet{
			Filters: []ir.Filter{{Name: "dye", Config: json.RawMessage(dyeConf), Source: "test"}},
			Routes: []ir.Route{{Service: "shop",
				Subsets:       []ir.Subset{{Name: "v1", Selector: map[string]string{"version": "v1"}}, {Name: "v2", Selector: map[string]string{"version": "v2"}}},
				Lanes:         []ir.LaneRule{{Lane: "canary", Subset: "v2"}},
				DefaultSubset: "v1", Source: "test"}}}})
	if err != nil {
		t.Fatal(err)
	}
	lis, _ := serveRealPlane(t, cp)

	// Tracing on: the gateway's own spans must not undo what the filters
	// wrote into the W3C headers (the lane rides in baggage as mw-dye).
	gw := startGateway(t, &planeServer{t: t, addr: lis.Addr().String()}, "gw-real-filters", func(c *Config) {
		c.TracerProvider = sdktrace.NewTracerProvider()
	})
	eventually(t, 90*time.Second, "readiness from the real plane", gw.g.Ready)
	c := &http.Client{}
	var lastDump string
	defer func() {
		if t.Failed() {
			t.Log("last state:", lastDump)
		}
	}()
	eventually(t, 20*time.Second, "dye filter running and shop routable", func() bool {
		code, _, _ := get(t, c, gw.url+"/", "Host", "shop")
		d := configDump(t, gw.admin)
		if code == 200 && len(d.Chain) == 1 && strings.HasSuffix(d.Chain[0], "dye") {
			return true
		}
		lastDump = fmt.Sprintf("code %d chain %v filters %+v pending %q nack %+v", code, d.Chain, d.Filters, d.Pending, d.LastNack)
		return false
	})
	for range 10 {
		if code, body, _ := get(t, c, gw.url+"/a", "Host", "shop", "x-beta", "1"); code != 200 || body != "v2" {
			t.Fatalf("x-beta: %d %q, want the dye filter's canary lane → v2", code, body)
		}
		if got := (*v2.last.Load()).Get("X-Mw-Dye"); got != "canary" {
			t.Fatalf("upstream saw x-mw-dye=%q, want canary set by the filter", got)
		}
		if code, body, _ := get(t, c, gw.url+"/b", "Host", "shop", "x-beta", "1", "baggage", "app=shop"); code != 200 || body != "v2" {
			t.Fatalf("x-beta with baggage: %d %q, want v2", code, body)
		}
		bg := tracectx.ParseBaggage((*v2.last.Load()).Get("Baggage"))
		if lane, _ := bg.Get(dyeing.BaggageKey); lane != "canary" {
			t.Fatalf("upstream saw baggage %q: want the filter's %s=canary (the lane must survive the hop)", bg.String(), dyeing.BaggageKey)
		}
		if app, _ := bg.Get("app"); app != "shop" {
			t.Fatalf("upstream saw baggage %q: the caller's app=shop member was lost", bg.String())
		}
		if code, body, _ := get(t, c, gw.url+"/a", "Host", "shop"); code != 200 || body != "v1" {
			t.Fatalf("undyed: %d %q, want v1", code, body)
		}
	}
}

// registerShop registers u as instance id of service "shop" with meta
// version and a TTL check in status.
func registerShop(t *testing.T, consul *api.Client, id string, u *namedUpstream, version, status string) {
	t.Helper()
	_, port, _ := net.SplitHostPort(u.addr())
	p, _ := strconv.Atoi(port)
	if err := consul.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: id, Name: "shop", Address: "127.0.0.1", Port: p,
		Meta:  map[string]string{"version": version},
		Check: &api.AgentServiceCheck{CheckID: "check:" + id, TTL: "10m", Status: status}}); err != nil {
		t.Fatal(err)
	}
}

// serveRealPlane serves cp's ADS on a loopback port and runs it until the
// test ends; it returns the listener and the gRPC server (stop it for an
// outage).
func serveRealPlane(t *testing.T, cp *controlplane.Server) (net.Listener, *grpc.Server) {
	t.Helper()
	return planetest.Serve(t, cp)
}
