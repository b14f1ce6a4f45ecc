package gateway

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshwarden/meshwarden/internal/meshnames"

	wasmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/wasm/v3"

	"github.com/meshwarden/meshwarden/gateway/modulefetch"
)

// serveAuditFilter builds the real filters/audit module (once per test
// binary) and serves it at /audit.wasm on a new module server; it returns
// the server and the module.
func serveAuditFilter(t *testing.T) (*moduleServer, []byte) {
	t.Helper()
	wasm, err := guests.Build("filters/audit", "../filters/audit/wasm")
	if err != nil {
		t.Fatalf("build the audit filter: %v", err)
	}
	ms := startModuleServer(t)
	ms.put("/audit.wasm", wasm)
	return ms, wasm
}

// TestFailClosedAuditHoldsRequestUntilAck: a fail-closed audited POST with
// a body must not reach the upstream before the collector acknowledges its
// intent record, and must not reach it at all when the collector refuses:
// the client gets the filter's 503.
func TestFailClosedAuditHoldsRequestUntilAck(t *testing.T) {
	ms, wasm := serveAuditFilter(t)

	var (
		collectorOK  atomic.Bool
		intents      atomic.Int64
		upstreamHits atomic.Int64
		order        []string
		mu           sync.Mutex
	)
	collectorOK.Store(true)
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if strings.Contains(string(body), `"phase":"intent"`) {
			intents.Add(1)
			mu.Lock()
			order = append(order, "intent")
			mu.Unlock()
		}
		if !collectorOK.Load() {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"accepted":1,"first_seq":1,"last_seq":1,"hash":"x"}`))
	}))
	t.Cleanup(collector.Close)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		upstreamHits.Add(1)
		mu.Lock()
		order = append(order, "upstream")
		mu.Unlock()
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = w.Write([]byte("done"))
	}))
	t.Cleanup(upstream.Close)

	cfg := `{"rules":[{"methods":["POST"],"path":{"exact":"/v1/transfers"},"opType":"FUND_TRANSFER","level":"critical","failClosed":true}],` +
		`"redact":{"bodyFields":["card.number"]},"collector":{"cluster":"` + meshnames.AuditClusterName + `","token":"t"},"failClosedTimeoutMs":2000}`
	ext := wasmFilterExt(t, "mw.audit", "audit", ms.URL+"/audit.wasm", modulefetch.Sum(wasm), wasmv3.FailurePolicy_FAIL_CLOSED, cfg)

	plane := startPlane(t)
	gw := startGateway(t, plane, "gw-failclosed", nil)
	plane.set("gw-failclosed", append(auditedApp(ext, upstream.Listener.Addr().String(), collector.Listener.Addr().String()),
		httpListener(t, gw.port(), "r", "mw.audit"))...)
	eventually(t, 90*time.Second, "readiness", gw.g.Ready)

	post := func() (int, string) {
		t.Helper()
		body := strings.NewReader(`{"amount":10,"card":{"number":"4111111111111111"},"pad":"` + strings.Repeat("x", 40<<10) + `"}`)
		resp, err := http.Post(gw.url+"/v1/transfers", "application/json", body)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	t.Run("acknowledged: forwarded after the intent", func(t *testing.T) {
		code, body := post()
		if code != 200 || body != "done" {
			t.Fatalf("got %d %q, want 200 done", code, body)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(order) < 2 || order[0] != "intent" || order[1] != "upstream" {
			t.Fatalf("order of arrival %v: the intent must be acknowledged before the upstream sees the request", order)
		}
	})

	t.Run("refused: 503 and nothing forwarded", func(t *testing.T) {
		collectorOK.Store(false)
		before := upstreamHits.Load()
		for range 5 {
			code, body := post()
			if code != http.StatusServiceUnavailable || !strings.Contains(body, "audit_unavailable") {
				t.Fatalf("collector refusing: got %d %q, want the filter's 503", code, body)
			}
		}
		if got := upstreamHits.Load() - before; got != 0 {
			t.Fatalf("%d refused transfers reached the upstream", got)
		}
		collectorOK.Store(true)
	})
}
