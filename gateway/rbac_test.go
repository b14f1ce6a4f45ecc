package gateway

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshwarden/meshwarden/filters/kit/kittest"
	"github.com/meshwarden/meshwarden/internal/meshnames"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	rbacfilter "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	wasmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/wasm/v3"
	resource "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshwarden/meshwarden/controlplane/translate"
	"github.com/meshwarden/meshwarden/gateway/modulefetch"
	"github.com/meshwarden/meshwarden/internal/auditevent"
	"github.com/meshwarden/meshwarden/internal/testenv/promseries"
	"github.com/meshwarden/meshwarden/ir"
)

const testTD = "11111111-2222-3333-4444-555555555555.consul"

func svcID(name string) string { return ir.SpiffeID(testTD, "dc1", name) }

// translatedAccess translates an access policy for service payments with the
// control plane's translator and compiles the sidecar inbound listener's
// RBAC filters as the gateway does: the gateway enforces exactly what Envoy
// receives.
func translatedAccess(t *testing.T, p ir.AccessPolicy) []*rbacFilterRT {
	t.Helper()
	p.Service, p.Source = "payments", "test.yaml:1"
	for i := range p.Rules {
		p.Rules[i].Source = "test.yaml:2"
	}
	cat := &ir.Catalog{Services: map[string]*ir.Service{
		"payments": {Name: "payments", Instances: []ir.Instance{{ID: "p1", Address: "127.0.0.1", Port: 9001, Healthy: true}}},
		"orders":   {Name: "orders", Instances: []ir.Instance{{ID: "o1", Address: "127.0.0.1", Port: 9002, Healthy: true}}},
	}}
	shared, err := translate.Build(cat, &ir.PolicySet{Access: []ir.AccessPolicy{p}}, translate.Options{MTLS: true, TrustDomain: testTD, Datacenter: "dc1"})
	if err != nil {
		t.Fatal(err)
	}
	snap, err := shared.ForNode(translate.Node{ID: "payments-1", Service: "payments"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := snap.Validate(); err != nil {
		t.Fatalf("translated resources fail Envoy's validation: %v", err)
	}
	for _, r := range snap.Resources[resource.ListenerType] {
		l := r.(*listener.Listener)
		if l.GetName() != translate.InboundListenerName {
			continue
		}
		h, err := httpConnManager(l.GetFilterChains()[0])
		if err != nil {
			t.Fatal(err)
		}
		hfs, err := httpFilters(h)
		if err != nil {
			t.Fatalf("the gateway refuses the translated listener: %v", err)
		}
		var out []*rbacFilterRT
		for _, f := range hfs {
			if f.rbac != nil {
				out = append(out, f.rbac)
			}
		}
		return out
	}
	t.Fatal("no inbound listener")
	return nil
}

type accessCase struct {
	name           string
	peer           string // "" = no client certificate
	method, target string
	lane           string
	wantDenied     bool
	wantRule       string
}

func request(c accessCase) *accessRequest {
	r := httptest.NewRequest(c.method, c.target, nil)
	if c.lane != "" {
		r.Header.Set("x-mw-dye", c.lane)
	}
	if c.peer != "" {
		u, _ := url.Parse(c.peer)
		r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{{URIs: []*url.URL{u}}}}
	}
	return newAccessRequest(r)
}

// TestRBACGatewayEnforcesTranslatedRules: every rule shape the plane emits
// (callers by SPIFFE id, prefix, service name and "*"; methods; exact,
// prefix and pattern paths; lanes; deny before allow; default deny)
// decides as the policy says.
func TestRBACGatewayEnforcesTranslatedRules(t *testing.T) {
	filters := translatedAccess(t, ir.AccessPolicy{Name: "payments-callers", Rules: []ir.AccessRule{
		{Name: "orders-pay", From: []string{"orders", "spiffe://" + testTD + "/ns/default/dc/dc1/svc/meshwarden-gateway"},
			Methods: []string{"GET", "POST"}, Paths: []string{"/v1/payments", "/v1/payments/*/refunds", "/v1/admin/**"}},
		{Name: "canary-testers", From: []string{"*"}, Lanes: []string{"canary"}},
		{Name: "partners", From: []string{"spiffe://partner.example/*"}, Methods: []string{"GET"}},
		{Name: "no-admin", Deny: true, From: []string{svcID("orders")}, Paths: []string{"/v1/admin/**"}},
	}})
	if len(filters) != 2 {
		t.Fatalf("%d rbac filters, want deny + allow", len(filters))
	}
	cases := []accessCase{
		{"listed service, allowed method and exact path", svcID("orders"), "POST", "/v1/payments", "", false, "orders-pay"},
		{"listed SPIFFE id", svcID("meshwarden-gateway"), "GET", "/v1/payments?limit=1", "", false, "orders-pay"},
		{"pattern path", svcID("orders"), "POST", "/v1/payments/p-1/refunds", "", false, "orders-pay"},
		{"pattern path is one segment", svcID("orders"), "POST", "/v1/payments/a/b/refunds", "", true, "none"},
		{"method not allowed", svcID("orders"), "DELETE", "/v1/payments", "", true, "none"},
		{"unlisted caller", svcID("intruder"), "GET", "/v1/payments", "", true, "none"},
		{"no client certificate", "", "GET", "/v1/payments", "", true, "none"},
		{"deny wins over allow", svcID("orders"), "GET", "/v1/admin/keys", "", true, "no-admin"},
		{"gateway may use admin", svcID("meshwarden-gateway"), "GET", "/v1/admin/keys", "", false, "orders-pay"},
		{"any caller in the canary lane", svcID("intruder"), "DELETE", "/anything", "canary", false, "canary-testers"},
		{"other lane", svcID("intruder"), "DELETE", "/anything", "blue", true, "none"},
		{"unauthenticated in canary lane", "", "GET", "/anything", "canary", true, "none"},
		{"prefix of a trust domain", "spiffe://partner.example/ns/x/sa/y", "GET", "/x", "", false, "partners"},
		{"prefix is not a string prefix", "spiffe://partner.example.evil/ns/x", "GET", "/x", "", true, "none"},
		{"same id in another trust domain", "spiffe://other.consul/ns/default/dc/dc1/svc/orders", "POST", "/v1/payments", "", true, "none"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			counts := map[string]int{}
			d := evaluateAccess(filters, request(c), func(f, rule, decision string) { counts[f+"/"+rule+"/"+decision]++ })
			if d.denied != c.wantDenied {
				t.Fatalf("denied = %v (rule %q), want %v", d.denied, d.rule, c.wantDenied)
			}
			if d.denied && d.rule != c.wantRule {
				t.Errorf("denied by rule %q, want %q", d.rule, c.wantRule)
			}
			if !d.denied && counts[translate.RBACAllowFilterName+"/"+c.wantRule+"/allowed"] != 1 {
				t.Errorf("decisions %v: want one allowed by %q", counts, c.wantRule)
			}
		})
	}
}

// TestRBACDryRunCountsWouldDeny: shadow rules refuse nothing and count the
// would-be denials per rule.
func TestRBACDryRunCountsWouldDeny(t *testing.T) {
	filters := translatedAccess(t, ir.AccessPolicy{Name: "dry", DryRun: true, Rules: []ir.AccessRule{
		{Name: "orders", From: []string{"orders"}},
		{Name: "no-intruder", Deny: true, From: []string{svcID("intruder")}},
	}})
	counts := map[string]int{}
	count := func(f, rule, decision string) { counts[f+"/"+rule+"/"+decision]++ }
	for _, c := range []accessCase{
		{peer: svcID("orders"), method: "GET", target: "/"},
		{peer: svcID("intruder"), method: "GET", target: "/"},
		{peer: svcID("stranger"), method: "GET", target: "/"},
	} {
		if d := evaluateAccess(filters, request(c), count); d.denied {
			t.Fatalf("%s denied in dry-run", c.peer)
		}
	}
	want := map[string]int{
		translate.RBACDenyFilterName + "/no-intruder/would_deny": 1,
		translate.RBACDenyFilterName + "/none/would_allow":       2,
		translate.RBACAllowFilterName + "/orders/would_allow":    1,
		translate.RBACAllowFilterName + "/none/would_deny":       2,
	}
	for k, v := range want {
		if counts[k] != v {
			t.Errorf("%s = %d, want %d (all: %v)", k, counts[k], v, counts)
		}
	}
}

// TestRBACRefusesWhatItCannotEvaluate: an RBAC config outside the supported
// subset is a configuration error (NACK), never silently skipped.
func TestRBACRefusesWhatItCannotEvaluate(t *testing.T) {
	srcIP := &rbacv3.Principal{Identifier: &rbacv3.Principal_DirectRemoteIp{DirectRemoteIp: &core.CidrRange{AddressPrefix: "10.0.0.0"}}}
	any := &rbacv3.Permission{Rule: &rbacv3.Permission_Any{Any: true}}
	anyone := &rbacv3.Principal{Identifier: &rbacv3.Principal_Any{Any: true}}
	for name, cfg := range map[string]*rbacfilter.RBAC{
		"log action":     {Rules: &rbacv3.RBAC{Action: rbacv3.RBAC_LOG}},
		"remote ip":      {Rules: &rbacv3.RBAC{Policies: map[string]*rbacv3.Policy{"p": {Permissions: []*rbacv3.Permission{any}, Principals: []*rbacv3.Principal{srcIP}}}}},
		"shadow port":    {ShadowRules: &rbacv3.RBAC{Policies: map[string]*rbacv3.Policy{"p": {Permissions: []*rbacv3.Permission{{Rule: &rbacv3.Permission_DestinationPort{DestinationPort: 80}}}, Principals: []*rbacv3.Principal{anyone}}}}},
		"bad path regex": {Rules: &rbacv3.RBAC{Policies: map[string]*rbacv3.Policy{"p": {Permissions: []*rbacv3.Permission{{Rule: &rbacv3.Permission_UrlPath{}}}, Principals: []*rbacv3.Principal{anyone}}}}},
	} {
		t.Run(name, func(t *testing.T) {
			h := &hcm.HttpConnectionManager{HttpFilters: []*hcm.HttpFilter{
				{Name: "rbac", ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: mustAny(t, cfg)}},
				{Name: "envoy.filters.http.router", ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: mustAny(t, &routerv3.Router{})}},
			}}
			if _, err := httpFilters(h); err == nil || !strings.Contains(err.Error(), "rbac") {
				t.Fatalf("err = %v, want a refusal naming the rbac filter", err)
			}
		})
	}
	t.Run("wasm after rbac", func(t *testing.T) {
		l := httpListener(t, 1, "r", "mw.audit")
		h, _ := httpConnManager(l.GetFilterChains()[0])
		rb := &hcm.HttpFilter{Name: "rbac", ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: mustAny(t, &rbacfilter.RBAC{})}}
		h.HttpFilters = append([]*hcm.HttpFilter{rb}, h.HttpFilters...)
		if _, err := httpFilters(h); err == nil || !strings.Contains(err.Error(), "after an rbac filter") {
			t.Fatalf("err = %v, want the order refused", err)
		}
	})
}

// TestRBACDeniedRequestIs403WithAuditRecord runs a gateway whose listener
// has the real audit filter and an RBAC filter admitting only authenticated
// peers: a plaintext request gets 403 with a short reason, never reaches the
// upstream, the collector receives an ACCESS_DENIED record, and the metric
// counts the denial.
func TestRBACDeniedRequestIs403WithAuditRecord(t *testing.T) {
	ms, wasm := serveAuditFilter(t)
	var (
		mu   sync.Mutex
		hits int
	)
	audits := &kittest.AuditSink{}
	collector := httptest.NewServer(audits)
	t.Cleanup(collector.Close)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hits++
		mu.Unlock()
		_, _ = w.Write([]byte("ok"))
	}))
	t.Cleanup(upstream.Close)

	cfg := `{"rules":[{"methods":["POST"],"path":{"exact":"/v1/transfers"},"opType":"FUND_TRANSFER"}],"collector":{"cluster":"` + meshnames.AuditClusterName + `"},"batch":{"flushIntervalMs":50}}`
	ext := wasmFilterExt(t, "mw.audit", "audit", ms.URL+"/audit.wasm", modulefetch.Sum(wasm), wasmv3.FailurePolicy_FAIL_CLOSED, cfg)

	plane := startPlane(t)
	gw := startGateway(t, plane, "gw-rbac", nil)
	l := httpListener(t, gw.port(), "r", "mw.audit")
	h, _ := httpConnManager(l.GetFilterChains()[0])
	authenticatedOnly := &rbacfilter.RBAC{Rules: &rbacv3.RBAC{Action: rbacv3.RBAC_ALLOW, Policies: map[string]*rbacv3.Policy{
		"mesh": {Permissions: []*rbacv3.Permission{{Rule: &rbacv3.Permission_Any{Any: true}}},
			Principals: []*rbacv3.Principal{{Identifier: &rbacv3.Principal_Authenticated_{Authenticated: &rbacv3.Principal_Authenticated{}}}}},
	}}}
	rb := &hcm.HttpFilter{Name: translate.RBACAllowFilterName, ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: mustAny(t, authenticatedOnly)}}
	h.HttpFilters = append(h.HttpFilters[:len(h.HttpFilters)-1], rb, h.HttpFilters[len(h.HttpFilters)-1])
	l.FilterChains[0].Filters[0].ConfigType = &listener.Filter_TypedConfig{TypedConfig: mustAny(t, h)}
	plane.set("gw-rbac", append(auditedApp(ext, upstream.Listener.Addr().String(), collector.Listener.Addr().String()), l)...)
	eventually(t, 90*time.Second, "readiness", gw.g.Ready)

	code, body, _ := get(t, http.DefaultClient, gw.url+"/v1/balance?x=1", "x-mw-subject", "alice")
	if code != http.StatusForbidden || !strings.Contains(body, "access denied") {
		t.Fatalf("got %d %q, want 403 access denied", code, body)
	}
	mu.Lock()
	if hits != 0 {
		t.Errorf("a denied request reached the upstream")
	}
	mu.Unlock()
	var ev auditevent.Event
	eventually(t, 10*time.Second, "the ACCESS_DENIED record", func() bool {
		for _, e := range audits.Events() {
			if e.OpType == "ACCESS_DENIED" {
				ev = e
				return true
			}
		}
		return false
	})
	if ev.Subject != "anonymous" || ev.Resource != meshnames.GatewayNodeCluster+"#none" || ev.Status != 403 || ev.Path != "/v1/balance" || ev.Method != "GET" {
		t.Errorf("record = %+v", ev)
	}
	// A gRPC call is refused as Envoy refuses it: trailers-only
	// PERMISSION_DENIED, and the audit filter records it too.
	gcode, _, gh := get(t, http.DefaultClient, gw.url+"/pkg.Svc/Call", "Content-Type", "application/grpc")
	if gcode != http.StatusOK || gh.Get("Grpc-Status") != "7" {
		t.Fatalf("gRPC call: %d grpc-status %q, want 200 with grpc-status 7", gcode, gh.Get("Grpc-Status"))
	}
	eventually(t, 10*time.Second, "the gRPC call's ACCESS_DENIED record", func() bool {
		for _, e := range audits.Events() {
			if e.OpType == "ACCESS_DENIED" && e.Path == "/pkg.Svc/Call" {
				return true
			}
		}
		return false
	})
	if got := counterValue(t, gw.g.cfg.Registry, "meshwarden_gateway_access_decisions_total",
		map[string]string{"filter": translate.RBACAllowFilterName, "rule": "none", "decision": "denied"}); got != 2 {
		t.Errorf("denied counter = %v, want 2", got)
	}
}

func decodeJSON(r io.Reader, v any) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// counterValue reads one counter from reg by name and exact labels.
func counterValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	for _, m := range promseries.Family(t, reg, name).GetMetric() {
		if len(m.GetLabel()) == len(labels) && promseries.Match(m, labels) {
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// TestRBACSidecarModeAnnouncesService: with Config.Service the gateway
// announces itself as that service's sidecar (node.cluster, inbound_port =
// its port, local_app_port), so the plane sends the inbound listener with
// the service's RBAC; and a caller-typed x-forwarded-client-cert never
// reaches the upstream.
func TestRBACSidecarModeAnnouncesService(t *testing.T) {
	plane := startPlane(t)
	up := startUpstream(t, "app")
	gw := startGateway(t, plane, "ledger-1", func(c *Config) { c.Service, c.LocalAppPort = "ledger", 18080 })
	rc := routeConfig(&route.Route{Name: "app", Match: prefixMatch("/"), Action: routeTo("app")})
	plane.set("ledger-1", httpListener(t, gw.port(), "r"), rc, edsCluster("app", nil), cla("app", lbEndpoint(up.addr(), 0)))
	eventually(t, 10*time.Second, "readiness", gw.g.Ready)
	n := plane.node.Load()
	md := n.GetMetadata().GetFields()
	if n.GetCluster() != "ledger" || md["inbound_port"].GetStringValue() != strconv.Itoa(gw.port()) || md["local_app_port"].GetStringValue() != "18080" {
		t.Fatalf("node = %v, want cluster ledger, inbound_port %d, local_app_port 18080", n, gw.port())
	}
	code, _, _ := get(t, http.DefaultClient, gw.url+"/x", "X-Forwarded-Client-Cert", "By=spiffe://evil;URI=spiffe://x/svc/admin")
	if code != http.StatusOK {
		t.Fatalf("got %d, want 200", code)
	}
	if h := up.last.Load(); h == nil || h.Get("X-Forwarded-Client-Cert") != "" {
		t.Errorf("the upstream saw x-forwarded-client-cert: %v", h)
	}
	if _, err := New(context.Background(), Config{Listener: gw.g.cfg.Listener, Service: meshnames.GatewayNodeCluster}); err == nil {
		t.Errorf("Service %q accepted: it is the edge gateway's cluster", meshnames.GatewayNodeCluster)
	}
}
