//go:build !wasip1

package trace

import (
	"strings"
	"testing"

	"github.com/meshwarden/meshwarden/filters/kit/kittest"
	"github.com/meshwarden/meshwarden/filters/proxywasm"
	"github.com/meshwarden/meshwarden/filters/proxywasm/proxytest"
	"github.com/meshwarden/meshwarden/filters/trace/traceconfig"
	"github.com/meshwarden/meshwarden/internal/tracectx"
)

func TestPluginNative(t *testing.T) {
	host, reset := proxytest.NewHostEmulator(proxytest.NewEmulatorOption().WithVMContext(NewVMContext).
		WithPluginConfiguration([]byte(`{"serviceName":"svc","batch":{"maxSpans":2}}`)))
	defer reset()
	if host.StartVM() != proxywasm.OnVMStartStatusOK || host.StartPlugin() != proxywasm.OnPluginStartStatusOK {
		t.Fatalf("start failed: %v", host.GetCriticalLogs())
	}
	if host.GetTickPeriod() != traceconfig.DefaultFlushIntervalMs {
		t.Errorf("tick = %d", host.GetTickPeriod())
	}
	var ids []string
	for i := 0; i < 3; i++ {
		id := host.InitializeHttpContext()
		host.CallOnRequestHeaders(id, [][2]string{{":method", "GET"}, {":path", "/a?b"}, {"traceparent", tp}, {"x-mw-dye", "blue"}}, true)
		var out string
		for _, h := range host.GetCurrentRequestHeaders(id) {
			if h[0] == "traceparent" {
				out = h[1]
			}
		}
		sc, err := tracectx.ParseTraceparent(out)
		if err != nil || sc.TraceID.String() != tid || sc.SpanID.String() == sid {
			t.Fatalf("outgoing traceparent %q", out)
		}
		ids = append(ids, sc.SpanID.String())
		host.CallOnResponseHeaders(id, [][2]string{{":status", "200"}}, true)
		host.CompleteHttpContext(id)
	}
	host.Tick()
	calls := host.GetCallouts()
	if len(calls) != 1 || calls[0].Upstream != "mw-otlp" {
		t.Fatalf("callouts = %+v", calls)
	}
	body := string(calls[0].Body)
	if strings.Count(body, `"spanId"`) != 2 || !strings.Contains(body, ids[0]) || !strings.Contains(body, `"mw.lane","value":{"stringValue":"blue"}`) {
		t.Errorf("first batch (maxSpans 2) = %s", body)
	}
	host.CallOnHttpCallResponse(calls[0].CalloutID, [][2]string{{":status", "200"}}, nil, nil)
	host.Tick()
	calls = host.GetCallouts()
	if len(calls) != 1 || !strings.Contains(string(calls[0].Body), ids[2]) {
		t.Fatalf("second batch = %+v", calls)
	}
	host.CallOnHttpCallResponse(calls[0].CalloutID, [][2]string{{":status", "200"}}, nil, nil)
	if n, _ := host.GetCounterMetric(MetricExported); n != 3 {
		t.Errorf("%s = %d, want 3", MetricExported, n)
	}
}

func TestPluginNativeRefusesBadConfig(t *testing.T) {
	kittest.RefusesConfig(t, NewVMContext, `{"collector":{"path":"traces"}}`, "collector.path")
}

// TestIgnoresResponseBody: the stream context's promise that lets a native
// host pass the response body on untouched holds.
func TestIgnoresResponseBody(t *testing.T) { kittest.IgnoresResponseBody(t, &httpContext{}) }
