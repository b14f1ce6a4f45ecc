//go:build !wasip1

package trace_test

import (
	"context"
	"net/http/httptest"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/meshwarden/meshwarden/filters/kit/kittest"
	"github.com/meshwarden/meshwarden/gateway/wasmhost"
)

// BenchmarkBundleVersus runs chainRequest's request through the dye → audit
// → trace chain of two bundle modules in one process, interleaved: "old" is
// the .wasm file MW_OLD_BUNDLE names (e.g. the bundle of an earlier commit,
// built with `make filters` there), "new" is MW_NEW_BUNDLE or, unset, the
// bundle built from this tree. The iterations alternate between the two
// chains in blocks of versusBlock requests, so both see the same machine
// load; it reports each chain's p50 and p99 (old-p50-ns, new-p50-ns, …) and
// old-p50 ÷ new-p50 (speedup); ns/op is the mean of both. Each mode is a host with and without
// per-call deadlines. Skipped without MW_OLD_BUNDLE.
//
//	MW_OLD_BUNDLE=/tmp/old.wasm go test -run '^$' -bench BundleVersus -count 6 ./filters/trace/
func BenchmarkBundleVersus(b *testing.B) {
	oldPath := os.Getenv("MW_OLD_BUNDLE")
	if oldPath == "" {
		b.Skip("MW_OLD_BUNDLE names no bundle module to compare with")
	}
	read := func(path string) []byte {
		w, err := os.ReadFile(path)
		if err != nil {
			b.Fatal(err)
		}
		return w
	}
	oldWasm := read(oldPath)
	newWasm := guests.Wasm(b, "../bundle/wasm")
	if p := os.Getenv("MW_NEW_BUNDLE"); p != "" {
		newWasm = read(p)
	}
	for _, m := range modes {
		b.Run(m.name, func(b *testing.B) {
			rt, err := wasmhost.NewRuntime(context.Background(), wasmhost.RuntimeConfig{CacheDir: guests.CacheDir(b), NoCallDeadline: m.fast})
			if err != nil {
				b.Fatal(err)
			}
			// Registered before the plugins' own cleanups, so it runs after them.
			b.Cleanup(func() { _ = rt.Close(context.Background()) })
			var chains [2]*wasmhost.Chain
			for i, w := range [2][]byte{oldWasm, newWasm} {
				mod, err := rt.Compile(context.Background(), w)
				if err != nil {
					b.Fatalf("bundle %d: %v", i, err)
				}
				chains[i] = bundleChain(b, rt, mod)
			}
			for range 200 { // warm both
				chainRequest(b, chains[0])
				chainRequest(b, chains[1])
			}
			var durs [2][]time.Duration
			n := 0
			b.ReportAllocs()
			for b.Loop() {
				// Blocks of requests through one chain, then the other:
				// alternating every request would make each module evict
				// the other's code and data from the CPU caches, a cost no
				// host with one of them loaded pays.
				i := n / versusBlock % 2
				t0 := time.Now()
				chainRequest(b, chains[i])
				durs[i] = append(durs[i], time.Since(t0))
				n++
			}
			if len(durs[1]) == 0 {
				b.Fatalf("%d iterations: run at least %d (-benchtime %dx) to measure both modules", n, versusBlock+1, 2*versusBlock)
			}
			var p50 [2]float64
			for i, name := range [2]string{"old", "new"} {
				slices.Sort(durs[i])
				p50[i] = float64(durs[i][len(durs[i])/2].Nanoseconds())
				b.ReportMetric(p50[i], name+"-p50-ns")
				b.ReportMetric(float64(durs[i][len(durs[i])*99/100].Nanoseconds()), name+"-p99-ns")
			}
			b.ReportMetric(p50[0]/p50[1], "speedup")
		})
	}
}

// versusBlock is how many requests BenchmarkBundleVersus sends through one
// chain before switching to the other.
const versusBlock = 250

// bundleChain starts the chain's three plugins from the bundle module mod
// (root id per filter) with chainConfigs.
func bundleChain(tb testing.TB, rt *wasmhost.Runtime, mod *wasmhost.Module) *wasmhost.Chain {
	tb.Helper()
	_, caller := otlpSink(tb)
	asrv := httptest.NewServer(&kittest.AuditSink{})
	tb.Cleanup(asrv.Close)
	caller.Clusters["mw-audit"] = asrv.URL
	cfgs := chainConfigs(tb, 100)
	return orderedChain(tb, func(name string) (*wasmhost.Plugin, error) {
		return kittest.Start(tb, rt, mod, wasmhost.PluginConfig{Name: "bundle-" + name, RootID: name, Configuration: cfgs[name],
			HTTPCaller: caller, Properties: map[string][]byte{"node.id": []byte("gw-test-1")}}, nil)
	})
}
