package v8host_test

import (
	"testing"

	"github.com/meshwarden/meshwarden/filters/internal/v8host"
	"github.com/meshwarden/meshwarden/internal/tracectx/w3ccases"
)

// TestTraceW3C runs the W3C Trace Context cases (internal/tracectx/w3ccases,
// the table filters/trace checks natively and in wazero) through the trace
// filter under V8, one request each.
func TestTraceW3C(t *testing.T) {
	mods := modules(t)
	cases := w3ccases.Cases()
	in := v8host.Input{
		VMs:        []v8host.VM{{Name: "trace", Wasm: mods["trace"], PluginConfig: traceConfig(t)}},
		Properties: map[string]string{"node.id": "gw-test-1"},
		Clusters:   map[string]v8host.Cluster{"mw-otlp": {Status: 200}},
	}
	for _, tc := range cases {
		in.Requests = append(in.Requests, v8host.Request{
			RequestHeaders:  hdrs(append([]string{":method", "GET", ":path", "/"}, tc.Headers...)...),
			ResponseHeaders: hdrs(":status", "200")})
	}
	out := run(t, in)
	if len(out.Requests) != len(cases) {
		t.Fatalf("%d requests recorded, want %d", len(out.Requests), len(cases))
	}
	for i, tc := range cases {
		t.Run(tc.Name, func(t *testing.T) {
			h := out.Requests[i].RequestHeaders
			tc.Check(t, v8host.HeaderValues(h, "traceparent"), v8host.HeaderValues(h, "tracestate"))
		})
	}
}
