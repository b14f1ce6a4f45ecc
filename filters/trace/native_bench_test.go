//go:build !wasip1

package trace_test

import (
	"testing"

	"github.com/meshwarden/meshwarden/filters/audit"
	"github.com/meshwarden/meshwarden/filters/dye"
	"github.com/meshwarden/meshwarden/filters/proxywasm"
	"github.com/meshwarden/meshwarden/filters/proxywasm/proxytest"
	"github.com/meshwarden/meshwarden/filters/trace"
)

// BenchmarkNativeEach runs chainRequest's request through each filter on
// the native fake host (proxytest): the filters' own Go work and
// allocations per request, without wasm. The emulator's own allocations are
// in the figures too (compare with the noop row).
func BenchmarkNativeEach(b *testing.B) {
	vms := map[string]func() proxywasm.VMContext{
		"noop": func() proxywasm.VMContext { return &noopVM{} }, "dye": dye.NewVMContext, "audit": audit.NewVMContext, "trace": trace.NewVMContext,
	}
	cfgs := chainConfigs(b, 100)
	for _, name := range []string{"noop", "dye", "audit", "trace"} {
		b.Run(name, func(b *testing.B) {
			host, reset := proxytest.NewHostEmulator(proxytest.NewEmulatorOption().WithVMContext(vms[name]()).
				WithPluginConfiguration(cfgs[name]).
				WithProperty([]string{"connection", "uri_san_peer_certificate"}, []byte("spiffe://bank.example/ns/mesh/sa/gw")).
				WithProperty([]string{"source", "address"}, []byte("10.1.2.3:4000")))
			defer reset()
			if host.StartVM() != proxywasm.OnVMStartStatusOK || host.StartPlugin() != proxywasm.OnPluginStartStatusOK {
				b.Fatalf("start failed: %v", host.GetCriticalLogs())
			}
			req := [][2]string{{":method", "PUT"}, {":path", "/v1/accounts/ACC-1/limits"}, {"x-user-id", "u-42"},
				{"traceparent", incoming}, {"baggage", "k=v"}}
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
