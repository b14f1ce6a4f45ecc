package proxywasm_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/meshwarden/meshwarden/filters/kit/kittest"
	"github.com/meshwarden/meshwarden/gateway/wasmhost"
)

// These tests build testdata/abiguest (a filter written against this
// package) with the standard toolchain and run it in the real host,
// gateway/wasmhost: they check the wasm side of the package (imports,
// exports, serialization, pinning) that native tests cannot reach.

// guests builds testdata/abiguest once per test binary; each test compiles
// it in a runtime of its own, through a compilation cache they share.
var guests kittest.Guests

func TestMain(m *testing.M) { guests.Main(m) }

func abiguest(t *testing.T) []byte {
	t.Helper()
	if testing.Short() {
		t.Skip("builds a wasm module")
	}
	return guests.Wasm(t, "./testdata/abiguest")
}

type fixture struct {
	rt   *wasmhost.Runtime
	p    *wasmhost.Plugin
	logs *kittest.LogSink
}

func newFixture(t *testing.T, config string) *fixture {
	t.Helper()
	ctx := context.Background()
	rt, err := wasmhost.NewRuntime(ctx, wasmhost.RuntimeConfig{CacheDir: guests.CacheDir(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.Close(ctx) })
	mod, err := rt.Compile(ctx, abiguest(t))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusAccepted)
		fmt.Fprintf(w, "hello %s from=%s", r.URL.Path, r.Header.Get("x-from"))
	}))
	t.Cleanup(srv.Close)
	l := &kittest.LogSink{}
	p, err := rt.NewPlugin(ctx, mod, wasmhost.PluginConfig{
		Name:            "abiguest",
		Configuration:   []byte(config),
		VMConfiguration: []byte("vm-config"),
		PoolSize:        2,
		// A guard against a stuck guest, generous because the CI machine is
		// shared and the pin case runs the GC repeatedly.
		CallTimeout: 10 * time.Second,
		HTTPCaller:  &wasmhost.NetHTTPCaller{Clusters: map[string]string{"upstream": srv.URL}},
		Logger:      slog.New(l),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return &fixture{rt: rt, p: p, logs: l}
}

func request(test string, kv ...string) *wasmhost.Headers {
	return wasmhost.NewHeaders(append([]string{
		":method", "GET", ":path", "/p?q=1", ":authority", "example.test", ":scheme", "http", "x-test", test,
	}, kv...)...)
}

func TestWasmHostcalls(t *testing.T) {
	f := newFixture(t, "cfg-1")
	info := wasmhost.StreamInfo{SourceAddress: "10.1.2.3:4567", PeerURISAN: "spiffe://mesh/ns/default/sa/web"}
	tests := []struct {
		test string
		kv   []string
		want map[string]string
	}{
		{"headers", []string{"x-del", "1", "x-multi", "a"}, map[string]string{
			"x-got-num": "7/7/ok", "x-got-eos": "true", "x-got-absent": "not-found",
			"x-got-path": "/p?q=1", "x-got-config": "cfg-1", "x-del": "",
		}},
		{"setpairs", []string{"x-drop-a", "1", "x-drop-b", "2"}, map[string]string{
			"x-got-setpairs": "3", "x-drop-a": "", "x-test": "setpairs",
		}},
		{"properties", nil, map[string]string{
			"x-got-source": "10.1.2.3:4567/ok", "x-got-peer": "spiffe://mesh/ns/default/sa/web/ok",
			"x-got-plugin": "abiguest/ok", "x-got-missing": "not-found", "x-got-setprop": "ok/v1/ok",
		}},
		{"shared", nil, map[string]string{"x-got-shared": "not-found,ok,v1/ok,ok,cas-mismatch,v2"}},
		{"queue", nil, map[string]string{"x-got-queue": "true/ok,empty,ok,item1/ok,not-found"}},
		{"metrics", nil, map[string]string{"x-got-metrics": "2,7"}},
		{"time", nil, map[string]string{"x-got-time": "true"}},
		{"log", nil, map[string]string{"x-got-loglevel": "trace/ok"}},
		{"callout", nil, map[string]string{
			"x-got-callout-body": "hello /callout from=abiguest/ok", "x-got-callout-status": "202/true",
		}},
		{"callout-bad", nil, map[string]string{"x-got-callout-err": "bad-argument"}},
		{"pin", []string{"x-big", strings.Repeat("b", 200_000)}, map[string]string{"x-got-pin": "true/200000"}},
	}
	for _, tt := range tests {
		t.Run(tt.test, func(t *testing.T) {
			s, err := f.p.NewStream(context.Background(), info)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			h := request(tt.test, tt.kv...)
			res := s.OnRequestHeaders(h, true)
			if res.Err != nil || res.Action != wasmhost.Continue {
				t.Fatalf("OnRequestHeaders = %v, %v; want continue", res.Action, res.Err)
			}
			for k, want := range tt.want {
				got, _ := h.Get(k)
				if got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
		})
	}
	if !f.logs.Contains("abiguest: started with cfg-1") {
		t.Error("the info log of OnPluginStart did not reach the host")
	}
	for _, m := range []string{"abiguest warn", "abiguest error x", "abiguest debug 1"} {
		if !f.logs.Contains(m) {
			t.Errorf("log %q did not reach the host", m)
		}
	}
}

func TestWasmResponseAndStreamDone(t *testing.T) {
	f := newFixture(t, "cfg")
	s, err := f.p.NewStream(context.Background(), wasmhost.StreamInfo{})
	if err != nil {
		t.Fatal(err)
	}
	h := request("headers", "x-multi", "a")
	if res := s.OnRequestHeaders(h, false); res.Action != wasmhost.Continue {
		t.Fatalf("request headers: %v %v", res.Action, res.Err)
	}
	if got := h.Values("x-multi"); strings.Join(got, ",") != "a,b" {
		t.Errorf("x-multi = %v, want [a b] (AddHttpRequestHeader keeps the first value)", got)
	}
	if got, _ := h.Get("x-got-eos"); got != "false" {
		t.Errorf("x-got-eos = %q, want false", got)
	}
	rh := wasmhost.NewHeaders(":status", "200", "server", "upstream")
	if res := s.OnResponseHeaders(rh, true); res.Action != wasmhost.Continue {
		t.Fatalf("response headers: %v %v", res.Action, res.Err)
	}
	for k, want := range map[string]string{"x-abiguest": "headers", "x-got-status": "200/ok", "server": ""} {
		if got, _ := rh.Get(k); got != want {
			t.Errorf("response %s = %q, want %q", k, got, want)
		}
	}
	s.Close()
	if !f.logs.Contains("done (headers)") {
		t.Error("OnHttpStreamDone did not run at the end of the stream (proxy_on_log)")
	}
}

func TestWasmLocalReply(t *testing.T) {
	f := newFixture(t, "cfg")
	s, err := f.p.NewStream(context.Background(), wasmhost.StreamInfo{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	res := s.OnRequestHeaders(request("local"), true)
	if res.Action != wasmhost.Reply || res.Reply == nil {
		t.Fatalf("action %v, reply %v; want a local reply", res.Action, res.Reply)
	}
	if res.Reply.Status != 403 || string(res.Reply.Body) != "denied by abiguest" || res.Reply.GRPCStatus != -1 {
		t.Errorf("reply = %d %q grpc %d", res.Reply.Status, res.Reply.Body, res.Reply.GRPCStatus)
	}
	found := false
	for _, p := range res.Reply.Headers {
		found = found || p == [2]string{"x-local", "yes"}
	}
	if !found {
		t.Errorf("reply headers %v lack x-local: yes", res.Reply.Headers)
	}
}

func TestWasmBodyBuffering(t *testing.T) {
	f := newFixture(t, "cfg")
	s, err := f.p.NewStream(context.Background(), wasmhost.StreamInfo{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if res := s.OnRequestHeaders(request("body"), false); res.Action != wasmhost.Continue {
		t.Fatalf("headers: %v %v", res.Action, res.Err)
	}
	if res := s.OnRequestBody([]byte("hello "), false); res.Action != wasmhost.Buffer {
		t.Fatalf("first chunk: %v %v, want buffer", res.Action, res.Err)
	}
	res := s.OnRequestBody([]byte("world"), true)
	if res.Action != wasmhost.Continue || res.Err != nil {
		t.Fatalf("last chunk: %v %v", res.Action, res.Err)
	}
	if got, want := string(res.Body), "prepended|HELLO WORLD|appended"; got != want {
		t.Errorf("body = %q, want %q", got, want)
	}
}

func TestWasmTrailersAndResponseBody(t *testing.T) {
	f := newFixture(t, "cfg")
	s, err := f.p.NewStream(context.Background(), wasmhost.StreamInfo{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if res := s.OnRequestHeaders(request("trailers"), false); res.Action != wasmhost.Continue {
		t.Fatalf("headers: %v %v", res.Action, res.Err)
	}
	rt := wasmhost.NewHeaders("x-t", "v", "x-keep", "1")
	if res := s.OnRequestTrailers(rt); res.Action != wasmhost.Continue || res.Err != nil {
		t.Fatalf("request trailers: %v %v", res.Action, res.Err)
	}
	if got, _ := rt.Get("x-got-trailer"); got != "v/ok/2/2/ok" {
		t.Errorf("x-got-trailer = %q, want v/ok/2/2/ok", got)
	}
	if _, ok := rt.Get("x-t"); ok {
		t.Error("RemoveHttpRequestTrailer did not remove x-t")
	}
	if res := s.OnResponseHeaders(wasmhost.NewHeaders(":status", "200"), false); res.Action != wasmhost.Continue {
		t.Fatalf("response headers: %v %v", res.Action, res.Err)
	}
	if res := s.OnResponseBody([]byte("abc"), false); res.Action != wasmhost.Buffer {
		t.Fatalf("first response chunk: %v %v, want buffer", res.Action, res.Err)
	}
	res := s.OnResponseBody([]byte("def"), true)
	if res.Action != wasmhost.Continue || string(res.Body) != "ABCDEF!" {
		t.Fatalf("response body: %v %q %v, want continue ABCDEF!", res.Action, res.Body, res.Err)
	}
	tt := wasmhost.NewHeaders("grpc-status", "2")
	if res := s.OnResponseTrailers(tt); res.Action != wasmhost.Continue || res.Err != nil {
		t.Fatalf("response trailers: %v %v", res.Action, res.Err)
	}
	if got := tt.Pairs; len(got) != 2 || got[0] != [2]string{"grpc-status", "0"} || got[1] != [2]string{"x-got-resp-trailers", "1"} {
		t.Errorf("response trailers = %q", got)
	}
}

func TestWasmPanicFailsClosed(t *testing.T) {
	f := newFixture(t, "cfg")
	s, err := f.p.NewStream(context.Background(), wasmhost.StreamInfo{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	res := s.OnRequestHeaders(request("panic"), true)
	if res.Err == nil || res.Action != wasmhost.Reply || res.Reply == nil || res.Reply.Status != 503 {
		t.Fatalf("a panicking filter: action %v err %v; want a fail-closed 503", res.Action, res.Err)
	}
}

func TestWasmPluginStartFails(t *testing.T) {
	ctx := context.Background()
	rt, err := wasmhost.NewRuntime(ctx, wasmhost.RuntimeConfig{CacheDir: guests.CacheDir(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close(ctx)
	mod, err := rt.Compile(ctx, abiguest(t))
	if err != nil {
		t.Fatal(err)
	}
	p, err := rt.NewPlugin(ctx, mod, wasmhost.PluginConfig{Name: "abiguest", Configuration: []byte("fail"), VMConfiguration: []byte("x"), PoolSize: 1})
	if err == nil {
		p.Close()
		t.Fatal("NewPlugin succeeded; want the guest's OnPluginStartStatusFailed to refuse the configuration")
	}
}
