//go:build !wasip1

package trace_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/meshwarden/meshwarden/filters/audit"
	"github.com/meshwarden/meshwarden/filters/dye"
	"github.com/meshwarden/meshwarden/filters/kit/kittest"
	"github.com/meshwarden/meshwarden/filters/proxywasm"
	"github.com/meshwarden/meshwarden/filters/proxywasm/proxytest"
	"github.com/meshwarden/meshwarden/filters/trace"
	"github.com/meshwarden/meshwarden/gateway/wasmhost"
)

// BenchmarkNativeEach runs chainRequest's request through each filter on
// the native fake host (proxytest): the filters' own Go work and
// allocations per request, without wasm. The emulator's own allocations are
// in the figures too (compare with the noop row).
func BenchmarkNativeEach(b *testing.B) {
	vms := map[string]func(*proxywasm.VM) proxywasm.VMContext{
		"noop": func(*proxywasm.VM) proxywasm.VMContext { return &noopVM{} }, "dye": dye.NewVMContext, "audit": audit.NewVMContext, "trace": trace.NewVMContext,
	}
	cfgs := chainConfigs(b, 100)
	for _, name := range []string{"noop", "dye", "audit", "trace"} {
		b.Run(name, func(b *testing.B) {
			host, reset := proxytest.NewHostEmulator(proxytest.NewEmulatorOption().WithVMContext(vms[name]).
				WithPluginConfiguration(cfgs[name]).
				WithProperty([]string{"connection", "uri_san_peer_certificate"}, []byte("spiffe://bank.example/ns/mesh/sa/gw")).
				WithProperty([]string{"source", "address"}, []byte("10.1.2.3:4000")))
			defer reset()
			if host.StartVM() != proxywasm.OnVMStartStatusOK || host.StartPlugin() != proxywasm.OnPluginStartStatusOK {
				b.Fatalf("start failed: %v", host.GetCriticalLogs())
			}
			req := [][2]string{{":method", "PUT"}, {":path", "/v1/accounts/ACC-1/limits"}, {"x-user-id", "u-42"},
				{"traceparent", kittest.Traceparent}, {"baggage", "k=v"}}
			resp := [][2]string{{":status", "200"}}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				id := host.InitializeHttpContext()
				host.CallOnRequestHeaders(id, append([][2]string(nil), req...), true)
				host.CallOnResponseHeaders(id, resp, true)
				host.CompleteHttpContext(id)
				if i++; i%100 == 0 {
					host.Tick()
					for _, c := range host.GetCallouts() {
						host.CallOnHttpCallResponse(c.CalloutID, resp, nil, nil)
					}
				}
			}
		})
	}
}

type noopVM struct{ proxywasm.DefaultVMContext }

func (*noopVM) NewPluginContext(uint32) proxywasm.PluginContext { return &noopPlugin{} }

type noopPlugin struct{ proxywasm.DefaultPluginContext }

func (*noopPlugin) NewHttpContext(uint32) proxywasm.HttpContext {
	return &proxywasm.DefaultHttpContext{}
}

// BenchmarkHostPhases splits chainRequest's time per phase (stream create,
// request headers, response headers, close) for each filter alone in the
// wasm host without deadlines: p50 of each phase in ns.
func BenchmarkHostPhases(b *testing.B) {
	for _, name := range []string{"dye", "audit", "trace"} {
		b.Run(name, func(b *testing.B) {
			_, caller := otlpSink(b)
			caller.Clusters["mw-audit"] = caller.Clusters["mw-otlp"]
			p, err := newPluginIn(b, true, name, chainConfigs(b, 100)[name], caller, nil)
			if err != nil {
				b.Fatal(err)
			}
			c := wasmhost.NewChain(p)
			var ph [4][]time.Duration
			for b.Loop() {
				t0 := time.Now()
				cs, err := c.NewStream(context.Background(), wasmhost.StreamInfo{PeerURISAN: "spiffe://bank.example/ns/mesh/sa/gw", SourceAddress: "10.1.2.3:4000"})
				if err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				h := wasmhost.NewHeaders(":method", "PUT", ":path", "/v1/accounts/ACC-1/limits", "x-user-id", "u-42",
					"traceparent", kittest.Traceparent, "baggage", "k=v")
				t1b := time.Now()
				cs.OnRequestHeaders(h, true)
				t2 := time.Now()
				cs.OnResponseHeaders(wasmhost.NewHeaders(":status", "200"), true)
				t3 := time.Now()
				cs.Close()
				t4 := time.Now()
				ph[0] = append(ph[0], t1.Sub(t0))
				ph[1] = append(ph[1], t2.Sub(t1b))
				ph[2] = append(ph[2], t3.Sub(t2))
				ph[3] = append(ph[3], t4.Sub(t3))
			}
			for i, n := range []string{"create", "reqhdr", "resphdr", "close"} {
				slices.Sort(ph[i])
				b.ReportMetric(float64(ph[i][len(ph[i])/2].Nanoseconds()), n+"-p50-ns")
			}
		})
	}
}
