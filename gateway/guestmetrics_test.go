package gateway

import (
	"bufio"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	wasmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/wasm/v3"

	"github.com/meshwarden/meshwarden/filters/kit/kittest"
	"github.com/meshwarden/meshwarden/gateway/modulefetch"
	"github.com/meshwarden/meshwarden/internal/meshnames"
)

// TestGuestMetricsOnAdmin: the metrics the real audit filter defines are
// on the gateway's /metrics, labelled with the plugin, at zero as soon as
// the filter is loaded, and they follow traffic: records enqueued and sent
// while the collector answers; send failures and drops (a buffer of 2)
// while it refuses.
func TestGuestMetricsOnAdmin(t *testing.T) {
	ms, wasm := serveAuditFilter(t)
	audits := &kittest.AuditSink{}
	collector := httptest.NewServer(audits)
	t.Cleanup(collector.Close)
	up := startUpstream(t, "app")
	cfg := `{"rules":[{"methods":["GET"],"path":{"prefix":"/"},"opType":"READ","level":"info"}],` +
		`"collector":{"cluster":"` + meshnames.AuditClusterName + `","token":"t"},"batch":{"flushIntervalMs":50,"bufferEvents":2,"maxEvents":1}}`
	ext := wasmFilterExt(t, "mw.audit", "audit", ms.URL+"/audit.wasm", modulefetch.Sum(wasm), wasmv3.FailurePolicy_FAIL_OPEN, cfg)
	plane := startPlane(t)
	gw := startGateway(t, plane, "gw-guestmetrics", nil)
	plane.set("gw-guestmetrics", append(auditedApp(ext, up.addr(), collector.Listener.Addr().String()),
		httpListener(t, gw.port(), "r", "mw.audit"))...)
	eventually(t, 90*time.Second, "readiness", gw.g.Ready)

	series := func(name string) float64 {
		t.Helper()
		v, ok := scrape(t, gw.admin)[name+`{plugin="mw.audit"}`]
		if !ok {
			t.Fatalf("%s{plugin=\"mw.audit\"} missing from /metrics", name)
		}
		return v
	}
	// Every series the audit filter's README documents is there at zero.
	readme, err := os.ReadFile("../filters/audit/README.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, n := range regexp.MustCompile(`\bmw_audit_[a-z_]+_total\b`).FindAllString(string(readme), -1) {
		documented[n] = true
	}
	if len(documented) < 8 {
		t.Fatalf("filters/audit/README.md documents %d mw_audit_* series: the pattern is stale", len(documented))
	}
	for name := range documented {
		if v := series(name); v != 0 {
			t.Fatalf("%s = %v before any request, want 0", name, v)
		}
	}
	for range 2 { // within the buffer of 2
		if code, _, _ := get(t, http.DefaultClient, gw.url+"/x"); code != 200 {
			t.Fatalf("status %d", code)
		}
	}
	eventually(t, 10*time.Second, "records sent", func() bool { return series("mw_audit_sent_total") >= 2 })
	if v := series("mw_audit_enqueued_total"); v < 2 {
		t.Fatalf("mw_audit_enqueued_total = %v after 2 audited requests", v)
	}
	audits.Refuse.Store(true)
	for range 20 {
		get(t, http.DefaultClient, gw.url+"/x")
	}
	eventually(t, 10*time.Second, "send failures and drops", func() bool {
		return series("mw_audit_send_failures_total") > 0 && series("mw_audit_dropped_total") > 0
	})
}

// scrape reads the admin /metrics as "name{labels}" → value.
func scrape(t *testing.T, admin string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: %s", resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("/metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

func TestPromName(t *testing.T) {
	for in, want := range map[string]string{"mw_audit_sent_total": "mw_audit_sent_total",
		"envoy.wasm.x-y": "envoy_wasm_x_y", "9lives": "_9lives", "a:b": "a:b"} {
		if got := promName(in); got != want {
			t.Errorf("promName(%q) = %q, want %q", in, got, want)
		}
	}
}
