package v8host_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/meshwarden/meshwarden/filters/audit"
	"github.com/meshwarden/meshwarden/filters/audit/auditconfig"
	"github.com/meshwarden/meshwarden/filters/internal/v8host"
	"github.com/meshwarden/meshwarden/filters/kit/kittest"
	"github.com/meshwarden/meshwarden/filters/trace/traceconfig"
	"github.com/meshwarden/meshwarden/internal/auditevent"
	"github.com/meshwarden/meshwarden/internal/dyeing"
	"github.com/meshwarden/meshwarden/internal/testenv/otlpsink"
	"github.com/meshwarden/meshwarden/internal/tracectx"
)

// The stories below mirror the wazero runs in filters/*/host_test.go: the
// same configurations, requests and expectations, under V8 with Envoy's
// host semantics.

func hdrs(kv ...string) [][2]string {
	var p [][2]string
	for i := 0; i+1 < len(kv); i += 2 {
		p = append(p, [2]string{kv[i], kv[i+1]})
	}
	return p
}

// TestDyeStories: the dye README's ingress example (lane rules, spoofed
// lane headers stripped per trust config) and egress example.
func TestDyeStories(t *testing.T) {
	mods := modules(t)
	tests := []struct {
		name    string
		props   map[string]string
		headers [][2]string
		lane    string
		tenant  string
	}{
		{"beta header", nil, hdrs(":method", "GET", ":path", "/", "x-beta", "1"), "beta", ""},
		{"spoofed dye from the internet", map[string]string{"source.address": "203.0.113.9:4000"}, hdrs(":method", "GET", ":path", "/", "x-mw-dye", "ops", "baggage", "mw-dye=ops,k=v"), "stable", ""},
		{"trusted mesh peer keeps its dye", map[string]string{"connection.uri_san_peer_certificate": "spiffe://bank.example/ns/mesh/sa/gateway"}, hdrs(":method", "GET", ":path", "/", "x-mw-dye", "canary"), "canary", ""},
		{"trusted CIDR keeps the baggage dye", map[string]string{"source.address": "10.1.4.4:5000"}, hdrs(":method", "GET", ":path", "/", "baggage", "mw-dye=canary"), "canary", ""},
		{"ops peer identity", map[string]string{"connection.uri_san_peer_certificate": "spiffe://bank.example/ns/ops/sa/cli"}, hdrs(":method", "GET", ":path", "/"), "ops", ""},
		{"retail tenant rule", map[string]string{"connection.uri_san_peer_certificate": "spiffe://bank.example/ns/retail/sa/web"}, hdrs(":method", "POST", ":path", "/v2/pay"), "v2", "retail"},
		{"other tenant cannot reach v2", map[string]string{"connection.uri_san_peer_certificate": "spiffe://bank.example/ns/corp/sa/web"}, hdrs(":method", "POST", ":path", "/v2/pay", "x-mw-tenant", "retail"), "stable", ""},
	}
	in := v8host.Input{VMs: []v8host.VM{{Name: "dye", Wasm: mods["dye"], PluginConfig: readFile(t, "../../dye/testdata/example-ingress.json")}}}
	for _, tt := range tests {
		in.Requests = append(in.Requests, v8host.Request{Properties: tt.props, RequestHeaders: tt.headers})
	}
	out := run(t, in) // one VM for every request, as in Envoy
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := out.Requests[i]
			if r.Action != "continue" {
				t.Fatalf("action %s", r.Action)
			}
			if v, _ := v8host.Header(r.RequestHeaders, dyeing.Header); v != tt.lane {
				t.Errorf("lane = %q, want %q (headers %v)", v, tt.lane, r.RequestHeaders)
			}
			if v, _ := v8host.Header(r.RequestHeaders, dyeing.TenantHeader); v != tt.tenant {
				t.Errorf("tenant = %q, want %q", v, tt.tenant)
			}
			if bg, _ := v8host.Header(r.RequestHeaders, "baggage"); !strings.Contains(bg, "mw-dye="+tt.lane) {
				t.Errorf("baggage = %q lacks mw-dye=%s", bg, tt.lane)
			}
		})
	}
	t.Run("egress restores the lane from baggage", func(t *testing.T) {
		out := run(t, v8host.Input{
			VMs:      []v8host.VM{{Name: "dye", Wasm: mods["dye"], PluginConfig: readFile(t, "../../dye/testdata/example-egress.json")}},
			Requests: []v8host.Request{{RequestHeaders: hdrs(":method", "GET", ":path", "/next-hop", "baggage", "userId=7,mw-dye=canary")}},
		})
		if v, _ := v8host.Header(out.Requests[0].RequestHeaders, dyeing.Header); v != "canary" {
			t.Fatalf("egress lane header = %q, want canary", v)
		}
	})
}

// auditConfig is the audit README example with test timings.
func auditConfig(t testing.TB, failClosedMs int) string {
	t.Helper()
	cfg, err := auditconfig.ParseConfig([]byte(readFile(t, "../../audit/testdata/example.json")))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Batch.FlushIntervalMs = 20
	cfg.FailClosedTimeoutMs = failClosedMs
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// auditEvents decodes every audit batch sent to mw-audit.
func auditEvents(t testing.TB, out *v8host.Output) []auditevent.Event {
	t.Helper()
	var evs []auditevent.Event
	for _, c := range out.HTTPCalls {
		if c.Cluster != "mw-audit" {
			continue
		}
		if p, _ := v8host.Header(c.Headers, ":path"); p != auditevent.IngestPath {
			t.Errorf("audit batch sent to %s", p)
		}
		if m, _ := v8host.Header(c.Headers, ":method"); m != "POST" {
			t.Errorf("audit batch sent with %s", m)
		}
		var b auditevent.Batch
		if err := json.Unmarshal(c.Body, &b); err != nil {
			t.Fatalf("audit batch: %v\n%s", err, c.Body)
		}
		for i := range b.Events {
			if err := b.Events[i].Validate(); err != nil {
				t.Errorf("invalid record: %v", err)
			}
		}
		evs = append(evs, b.Events...)
	}
	return evs
}

func byPhase(evs []auditevent.Event, p auditevent.Phase) []auditevent.Event {
	var r []auditevent.Event
	for _, e := range evs {
		if e.Phase == p {
			r = append(r, e)
		}
	}
	return r
}

const transferBody = `{"amount":100,"currency":"EUR","card":{"number":"4111111111111111"},"pin":"1234"}`

// TestAuditStories: a fail-closed POST /v1/transfers sends its intent record
// to mw-audit and goes on once acknowledged; a collector answering 503 or
// too slowly gets a local 503 and nothing is forwarded; non-fail-closed
// outcomes are batched and flushed on the tick.
func TestAuditStories(t *testing.T) {
	mods := modules(t)
	vm := func(failClosedMs int) []v8host.VM {
		return []v8host.VM{{Name: "audit", Wasm: mods["audit"], PluginConfig: auditConfig(t, failClosedMs)}}
	}
	props := map[string]string{"node.id": "gw-test-1"}

	t.Run("fail-closed intent acknowledged", func(t *testing.T) {
		out := run(t, v8host.Input{
			VMs: vm(2000), Properties: props,
			Clusters: map[string]v8host.Cluster{"mw-audit": {Status: 200, Body: `{"accepted":1}`}},
			Requests: []v8host.Request{{
				Properties: map[string]string{"connection.uri_san_peer_certificate": "spiffe://bank.example/ns/edge/sa/gw"},
				RequestHeaders: hdrs(":method", "POST", ":path", "/v1/transfers", "idempotency-key", "IK-9", "x-mw-subject", "alice",
					"x-api-key", "secret", "user-agent", "bank-app", "traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "x-mw-dye", "canary"),
				RequestBody:     []string{transferBody},
				ResponseHeaders: hdrs(":status", "201"),
				TicksAfter:      2,
			}},
		})
		r := out.Requests[0]
		if r.Action != "continue" || string(r.UpstreamBody) != transferBody {
			t.Fatalf("action %s body %q, want the request forwarded unchanged", r.Action, r.UpstreamBody)
		}
		evs := auditEvents(t, out)
		intents := byPhase(evs, auditevent.PhaseIntent)
		if len(intents) != 1 {
			t.Fatalf("%d intent records, want 1: %+v", len(intents), evs)
		}
		intent := intents[0]
		if tok, _ := v8host.Header(out.HTTPCalls[0].Headers, auditevent.TokenHeader); tok != "change-me" {
			t.Errorf("token header = %q", tok)
		}
		sum := sha256.Sum256([]byte(strings.NewReplacer(`"4111111111111111"`, audit.Redacted, `"1234"`, audit.Redacted).Replace(transferBody)))
		kittest.CheckTransferIntent(t, intent, "sha256:"+hex.EncodeToString(sum[:]))
		outcomes := byPhase(evs, auditevent.PhaseOutcome)
		if len(outcomes) != 1 {
			t.Fatalf("%d outcome records, want 1", len(outcomes))
		}
		if o := outcomes[0]; o.Status != 201 || o.LatencyNS <= 0 || o.BodyDigest != intent.BodyDigest || o.Timestamp < intent.Timestamp {
			t.Errorf("outcome = %+v", o)
		}
	})

	for _, tt := range []struct {
		name    string
		cluster v8host.Cluster
	}{
		{"collector answers 503", v8host.Cluster{Status: 503}},
		{"collector answers 500", v8host.Cluster{Status: 500}},
		{"collector too slow", v8host.Cluster{Status: 200, DelayMs: 700}},
	} {
		t.Run("fail-closed refused: "+tt.name, func(t *testing.T) {
			out := run(t, v8host.Input{
				VMs: vm(200), Properties: props,
				Clusters: map[string]v8host.Cluster{"mw-audit": tt.cluster},
				Requests: []v8host.Request{{RequestHeaders: hdrs(":method", "POST", ":path", "/v1/transfers")}},
			})
			r := out.Requests[0]
			if r.Action != "reply" || r.LocalReply == nil || r.LocalReply.Status != 503 {
				t.Fatalf("action %s reply %+v, want a local 503 and nothing forwarded", r.Action, r.LocalReply)
			}
			var body map[string]string
			if err := json.Unmarshal(r.LocalReply.Body, &body); err != nil || body["error"] != "audit_unavailable" || body["op_type"] != "FUND_TRANSFER" || !strings.Contains(body["message"], "not forwarded") {
				t.Errorf("503 body = %s (%v)", r.LocalReply.Body, err)
			}
			if got := out.VMs[0].Metrics[audit.MetricDenied]; got != 1 {
				t.Errorf("%s = %d, want 1", audit.MetricDenied, got)
			}
			if tt.cluster.DelayMs > 0 && out.HTTPCalls[0].Outcome != "timeout" {
				t.Errorf("call outcome %q, want timeout", out.HTTPCalls[0].Outcome)
			}
		})
	}

	t.Run("outcomes batched", func(t *testing.T) {
		const n = 5
		var reqs []v8host.Request
		for i := 0; i < n; i++ {
			reqs = append(reqs, v8host.Request{
				Properties:      map[string]string{"connection.uri_san_peer_certificate": "spiffe://bank.example/ns/web/sa/app"},
				RequestHeaders:  hdrs(":method", "PUT", ":path", fmt.Sprintf("/v1/accounts/ACC-%d/limits?x=1", i), "x-mw-subject", "mallory"),
				RequestBody:     []string{`{"limit":`, `500,"pin":"0000"}`},
				ResponseHeaders: hdrs(":status", "200"),
			})
		}
		reqs = append(reqs, v8host.Request{RequestHeaders: hdrs(":method", "GET", ":path", "/v1/accounts/ACC-1/limits"), TicksAfter: 2})
		out := run(t, v8host.Input{VMs: vm(2000), Properties: props,
			Clusters: map[string]v8host.Cluster{"mw-audit": {Status: 200, Body: `{"accepted":5}`}}, Requests: reqs})
		for i := 0; i < n; i++ {
			if r := out.Requests[i]; r.Action != "continue" || string(r.UpstreamBody) != `{"limit":500,"pin":"0000"}` {
				t.Errorf("request %d: %s %q", i, r.Action, r.UpstreamBody)
			}
		}
		evs := auditEvents(t, out)
		if len(byPhase(evs, auditevent.PhaseIntent)) != 0 {
			t.Errorf("non-fail-closed rule sent an intent record")
		}
		outs := byPhase(evs, auditevent.PhaseOutcome)
		if len(outs) != n {
			t.Fatalf("%d outcomes, want %d", len(outs), n)
		}
		for _, e := range outs {
			if e.OpType != "LIMIT_CHANGE" || e.Subject != "spiffe://bank.example/ns/web/sa/app" || !strings.HasPrefix(e.Resource, "account/ACC-") || e.Status != 200 || strings.Contains(e.Path, "?") {
				t.Errorf("outcome %+v", e)
			}
		}
	})
}

// traceConfig is the trace README example at ratio 1 with a short tick.
func traceConfig(t testing.TB) string {
	t.Helper()
	cfg, err := traceconfig.ParseConfig([]byte(readFile(t, "../../trace/testdata/example.json")))
	if err != nil {
		t.Fatal(err)
	}
	one := 1.0
	cfg.Sampling.Ratio = &one
	cfg.Batch.FlushIntervalMs = 20
	b, _ := json.Marshal(cfg)
	return string(b)
}

// spans feeds every export to mw-otlp through the OTLP sink the wazero runs
// use.
func spans(t testing.TB, out *v8host.Output) *otlpsink.Sink {
	t.Helper()
	sink := otlpsink.New(100000)
	for _, c := range out.HTTPCalls {
		if c.Cluster != "mw-otlp" {
			continue
		}
		p, _ := v8host.Header(c.Headers, ":path")
		req := httptest.NewRequest(http.MethodPost, p, bytes.NewReader(c.Body))
		if ct, ok := v8host.Header(c.Headers, "content-type"); ok {
			req.Header.Set("Content-Type", ct)
		}
		rec := httptest.NewRecorder()
		sink.ServeHTTP(rec, req)
		if rec.Code != 200 {
			t.Fatalf("OTLP export refused: %d %s", rec.Code, rec.Body)
		}
	}
	return sink
}

// TestTraceStories: trace continues a W3C or B3 trace or starts one, sends
// a new sampled child traceparent upstream and exports the span to mw-otlp.
func TestTraceStories(t *testing.T) {
	mods := modules(t)
	tests := kittest.TraceStories
	in := v8host.Input{
		VMs:        []v8host.VM{{Name: "trace", Wasm: mods["trace"], PluginConfig: traceConfig(t)}},
		Properties: map[string]string{"node.id": "gw-test-1"},
		Clusters:   map[string]v8host.Cluster{"mw-otlp": {Status: 200}},
		FinalTicks: 2,
	}
	props := map[string]string{"connection.uri_san_peer_certificate": "spiffe://bank.example/ns/web/sa/app", "source.address": "10.0.0.7:5555", "route_name": "payments"}
	for _, tt := range tests {
		in.Requests = append(in.Requests, v8host.Request{Properties: props,
			RequestHeaders:  hdrs(append([]string{":method", "POST", ":path", "/v1/transfers?x=1", "x-mw-dye", "canary"}, tt.Hdr...)...),
			ResponseHeaders: hdrs(":status", "201")})
	}
	out := run(t, in)
	sink := spans(t, out)
	for i, tt := range tests {
		t.Run(tt.Name, func(t *testing.T) {
			tps := v8host.HeaderValues(out.Requests[i].RequestHeaders, "traceparent")
			if len(tps) != 1 {
				t.Fatalf("traceparent lines upstream: %q", tps)
			}
			sc, err := tracectx.ParseTraceparent(tps[0])
			if err != nil {
				t.Fatal(err)
			}
			if (sc.TraceID.String() == "4bf92f3577b34da6a3ce929d0e0e4736") != tt.SameTrace {
				t.Errorf("trace id %s, continue=%v", sc.TraceID, tt.SameTrace)
			}
			if sc.SpanID.String() == "00f067aa0ba902b7" || !sc.Sampled() {
				t.Errorf("span id %s sampled %v: want a new, sampled child", sc.SpanID, sc.Sampled())
			}
			var span *otlpsink.Span
			for _, sp := range sink.Spans(sc.TraceID.String()) {
				if sp.SpanID == sc.SpanID.String() {
					span = &sp
				}
			}
			if span == nil {
				t.Fatalf("span %s not exported to mw-otlp", sc.SpanID)
			}
			kittest.CheckPaymentsSpan(t, *span, tt.SameTrace)
		})
	}
}

// chainVMs is dye -> audit -> trace (filters.Order) with the chain
// configurations of filters/trace/host_test.go.
func chainVMs(t testing.TB, tickMs int) []v8host.VM {
	mods := modules(t)
	return []v8host.VM{
		{Name: "dye", Wasm: mods["dye"], PluginConfig: readFile(t, "../../dye/testdata/example-ingress.json")},
		{Name: "audit", Wasm: mods["audit"], PluginConfig: fmt.Sprintf(`{"rules":[{"methods":["PUT"],"path":{"pattern":"/v1/accounts/*/limits"},"opType":"LIMIT_CHANGE","resource":"account/{path.3}"}],
		"collector":{"token":"t"},"batch":{"flushIntervalMs":%d}}`, tickMs)},
		{Name: "trace", Wasm: mods["trace"], PluginConfig: fmt.Sprintf(`{"serviceName":"gw","batch":{"flushIntervalMs":%d}}`, tickMs)},
	}
}

var chainClusters = map[string]v8host.Cluster{"mw-audit": {Status: 200, Body: `{"accepted":1}`}, "mw-otlp": {Status: 200}}

// TestChainStory: the lane reaches the span and the audit record, and the
// audit record carries the trace id the trace filter started.
func TestChainStory(t *testing.T) {
	out := run(t, v8host.Input{
		VMs: chainVMs(t, 20), Clusters: chainClusters, Properties: map[string]string{"node.id": "gw-test-1"},
		Requests: []v8host.Request{{
			Properties:      map[string]string{"connection.uri_san_peer_certificate": "spiffe://bank.example/ns/retail/sa/web"},
			RequestHeaders:  hdrs(":method", "PUT", ":path", "/v1/accounts/ACC-1/limits", "x-beta", "1", "x-mw-dye", "spoofed"),
			ResponseHeaders: hdrs(":status", "200"),
			TicksAfter:      2,
		}},
	})
	r := out.Requests[0]
	lane, _ := v8host.Header(r.RequestHeaders, "x-mw-dye")
	tp, _ := v8host.Header(r.RequestHeaders, "traceparent")
	sc, err := tracectx.ParseTraceparent(tp)
	if r.Action != "continue" || lane != "beta" || err != nil {
		t.Fatalf("action %s lane %q traceparent %q (%v)", r.Action, lane, tp, err)
	}
	sp := spans(t, out).Spans(sc.TraceID.String())
	if len(sp) != 1 || sp[0].Attrs["mw.lane"] != "beta" {
		t.Errorf("spans %+v", sp)
	}
	evs := auditEvents(t, out)
	if len(evs) != 1 {
		t.Fatalf("%d audit records, want 1", len(evs))
	}
	if e := evs[0]; e.TraceID != sc.TraceID.String() || e.Dye != "beta" || e.Tenant != "retail" || e.Resource != "account/ACC-1" || e.Status != 200 {
		t.Errorf("audit record = %+v", e)
	}
}
