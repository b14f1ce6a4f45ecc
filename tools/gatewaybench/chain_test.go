package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
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
	set := newChainSet(b)
	for _, mode := range []string{"native", "deadline", "no-deadline"} {
		chains := set.chains(b, mode)
		for _, cname := range []string{"dye+audit+trace", "3xheaders"} {
			chain := chains[cname]
			if chain == nil {
				continue // the header guest has no native build
			}
			b.Run(cname+"/"+mode, func(b *testing.B) {
				b.ReportAllocs()
				durs := make([]time.Duration, 0, b.N)
				for b.Loop() {
					durs = append(durs, chainRequest(b, chain))
				}
				if len(durs) > 0 {
					b.ReportMetric(float64(pct(durs, 50).Nanoseconds())/1e3, "p50-µs")
					b.ReportMetric(float64(pct(durs, 99).Nanoseconds())/1e3, "p99-µs")
				}
			})
		}
	}
}

// BenchmarkChainPaired runs the product chain in wasm with per-call
// deadlines on and off in one process, interleaved in blocks of
// pairedBlock requests (which goes first alternates), so the load of a
// shared machine falls on both alike; separate sub-benchmarks run minutes
// apart. It reports each side's p50 and their ratio (on/off-p50): issue
// 18's "deadlines cost nothing" figure.
//
//	go test -run '^$' -bench ChainPaired -benchtime 6000x ./tools/gatewaybench
func BenchmarkChainPaired(b *testing.B) {
	set := newChainSet(b)
	on, off := set.chains(b, "deadline")["dye+audit+trace"], set.chains(b, "no-deadline")["dye+audit+trace"]
	for range 200 { // warm both
		chainRequest(b, on)
		chainRequest(b, off)
	}
	var dOn, dOff []time.Duration
	n := 0
	for b.Loop() {
		// Blocks, not single requests: alternating every request would
		// make each chain evict the other's code from the CPU caches.
		first, second := on, off
		if n/(2*pairedBlock)%2 == 1 {
			first, second = off, on
		}
		c := first
		if n/pairedBlock%2 == 1 {
			c = second
		}
		if c == on {
			dOn = append(dOn, chainRequest(b, c))
		} else {
			dOff = append(dOff, chainRequest(b, c))
		}
		n++
	}
	if len(dOn) == 0 || len(dOff) == 0 {
		b.Fatalf("%d iterations: run at least %d (-benchtime %dx) to measure both sides", n, pairedBlock+1, 4*pairedBlock)
	}
	pOn, pOff := pct(dOn, 50), pct(dOff, 50)
	b.ReportMetric(float64(pOn.Nanoseconds())/1e3, "on-p50-µs")
	b.ReportMetric(float64(pOff.Nanoseconds())/1e3, "off-p50-µs")
	b.ReportMetric(float64(pOn)/float64(pOff), "on/off-p50")
}

// pairedBlock is how many requests BenchmarkChainPaired sends through one
// chain before switching to the other.
const pairedBlock = 250

// chainSet is what every chain of the benchmarks shares: the built modules
// and header guest, a sink for the audit and trace batches, and the native
// filters (the same modules' sha256 listed as native, so a native chain runs
// the filters' Go code linked into this binary: the gateway's default for
// official builds; here any build of this source).
type chainSet struct {
	dir    string
	caller *wasmhost.NetHTTPCaller
	native []wasmhost.NativeFilter
}

func newChainSet(b *testing.B) *chainSet {
	dir := b.TempDir()
	if err := buildFilters(dir); err != nil {
		b.Fatal(err)
	}
	if err := buildGuest(dir); err != nil {
		b.Fatal(err)
	}
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200) }))
	b.Cleanup(sink.Close)
	set := &chainSet{dir: dir, caller: &wasmhost.NetHTTPCaller{Clusters: map[string]string{meshnames.AuditClusterName: sink.URL, meshnames.OTLPClusterName: sink.URL}}}
	for name, ctor := range nativefilters.Constructors() {
		wasm, err := os.ReadFile(filepath.Join(dir, name+".wasm"))
		if err != nil {
			b.Fatal(err)
		}
		set.native = append(set.native, wasmhost.NativeFilter{Name: name, SHA256: modulefetch.Sum(wasm), New: ctor})
	}
	return set
}

// chains starts a runtime in mode (native: the filters' Go code; deadline:
// wasm with per-call deadlines, the gateway's wasm default; no-deadline:
// wasm without) and its chains: "dye+audit+trace" and, except natively,
// "3xheaders" (three copies of the small header guest). The runtime and
// plugins close when the benchmark ends.
func (set *chainSet) chains(b *testing.B, mode string) map[string]*wasmhost.Chain {
	ctx := context.Background()
	rc := wasmhost.RuntimeConfig{CacheDir: filepath.Join(set.dir, "cache"), NoCallDeadline: mode == "no-deadline"}
	if mode == "native" {
		rc.Native = set.native
	}
	rt, err := wasmhost.NewRuntime(ctx, rc)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = rt.Close(ctx) }) // registered first: runs after the plugins' Close
	names := map[string][]string{"dye+audit+trace": filters.Order(), "3xheaders": {"headers", "headers", "headers"}}
	out := map[string]*wasmhost.Chain{}
	for cname, fs := range names {
		if mode == "native" && cname != "dye+audit+trace" {
			continue
		}
		var plugins []*wasmhost.Plugin
		for i, f := range fs {
			wasm, err := os.ReadFile(filepath.Join(set.dir, f+".wasm"))
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
				HTTPCaller: set.caller, LogLevel: wasmhost.LogWarn, PoolSize: 2})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { p.Close() })
			plugins = append(plugins, p)
		}
		out[cname] = wasmhost.NewChain(plugins...)
	}
	return out
}

// chainRequest drives one request lifecycle through chain as the gateway
// does (stream, request headers, response headers, response body, close)
// and returns how long it took.
func chainRequest(b *testing.B, chain *wasmhost.Chain) time.Duration {
	t0 := time.Now()
	cs, err := chain.NewStream(context.Background(), wasmhost.StreamInfo{SourceAddress: "127.0.0.1:5555", DestinationAddress: "127.0.0.1:10000"})
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
	cs.OnResponseBody([]byte(`{"ok":true,"service":"upstream"}`), true)
	cs.Close()
	return time.Since(t0)
}
