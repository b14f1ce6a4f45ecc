//go:build !wasip1

package trace_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/meshwarden/meshwarden/filters"
	"github.com/meshwarden/meshwarden/filters/kit/kittest"
	"github.com/meshwarden/meshwarden/filters/trace/traceconfig"
	"github.com/meshwarden/meshwarden/gateway/wasmhost"
	"github.com/meshwarden/meshwarden/internal/testenv/otlpsink"
	"github.com/meshwarden/meshwarden/internal/tracectx"
)

// guests builds the filters once per test binary and compiles each once per
// runtime.
var guests kittest.Guests

func TestMain(m *testing.M) { guests.Main(m) }

func newPlugin(tb testing.TB, name string, config []byte, caller wasmhost.HTTPCaller, logs *kittest.LogSink) (*wasmhost.Plugin, error) {
	return newPluginIn(tb, false, name, config, caller, logs)
}

func newPluginIn(tb testing.TB, fast bool, name string, config []byte, caller wasmhost.HTTPCaller, logs *kittest.LogSink) (*wasmhost.Plugin, error) {
	return newPluginFrom(tb, fast, name, name, "", config, caller, logs)
}

// newPluginFrom starts plugin name from module (a filter or "bundle") with
// the given root id; fast uses the runtime without per-call deadlines
// (wasmhost.RuntimeConfig.NoCallDeadline), the gateway's option for trusted,
// reviewed filters.
func newPluginFrom(tb testing.TB, fast bool, module, name, rootID string, config []byte, caller wasmhost.HTTPCaller, logs *kittest.LogSink) (*wasmhost.Plugin, error) {
	tb.Helper()
	compiled := guests.Compiled
	if fast {
		compiled = guests.CompiledFast
	}
	rt, mod := compiled(tb, "../"+module+"/wasm")
	return kittest.Start(tb, rt, mod, wasmhost.PluginConfig{Name: name, RootID: rootID, Configuration: config, HTTPCaller: caller,
		Properties: map[string][]byte{"node.id": []byte("gw-test-1")}}, logs)
}

// exampleConfig loads testdata/example.json (the README's example) with
// sampling at 1 and a short tick for tests.
func exampleConfig(tb testing.TB) []byte {
	tb.Helper()
	cfg, err := traceconfig.ParseConfig(kittest.ReadFile(tb, "testdata/example.json"))
	if err != nil {
		tb.Fatal(err)
	}
	one := 1.0
	cfg.Sampling.Ratio = &one
	cfg.Batch.FlushIntervalMs = 20
	out, _ := json.Marshal(cfg)
	return out
}

func otlpSink(tb testing.TB) (*otlpsink.Sink, *wasmhost.NetHTTPCaller) {
	sink := otlpsink.New(1000)
	srv := httptest.NewServer(sink)
	tb.Cleanup(srv.Close)
	return sink, &wasmhost.NetHTTPCaller{Clusters: map[string]string{"mw-otlp": srv.URL}}
}

func waitSpans(t testing.TB, sink *otlpsink.Sink, traceID string, n int) []otlpsink.Span {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if s := sink.Spans(traceID); len(s) >= n {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("fewer than %d spans of trace %s after 10s", n, traceID)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestHostPropagatesAndExports(t *testing.T) {
	sink, caller := otlpSink(t)
	p, err := newPlugin(t, "trace", exampleConfig(t), caller, nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := kittest.TraceStories
	for _, tt := range tests {
		t.Run(tt.Name, func(t *testing.T) {
			h := wasmhost.NewHeaders(append([]string{":method", "POST", ":path", "/v1/transfers?x=1", "x-mw-dye", "canary"}, tt.Hdr...)...)
			s, err := p.NewStream(context.Background(), wasmhost.StreamInfo{PeerURISAN: "spiffe://bank.example/ns/web/sa/app", SourceAddress: "10.0.0.7:5555", RouteName: "payments"})
			if err != nil {
				t.Fatal(err)
			}
			s.OnRequestHeaders(h, true)
			out, _ := h.Get("traceparent")
			sc, err := tracectx.ParseTraceparent(out)
			if err != nil {
				t.Fatalf("outgoing traceparent %q: %v", out, err)
			}
			if (sc.TraceID.String() == "4bf92f3577b34da6a3ce929d0e0e4736") != tt.SameTrace {
				t.Errorf("trace id %s, continue=%v", sc.TraceID, tt.SameTrace)
			}
			if sc.SpanID.String() == "00f067aa0ba902b7" || !sc.Sampled() {
				t.Errorf("span id %s sampled %v: want a new, sampled child", sc.SpanID, sc.Sampled())
			}
			s.OnResponseHeaders(wasmhost.NewHeaders(":status", "201"), true)
			s.Close()
			var span otlpsink.Span
			deadline := time.Now().Add(10 * time.Second)
			for span.SpanID != sc.SpanID.String() {
				for _, sp := range waitSpans(t, sink, sc.TraceID.String(), 1) {
					if sp.SpanID == sc.SpanID.String() {
						span = sp
					}
				}
				if time.Now().After(deadline) {
					t.Fatalf("span %s not exported after 10s", sc.SpanID)
				}
				time.Sleep(5 * time.Millisecond)
			}
			kittest.CheckPaymentsSpan(t, span, tt.SameTrace)
			// The name joins the method and the route (built in the VM's
			// arena since guests2).
			if span.Name != "POST payments" {
				t.Errorf("span name %q, want %q", span.Name, "POST payments")
			}
		})
	}
}

func TestHostRefusesBadConfig(t *testing.T) {
	kittest.Refuses(t, "sampling.ratio", func(logs *kittest.LogSink) error {
		_, err := newPlugin(t, "trace", []byte(`{"sampling":{"ratio":2}}`), nil, logs)
		return err
	})
}

// chainConfigs are the three filters' configurations for the chain test and
// benchmark: dye rules, an audited (not fail-closed) route, trace at ratio 1.
func chainConfigs(tb testing.TB, tickMs int) map[string][]byte {
	dye, err := os.ReadFile("../dye/testdata/example-ingress.json")
	if err != nil {
		tb.Fatal(err)
	}
	audit := fmt.Sprintf(`{"rules":[{"methods":["PUT"],"path":{"pattern":"/v1/accounts/*/limits"},"opType":"LIMIT_CHANGE","resource":"account/{path.3}"}],
		"collector":{"token":"t"},"batch":{"flushIntervalMs":%d}}`, tickMs)
	tr := fmt.Sprintf(`{"serviceName":"gw","batch":{"flushIntervalMs":%d}}`, tickMs)
	return map[string][]byte{"dye": dye, "audit": []byte(audit), "trace": []byte(tr)}
}

func newChain(tb testing.TB, tickMs int) (*wasmhost.Chain, *otlpsink.Sink, *kittest.AuditSink) {
	return newChainIn(tb, false, false, tickMs)
}

// newChainIn builds the chain from the three filter modules, or from the
// bundle module (one module, root id per filter).
func newChainIn(tb testing.TB, fast, bundle bool, tickMs int) (*wasmhost.Chain, *otlpsink.Sink, *kittest.AuditSink) {
	tb.Helper()
	sink := otlpsink.New(100000)
	osrv := httptest.NewServer(sink)
	tb.Cleanup(osrv.Close)
	as := &kittest.AuditSink{}
	asrv := httptest.NewServer(as)
	tb.Cleanup(asrv.Close)
	caller := &wasmhost.NetHTTPCaller{Clusters: map[string]string{"mw-otlp": osrv.URL, "mw-audit": asrv.URL}}
	cfgs := chainConfigs(tb, tickMs)
	chain := orderedChain(tb, func(name string) (*wasmhost.Plugin, error) {
		module, pname, root := name, name, ""
		if bundle {
			module, pname, root = "bundle", "bundle-"+name, name
		}
		return newPluginFrom(tb, fast, module, pname, root, cfgs[name], caller, nil)
	})
	return chain, sink, as
}

// orderedChain starts each filter of filters.Order with start and chains
// them in that order.
func orderedChain(tb testing.TB, start func(name string) (*wasmhost.Plugin, error)) *wasmhost.Chain {
	tb.Helper()
	byName := map[string]*wasmhost.Plugin{}
	for _, name := range filters.Order() {
		p, err := start(name)
		if err != nil {
			tb.Fatalf("%s: %v", name, err)
		}
		byName[name] = p
	}
	chain, err := wasmhost.OrderedChain(byName, filters.Order())
	if err != nil {
		tb.Fatal(err)
	}
	return chain
}

// TestHostChain runs dye -> audit -> trace (filters.Order) in the gateway
// host: the lane reaches the span and the audit record, and the audit
// record carries the trace id the trace filter started.
func TestHostChain(t *testing.T) {
	if got := filters.Order(); !slices.Equal(got, []string{"dye", "audit", "trace"}) {
		t.Fatalf("filters.Order() = %v", got)
	}
	for _, bundle := range []bool{false, true} {
		t.Run(map[bool]string{false: "three modules", true: "bundle module"}[bundle], func(t *testing.T) {
			testChain(t, bundle)
		})
	}
}

func testChain(t *testing.T, bundle bool) {
	chain, sink, as := newChainIn(t, false, bundle, 20)
	cs, err := chain.NewStream(context.Background(), wasmhost.StreamInfo{PeerURISAN: "spiffe://bank.example/ns/retail/sa/web"})
	if err != nil {
		t.Fatal(err)
	}
	h := wasmhost.NewHeaders(":method", "PUT", ":path", "/v1/accounts/ACC-1/limits", "x-beta", "1", "x-mw-dye", "spoofed")
	if r := cs.OnRequestHeaders(h, true); r.Action != wasmhost.Continue {
		t.Fatalf("chain request: %v %v", r.Action, r.Err)
	}
	lane, _ := h.Get("x-mw-dye")
	tp, _ := h.Get("traceparent")
	sc, err := tracectx.ParseTraceparent(tp)
	if lane != "beta" || err != nil {
		t.Fatalf("lane %q traceparent %q (%v)", lane, tp, err)
	}
	cs.OnResponseHeaders(wasmhost.NewHeaders(":status", "200"), true)
	cs.Close()
	span := waitSpans(t, sink, sc.TraceID.String(), 1)[0]
	if span.Attrs["mw.lane"] != "beta" {
		t.Errorf("span lane = %q", span.Attrs["mw.lane"])
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		evs := as.Events()
		if len(evs) > 0 {
			e := evs[0]
			if e.TraceID != sc.TraceID.String() || e.Dye != "beta" || e.Tenant != "retail" || e.Resource != "account/ACC-1" || e.Status != 200 {
				t.Errorf("audit record = %+v", e)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no audit record after 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// benchRequests runs b.N requests through run and reports p50 and p99.
func benchRequests(b *testing.B, run func()) {
	b.ReportAllocs()
	durs := make([]time.Duration, 0, b.N)
	for b.Loop() {
		t0 := time.Now()
		run()
		durs = append(durs, time.Since(t0))
	}
	slices.Sort(durs)
	if len(durs) > 0 {
		b.ReportMetric(float64(durs[len(durs)/2].Nanoseconds()), "p50-ns")
		b.ReportMetric(float64(durs[len(durs)*99/100].Nanoseconds()), "p99-ns")
	}
}

// request is one audited, dyed, traced request: headers in, response
// headers out, stream closed.
func chainRequest(b *testing.B, c *wasmhost.Chain) {
	cs, err := c.NewStream(context.Background(), wasmhost.StreamInfo{PeerURISAN: "spiffe://bank.example/ns/mesh/sa/gw", SourceAddress: "10.1.2.3:4000"})
	if err != nil {
		b.Fatal(err)
	}
	h := wasmhost.NewHeaders(":method", "PUT", ":path", "/v1/accounts/ACC-1/limits", "x-user-id", "u-42",
		"traceparent", kittest.Traceparent, "baggage", "k=v")
	if r := cs.OnRequestHeaders(h, true); r.Action != wasmhost.Continue {
		b.Fatalf("request: %v %v", r.Action, r.Err)
	}
	cs.OnResponseHeaders(wasmhost.NewHeaders(":status", "200"), true)
	cs.Close()
}

// modes are the two host configurations benchmarked side by side.
var modes = []struct {
	name string
	fast bool
}{{"deadline", false}, {"nodeadline", true}}

func BenchmarkHostChain(b *testing.B) {
	for _, m := range modes {
		for _, bundle := range []bool{false, true} {
			name := m.name + "/modules"
			if bundle {
				name = m.name + "/bundle"
			}
			b.Run(name, func(b *testing.B) {
				c, _, _ := newChainIn(b, m.fast, bundle, 100)
				benchRequests(b, func() { chainRequest(b, c) })
			})
		}
	}
}

func BenchmarkHostEach(b *testing.B) {
	for _, m := range modes {
		for _, name := range filters.Order() {
			b.Run(name+"/"+m.name, func(b *testing.B) {
				sink := otlpsink.New(100000)
				osrv := httptest.NewServer(sink)
				defer osrv.Close()
				asrv := httptest.NewServer(&kittest.AuditSink{})
				defer asrv.Close()
				caller := &wasmhost.NetHTTPCaller{Clusters: map[string]string{"mw-otlp": osrv.URL, "mw-audit": asrv.URL}}
				p, err := newPluginIn(b, m.fast, name, chainConfigs(b, 100)[name], caller, nil)
				if err != nil {
					b.Fatal(err)
				}
				benchRequests(b, func() { chainRequest(b, wasmhost.NewChain(p)) })
			})
		}
	}
}
