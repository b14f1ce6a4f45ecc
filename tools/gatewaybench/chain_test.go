package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/meshwarden/meshwarden/internal/meshnames"

	"github.com/meshwarden/meshwarden/filters"
	"github.com/meshwarden/meshwarden/gateway/modulefetch"
	"github.com/meshwarden/meshwarden/gateway/nativefilters"
	"github.com/meshwarden/meshwarden/gateway/wasmhost"
)

// BenchmarkChain measures the product chain (dye → audit → trace) in the
// wasm host alone, without HTTP: one request lifecycle as the gateway drives
// it (stream, request headers, response headers, response body, close).
//
// Modes: native (the filters' Go code linked in, as the gateway runs the
// official builds by default), deadline (wasm, per-call deadlines: the
// gateway's wasm default) and no-deadline (wasm, deadlines off).
//
//	go test -run '^$' -bench Chain -benchtime 2000x ./tools/gatewaybench
func BenchmarkChain(b *testing.B) {
	dir := b.TempDir()
	if err := buildFilters(dir); err != nil {
		b.Fatal(err)
	}
	if err := buildGuest(dir); err != nil {
		b.Fatal(err)
	}
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200) }))
	defer sink.Close()
	caller := &wasmhost.NetHTTPCaller{Clusters: map[string]string{meshnames.AuditClusterName: sink.URL, meshnames.OTLPClusterName: sink.URL}}
	// native: the same modules' sha256 listed as native filters, so the
	// chain runs the filters' Go code linked into this binary (the
	// gateway's default for official builds; here any build of this source).
	var native []wasmhost.NativeFilter
	for name, ctor := range nativefilters.Constructors() {
		wasm, err := os.ReadFile(filepath.Join(dir, name+".wasm"))
		if err != nil {
			b.Fatal(err)
		}
		native = append(native, wasmhost.NativeFilter{Name: name, SHA256: modulefetch.Sum(wasm), New: ctor})
	}
	for _, mode := range []string{"native", "deadline", "no-deadline"} {
		name := mode
		ctx := context.Background()
		rc := wasmhost.RuntimeConfig{CacheDir: filepath.Join(dir, "cache"), NoCallDeadline: mode == "no-deadline"}
		if mode == "native" {
			rc.Native = native
		}
		rt, err := wasmhost.NewRuntime(ctx, rc)
		if err != nil {
			b.Fatal(err)
		}
		chains := map[string][]string{"dye+audit+trace": filters.Order(), "3xheaders": {"headers", "headers", "headers"}}
		for _, cname := range []string{"dye+audit+trace", "3xheaders"} {
			var plugins []*wasmhost.Plugin
			for i, f := range chains[cname] {
				wasm, err := os.ReadFile(filepath.Join(dir, f+".wasm"))
				if err != nil {
					b.Fatal(err)
				}
				mod, err := rt.Compile(ctx, wasm)
				if err != nil {
					b.Fatal(err)
				}
				conf := filterConfigs[f]
				if conf == "" {
					conf = "{}"
				}
				p, err := rt.NewPlugin(ctx, mod, wasmhost.PluginConfig{Name: f + strconv.Itoa(i), RootID: f, VMID: f + strconv.Itoa(i), Configuration: []byte(conf),
					HTTPCaller: caller, LogLevel: wasmhost.LogWarn, PoolSize: 2})
				if err != nil {
					b.Fatal(err)
				}
				defer p.Close()
				plugins = append(plugins, p)
			}
			chain := wasmhost.NewChain(plugins...)
			if mode == "native" && cname != "dye+audit+trace" {
				continue // the header guest has no native build
			}
			b.Run(cname+"/"+name, func(b *testing.B) {
				body := []byte(`{"ok":true,"service":"upstream"}`)
				b.ReportAllocs()
				durs := make([]time.Duration, 0, b.N)
				for b.Loop() {
					t0 := time.Now()
					cs, err := chain.NewStream(ctx, wasmhost.StreamInfo{SourceAddress: "127.0.0.1:5555", DestinationAddress: "127.0.0.1:10000"})
					if err != nil {
						b.Fatal(err)
					}
					req := wasmhost.NewHeaders(":method", "GET", ":path", "/accounts/1", ":authority", "shop", ":scheme", "http", "user-agent", "bench")
					if r := cs.OnRequestHeaders(req, true); r.Action != wasmhost.Continue {
						b.Fatalf("request headers: %v %v", r.Action, r.Err)
					}
					resp := wasmhost.NewHeaders(":status", "200", "content-type", "application/json")
					if r := cs.OnResponseHeaders(resp, false); r.Action != wasmhost.Continue {
						b.Fatalf("response headers: %v %v", r.Action, r.Err)
					}
					cs.OnResponseBody(body, true)
					cs.Close()
					durs = append(durs, time.Since(t0))
				}
				slices.Sort(durs)
				if len(durs) > 0 {
					b.ReportMetric(float64(durs[len(durs)/2].Nanoseconds())/1e3, "p50-µs")
					b.ReportMetric(float64(durs[len(durs)*99/100].Nanoseconds())/1e3, "p99-µs")
				}
			})
		}
		_ = rt.Close(ctx)
	}
}
