package proxywasm_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/meshwarden/meshwarden/filters/kit/kittest"
	"github.com/meshwarden/meshwarden/gateway/wasmhost"
)

func benchPlugin(b *testing.B, rt *wasmhost.Runtime, name string, wasm []byte) *wasmhost.Plugin {
	b.Helper()
	mod, err := rt.Compile(context.Background(), wasm)
	if err != nil {
		b.Fatal(err)
	}
	p, err := rt.NewPlugin(context.Background(), mod, wasmhost.PluginConfig{Name: name, PoolSize: 1})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(p.Close)
	return p
}

// oneRequest runs a request lifecycle (context create, request headers,
// response headers, done, log, delete), as gateway/wasmhost's
// BenchmarkRequest does, and returns how long it took.
func oneRequest(b *testing.B, p *wasmhost.Plugin, key string) time.Duration {
	h := wasmhost.NewHeaders(":method", "GET", ":path", "/p?q=1", ":authority", "example.test", ":scheme", "http",
		"x-mw-dye", "canary", "user-agent", "bench", "accept", "*/*")
	rh := wasmhost.NewHeaders(":status", "200", "content-type", "text/plain", "content-length", "5")
	start := time.Now()
	s, err := p.NewStream(context.Background(), wasmhost.StreamInfo{})
	if err != nil {
		b.Fatal(err)
	}
	if res := s.OnRequestHeaders(h, true); res.Action != wasmhost.Continue {
		b.Fatalf("request headers: %v %v", res.Action, res.Err)
	}
	if res := s.OnResponseHeaders(rh, false); res.Action != wasmhost.Continue {
		b.Fatalf("response headers: %v %v", res.Action, res.Err)
	}
	s.Close()
	d := time.Since(start)
	if key != "" {
		if _, ok := h.Get(key); !ok {
			b.Fatalf("filter did not set %s: %v", key, h.Pairs)
		}
	}
	return d
}

// BenchmarkABIOverhead prices this package's layer: each iteration runs one
// request through a raw guest (hand-written //go:wasmexport functions, the
// host's test guests) and one through the same filter written with
// proxywasm, alternately, on a compiler-mode host without call deadlines.
// Pairing the two in one loop keeps the ratio meaningful on a loaded
// machine. Reported: raw-ns/req, sdk-ns/req and sdk/raw.
func BenchmarkABIOverhead(b *testing.B) {
	for _, bc := range []struct {
		name, raw, sdk, key string
	}{
		{"noop", "../../gateway/wasmhost/testdata/guests/noop", "../internal/testguests/noop/wasm", ""},
		{"headers", "../../gateway/wasmhost/testdata/guests/headers", "./testdata/benchheaders", "x-mw-lane"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			rt, err := wasmhost.NewRuntime(context.Background(), wasmhost.RuntimeConfig{NoCallDeadline: true})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = rt.Close(context.Background()) })
			raw := benchPlugin(b, rt, "raw", kittest.MustBuild(b, bc.raw))
			sdk := benchPlugin(b, rt, "sdk", kittest.MustBuild(b, bc.sdk))
			for range 100 { // warm both instances
				oneRequest(b, raw, bc.key)
				oneRequest(b, sdk, bc.key)
			}
			var tRaw, tSDK time.Duration
			n := 0
			b.ResetTimer()
			for b.Loop() {
				// Alternate which goes first, so neither profits from the
				// other's warm caches.
				if n%2 == 0 {
					tRaw += oneRequest(b, raw, bc.key)
					tSDK += oneRequest(b, sdk, bc.key)
				} else {
					tSDK += oneRequest(b, sdk, bc.key)
					tRaw += oneRequest(b, raw, bc.key)
				}
				n++
			}
			b.ReportMetric(float64(tRaw.Nanoseconds())/float64(n), "raw-ns/req")
			b.ReportMetric(float64(tSDK.Nanoseconds())/float64(n), "sdk-ns/req")
			b.ReportMetric(float64(tSDK)/float64(tRaw), "sdk/raw")
			if testing.Verbose() {
				fmt.Printf("%s: raw %v, sdk %v per request\n", bc.name, tRaw/time.Duration(n), tSDK/time.Duration(n))
			}
		})
	}
}
