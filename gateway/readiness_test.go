package gateway

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/meshwarden/meshwarden/gateway/modulefetch"
)

// TestReadyForApplications: /healthz/ready holds an application's
// start-up until the gateway has a complete configuration and its
// fail-closed filter runs; /readyz (load balancers) turns ready earlier.
func TestReadyForApplications(t *testing.T) {
	wasm := headersGuest(t)
	ms := startModuleServer(t) // the module is not there yet
	plane := startPlane(t)
	up := startUpstream(t, "app")
	gw := startGateway(t, plane, "gw-ready", nil)
	admin := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(gw.admin + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	start := time.Now()
	if code, body := admin("/healthz/ready?wait=200ms"); code != 503 || !strings.Contains(body, "no complete configuration yet") || time.Since(start) < 200*time.Millisecond {
		t.Fatalf("before any config: %d %q after %v, want 503 after the 200ms wait", code, body, time.Since(start))
	}
	if code, _ := admin("/healthz/ready?wait=1h"); code != 400 {
		t.Fatalf("wait=1h: %d, want 400 (at most 5m)", code)
	}

	rc := routeConfig(&route.Route{Name: "app", Match: prefixMatch("/"), Action: routeTo("app")})
	plane.set("gw-ready", httpListener(t, gw.port(), "r", "mw-headers"), rc,
		wasmExt(t, "mw-headers", ms.URL+"/headers.wasm", modulefetch.Sum(wasm), false),
		edsCluster("app", nil), cla("app", lbEndpoint(up.addr(), 0)))
	eventually(t, 30*time.Second, "a configuration serving", gw.g.Ready)
	if code, body := admin("/healthz/ready"); code != 503 || !strings.Contains(body, "fail-closed filter mw-headers is unavailable") {
		t.Fatalf("filter module missing: %d %q, want 503 naming the filter", code, body)
	}
	if code, _ := admin("/readyz"); code != 200 {
		t.Fatalf("/readyz with a configuration serving: %d, want 200", code)
	}

	held := getAsync(gw.admin + "/healthz/ready?wait=60s")
	select {
	case got := <-held:
		t.Fatalf("the held request returned %q %q before the filter could run", got.status, got.body)
	case <-time.After(300 * time.Millisecond):
	}
	ms.put("/headers.wasm", wasm) // the gateway's retry loop fetches it
	select {
	case got := <-held:
		if got.status != "200 OK" || got.body != "ready\n" {
			t.Fatalf("held request: %q %q, want 200 ready", got.status, got.body)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the held request did not return within 60s of the module appearing")
	}
	if code, _, h := get(t, http.DefaultClient, gw.url+"/x"); code != 200 || h.Get("X-Mw-Filtered") != "1" {
		t.Fatalf("first request after ready: %d filtered=%q, want 200 through the filter", code, h.Get("X-Mw-Filtered"))
	}
}
