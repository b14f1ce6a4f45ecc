package nativefilters

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshwarden/meshwarden/filters"
	"github.com/meshwarden/meshwarden/filters/kit/kittest"
	"github.com/meshwarden/meshwarden/gateway/internal/guestbuild"
	"github.com/meshwarden/meshwarden/gateway/wasmhost"
	"github.com/meshwarden/meshwarden/internal/auditevent"
	"github.com/meshwarden/meshwarden/internal/testenv/otlpsink"
)

// The differential tests run the three filters natively and as wasm, on
// the same inputs through the same host, and compare everything they
// produce: request and response header edits, local replies, audit records
// and spans. Values that are random or clock-made by design (trace and span
// ids the trace filter draws, timestamps, latencies) are normalised: ids to
// placeholders numbered by first appearance, times to zero.

var builds = guestbuild.New("")

// filterWasm builds a filter's wasm main package once per test binary.
func filterWasm(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := builds.Build(name, "../../filters/"+name+"/wasm")
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// chainConfigs are the filters' plugin configurations: the dye example, an
// audit configuration with an audited op, a fail-closed op (callout and
// resume) and a PII block (local reply), and the trace filter exporting.
func chainConfigs(tb testing.TB) map[string][]byte {
	tb.Helper()
	dye, err := os.ReadFile("../../filters/dye/testdata/example-ingress.json")
	if err != nil {
		tb.Fatal(err)
	}
	audit := `{"rules":[
		{"methods":["PUT"],"path":{"pattern":"/v1/accounts/*/limits"},"opType":"LIMIT_CHANGE","resource":"account/{path.3}"},
		{"name":"transfers","methods":["POST"],"path":{"prefix":"/v1/transfers"},"opType":"FUND_TRANSFER","level":"critical","resource":"transfer/{header.idempotency-key}","failClosed":true},
		{"methods":["GET"],"path":{"prefix":"/v1/cards"},"opType":"CARD_READ","pii":{"action":"block","scan":["query"]}}],
		"collector":{"token":"t"},"batch":{"flushIntervalMs":10}}`
	tr := `{"serviceName":"gw","batch":{"flushIntervalMs":10}}`
	return map[string][]byte{"dye": dye, "audit": []byte(audit), "trace": []byte(tr)}
}

// world is one gateway host running the chain natively or as wasm.
type world struct {
	native bool
	chain  *wasmhost.Chain
	spans  *otlpsink.Sink
	audit  *kittest.AuditSink
}

func newWorld(tb testing.TB, native bool) *world { return newWorldPool(tb, native, 1) }

// newWorldPool is newWorld with pool instances per filter.
func newWorldPool(tb testing.TB, native bool, pool int) *world {
	tb.Helper()
	w := &world{native: native, spans: otlpsink.New(100000), audit: &kittest.AuditSink{}}
	osrv, asrv := httptest.NewServer(w.spans), httptest.NewServer(w.audit)
	tb.Cleanup(osrv.Close)
	tb.Cleanup(asrv.Close)
	caller := &wasmhost.NetHTTPCaller{Clusters: map[string]string{"mw-otlp": osrv.URL, "mw-audit": asrv.URL}}
	var rc wasmhost.RuntimeConfig
	if native {
		ctors := Constructors()
		for _, name := range filters.Order() {
			sum := sha256.Sum256(filterWasm(tb, name))
			rc.Native = append(rc.Native, wasmhost.NativeFilter{Name: name, SHA256: hex.EncodeToString(sum[:]), New: ctors[name]})
		}
	}
	rc.CacheDir = filepath.Join(os.TempDir(), "meshwarden-nativefilters-test-cache")
	rt, err := wasmhost.NewRuntime(context.Background(), rc)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = rt.Close(context.Background()) })
	cfgs := chainConfigs(tb)
	byName := map[string]*wasmhost.Plugin{}
	for _, name := range filters.Order() {
		mod, err := rt.Compile(context.Background(), filterWasm(tb, name))
		if err != nil {
			tb.Fatal(err)
		}
		want := map[bool]string{true: wasmhost.RuntimeNative, false: wasmhost.RuntimeWasm}[native]
		if mod.Runtime() != want {
			tb.Fatalf("%s: runtime %s, want %s", name, mod.Runtime(), want)
		}
		p, err := rt.NewPlugin(context.Background(), mod, wasmhost.PluginConfig{
			Name: name, VMID: name, Configuration: cfgs[name], HTTPCaller: caller, PoolSize: pool, Logger: logger(tb),
			CallTimeout: 10 * time.Second, PauseTimeout: 2 * time.Second, Properties: map[string][]byte{"node.id": []byte("gw-diff"), "node.cluster": []byte("meshwarden-gateway")},
		})
		if err != nil {
			tb.Fatalf("%s: %v", name, err)
		}
		tb.Cleanup(p.Close)
		byName[name] = p
	}
	if w.chain, err = wasmhost.OrderedChain(byName, filters.Order()); err != nil {
		tb.Fatal(err)
	}
	return w
}

func logger(tb testing.TB) *slog.Logger {
	if os.Getenv("NATIVEFILTERS_DEBUG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// diffRequest is one request of a differential case.
type diffRequest struct {
	Peer, Addr string
	Headers    [][2]string // request headers (pseudo-headers included)
	Body       string      // request body; "" = none
	Status     string      // upstream response :status
}

// outcome is what the chain did to one request, as compared.
type outcome struct {
	Action      string
	ReqHeaders  [][2]string `json:",omitempty"`
	Body        string      `json:",omitempty"`
	Reply       *reply
	RespHeaders [][2]string `json:",omitempty"`
	Err         string      `json:",omitempty"`
}

// run sends r through the chain and returns what happened.
func (w *world) run(tb testing.TB, r diffRequest) outcome {
	tb.Helper()
	cs, err := w.chain.NewStream(context.Background(), wasmhost.StreamInfo{PeerURISAN: r.Peer, SourceAddress: r.Addr, MTLS: r.Peer != ""})
	if err != nil {
		tb.Fatal(err)
	}
	defer cs.Close()
	h := &wasmhost.Headers{Pairs: slices.Clone(r.Headers)}
	res := cs.OnRequestHeaders(h, r.Body == "")
	if res.Action == wasmhost.Buffer && r.Body != "" {
		res = cs.OnRequestBody([]byte(r.Body), true)
	}
	o := outcome{Action: res.Action.String(), ReqHeaders: h.Pairs, Reply: toReply(res.Reply), Body: string(res.Body)}
	if res.Err != nil {
		o.Err = res.Err.Error()
	}
	if res.Action != wasmhost.Continue {
		return o
	}
	st := r.Status
	if st == "" {
		st = "200"
	}
	rh := wasmhost.NewHeaders(":status", st, "content-type", "application/json")
	rres := cs.OnResponseHeaders(rh, true)
	o.RespHeaders = rh.Pairs
	if rres.Action != wasmhost.Continue {
		o.Action += "/response-" + rres.Action.String()
		o.Reply = toReply(rres.Reply)
	}
	return o
}

// settleBoth waits until both worlds' audit records and spans stop
// changing (the filters flush on a 10 ms tick) and agree in number, or 5 s
// pass, and returns them. Requiring agreement keeps a record that is late
// in one world from being compared with the next input's.
func settleBoth(tb testing.TB, a, b *world, polls int) (ea []auditevent.Event, sa []otlpsink.Span, eb []auditevent.Event, sb []otlpsink.Span) {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Second)
	var last [4]int
	stable := 0
	for {
		ea, sa, eb, sb = a.audit.Events(), a.spans.Spans(""), b.audit.Events(), b.spans.Spans("")
		now := [4]int{len(ea), len(sa), len(eb), len(sb)}
		if now == last && now[0] == now[2] && now[1] == now[3] {
			stable++
		} else {
			stable = 0
		}
		if stable >= polls || time.Now().After(deadline) {
			return ea, sa, eb, sb
		}
		last = now
		time.Sleep(20 * time.Millisecond)
	}
}

// hexID matches the ids the filters draw: W3C trace ids (32 hex) and span
// ids (16 hex).
// reply is a local reply with its body as text (so ids in it normalise).
type reply struct {
	Status     int
	Headers    [][2]string
	Body       string
	Details    string
	GRPCStatus int32
}

func toReply(r *wasmhost.LocalReply) *reply {
	if r == nil {
		return nil
	}
	return &reply{Status: r.Status, Headers: r.Headers, Body: string(r.Body), Details: r.Details, GRPCStatus: r.GRPCStatus}
}

var hexID = regexp.MustCompile(`[0-9a-f]{32}|[0-9a-f]{16}`)

// normalise renders a world's observations with volatile values replaced:
// ids by placeholders in order of first appearance, times by zero.
func normalise(outs []outcome, evs []auditevent.Event, spans []otlpsink.Span) string {
	for i := range evs {
		evs[i].Timestamp, evs[i].LatencyNS = 0, 0
	}
	for i := range spans {
		spans[i].StartNS, spans[i].EndNS = 0, 0
		for k := range spans[i].Attrs {
			if strings.HasSuffix(k, "duration") || strings.HasSuffix(k, "_ns") {
				spans[i].Attrs[k] = "0"
			}
		}
	}
	b, _ := json.MarshalIndent(struct {
		Requests []outcome
		Audit    []auditevent.Event
		Spans    []otlpsink.Span
	}{outs, evs, spans}, "", " ")
	ids := map[string]string{}
	return hexID.ReplaceAllStringFunc(string(b), func(s string) string {
		if _, ok := ids[s]; !ok {
			ids[s] = fmt.Sprintf("<id%d/%d>", len(ids)+1, len(s))
		}
		return ids[s]
	})
}

// compare runs reqs in both worlds and fails with the first difference.
func compare(tb testing.TB, native, wasm *world, reqs []diffRequest) (n, w string) {
	tb.Helper()
	var on, ow []outcome
	for _, r := range reqs {
		on = append(on, native.run(tb, r))
		ow = append(ow, wasm.run(tb, r))
	}
	evn, spn, evw, spw := settleBoth(tb, native, wasm, 10)
	n, w = normalise(on, evn, spn), normalise(ow, evw, spw)
	if n != w {
		nl, wl := strings.Split(n, "\n"), strings.Split(w, "\n")
		for i := range max(len(nl), len(wl)) {
			var a, b string
			if i < len(nl) {
				a = nl[i]
			}
			if i < len(wl) {
				b = wl[i]
			}
			if a != b {
				tb.Fatalf("native and wasm differ at line %d:\nnative: %s\nwasm:   %s\n(native has %d lines, wasm %d)", i+1, a, b, len(nl), len(wl))
			}
		}
	}
	return n, w
}

func req(method, path string, kv ...string) [][2]string {
	h := [][2]string{{":method", method}, {":path", path}, {":authority", "bank.example"}, {":scheme", "https"}}
	for i := 0; i+1 < len(kv); i += 2 {
		h = append(h, [2]string{kv[i], kv[i+1]})
	}
	return h
}

const incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

// Every request that reaches the dye example's 10 % split carries the
// sticky key x-user-id: without one the split draws at random (by design),
// which two runs need not agree on.

// TestDifferential runs a table of requests natively and as wasm and
// requires the same header edits, local replies, audit records and spans.
func TestDifferential(t *testing.T) {
	mesh, retail, ops := "spiffe://bank.example/ns/mesh/sa/gw", "spiffe://bank.example/ns/retail/sa/web", "spiffe://bank.example/ns/ops/sa/admin"
	cases := []struct {
		name string
		reqs []diffRequest
	}{
		{"audited limit change, traced", []diffRequest{{Peer: mesh, Headers: req("PUT", "/v1/accounts/ACC-1/limits", "x-user-id", "u-42", "traceparent", incoming, "baggage", "k=v")}}},
		{"beta tester, new trace", []diffRequest{{Peer: retail, Headers: req("GET", "/v1/accounts/ACC-2", "x-beta", "1", "x-user-id", "u-1")}}},
		{"spoofed dye from an untrusted peer", []diffRequest{{Peer: "spiffe://evil.example/x", Addr: "192.0.2.7:1234", Headers: req("GET", "/x", "x-mw-dye", "canary", "baggage", "mw-dye=canary,a=b")}}},
		{"carried dye from a trusted peer", []diffRequest{{Peer: mesh, Headers: req("GET", "/x", "x-mw-dye", "beta", "baggage", "mw-dye=beta")}}},
		{"trusted by source address", []diffRequest{{Addr: "10.1.9.9:5000", Headers: req("GET", "/x", "x-mw-dye", "beta")}}},
		{"ops lane", []diffRequest{{Peer: ops, Headers: req("GET", "/status")}}},
		{"retail v2 lane", []diffRequest{{Peer: retail, Headers: req("POST", "/v2/orders", "x-user-id", "u-9")}}},
		{"sticky split by user", func() []diffRequest {
			var rs []diffRequest
			for i := range 20 {
				rs = append(rs, diffRequest{Peer: retail, Headers: req("GET", "/v1/accounts/A", "x-user-id", fmt.Sprintf("user-%03d", i))})
			}
			return rs
		}()},
		{"fail-closed transfer: callout, ack, resume", []diffRequest{{Peer: retail, Headers: req("POST", "/v1/transfers", "idempotency-key", "k-1", "traceparent", incoming, "content-type", "application/json"), Body: `{"amount":10}`}}},
		{"PII in the query: local reply", []diffRequest{{Peer: retail, Headers: req("GET", "/v1/cards?pan=4111111111111111", "traceparent", incoming)}}},
		{"upstream error status", []diffRequest{{Peer: mesh, Headers: req("PUT", "/v1/accounts/ACC-3/limits", "x-user-id", "u-3", "traceparent", incoming), Status: "503"}}},
		{"malformed traceparent and B3", []diffRequest{{Peer: mesh, Headers: req("GET", "/x", "traceparent", "00-zz-yy-01", "b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1")}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n, _ := compare(t, newWorld(t, true), newWorld(t, false), tc.reqs)
			if !strings.Contains(n, `"Action"`) {
				t.Fatalf("nothing observed: %s", n)
			}
			if testing.Verbose() {
				t.Log(n)
			}
		})
	}
}

// FuzzDifferential sends fuzzed requests through the native and the wasm
// chain (one pair of worlds for the whole run) and requires the same
// outcome, audit records and spans for each.
func FuzzDifferential(f *testing.F) {
	f.Add(uint8(0), "PUT", "/v1/accounts/ACC-1/limits", "u-42", "", "", incoming, "")
	f.Add(uint8(1), "GET", "/v1/accounts/A?x=1", "u-7", "canary", "mw-dye=canary,k=v", "", "")
	f.Add(uint8(2), "POST", "/v2/orders", "u-9", "beta", "", "00-zz", `{"a":1}`)
	f.Add(uint8(3), "GET", "/v1/cards?pan=4111111111111111", "", "", "", incoming, "")
	f.Add(uint8(4), "POST", "/v1/transfers", "u-1", "", "mw-dye=ops", incoming, `{"amount":1}`)
	f.Add(uint8(5), "DELETE", "/%zz/..//x", "\x00", "UPPER", "a=%ZZ", "ff-00000000000000000000000000000000-0000000000000000-00", "")
	peers := []string{"", "spiffe://bank.example/ns/mesh/sa/gw", "spiffe://bank.example/ns/retail/sa/web",
		"spiffe://bank.example/ns/ops/sa/admin", "spiffe://evil.example/x", "not a uri"}
	// One pair of worlds for the whole run.
	native, wasm := newWorld(f, true), newWorld(f, false)
	var nSeen, wSeen [2]int // audit records and spans already compared
	f.Fuzz(func(t *testing.T, peer uint8, method, path, user, dye, baggage, traceparent, body string) {
		// The sticky key is always set: without one the dye filter's split
		// draws at random, by design, and the two worlds may differ.
		h := req(method, path, "x-user-id", "u-"+user, "x-mw-dye", dye, "baggage", baggage, "traceparent", traceparent,
			"idempotency-key", "k", "content-type", "application/json")
		if len(method) == 0 || len(path) == 0 || len(body) > 4096 {
			return
		}
		r := diffRequest{Peer: peers[int(peer)%len(peers)], Addr: "10.1.2.3:4000", Headers: h, Body: body}
		on, ow := native.run(t, r), wasm.run(t, r)
		evn, spn, evw, spw := settleBoth(t, native, wasm, 5)
		n := normalise([]outcome{on}, evn[min(nSeen[0], len(evn)):], spn[min(nSeen[1], len(spn)):])
		w := normalise([]outcome{ow}, evw[min(wSeen[0], len(evw)):], spw[min(wSeen[1], len(spw)):])
		nSeen, wSeen = [2]int{len(evn), len(spn)}, [2]int{len(evw), len(spw)}
		if n != w {
			t.Fatalf("native and wasm differ for %+v:\nnative: %s\nwasm:   %s", r, n, w)
		}
	})
}

// TestNativeChainConcurrent runs the three filters natively on four
// instances each from four goroutines at once: with -race it shows that the
// filters and the SDK keep no state shared between instances.
func TestNativeChainConcurrent(t *testing.T) {
	w := newWorldPool(t, true, 4)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 50 {
				user := fmt.Sprintf("u-%d-%d", g, i)
				o := w.run(t, diffRequest{Peer: "spiffe://bank.example/ns/retail/sa/web",
					Headers: req("PUT", "/v1/accounts/ACC-1/limits", "x-user-id", user, "traceparent", incoming)})
				if o.Action != "continue" || len(o.RespHeaders) == 0 {
					t.Errorf("request %s: %+v", user, o)
					return
				}
			}
		})
	}
	wg.Wait()
	evs, _, _, _ := settleBoth(t, w, w, 5)
	if len(evs) != 200 {
		t.Errorf("%d audit records for 200 audited requests", len(evs))
	}
}
